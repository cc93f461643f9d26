"""Calibration-unit lamps: arc line lists and the continuum (flat-field) lamp.

Lamp numbering follows the real instrument headers (``ESO INS LAMPi NAME``):
CU-LAMP1 and CU-LAMP2 are the halogen continuum lamps of the flat field,
CU-LAMP3 neon, CU-LAMP4 xenon, CU-LAMP5 mercury-cadmium, CU-LAMP6 a second neon
(unused here). The DRS identifies the lamp of an arc from these names.

The arc wavelengths are well-known air wavelengths of Ne I, Xe I, Hg I and Cd I
lines (approximate NIST values). They need only be consistent between the
simulated arcs and the ``LINE_CATALOG`` written by :mod:`musewise.inm.static`,
which both read :func:`arc_lines`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import InvalidArgumentError

from .spectra import blackbody

_NE = (4837.314, 5330.778, 5341.094, 5400.562, 5852.488, 5881.895, 5944.834,
       5975.534, 6029.997, 6074.338, 6096.163, 6143.063, 6163.594, 6217.281,
       6266.495, 6304.789, 6334.428, 6382.992, 6402.246, 6506.528, 6532.882,
       6598.953, 6678.277, 6717.043, 6929.467, 7032.413, 7173.938, 7245.167,
       7438.899, 7488.871, 7535.774, 8082.458, 8136.406, 8300.326, 8377.607,
       8418.427, 8495.360, 8591.259, 8634.647, 8654.383, 8780.621, 8853.867,
       9148.672, 9201.759)
_XE = (4671.226, 4734.152, 4807.019, 4843.294, 4916.507, 4923.152, 7119.598,
       7642.025, 7967.342, 8231.634, 8280.116, 8346.822, 8409.190, 8819.410,
       8952.251, 9045.446, 9162.652)
_HGCD = ((4678.149, "CdI"), (4799.912, "CdI"), (5085.822, "CdI"), (5460.735, "HgI"),
         (5769.598, "HgI"), (5790.663, "HgI"), (6438.470, "CdI"), (7081.90, "HgI"),
         (7346.37, "HgI"))

#: Arc lamps: name -> lamp number in the headers.
ARC_LAMPS = {"Ne": 3, "Xe": 4, "HgCd": 5}
#: Continuum lamps used for the lamp flats.
FLAT_LAMPS = (1, 2)
#: Names of all lamps, by number (``ESO INS LAMPi NAME``).
LAMP_NAMES = {i: f"CU-LAMP{i}" for i in range(1, 7)}
#: Exposure time for which catalogue line fluxes are given (s).
ARC_REFERENCE_EXPTIME = 15.0


@dataclass(frozen=True)
class ArcLine:
    """One arc line.

    Attributes
    ----------
    wavelength : float
        Air wavelength (Angstrom).
    ion : str
        Emitting ion as the DRS writes it (``NeI``, ``XeI``, ``HgI``, ``CdI``).
    lamp : str
        Lamp (``Ne``, ``Xe`` or ``HgCd``).
    flux : float
        Integrated line flux per CCD column for a 15 s exposure (e-).
    quality : int
        ``LINE_CATALOG`` quality: 5 = bright and isolated (used for the first
        pattern match), 3 = good, used in the fit.
    """

    wavelength: float
    ion: str
    lamp: str
    flux: float
    quality: int


def arc_lines() -> tuple[ArcLine, ...]:
    """All arc lines of the three lamps, sorted by wavelength (deterministic)."""
    rows = [(w, "NeI", "Ne") for w in _NE] + [(w, "XeI", "Xe") for w in _XE]
    rows += [(w, ion, "HgCd") for w, ion in _HGCD]
    rows.sort()
    # Fixed pseudo-random brightness (a property of the lamps, not of a frame).
    flux = np.random.default_rng(3).uniform(3000.0, 60000.0, len(rows))
    return tuple(ArcLine(w, ion, lamp, float(f), 5 if f > 40000 else 3)
                 for (w, ion, lamp), f in zip(rows, flux))


def lamp_lines(lamp: str) -> tuple[ArcLine, ...]:
    """Lines of one arc lamp (``Ne``, ``Xe`` or ``HgCd``)."""
    if lamp not in ARC_LAMPS:
        raise InvalidArgumentError(f"no arc lamp {lamp!r}; known: {sorted(ARC_LAMPS)}")
    return tuple(line for line in arc_lines() if line.lamp == lamp)


def flat_lamp_spectrum(lam) -> np.ndarray:
    """Relative photon spectrum of the halogen flat-field lamps (3200 K), 1 at 7000 A."""
    lam = np.asarray(lam, dtype=float)
    return blackbody(lam, 3200.0) * lam / (blackbody(7000.0, 3200.0) * 7000.0)
