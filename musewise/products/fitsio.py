"""Opening and writing the FITS files of products, with errors that say why.

Every reader of the products layer opens files through :func:`open_fits`
(a missing file is :class:`~musewise.exceptions.NotFoundError`, anything
astropy cannot parse is :class:`~musewise.exceptions.InvalidFrameError`), and
every writer goes through :func:`write_hdus`, which writes to a ``.part`` file
and renames it, so a reader never sees a half-written product.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..exceptions import DatastoreError, InvalidFrameError, NotFoundError

__all__ = ["ascii_card", "meta_cards", "open_fits", "product_hdus", "write_hdus"]


def open_fits(path: str | os.PathLike, **kwargs) -> fits.HDUList:
    """Open a FITS file, every header scanned, or raise saying why it cannot be read.

    Parameters
    ----------
    path : path-like
        The file.
    **kwargs
        Passed to :func:`astropy.io.fits.open` (``memmap=True`` for cubes).

    Returns
    -------
    astropy.io.fits.HDUList
        Open; the caller closes it (use it as a context manager).

    Raises
    ------
    NotFoundError
        If the file does not exist.
    InvalidFrameError
        If it is a directory or not a readable FITS file.
    """
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise InvalidFrameError(path, "is a directory, not a FITS file")
    try:
        hdul = fits.open(path, **kwargs)
        len(hdul)  # forces astropy to scan every header: a corrupt one fails here
        return hdul
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise InvalidFrameError(path, f"not a readable FITS file ({exc})") from exc


def write_hdus(path: str | os.PathLike, hdus: list, overwrite: bool = True) -> Path:
    """Write HDUs (with checksums) to ``path`` atomically.

    Raises
    ------
    DatastoreError
        If the file exists and ``overwrite`` is False, or cannot be written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise DatastoreError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        fits.HDUList(hdus).writeto(tmp, overwrite=True, checksum=True)
        os.replace(tmp, path)  # readers never see a half-written file
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DatastoreError(f"cannot write {path}: {exc}") from exc
    return path


def ascii_card(text: str) -> str:
    """A label as printable ASCII for a FITS card (Angstrom sign, plus-minus, Greek), <= 68 chars."""
    for a, b in (("Å", "A"), ("±", "+-"), ("α", "a"), ("β", "b"), ("σ", "sigma"), ("λ", "lambda")):
        text = text.replace(a, b)
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:68]


def meta_cards(meta: dict) -> list[tuple[str, object]]:
    """``HIERARCH MUSEWISE <KEY>`` cards of the scalar entries of a product's metadata."""
    cards = []
    for key, value in meta.items():
        if isinstance(value, (bool, int, float, str)) and value is not None:
            cards.append((f"HIERARCH MUSEWISE {key.upper()}",
                          ascii_card(value) if isinstance(value, str) else value))
    return cards


def product_hdus(kind: str, label: str, meta: dict, data, var, unit: str, wcs_cards=None) -> list:
    """The HDUs of an exported product: a primary header, ``DATA`` and (with a variance) ``STAT``.

    Parameters
    ----------
    kind : str
        ``HIERARCH MUSEWISE KIND`` (``IMAGE``, ``SPECTRUM``).
    label : str
        Written as ``OBJECT``.
    meta : dict
        Scalars written as ``HIERARCH MUSEWISE <KEY>`` cards.
    data, var : array_like or None
        Values (written float32) and their variance.
    unit : str
        BUNIT of ``data``; ``STAT`` gets its square.
    wcs_cards : mapping, optional
        WCS keywords written in both extensions.
    """
    primary = fits.PrimaryHDU()
    primary.header["HIERARCH MUSEWISE KIND"] = kind
    primary.header["OBJECT"] = ascii_card(label)
    for k, v in meta_cards(meta):
        primary.header[k] = v
    hdus = [primary]
    for name, arr, bunit in (("DATA", data, unit), ("STAT", var, f"({unit})**2" if unit else "")):
        if arr is None:
            continue
        h = fits.ImageHDU(np.asarray(arr, dtype=np.float32), name=name)
        if wcs_cards is not None:
            h.header.update(wcs_cards)
        h.header["BUNIT"] = bunit
        hdus.append(h)
    return hdus
