"""What the example notebooks open by default: the archive's own products, found through its API.

The notebooks in ``notebooks/`` call these so that, in the hub or on a site with an archive,
they show the site's data (the newest cube the user may see, the master flats of its night)
and fall back to synthetic data only when there is no archive or no such product, saying so.

* :func:`configured_archive` - the archive the configuration names (``$MUSEWISE_CONFIG``,
  ``$MUSEWISE_ROOT``, ``$MUSEWISE_DB_URL``: :meth:`MusewiseConfig.load`), or None when there
  is none (opening one would create an empty archive);
* :func:`newest_product` - the newest usable product of a category visible to the user.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["configured_archive", "newest_product"]


def configured_archive(user: str | None = None, **settings):
    """The configured archive, opened as ``user``, or None when none exists yet.

    Parameters
    ----------
    user : str, optional
        Acting user (default the configuration's: the hub user inside the hub).
    **settings
        Overrides of configuration values (``root=...``), as for :meth:`Archive.open`.

    Returns
    -------
    Archive or None
        None when the configured database is a SQLite file that does not exist (the
        default ``~/musewise-data`` of a machine without musewise data), or when the
        configured database server cannot be reached.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from ..archive import Archive
    from ..config import MusewiseConfig

    config = MusewiseConfig.load(**settings)
    url = make_url(config.db_url)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).exists()):
        return None
    try:
        return Archive(config, user=user)
    except OperationalError:  # a server that is down or refuses us: no archive to show
        return None


def newest_product(archive, category: str, *, night: str | None = None, ifu: int | None = None):
    """The newest usable product of ``category`` visible to the archive's user, or None.

    Parameters
    ----------
    archive : Archive
    category : str
        ``ESO PRO CATG``, e.g. ``DATACUBE_FINAL``.
    night : str, optional
        Only products of this night ``YYYY-MM-DD``.
    ifu : int, optional
        Only products usable for this IFU.

    Returns
    -------
    DatasetRecord or None
        Newest by archiving time; valid, not affected by an invalid input.
    """
    found = archive.query(category=category, night=night, ifu=ifu, valid=True, order_by="created",
                          descending=True, limit=1)
    return found[0] if found else None
