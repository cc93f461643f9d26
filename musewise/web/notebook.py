"""Executed notebooks rendered as stand-alone HTML pages (nbconvert), cached by checksum."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..exceptions import InvalidArgumentError, NotFoundError
from ..vocabulary import DatasetKind


#: Largest notebook rendered (bytes); a larger one is only downloaded.
MAX_NOTEBOOK_BYTES = 100_000_000


def notebook_html(arch, dataset_id: int, cache_dir, max_bytes: int = MAX_NOTEBOOK_BYTES) -> str:
    """The HTML rendering of an archived notebook the user may see.

    Parameters
    ----------
    arch : Archive
        Seen by the requesting user.
    dataset_id : int
        A dataset of kind ``notebook``.
    cache_dir : path-like
        Renderings are cached here by the notebook's sha256 (stored files never change).
    max_bytes : int
        Refuse to render a larger notebook (bytes).

    Raises
    ------
    NotFoundError
        If the dataset is not visible, or is not a notebook (a cube is never read as JSON).
    InvalidArgumentError
        If the notebook is larger than ``max_bytes``.
    """
    rec = arch.get(dataset_id)
    if rec.kind != DatasetKind.NOTEBOOK.value:
        raise NotFoundError(f"dataset {rec.id} is a {rec.kind} dataset ({rec.category}), not a notebook")
    if rec.size > max_bytes:
        raise InvalidArgumentError(f"notebook {rec.id} is {rec.size / 1e6:.0f} MB, too large to show here "
                                   f"(at most {max_bytes / 1e6:.0f} MB): download it")
    cache = Path(cache_dir) / f"{rec.sha256}.html"
    if cache.exists():
        return cache.read_text(encoding="utf-8")
    html = render_notebook(arch.path(dataset_id))
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(html)
    os.replace(tmp, cache)
    return html


def render_notebook(path) -> str:
    """Render an ``.ipynb`` file with its outputs as one HTML document."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    exporter = HTMLExporter(template_name="lab")
    # Notebook outputs are what the run printed; scripts in them are not run in the archive's pages.
    exporter.exclude_input_prompt = False
    body, _ = exporter.from_notebook_node(nb)
    return body
