"""Inspect files before they enter the archive: is it MUSE, what is it, is it whole?

This layer reads headers only; it knows nothing of the database. The archive
calls :func:`inspect_file` and refuses whatever raises :class:`InvalidFrameError`,
so a corrupt, truncated or non-MUSE file never reaches the store.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from astropy.io import fits
from astropy.time import Time

from .exceptions import InvalidFrameError
from .products.ifu import chan_number, ifu_of_product
from .vocabulary import N_IFU, DatasetKind, FrameType, kind_of_category

#: Primary-header keywords copied into the registry (searchable without opening the file).
HEADER_KEYS = (
    "INSTRUME", "OBJECT", "RA", "DEC", "EXPTIME", "DATE-OBS", "MJD-OBS", "ARCFILE",
    "ESO DPR CATG", "ESO DPR TYPE", "ESO DPR TECH", "ESO INS MODE", "ESO OBS NAME",
    "ESO OBS ID", "ESO OBS TARG NAME", "ESO TPL START", "ESO TEL AIRM START",
    "ESO PRO CATG", "ESO PRO REC1 ID", "ESO PRO REC1 PIPE ID", "ESO PRO REC1 DRS ID",
    "ESO PRO DATANCOM", "BUNIT",
)
#: Longest text the registry keeps for each :class:`FrameInfo` field (its column widths).
FIELD_WIDTHS = {"category": 32, "mode": 16, "object": 80, "pipeline_version": 32}
#: Observation dates accepted (MJD, days): 2000-01-01 to 2100-01-01.
MJD_RANGE = (51544.0, 88069.0)
#: Shift that makes a UTC timestamp fall on its observing night at Paranal (UTC-3/-4):
#: the night of 2026-11-20 runs from noon 20 Nov to noon 21 Nov local time.
NIGHT_SHIFT = timedelta(hours=12)


@dataclass(frozen=True)
class FrameInfo:
    """What a file is, read from its headers.

    Attributes
    ----------
    kind : DatasetKind
    category : str
        Frame type (``BIAS``...) of a raw frame, ``ESO PRO CATG`` of a product.
    night : str or None
        Observing night ``YYYY-MM-DD``.
    date_obs : datetime or None
        Start of exposure, UTC.
    mjd_obs : float or None
        Modified Julian Date of the start (days).
    exptime : float or None
        Exposure time (s).
    mode : str or None
        ``ESO INS MODE``.
    ifus : tuple of int
        IFUs whose data the file holds.
    ifu : int or None
        The IFU of a single-IFU product.
    """

    kind: DatasetKind
    category: str
    night: str | None
    date_obs: datetime | None
    mjd_obs: float | None
    exptime: float | None
    mode: str | None
    object: str | None
    ifus: tuple[int, ...]
    ifu: int | None
    pipeline_version: str | None
    header: dict = field(default_factory=dict, compare=False)


def night_of(date_obs: datetime) -> str:
    """Observing night (``YYYY-MM-DD``, local evening date at Paranal) of a UTC time."""
    return (date_obs - NIGHT_SHIFT).date().isoformat()


def _check_complete(path: Path, hdul) -> None:
    size = path.stat().st_size
    for i in range(len(hdul)):
        info = hdul.fileinfo(i)
        end = info["datLoc"] + info["datSpan"]
        if end > size:
            raise InvalidFrameError(
                path, f"truncated: HDU {i} needs {end} bytes but the file has {size}"
            )


def _jsonable(v):
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    return str(v)


def inspect_file(path, ifu: int | None = None) -> FrameInfo:
    """Read and check a MUSE FITS file's headers.

    Parameters
    ----------
    path : path-like
        A raw MUSE frame or a MUSE pipeline product (FITS, optionally .fz).
    ifu : int, optional
        The IFU of a single-IFU product when the headers do not say.

    Returns
    -------
    FrameInfo

    Raises
    ------
    InvalidFrameError
        If the file is missing, not FITS, truncated, not from MUSE, or lacks the
        keywords that say what it is.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidFrameError(path, "no such file")
    if path.stat().st_size < 2880:
        raise InvalidFrameError(path, "not a FITS file (shorter than one 2880-byte block)")
    with open(path, "rb") as f:
        if not f.read(30).startswith(b"SIMPLE  =                    T"):
            raise InvalidFrameError(path, "not a FITS file (no SIMPLE = T card)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", fits.verify.VerifyWarning)
            warnings.simplefilter("ignore", UserWarning)
            with fits.open(path, memmap=False, lazy_load_hdus=False, do_not_scale_image_data=True) as hdul:
                _check_complete(path, hdul)
                headers = [h.header for h in hdul]
    except InvalidFrameError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, VerifyWarning...
        raise InvalidFrameError(path, f"unreadable FITS: {exc}") from exc
    return _classify(path, headers, ifu)


def _number(path: Path, h0, key: str, lo: float, hi: float, unit: str) -> float | None:
    """A header value that must be a number within [lo, hi], or absent."""
    v = h0.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidFrameError(path, f"{key} is {v!r}, not a number")
    v = float(v)
    if not (math.isfinite(v) and lo <= v <= hi):
        raise InvalidFrameError(path, f"{key} = {v:g} is outside {lo:g} to {hi:g} {unit}")
    return v


