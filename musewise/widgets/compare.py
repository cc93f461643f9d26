"""Comparing two cubes of one field (no UI): the same sky position in both, and the difference.

Two reductions of one field (another pipeline version, other calibrations) or
the cube before and after sky cleaning rarely share a pixel grid exactly, so a
spaxel of cube A is linked to cube B through the sky: A's WCS gives its RA/Dec,
B's WCS gives the spaxel of B there. Without a celestial WCS in either cube the
grids are taken to be the same. Spectra are compared on A's wavelengths; B is
interpolated linearly where its planes do not coincide with A's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import OutsideCubeError
from ..products.cube import MuseCube
from ..products.spectrum import Spectrum
from .sky import NoWCSError, pixel_to_sky, sky_to_pixel

__all__ = ["Comparison", "linked_spaxel", "compare_spectra", "difference_spectrum"]


@dataclass(frozen=True)
class Comparison:
    """The same sky position in two cubes.

    Attributes
    ----------
    a, b : Spectrum
        Spectrum of cube A at (x, y), and of cube B at the linked spaxel.
    difference : Spectrum
        ``a - b`` on A's wavelengths where both exist, variance ``var_a + var_b``.
    xy_a, xy_b : tuple of int
        Spaxels (0-based) in A and B.
    """

    a: Spectrum
    b: Spectrum
    difference: Spectrum
    xy_a: tuple[int, int]
    xy_b: tuple[int, int]


def linked_spaxel(cube_a: MuseCube, cube_b: MuseCube, x: float, y: float) -> tuple[int, int]:
    """The spaxel of cube B at the sky position of spaxel (x, y) of cube A.

    Raises
    ------
    OutsideCubeError
        If that position is outside cube B.
    """
    try:
        xb, yb = sky_to_pixel(cube_b.wcs_header, pixel_to_sky(cube_a.wcs_header, x, y))
    except NoWCSError:
        xb, yb = x, y  # no sky geometry: the grids are taken to be the same
    xi, yi = int(np.rint(xb)), int(np.rint(yb))
    _, ny, nx = cube_b.shape
    if not (0 <= xi < nx and 0 <= yi < ny):
        raise OutsideCubeError(f"spaxel ({x:g}, {y:g}) of the first cube is outside the second "
                               f"(at ({float(xb):.1f}, {float(yb):.1f}))")
    return xi, yi


def difference_spectrum(a: Spectrum, b: Spectrum) -> Spectrum:
    """``a - b`` on a's wavelengths (b interpolated linearly), variance ``var_a + var_b``.

    Planes of ``a`` outside ``b``'s wavelength range are NaN.
    """
    wave = np.asarray(a.wave, float)
    wb = np.asarray(b.wave, float)
    if wb.size == wave.size and np.allclose(wb, wave, rtol=0, atol=1e-6):
        bd = np.asarray(b.data, np.float64)
        bv = None if b.var is None else np.asarray(b.var, np.float64)
    else:
        order = np.argsort(wb)
        wb = wb[order]
        bd = np.interp(wave, wb, np.asarray(b.data, np.float64)[order], left=np.nan, right=np.nan)
        bv = None
        if b.var is not None:
            # linear interpolation of independent pixels: weights (1-t) and t enter squared
            k = np.clip(np.searchsorted(wb, wave) - 1, 0, wb.size - 2)
            t = np.clip((wave - wb[k]) / (wb[k + 1] - wb[k]), 0.0, 1.0)
            v = np.asarray(b.var, np.float64)[order]
            bv = (1 - t) ** 2 * v[k] + t**2 * v[k + 1]
            bv[(wave < wb[0]) | (wave > wb[-1])] = np.nan
    data = np.asarray(a.data, np.float64) - bd
    var = None
    if a.var is not None and bv is not None:
        var = (np.asarray(a.var, np.float64) + bv).astype(np.float32)
    return Spectrum(wave, data.astype(np.float32), var, unit=a.unit,
                    label=f"difference {a.label} - {b.label}", air=a.air,
                    meta={"a": a.label, "b": b.label})


def compare_spectra(cube_a: MuseCube, cube_b: MuseCube, x: float, y: float,
                    radius: float = 0.0) -> Comparison:
    """Spectra of one sky position in two cubes and their difference.

    Parameters
    ----------
    cube_a, cube_b : MuseCube
        The two cubes (e.g. two reductions, or before/after sky cleaning).
    x, y : float
        Spaxel of cube A, 0-based.
    radius : float
        Aperture radius in spaxels of A (0: single spaxel). In B the same sky
        radius is used, scaled by the ratio of the pixel sizes.

    Raises
    ------
    OutsideCubeError
        If the spaxel is outside A, or its sky position outside B.
    """
    xa, ya = int(np.rint(x)), int(np.rint(y))
    xb, yb = linked_spaxel(cube_a, cube_b, xa, ya)
    if radius > 0:
        from .sky import pixel_scale

        try:
            rb = radius * pixel_scale(cube_a.wcs_header) / pixel_scale(cube_b.wcs_header)
        except NoWCSError:
            rb = radius
        sa = cube_a.aperture_spectrum(xa, ya, radius)
        sb = cube_b.aperture_spectrum(xb, yb, rb)
    else:
        sa, sb = cube_a.spectrum(xa, ya), cube_b.spectrum(xb, yb)
    return Comparison(a=sa, b=sb, difference=difference_spectrum(sa, sb), xy_a=(xa, ya),
                      xy_b=(xb, yb))
