"""The sky geometry of an image or cube plane (no UI): WCS, RA/Dec, north and east, square pixels.

Everything works from the celestial WCS keywords the viewers carry with every
:class:`~musewise.products.Image` (``wcs_header``, see
:func:`~musewise.products.wcs.celestial_header`), with astropy doing the
projection. Pixel coordinates are 0-based (x along NAXIS1, y along NAXIS2), as
everywhere in the viewers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from ..exceptions import InvalidArgumentError, NoWCSError

__all__ = ["NoWCSError", "FrameGeometry", "celestial_wcs", "pixel_to_sky", "sky_to_pixel",
           "north_east", "pixel_scale", "format_radec", "square_frame", "tan_parameters",
           "no_positions"]


def celestial_wcs(wcs_header: fits.Header | WCS | None) -> WCS:
    """The 2-D celestial WCS of a header (or a WCS, returned as is).

    Raises
    ------
    NoWCSError
        If there is no header or it has no celestial axes.
    """
    if isinstance(wcs_header, WCS):
        return wcs_header
    if wcs_header is None:
        raise NoWCSError("no celestial WCS (CTYPE1/CTYPE2) known for this image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # e.g. RADESYS added by astropy
        wcs = WCS(wcs_header, naxis=2)
    if not wcs.has_celestial:
        raise NoWCSError(f"CTYPE1/2 = {wcs.wcs.ctype[0]!r}/{wcs.wcs.ctype[1]!r} are not celestial")
    return wcs


def pixel_to_sky(wcs_header, x, y) -> SkyCoord:
    """Sky position (ICRS/FK5 as the header says) of 0-based pixel coordinates (scalars or arrays)."""
    return celestial_wcs(wcs_header).pixel_to_world(np.asarray(x, float), np.asarray(y, float))


def sky_to_pixel(wcs_header, coord: SkyCoord) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel coordinates (x, y) of sky positions."""
    x, y = celestial_wcs(wcs_header).world_to_pixel(coord)
    return np.asarray(x, float), np.asarray(y, float)


def no_positions(coords) -> bool:
    """True for None or an empty list/array of sky positions (a scalar SkyCoord is one)."""
    return coords is None or (not getattr(coords, "isscalar", False) and len(coords) == 0)


def pixel_scale(wcs_header) -> float:
    """Mean pixel size on the sky, arcsec (0.2 for MUSE WFM, 0.025 for NFM)."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.mean(proj_plane_pixel_scales(celestial_wcs(wcs_header))) * 3600.0)


def north_east(wcs_header, x: float, y: float) -> tuple[np.ndarray, np.ndarray]:
    """Directions of north and east at a pixel, as unit vectors in pixel space (dx, dy).

    Measured from the WCS (one arcsec steps along +Dec and +RA), so they hold for
    any rotation and handedness of the field.

    Returns
    -------
    north, east : numpy.ndarray
        Unit vectors (dx, dy), pixels, y pointing up as drawn by the viewers.
    """
    wcs = celestial_wcs(wcs_header)
    centre = wcs.pixel_to_world(x, y)
    step = 1.0 * u.arcsec
    out = []
    for pa in (0.0, 90.0):  # position angle: north, then east (counter-clockwise on the sky)
        other = centre.directional_offset_by(pa * u.deg, step)
        px, py = wcs.world_to_pixel(other)
        vec = np.array([float(px) - x, float(py) - y])
        out.append(vec / np.hypot(*vec))
    return out[0], out[1]


def format_radec(coord: SkyCoord) -> str:
    """``"RA 03:32:39.000 Dec -27:47:29.04"`` (hours and degrees, sexagesimal)."""
    c = coord.icrs if coord.frame.name not in ("icrs", "fk5") else coord
    ra = c.ra.to_string(unit=u.hourangle, sep=":", precision=3, pad=True)
    dec = c.dec.to_string(unit=u.deg, sep=":", precision=2, alwayssign=True, pad=True)
    return f"RA {ra} Dec {dec}"


def tan_parameters(wcs_header) -> dict | None:
    """What a browser needs to turn pixels into RA/Dec for a TAN (gnomonic) WCS, else None.

    Returns
    -------
    dict or None
        ``crpix`` (1-based, as in FITS), ``crval`` (deg), ``cd`` (2x2, deg/pixel,
        row-major). None if the projection is not TAN or there is no WCS (the
        browser then shows pixel coordinates only).
    """
    try:
        wcs = celestial_wcs(wcs_header)
    except NoWCSError:
        return None
    if not all(str(wcs.wcs.ctype[k]).endswith("-TAN") for k in (0, 1)) or wcs.sip is not None:
        return None
    return {"crpix": [float(v) for v in wcs.wcs.crpix], "crval": [float(v) for v in wcs.wcs.crval],
            "cd": [float(v) for v in wcs.pixel_scale_matrix.ravel()]}


@dataclass(frozen=True)
class FrameGeometry:
    """Screen size of an image plot and the data ranges that make its pixels square.

    Attributes
    ----------
    frame_width, frame_height : int
        Size of the plotting area, screen pixels.
    x_range, y_range : tuple of float
        Data ranges shown (pixel coordinates, pixel centres at integers); the
        shorter side of the image is padded so one image pixel covers the same
        number of screen pixels along x and y.
    """

    frame_width: int
    frame_height: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    @property
    def scale(self) -> float:
        """Screen pixels per image pixel (the same along x and y)."""
        return self.frame_width / (self.x_range[1] - self.x_range[0])


def square_frame(nx: int, ny: int, max_width: int = 560, max_height: int = 440,
                 min_width: int = 240, min_height: int = 180) -> FrameGeometry:
    """Plot size and ranges showing a whole ``nx`` x ``ny`` image with square pixels.

    The image is scaled to fit ``max_width`` x ``max_height``; a very elongated
    image (e.g. 302 x 24 spaxels of one IFU) keeps at least ``min_height`` (or
    ``min_width``) of screen, and the range along that side is widened
    symmetrically instead of stretching the pixels.
    """
    if nx < 1 or ny < 1:
        raise InvalidArgumentError(f"image shape must be positive, got {nx} x {ny}")
    scale = min(max_width / nx, max_height / ny)
    width = int(round(min(max_width, max(min_width, nx * scale))))
    height = int(round(min(max_height, max(min_height, ny * scale))))
    scale = min(width / nx, height / ny)  # the side that fills its frame sets the scale
    half_w, half_h = width / scale / 2.0, height / scale / 2.0
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    return FrameGeometry(width, height, (cx - half_w, cx + half_w), (cy - half_h, cy + half_h))
