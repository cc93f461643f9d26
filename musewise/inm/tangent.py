"""Tangent-plane geometry of the simulator: gnomonic projection and telescope offsets.

One convention for every simulated frame (:mod:`.night` and :mod:`.programme`): the
header ``RA``/``DEC`` is the true telescope pointing, the field centre moved by the
exposure's offset ``ESO OCS OFFS DRA/DDEC`` (arcsec West and North, as the instrument's
+x is West at position angle 0), projected exactly on the sky (TAN). The pipeline takes
that pointing to be the centre of the data it reduces plus the ``CRPIX1/2`` of the static
``ASTROMETRY_WCS``; :func:`.static.astrometry_wcs` gives that offset for the simulated
IFUs, so a reduction of 1-2 IFUs places sources where they are (``tests/test_dpu.py``,
``tests/test_programme.py``).
"""

from __future__ import annotations

import math

#: Degrees per arcsec.
ARCSEC = 1.0 / 3600.0


def tan_to_radec(xi: float, eta: float, ra0: float, dec0: float) -> tuple[float, float]:
    """Gnomonic deprojection: standard coordinates (arcsec, East, North) -> RA, Dec (deg)."""
    x, y = math.radians(xi * ARCSEC), math.radians(eta * ARCSEC)
    a0, d0 = math.radians(ra0), math.radians(dec0)
    den = math.cos(d0) - y * math.sin(d0)
    ra = a0 + math.atan2(x, den)
    dec = math.atan2(math.sin(d0) + y * math.cos(d0), math.hypot(x, den))
    return math.degrees(ra) % 360.0, math.degrees(dec)


def radec_to_tan(ra: float, dec: float, ra0: float, dec0: float) -> tuple[float, float]:
    """Gnomonic projection about (ra0, dec0): RA, Dec (deg) -> (East, North) in arcsec."""
    a, d = math.radians(ra), math.radians(dec)
    a0, d0 = math.radians(ra0), math.radians(dec0)
    cosc = math.sin(d0) * math.sin(d) + math.cos(d0) * math.cos(d) * math.cos(a - a0)
    xi = math.cos(d) * math.sin(a - a0) / cosc
    eta = (math.cos(d0) * math.sin(d) - math.sin(d0) * math.cos(d) * math.cos(a - a0)) / cosc
    return math.degrees(xi) * 3600.0, math.degrees(eta) * 3600.0


def telescope_pointing(ra0: float, dec0: float, dra: float = 0.0, ddec: float = 0.0) -> tuple[float, float]:
    """The header pointing (RA, Dec in degrees) of an exposure offset from a field centre.

    Parameters
    ----------
    ra0, dec0 : float
        Field centre (degrees).
    dra, ddec : float
        Telescope offset (arcsec West, North: ``ESO OCS OFFS DRA/DDEC``).

    Returns
    -------
    (float, float)
        The true pointing, written as the frame's ``RA``/``DEC``.
    """
    return tan_to_radec(-float(dra), float(ddec), ra0, dec0)


__all__ = ["ARCSEC", "radec_to_tan", "tan_to_radec", "telescope_pointing"]
