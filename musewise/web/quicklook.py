"""Quick-look PNG images of archived FITS files, rendered server-side and cached.

What is drawn is :func:`musewise.products.quicklook.render_quicklook`'s (a CCD, an image,
a cube's white light).

Images are cached by the file's sha256 (plus the IFU): stored files never change,
so a cached image never goes stale, and an image can only be requested for a
dataset the user may see.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np

from ..products.quicklook import image_of, render_quicklook


def quicklook_png(arch, dataset_id: int, cache_dir, ifu: int | None = None) -> bytes:
    """The quick-look PNG of a dataset, from the cache or freshly rendered.

    Parameters
    ----------
    arch : Archive
        Seen by the requesting user (raises NotFoundError if the dataset is not visible).
    dataset_id : int
    cache_dir : path-like
        Folder of cached images.
    ifu : int, optional
        The IFU of a raw frame to show (default its first).
    """
    rec = arch.get(dataset_id)
    cache = Path(cache_dir) / f"{rec.sha256}-{ifu or 0}.png"
    if cache.exists():
        return cache.read_bytes()
    png = render_quicklook(arch.path(dataset_id), title=f"#{rec.id} {rec.category} {rec.night or ''}", ifu=ifu)
    return _cache_png(cache, png)


def source_png(arch, dataset_id: int, source_id: int, what: str, cache_dir) -> bytes:
    """A PNG of one source of a ``SOURCE_CATALOG``: its spectrum (line marked) or its image.

    Parameters
    ----------
    arch : Archive
        Seen by the requesting user (NotFoundError if the catalogue is not visible).
    dataset_id, source_id : int
        The catalogue and the source's ``id`` in it.
    what : {"spectrum", "image"}
    cache_dir : path-like
        Folder of cached images (by the file's sha256, the source and ``what``).
    """
    from matplotlib.figure import Figure

    from ..products.catalog import read_sources, source_image, source_spectrum

    rec = arch.get(dataset_id)
    cache = Path(cache_dir) / f"{rec.sha256}-source{int(source_id)}-{what}.png"
    if cache.exists():
        return cache.read_bytes()
    path = arch.path(dataset_id)
    rows = read_sources(path)
    row = rows[rows["id"] == int(source_id)]
    fig = Figure(figsize=(7.5, 3.2) if what == "spectrum" else (4.0, 4.0), dpi=100)
    ax = fig.add_subplot()
    if what == "spectrum":
        spec = source_spectrum(path, int(source_id))
        ax.step(spec.wave, spec.data, where="mid", lw=0.6, color="k")
        if len(row) and np.isfinite(row["wavelength"][0]):
            lam = float(row["wavelength"][0])
            ax.axvline(lam, color="tab:red", ls="--", lw=1)
            ax.set_title(f"#{rec.id} source {int(source_id)}: line at {lam:.2f} A", fontsize=9)
        else:
            ax.set_title(f"#{rec.id} source {int(source_id)} (continuum)", fontsize=9)
        ax.set_xlabel("wavelength (A)")
        ax.set_ylabel(spec.unit or "flux", fontsize=7)
    else:
        img = source_image(path, int(source_id))
        finite = np.isfinite(img.data)
        lo, hi = np.nanpercentile(img.data, [1, 99.5]) if finite.any() else (0.0, 1.0)
        ax.imshow(img.data, origin="lower", cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1,
                  interpolation="nearest")
        ax.set_title(f"#{rec.id} source {int(source_id)}: {img.label}", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return _cache_png(cache, buf.getvalue())


#: Longest side of a tile's thumbnail on the review grid (pixels).
THUMB_SIDE = 96


def thumbnail_png(arch, dataset_id: int, cache_dir, ifu: int | None = None) -> bytes:
    """A small grey-scale PNG of a dataset (one IFU of a raw frame), for the review grid's tiles.

    The same image as :func:`quicklook_png`, without axes or colour bar, at most
    :data:`THUMB_SIDE` pixels on a side (a blank grey square for a file holding no image),
    cached by the file's sha256 like the quick-look.
    """
    from matplotlib.image import imsave

    rec = arch.get(dataset_id)
    cache = Path(cache_dir) / f"{rec.sha256}-{ifu or 0}-thumb.png"
    if cache.exists():
        return cache.read_bytes()
    data, _ = image_of(arch.path(dataset_id), ifu=ifu)
    if data is None or not np.isfinite(data).any():
        data = np.zeros((8, 8), np.float32)
    step = max(1, int(np.ceil(max(data.shape) / THUMB_SIDE)))
    data = data[::step, ::step]
    lo, hi = np.nanpercentile(data, [1, 99]) if np.isfinite(data).any() else (0.0, 1.0)
    buf = io.BytesIO()
    # origin="lower": as the quick-look draws it (FITS rows go up).
    imsave(buf, np.nan_to_num(data, nan=lo), cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1,
           origin="lower", format="png")
    png = buf.getvalue()
    return _cache_png(cache, png)


def _cache_png(cache: Path, png: bytes) -> bytes:
    """Store ``png`` at ``cache`` and return it. Write-then-rename: two requests rendering
    at once never leave half an image."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(png)
    os.replace(tmp, cache)
    return png
