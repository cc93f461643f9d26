"""Spectral lines drawn on spectra: redshifted emission lines and night-sky lines.

Emission-line rest wavelengths are stored in vacuum (the convention of line
catalogues and the only one defined below 2000 Angstrom, e.g. Ly-alpha) and
converted to air when the cube's spectral axis is in air (``CTYPE3 = 'AWAV'``,
the MUSE pipeline default). Sky lines are stored as observed air wavelengths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "SpectralLine",
    "EMISSION_LINES",
    "SKY_LINES",
    "vacuum_to_air",
    "air_to_vacuum",
    "observed_wavelength",
    "sky_line_wavelength",
]


@dataclass(frozen=True)
class SpectralLine:
    """A spectral line.

    Attributes
    ----------
    name : str
        Name as astronomers write it, e.g. ``"[OIII]"``.
    wavelength : float
        Rest wavelength in vacuum (emission lines) or observed wavelength in air
        (sky lines), Angstrom.
    label : str
        Short label drawn next to the marker.
    """

    name: str
    wavelength: float
    label: str = ""

    @property
    def text(self) -> str:
        """Marker text: the label if set, else the name."""
        return self.label or self.name


#: Strong galaxy emission lines; rest wavelengths in vacuum (Angstrom). In air
#: these are Ly-a 1215.67 (vacuum only), [OII] 3726.03/3728.82, H-beta 4861.33,
#: [OIII] 4958.91/5006.84, H-alpha 6562.80.
EMISSION_LINES: tuple[SpectralLine, ...] = (
    SpectralLine("Ly-alpha", 1215.67, "Lyα"),
    SpectralLine("[OII] 3726", 3727.09, "[OII]"),
    SpectralLine("[OII] 3729", 3729.88, ""),
    SpectralLine("H-beta", 4862.69, "Hβ"),
    SpectralLine("[OIII] 4959", 4960.29, ""),
    SpectralLine("[OIII] 5007", 5008.24, "[OIII]"),
    SpectralLine("H-alpha", 6564.61, "Hα"),
)

#: Strong night-sky emission lines, observed wavelengths in air (Angstrom):
#: [OI] auroral/nebular lines, the Na D doublet and bright OH Meinel lines
#: (Osterbrock et al. 1996).
SKY_LINES: tuple[SpectralLine, ...] = (
    SpectralLine("[OI] 5577", 5577.34, "[OI]"),
    SpectralLine("NaD 5890", 5889.95, "NaD"),
    SpectralLine("NaD 5896", 5895.92, ""),
    SpectralLine("[OI] 6300", 6300.30, "[OI]"),
    SpectralLine("[OI] 6364", 6363.78, ""),
    SpectralLine("OH 6864", 6863.96, "OH"),
    SpectralLine("OH 7316", 7316.28, "OH"),
    SpectralLine("OH 7341", 7340.89, ""),
    SpectralLine("OH 7751", 7750.64, "OH"),
    SpectralLine("OH 7794", 7794.11, ""),
    SpectralLine("OH 7914", 7913.71, "OH"),
    SpectralLine("OH 7993", 7993.33, ""),
    SpectralLine("OH 8345", 8344.60, "OH"),
    SpectralLine("OH 8399", 8399.17, ""),
    SpectralLine("OH 8430", 8430.17, ""),
    SpectralLine("OH 8827", 8827.10, "OH"),
    SpectralLine("OH 8886", 8885.85, ""),
)


def vacuum_to_air(wavelength):
    """Convert vacuum wavelengths to air (Morton 2000, IAU standard).

    Parameters
    ----------
    wavelength : float or array_like
        Vacuum wavelength, Angstrom. Values below 2000 Angstrom are returned
        unchanged (air wavelengths are not defined there).

    Returns
    -------
    float or numpy.ndarray
        Air wavelength, Angstrom.
    """
    lam = np.asarray(wavelength, dtype=float)
    s2 = (1e4 / lam) ** 2
    n = 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)
    out = np.where(lam >= 2000.0, lam / n, lam)
    return float(out) if out.ndim == 0 else out


def air_to_vacuum(wavelength):
    """Convert air wavelengths to vacuum (inverse of :func:`vacuum_to_air`).

    Parameters
    ----------
    wavelength : float or array_like
        Air wavelength, Angstrom.

    Returns
    -------
    float or numpy.ndarray
        Vacuum wavelength, Angstrom (good to 1e-6 Angstrom).
    """
    air = np.asarray(wavelength, dtype=float)
    vac = air.copy()
    for _ in range(4):  # fixed-point iteration converges in 2-3 steps
        vac = vac + (air - vacuum_to_air(vac))
    return float(vac) if vac.ndim == 0 else vac


def observed_wavelength(line: SpectralLine, redshift: float, air: bool = True) -> float:
    """Observed wavelength of an emission line at a redshift.

    Parameters
    ----------
    line : SpectralLine
        Line with a vacuum rest wavelength (Angstrom).
    redshift : float
        Redshift z (dimensionless).
    air : bool
        Return the air wavelength (spectral axis ``AWAV``) instead of vacuum.

    Returns
    -------
    float
        Observed wavelength, Angstrom.
    """
    lam = line.wavelength * (1.0 + redshift)
    return float(vacuum_to_air(lam)) if air else float(lam)


def sky_line_wavelength(line: SpectralLine, air: bool = True) -> float:
    """Wavelength of a sky line on an air (default) or vacuum spectral axis, Angstrom."""
    return float(line.wavelength) if air else float(air_to_vacuum(line.wavelength))
