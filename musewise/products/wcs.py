"""World coordinates of MUSE products: the spectral axis and the celestial WCS keywords.

The spectral axis is read by astropy's WCS (wcslib), so every way FITS allows
to write a linear axis gives the same wavelengths: ``CDi_i``, ``PCi_i *
CDELTi`` or ``CDELTi`` alone, with ``CUNITi`` in Angstrom, nm, um or m.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from astropy.io import fits

from ..exceptions import InvalidFrameError

__all__ = ["celestial_header", "pixel_scale_arcsec", "spectral_axis"]


def spectral_axis(header: fits.Header, n: int, *, axis: int = 3,
                  path: str | os.PathLike = "<header>") -> tuple[np.ndarray, bool]:
    """Wavelength of each pixel along a spectral axis, and whether it is in air.

    Parameters
    ----------
    header : astropy.io.fits.Header
        Header with the spectral WCS (``CRVALn``, ``CRPIXn``, ``CDn_n`` or
        ``PCn_n`` * ``CDELTn`` or ``CDELTn``, ``CUNITn``, ``CTYPEn``); without
        ``CUNITn`` the axis is in Angstrom, as the MUSE pipeline writes it.
    n : int
        Number of pixels along the axis.
    axis : int
        FITS axis number (3 for a cube, 1 for a 1-D spectrum).
    path : path-like
        File named in errors.

    Returns
    -------
    wave : numpy.ndarray
        float64 wavelengths, Angstrom.
    air : bool
        True unless ``CTYPEn`` is ``WAVE`` (vacuum); MUSE writes ``AWAV``.

    Raises
    ------
    InvalidFrameError
        If the header has no ``CRVALn``, an unknown unit, or a zero step.
    """
    from astropy import units as u
    from astropy.wcs import WCS

    if f"CRVAL{axis}" not in header:
        raise InvalidFrameError(path, f"has no spectral WCS (CRVAL{axis}/CD{axis}_{axis}/CRPIX{axis})")
    ctype = str(header.get(f"CTYPE{axis}", "AWAV")).strip().upper()
    if not str(header.get(f"CUNIT{axis}", "")).strip():
        # wcslib would take a wavelength axis without a unit as metres; MUSE means Angstrom
        header = header.copy()
        header[f"CUNIT{axis}"] = "Angstrom"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FITSFixedWarning about DATE-OBS, RADECSYS...
            wcs = WCS(header).sub([axis])
            wcs.wcs.set()
        step = float(wcs.wcs.get_cdelt()[0] * wcs.wcs.get_pc()[0, 0])
        wave = np.asarray(wcs.pixel_to_world_values(np.arange(int(n), dtype=np.float64)),
                          dtype=np.float64).reshape(-1)
        factor = u.Unit(str(wcs.wcs.cunit[0]) or "Angstrom").to(u.AA)
    except (ValueError, KeyError, MemoryError, u.UnitsError) as exc:  # wcslib errors are ValueErrors
        raise InvalidFrameError(path, f"unsupported spectral WCS on axis {axis} "
                                f"(CUNIT{axis} {header.get(f'CUNIT{axis}')!r}): {exc}") from exc
    if not step:
        raise InvalidFrameError(path, f"spectral step CD{axis}_{axis} is zero")
    return wave * factor, not ctype.startswith("WAVE")


def celestial_header(header: fits.Header) -> fits.Header | None:
    """The celestial WCS keywords (axes 1 and 2) of a header, or None if there are none."""
    keys = ["CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2",
            "CD1_1", "CD1_2", "CD2_1", "CD2_2", "CDELT1", "CDELT2", "PC1_1", "PC1_2", "PC2_1",
            "PC2_2", "EQUINOX", "RADESYS"]
    out = fits.Header()
    for k in keys:
        if k in header:
            out[k] = header[k]
    return out if "CTYPE1" in out else None


def pixel_scale_arcsec(header: fits.Header) -> float:
    """Spatial pixel size, arcsec, from CD1_1/CD2_1 or CDELT1 (deg); MUSE WFM's 0.2 if neither."""
    cd11, cd21 = header.get("CD1_1"), header.get("CD2_1", 0.0)
    if cd11 is not None:
        return float(np.hypot(cd11, cd21) * 3600)
    if header.get("CDELT1") is not None:
        return abs(float(header["CDELT1"])) * 3600
    return 0.2
