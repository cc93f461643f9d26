"""Quick-look PNG images of FITS files: what the web view, the review queue and VO previews show.

What is drawn depends on what the file holds:

* a raw frame: one IFU's CCD (extension ``CHANnn``), downsampled;
* a 2-D product (master bias, flat, image): its first image;
* a cube: the white-light image (:func:`musewise.products.white_light`, a
  block of planes at a time, so a 3 GB cube never sits in memory at once).
"""

from __future__ import annotations

import io

import numpy as np

from .cube import white_light
from .ifu import chan_extensions

#: Longest side of a quick-look image (pixels).
MAX_SIDE = 600


def image_of(path, ifu: int | None = None) -> tuple[np.ndarray | None, str]:
    """The 2-D array to show for a FITS file, and a description of it.

    Returns ``(None, reason)`` when the file holds no image (a table, a notebook).
    """
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:
        chans = {n: hdul[name] for n, name in chan_extensions(h.name for h in hdul[1:]).items()}
        if chans:
            n = ifu if ifu in chans else min(chans)
            return _downsample(chans[n].data), f"IFU {n:02d} CCD"
        for h in hdul:
            if not getattr(h, "is_image", False) or h.header.get("NAXIS", 0) < 2 or h.data is None:
                continue
            if h.header["NAXIS"] == 2:
                return _downsample(h.data), f"image {h.name}"
            if h.header["NAXIS"] == 3:
                return _downsample(white_light(h.data)), f"white light of cube {h.name}"
    return None, "no image in this file"


def _downsample(data) -> np.ndarray:
    # A strided read touches only the pixels kept, which keeps a 4k x 4k CCD quick.
    step = max(1, int(np.ceil(max(data.shape) / MAX_SIDE)))
    return np.asarray(data[::step, ::step], dtype=np.float32)


def render_quicklook(path, title: str = "", ifu: int | None = None) -> bytes:
    """Render a FITS file's quick-look image as PNG bytes (1-99 percentile grey scale)."""
    from matplotlib.figure import Figure

    data, what = image_of(path, ifu=ifu)
    fig = Figure(figsize=(5.5, 5.0), dpi=100)
    ax = fig.add_subplot()
    if data is None or not np.isfinite(data).any():
        ax.text(0.5, 0.5, what if data is None else "image holds no finite values",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        lo, hi = np.nanpercentile(data, [1, 99])
        im = ax.imshow(data, origin="lower", cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1,
                       interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xlabel("x (downsampled pixels)")
    ax.set_title(f"{title}\n{what}", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


__all__ = ["MAX_SIDE", "image_of", "render_quicklook"]
