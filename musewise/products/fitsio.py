"""Opening and writing the FITS files of products, with errors that say why.

Every reader of the products layer opens files through :func:`open_fits`
(a missing file is :class:`~musewise.exceptions.NotFoundError`, anything
astropy cannot parse is :class:`~musewise.exceptions.InvalidFrameError`), and
every writer goes through :func:`write_hdus`, which writes to a ``.part`` file
and renames it, so a reader never sees a half-written product.
:func:`copy_with_headers` writes a copy of a file with edited headers and the
data bytes as they are, with fresh ``DATASUM``/``CHECKSUM`` cards
(:func:`ones_complement_sum`, :func:`encode_checksum`: the FITS checksum
convention, FITS 4.0 Appendix J).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..exceptions import DatastoreError, InvalidFrameError, NotFoundError

__all__ = ["ascii_card", "copy_with_headers", "encode_checksum", "meta_cards", "ones_complement_sum", "open_fits",
           "product_hdus", "write_hdus"]

#: Bytes read at a time when a copy streams a data block (a multiple of the 2880-byte FITS block).
COPY_CHUNK = 2880 * 2048


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


def ones_complement_sum(buf, sum32: int = 0) -> int:
    """32-bit ones' complement sum of big-endian 32-bit words, as the FITS checksum needs.

    Parameters
    ----------
    buf : bytes-like
        Bytes whose length is a multiple of 4 (a FITS block is 2880).
    sum32 : int
        Sum of the bytes before these: the sum of a file is built piece by piece.

    Returns
    -------
    int
        The sum, 0 to 2**32 - 1.
    """
    total = int(sum32) + int(np.frombuffer(buf, dtype=">u4").sum(dtype=np.uint64))
    while total >> 32:  # the end-around carry of ones' complement arithmetic
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


_CHECKSUM_SKIP = frozenset(b":;<=>?@[\\]^_`")


def encode_checksum(sum32: int) -> str:
    """The 16-character ``CHECKSUM`` value that makes an HDU of sum ``sum32`` sum to -0.

    ``sum32`` is the sum of the HDU with ``CHECKSUM = '0000000000000000'``; its
    complement is written in the printable characters 0-9, A-Z, a-z.
    """
    value = ~int(sum32) & 0xFFFFFFFF
    chars = [0] * 16
    for i in range(4):
        byte = (value >> (24 - 8 * i)) & 0xFF
        quarter = [byte // 4 + 0x30] * 4
        quarter[0] += byte % 4
        moved = True
        while moved:  # shift pairs off punctuation, keeping their sum
            moved = False
            for j in (0, 2):
                if quarter[j] in _CHECKSUM_SKIP or quarter[j + 1] in _CHECKSUM_SKIP:
                    quarter[j] += 1
                    quarter[j + 1] -= 1
                    moved = True
        for j in range(4):
            chars[4 * j + i] = quarter[j]
    return "".join(chr(chars[(i + 15) % 16]) for i in range(16))


def _read_span(f, start: int, length: int):
    f.seek(start)
    left = length
    while left > 0:
        chunk = f.read(min(COPY_CHUNK, left))
        if not chunk:
            raise InvalidFrameError(getattr(f, "name", "<file>"), "ends inside a data block")
        left -= len(chunk)
        yield chunk


def copy_with_headers(src: str | os.PathLike, out, edit, datasums=None) -> list[int]:
    """Write ``src`` to ``out`` with edited headers, the data blocks byte for byte, and fresh checksums.

    Each HDU's header is given to ``edit(index, header)``, which returns the
    header to write; the HDU's data block (with its padding) is then copied
    unchanged, read in chunks of :data:`COPY_CHUNK` bytes, so a 3 GB cube
    needs a few MB of memory. ``DATASUM`` and ``CHECKSUM`` are computed for
    every HDU; ``edit`` must leave the keywords that describe the data
    (``BITPIX``, ``NAXISn``, ``PCOUNT``...) as they are.

    Parameters
    ----------
    src : path-like
        A FITS file.
    out : binary file-like
        Anything with ``write(bytes)``: a file, or a hash that counts what would be written.
    edit : callable
        ``edit(index, header) -> astropy.io.fits.Header``; ``index`` 0 is the primary.
    datasums : sequence of int, optional
        The data sums of ``src``'s HDUs, as an earlier call returned them: each data
        block is then read once instead of twice (the sum is needed before the header
        is written). Only for bytes known to be the same (checked by their sha256).

    Returns
    -------
    list of int
        The data sum of each HDU.

    Raises
    ------
    NotFoundError, InvalidFrameError
        If ``src`` cannot be read as FITS.
    """
    sums = []
    with open_fits(src, memmap=False) as hdul, open(src, "rb") as raw:
        for index, hdu in enumerate(hdul):
            info = hdul.fileinfo(index)
            header = edit(index, hdu.header.copy())
            if datasums is not None:
                datasum = int(datasums[index])
            else:
                datasum = 0
                for chunk in _read_span(raw, info["datLoc"], info["datSpan"]):
                    datasum = ones_complement_sum(chunk, datasum)
            sums.append(datasum)
            header["DATASUM"] = (str(datasum), "data unit checksum")
            header["CHECKSUM"] = ("0" * 16, "HDU checksum")
            header["CHECKSUM"] = encode_checksum(
                ones_complement_sum(header.tostring().encode("ascii"), datasum))
            out.write(header.tostring().encode("ascii"))
            for chunk in _read_span(raw, info["datLoc"], info["datSpan"]):
                out.write(chunk)
    return sums
