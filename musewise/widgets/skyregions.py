"""Regions on a cube (no UI): the spectrum of a circle or polygon, region files in and out.

Regions are those of the astropy-affiliated ``regions`` package, in sky
coordinates (``CircleSkyRegion``, ``PolygonSkyRegion``, ...; what a referee or a
catalogue gives) or in pixels (``CirclePixelRegion``, ...; what is drawn on an
image). Files are DS9 ``.reg``, CASA ``.crtf`` or FITS region tables, read and
written by ``regions`` (format from the file name), so the same region can go
between DS9, CARTA, QFitsView and the viewers.

>>> from regions import CircleSkyRegion                                  # doctest: +SKIP
>>> region = CircleSkyRegion(SkyCoord(53.16, -27.79, unit="deg"), 0.6 * u.arcsec)  # doctest: +SKIP
>>> spec = region_spectrum(MuseCube.open("DATACUBE_FINAL.fits"), region)   # doctest: +SKIP
>>> spec.meta["npix"], spec.var                                          # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..exceptions import InvalidFrameError, NotFoundError, OutsideCubeError, UnsupportedTypeError
from ..products.cube import MuseCube
from ..products.spectrum import Spectrum
from .sky import celestial_wcs

__all__ = ["RegionPixels", "region_pixels", "region_spectrum", "read_regions", "write_regions",
           "describe_region"]


@dataclass(frozen=True)
class RegionPixels:
    """The spaxels of a region on an image grid.

    Attributes
    ----------
    mask : numpy.ndarray of bool
        Spaxels whose centres lie inside the region, over the box ``slices``.
    slices : tuple of slice
        (y, x) slices of the box in the image.
    outline : numpy.ndarray
        Vertices (n, 2) of the region's outline, 0-based pixels (x, y), for drawing.
    region : regions.PixelRegion
        The region in pixels of this grid.
    """

    mask: np.ndarray
    slices: tuple[slice, slice]
    outline: np.ndarray
    region: object

    @property
    def npix(self) -> int:
        """Number of spaxels selected."""
        return int(self.mask.sum())


def _to_pixel(region, wcs_header):
    from regions import PixelRegion, SkyRegion

    if isinstance(region, SkyRegion):
        return region.to_pixel(celestial_wcs(wcs_header))
    if isinstance(region, PixelRegion):
        return region
    raise UnsupportedTypeError(f"give a regions SkyRegion or PixelRegion, got {type(region).__name__}")


def _outline(pixreg) -> np.ndarray:
    if hasattr(pixreg, "vertices"):  # polygons
        return np.column_stack([pixreg.vertices.x, pixreg.vertices.y]).astype(float)
    if hasattr(pixreg, "to_polygon"):
        poly = pixreg.to_polygon()
        return np.column_stack([poly.vertices.x, poly.vertices.y]).astype(float)
    c = pixreg.center  # a point: a small cross-shaped diamond
    return np.array([[c.x - 0.5, c.y], [c.x, c.y + 0.5], [c.x + 0.5, c.y], [c.x, c.y - 0.5]])


def region_pixels(region, wcs_header, shape: tuple[int, int]) -> RegionPixels:
    """The spaxels of an image of ``shape`` (ny, nx) whose centres lie in ``region``.

    Parameters
    ----------
    region : regions.SkyRegion or regions.PixelRegion
        Sky regions are projected with ``wcs_header``; pixel regions are 0-based.
    wcs_header : astropy.io.fits.Header or None
        Celestial WCS of the grid (needed for sky regions only).
    shape : tuple of int
        (ny, nx) of the grid.

    Raises
    ------
    NoWCSError
        A sky region on a grid without celestial WCS.
    OutsideCubeError
        The region selects no spaxel of the grid.
    """
    pixreg = _to_pixel(region, wcs_header)
    rmask = pixreg.to_mask(mode="center")
    big, small = rmask.get_overlap_slices(tuple(shape))
    if big is None:
        raise OutsideCubeError(f"the region {describe_region(region)} lies outside the image")
    mask = np.asarray(rmask.data[small], dtype=bool)
    if not mask.any():
        raise OutsideCubeError(f"the region {describe_region(region)} contains no spaxel centre")
    return RegionPixels(mask=mask, slices=big, outline=_outline(pixreg), region=pixreg)


def describe_region(region) -> str:
    """Short text naming a region: ``circle r=0.6"``, ``polygon of 5 vertices``..."""
    from astropy import units as u

    name = type(region).__name__.replace("SkyRegion", "").replace("PixelRegion", "").lower()
    if hasattr(region, "radius"):
        r = region.radius
        r = f'{r.to_value(u.arcsec):.3g}"' if hasattr(r, "unit") else f"{r:.3g} spaxels"
        return f"{name} r={r}"
    if hasattr(region, "vertices"):
        return f"{name} of {len(region.vertices)} vertices"
    return name


def region_spectrum(cube: MuseCube, region) -> Spectrum:
    """Summed spectrum and variance of the spaxels of a cube inside a region.

    Parameters
    ----------
    cube : MuseCube
        The cube (read lazily: only the region's bounding box is read).
    region : regions.SkyRegion or regions.PixelRegion
        A circle, ellipse, rectangle or polygon; in sky coordinates (projected
        with the cube's WCS) or in 0-based spaxels.

    Returns
    -------
    Spectrum
        Flux summed over the spaxels whose centres are inside (BUNIT) and the sum
        of their variances (BUNIT squared, neighbours taken as independent); NaN
        spaxels are left out. ``meta`` holds ``npix`` and ``region``.

    Raises
    ------
    NoWCSError
        A sky region and a cube without celestial WCS.
    OutsideCubeError
        The region selects no spaxel of the cube.
    """
    pix = region_pixels(region, cube.wcs_header, cube.shape[1:])
    what = describe_region(region)
    return cube.masked_spectrum(pix.mask, pix.slices, label=f"region {what} ({pix.npix} spaxels)",
                                meta={"region": what})


def read_regions(path: str | os.PathLike) -> list:
    """The regions of a DS9 ``.reg``, CASA ``.crtf`` or FITS region file.

    Raises
    ------
    NotFoundError
        The file does not exist.
    InvalidFrameError
        The file cannot be parsed as regions, or holds none.
    """
    from regions import Regions

    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"no such region file: {path}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # regions skips lines it cannot parse with a warning
        try:
            found = list(Regions.read(str(path), format=_format(path)))
        except Exception as exc:  # regions raises many kinds for a bad file; say which file
            raise InvalidFrameError(path, f"is not a region file regions can read ({exc})") from exc
    if not found:
        why = "; ".join(str(w.message) for w in caught[:3]) or "empty"
        raise InvalidFrameError(path, f"holds no region regions can read ({why})")
    return found


def write_regions(regions, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Write regions (sky or pixel) to a region file; the format follows the suffix."""
    from regions import Regions

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Regions(list(regions)).write(str(path), format=_format(path), overwrite=overwrite)
    return path


def _format(path: Path) -> str:
    return {".reg": "ds9", ".crtf": "crtf", ".fits": "fits", ".fit": "fits"}.get(
        path.suffix.lower(), "ds9")