def _ifu_number(path: Path, value, where: str) -> int:
    """An IFU number (1 to N_IFU) written as an integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= N_IFU:
        raise InvalidFrameError(path, f"{where} is {value!r}, not an IFU number 1 to {N_IFU}")
    return int(value)


def _channels(path: Path, headers, raw: bool) -> list[int]:
    """IFU numbers of the CHANnn extensions, each once; a raw frame's must be 2-D images."""
    chans = []
    for h in headers[1:]:
        name = str(h.get("EXTNAME", "")).strip()
        number = chan_number(name)
        if number is None:
            continue
        n = _ifu_number(path, number, f"extension {name}")
        if n in chans:
            raise InvalidFrameError(path, f"extension {name} appears twice")
        if raw and (h.get("XTENSION", "").strip() != "IMAGE" or h.get("NAXIS") != 2):
            raise InvalidFrameError(path, f"extension {name} is not a 2-D CCD image "
                                          f"({h.get('XTENSION', '').strip()}, NAXIS={h.get('NAXIS')})")
        chans.append(n)
    return chans


def _text(path: Path, key: str, field: str, value) -> str | None:
    """A header text for a registry field, checked against the field's width."""
    if value is None or value == "" or value is False:
        return None
    text = str(value).strip()
    if len(text) > FIELD_WIDTHS[field]:
        raise InvalidFrameError(path, f"{key} is {len(text)} characters long; the archive keeps at most "
                                      f"{FIELD_WIDTHS[field]}")
    return text or None


def _classify(path: Path, headers, ifu) -> FrameInfo:
    # Every header value that reaches the registry is checked here, so a bad value refuses
    # this file with its reason rather than failing (and stopping an ingest of many) later.
    h0 = headers[0]
    if str(h0.get("INSTRUME", "")).strip().upper() != "MUSE":
        raise InvalidFrameError(path, f"INSTRUME is {h0.get('INSTRUME')!r}, not 'MUSE'")
    catg = h0.get("ESO PRO CATG")
    ifu = _ifu_number(path, ifu, "the IFU given") if ifu else None  # 0: none given
    extnames = [str(h.get("EXTNAME", "")) for h in headers[1:]]
    chans = _channels(path, headers, raw=not catg)
    if catg:
        category = str(catg).strip()
        kind = kind_of_category(category)
        if kind == DatasetKind.CALIBRATION and not h0.get("ESO PRO REC1 ID") and not h0.get("MJD-OBS") \
                and not h0.get("DATE-OBS"):
            # made by no recipe and taken at no time: a default shipped with the pipeline
            kind = DatasetKind.STATIC
        if ifu is None:
            drs = h0.get("ESO DRS MUSE IFU")
            if drs is not None and drs != 0:  # 0: a product of no single IFU
                _ifu_number(path, drs, "ESO DRS MUSE IFU")
            ifu = ifu_of_product(path, h0, extnames)
        ifus = (ifu,) if ifu else tuple(sorted(set(chans)))
        if not ifus and kind == DatasetKind.STATIC:
            # a static calibration serves every IFU, and can be invalidated for one of them
            ifus = tuple(range(1, N_IFU + 1))
    else:
        dpr = h0.get("ESO DPR TYPE")
        if dpr is None:
            raise InvalidFrameError(path, "neither ESO DPR TYPE (raw frame) nor ESO PRO CATG (product) is set")
        try:
            category = FrameType.from_dpr(dpr).value
        except ValueError as exc:
            raise InvalidFrameError(path, str(exc)) from exc
        kind = DatasetKind.RAW
        if not chans:
            raise InvalidFrameError(path, "raw MUSE frame without any CHANnn IFU extension")
        ifus = tuple(sorted(chans))
        ifu = ifus[0] if len(ifus) == 1 else None
    date_obs = None
    mjd = _number(path, h0, "MJD-OBS", *MJD_RANGE, "(MJD)")
    if mjd is not None:
        date_obs = Time(mjd, format="mjd").to_datetime()
    elif h0.get("DATE-OBS"):
        try:
            t = Time(str(h0["DATE-OBS"]), format="isot", scale="utc")
        except ValueError as exc:
            raise InvalidFrameError(path, f"DATE-OBS {h0['DATE-OBS']!r} is not an ISO date") from exc
        if not MJD_RANGE[0] <= t.mjd <= MJD_RANGE[1]:
            raise InvalidFrameError(path, f"DATE-OBS {h0['DATE-OBS']!r} is outside the years 2000 to 2100")
        mjd, date_obs = float(t.mjd), t.to_datetime()
    if kind == DatasetKind.RAW and date_obs is None:
        raise InvalidFrameError(path, "raw frame without MJD-OBS or DATE-OBS")
    exptime = _number(path, h0, "EXPTIME", 0.0, 1e6, "s")
    header = {k: _jsonable(h0[k]) for k in HEADER_KEYS if k in h0}
    return FrameInfo(
        kind=kind,
        category=_text(path, "ESO PRO CATG" if catg else "ESO DPR TYPE", "category", category),
        night=night_of(date_obs) if date_obs else None,
        date_obs=date_obs,
        mjd_obs=mjd,
        exptime=exptime,
        mode=_text(path, "ESO INS MODE", "mode", h0.get("ESO INS MODE")),
        object=_text(path, "OBJECT", "object", h0.get("OBJECT")),
        ifus=tuple(i for i in ifus if i),
        ifu=ifu,
        pipeline_version=_text(path, "ESO PRO REC1 PIPE ID", "pipeline_version", h0.get("ESO PRO REC1 PIPE ID")),
        header=header,
    )


def find_fits(paths) -> list[Path]:
    """Expand files and folders into the FITS files they contain, sorted."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and q.name.endswith((".fits", ".fits.fz")))
        else:
            out.append(p)
    return out

