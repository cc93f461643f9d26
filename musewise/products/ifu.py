"""Which IFU a FITS extension, file or product belongs to.

The MUSE pipeline says it in three ways, each read by one function here:

* an extension named ``CHANnn`` (raw frames carry one per IFU; per-IFU
  products name the IFU in their primary ``EXTNAME``), or ``CHANnn.DATA`` /
  ``CHANnn.STAT`` in multi-IFU products: :func:`ifu_of_extname`;
* the file name of a per-IFU product, ``MASTER_BIAS-05.fits``: :func:`ifu_of_filename`;
* the ``ESO DRS MUSE IFU`` keyword: :func:`ifu_of_header`.

:func:`ifu_of_product` combines them in the order the archive and the recipes trust.
"""

from __future__ import annotations

import os
import re
from pathlib import PurePath

from ..exceptions import InvalidArgumentError
from ..vocabulary import N_IFU

__all__ = ["chan_extname", "chan_extensions", "chan_number", "ifu_of_extname", "ifu_of_filename", "ifu_of_header",
           "ifu_of_product"]

_CHAN = re.compile(r"^CHAN(\d\d)(\.[A-Z]+)?$")
_SUFFIX = re.compile(r"-(\d\d)\.fits(\.fz)?$")


def _valid(n: int) -> int | None:
    return n if 1 <= n <= N_IFU else None


def chan_extname(ifu: int) -> str:
    """The extension name of an IFU in a raw frame: ``CHAN05`` for IFU 5.

    Raises
    ------
    InvalidArgumentError
        If ``ifu`` is not 1-24.
    """
    if _valid(int(ifu)) is None:
        raise InvalidArgumentError(f"IFU must be 1-{N_IFU}, got {ifu}")
    return f"CHAN{int(ifu):02d}"


def ifu_of_extname(name) -> int | None:
    """IFU of an extension named ``CHANnn`` (or ``CHANnn.DATA``...), else None."""
    m = _CHAN.match(str(name or "").strip().upper())
    return _valid(int(m.group(1))) if m else None


def chan_number(name) -> int | None:
    """The number ``nn`` of an extension named exactly ``CHANnn`` (any two digits, even
    outside 1-24, so that a reader can refuse it), else None."""
    m = _CHAN.match(str(name or "").strip().upper())
    return int(m.group(1)) if m and m.group(2) is None else None


def ifu_of_filename(path: str | os.PathLike) -> int | None:
    """IFU of a per-IFU product named ``...-NN.fits`` (or ``.fits.fz``), NN in 1-24, else None."""
    m = _SUFFIX.search(PurePath(path).name)
    return _valid(int(m.group(1))) if m else None


def ifu_of_header(header) -> int | None:
    """IFU named by a header: its ``EXTNAME = CHANnn``, else ``ESO DRS MUSE IFU``, else None."""
    ifu = ifu_of_extname(header.get("EXTNAME", ""))
    if ifu is None and header.get("ESO DRS MUSE IFU") is not None:
        try:
            ifu = _valid(int(header["ESO DRS MUSE IFU"]))
        except (TypeError, ValueError):
            ifu = None  # a malformed keyword names no IFU
    return ifu


def chan_extensions(names) -> dict[int, str]:
    """IFU -> name of the ``CHANnn`` extensions among extension names (raw frames)."""
    out = {}
    for name in names:
        m = _CHAN.match(str(name or "").strip().upper())
        if m and m.group(2) is None and _valid(int(m.group(1))):
            out[int(m.group(1))] = str(name)
    return out


def ifu_of_product(path: str | os.PathLike, primary_header, extnames=()) -> int | None:
    """The one IFU a product file belongs to, or None for a product of several (or of none).

    In order: the primary header's ``EXTNAME = CHANnn``; the only ``CHANnn``
    extension of the file; the ``-NN.fits`` file-name suffix; ``ESO DRS MUSE IFU``.

    Parameters
    ----------
    path : path-like
        The file (only its name is read).
    primary_header : astropy.io.fits.Header or dict
        Its primary header.
    extnames : sequence of str
        Names of its extensions.
    """
    ifu = ifu_of_extname(primary_header.get("EXTNAME", ""))
    if ifu is not None:
        return ifu
    chans = chan_extensions(extnames)
    if len(chans) == 1:
        return next(iter(chans))
    return ifu_of_filename(path) or ifu_of_header(primary_header)
