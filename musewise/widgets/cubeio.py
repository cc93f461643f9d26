"""What the viewers add to the products layer when they open a cube: archive ids and the cache folder.

Reading cubes is :class:`musewise.products.MuseCube`'s job; a viewer is also
handed archive dataset ids or records, and keeps computed white-light images
in the site's scratch folder so that reopening a cube is instant.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..products.cube import MuseCube

__all__ = ["default_cache_dir", "open_cube", "resolve_source", "run_white_light"]


def default_cache_dir() -> Path:
    """Folder of the white-light sidecar cache: ``<scratch>/cache/white-light``.

    ``scratch`` comes from :class:`musewise.config.MusewiseConfig` (environment
    ``MUSEWISE_ROOT`` or the site config file).
    """
    from ..config import MusewiseConfig

    return Path(MusewiseConfig.load().scratch) / "cache" / "white-light"


def resolve_source(source, archive=None, *, in_place: bool = False):
    """Turn what a user hands a viewer into a path, a :class:`MuseCube` or an mpdaf object.

    Parameters
    ----------
    source : str, os.PathLike, int, DatasetRecord, MuseCube or mpdaf object
        A FITS path; an archive dataset id (int) or record (anything with ``.id``
        and ``.category``), resolved with ``archive.path(id)``; or an already
        open cube.
    archive : musewise.archive.Archive, optional
        Archive used to resolve ids. Default: ``Archive.open()``.
    in_place : bool
        For an archive dataset, the stored file itself (``Archive.file``: an
        object store's file is then read in byte ranges, not copied whole)
        instead of a local copy.

    Returns
    -------
    object
        A ``pathlib.Path`` for files and archive datasets (an ``fsspec`` OpenFile
        for a dataset in an object store with ``in_place``), ``source`` unchanged
        otherwise.
    """
    if isinstance(source, (str, os.PathLike)):
        return Path(source)
    dataset_id = _dataset_id(source)
    if dataset_id is None:
        return source
    archive = _archive(archive)
    return archive.file(dataset_id) if in_place else Path(archive.path(dataset_id))


def _dataset_id(source) -> int | None:
    """The archive dataset id a viewer was handed (an int, or a record: ``.id`` and ``.category``), else None."""
    if isinstance(source, (int, np.integer)):
        return int(source)
    if hasattr(source, "id") and hasattr(source, "category"):
        return int(source.id)
    return None


def _archive(archive):
    if archive is None:
        from ..archive import Archive  # widgets read through the archive API

        archive = Archive.open()
    return archive


def run_white_light(source, archive):
    """The white-light image (``IMAGE_FOV``) the run that made an archived cube made beside it.

    Returns a local path, or None when ``source`` is not an archive dataset or its run
    made no single ``IMAGE_FOV``: the viewer then computes the white light (reading the
    whole DATA extension once, then from its cache).
    """
    dataset_id = _dataset_id(source)
    if dataset_id is None or archive is None:
        return None
    record = source if not isinstance(source, (int, np.integer)) else archive.get(dataset_id)
    if record.run_id is None:
        return None
    images = archive.query(run_id=record.run_id, category="IMAGE_FOV")
    same = [im for im in images if im.exposure == record.exposure] or images
    return archive.path(same[0].id) if len(same) == 1 else None


def open_cube(source, *, archive=None, white_light=None, cache_dir=None,
              find_image_fov: bool = True) -> MuseCube:
    """Open a cube for a viewer: :meth:`MuseCube.open` after :func:`resolve_source`.

    ``source`` is anything :func:`resolve_source` accepts (a path, an archive
    dataset id or record, a cube object), resolved through ``archive``; the
    white-light cache defaults to :func:`default_cache_dir`. The other
    arguments and the errors are those of :meth:`MuseCube.open`.
    """
    if white_light is None and _dataset_id(source) is not None:
        archive = _archive(archive)
        white_light = run_white_light(source, archive)
    source = resolve_source(source, archive, in_place=True)
    if isinstance(source, MuseCube):
        return source
    return MuseCube.open(source, white_light=white_light,
                         cache_dir=default_cache_dir() if cache_dir is None else cache_dir,
                         find_image_fov=find_image_fov)
