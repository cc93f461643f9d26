"""The one list of spectral lines: night-sky lines and galaxy emission lines.

* the simulator (:mod:`musewise.inm`) draws the night sky from :data:`SKY_LINES`
  with their surface brightness (``flux``) and writes them as the pipeline's
  ``SKY_LINES`` table;
* the QC judges sky subtraction at the bright isolated lines
  (:data:`QC_SKY_LINES`, those marked ``qc``);
* the viewers draw the sky lines and the redshifted :data:`EMISSION_LINES`.

Emission-line rest wavelengths are stored in vacuum (the convention of line
catalogues and the only one defined below 2000 Angstrom, e.g. Ly-alpha) and
converted to air when a cube's spectral axis is in air (``CTYPE3 = 'AWAV'``,
the MUSE pipeline default). Sky lines are stored as observed air wavelengths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "SpectralLine",
    "EMISSION_LINES",
    "QC_SKY_LINES",
    "SKY_LINES",
    "vacuum_to_air",
    "air_to_vacuum",
    "observed_wavelength",
    "sky_line_fluxes",
    "sky_line_wavelength",
]


@dataclass(frozen=True)
class SpectralLine:
    """A spectral line.

    Attributes
    ----------
    name : str
        Name as astronomers write it, e.g. ``"[OIII] 5007"``.
    wavelength : float
        Rest wavelength in vacuum (emission lines) or observed wavelength in air
        (sky lines), Angstrom.
    label : str
        Short label drawn next to the marker ("" draws the marker alone).
    flux : float
        Sky lines: surface brightness at Paranal, erg s-1 cm-2 arcsec-2 (0 for a
        line the simulator does not draw).
    qc : bool
        A bright, isolated sky line at which the QC judges the sky subtraction.
    """

    name: str
    wavelength: float
    label: str = ""
    flux: float = 0.0
    qc: bool = False

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

#: Night-sky emission lines, observed wavelengths in air (Angstrom), with their
#: surface brightness (erg s-1 cm-2 arcsec-2): the [OI] auroral/nebular lines,
#: the Na D doublet and the brightest OH Meinel lines (Osterbrock et al. 1996).
SKY_LINES: tuple[SpectralLine, ...] = (
    SpectralLine("[OI] 5577", 5577.339, "[OI]", 1.8e-15, qc=True),
    SpectralLine("NaD 5890", 5889.950, "NaD", 3.0e-16, qc=True),
    SpectralLine("NaD 5896", 5895.924, "", 2.5e-16),
    SpectralLine("[OI] 6300", 6300.304, "[OI]", 6.0e-16, qc=True),
    SpectralLine("[OI] 6364", 6363.780, "", 2.0e-16, qc=True),
    SpectralLine("OH 6499", 6498.729, "", 8.0e-17),
    SpectralLine("OH 6864", 6863.955, "OH", 1.5e-16, qc=True),
    SpectralLine("OH 6923", 6923.220, "", 1.2e-16),
    SpectralLine("OH 7276", 7276.405, "", 1.5e-16),
    SpectralLine("OH 7316", 7316.282, "OH", 3.0e-16),
    SpectralLine("OH 7341", 7340.885, "", 2.5e-16, qc=True),
    SpectralLine("OH 7751", 7750.640, "OH", 2.0e-16),
    SpectralLine("OH 7794", 7794.112, "", 2.2e-16),
    SpectralLine("OH 7822", 7821.503, "", 0.0, qc=True),
    SpectralLine("OH 7914", 7913.708, "OH", 3.0e-16),
    SpectralLine("OH 7993", 7993.332, "", 3.5e-16),
    SpectralLine("OH 8345", 8344.602, "OH", 6.0e-16, qc=True),
    SpectralLine("OH 8399", 8399.170, "", 5.0e-16),
    SpectralLine("OH 8430", 8430.170, "", 4.0e-16),
    SpectralLine("OH 8761", 8761.314, "", 3.5e-16),
    SpectralLine("OH 8827", 8827.096, "OH", 6.0e-16, qc=True),
    SpectralLine("OH 8886", 8885.850, "", 5.0e-16),
    SpectralLine("OH 8920", 8919.533, "", 3.0e-16),
    SpectralLine("OH 8943", 8943.395, "", 5.0e-16),
    SpectralLine("OH 8988", 8988.380, "", 3.0e-16),
    SpectralLine("OH 9001", 9001.115, "", 4.0e-16),
    SpectralLine("OH 9038", 9037.952, "", 3.5e-16),
    SpectralLine("OH 9049", 9049.232, "", 3.0e-16),
)

#: Air wavelengths (Angstrom) of the sky lines at which the QC measures residuals.
QC_SKY_LINES: tuple[float, ...] = tuple(line.wavelength for line in SKY_LINES if line.qc)


def sky_line_fluxes() -> tuple[np.ndarray, np.ndarray]:
    """The sky lines with a surface brightness, as arrays (what the simulator draws).

    Returns
    -------
    wavelength : numpy.ndarray
        Air wavelengths, Angstrom.
    flux : numpy.ndarray
        Surface brightness, erg s-1 cm-2 arcsec-2.
    """
    drawn = [line for line in SKY_LINES if line.flux > 0]
    return (np.array([line.wavelength for line in drawn], dtype=float),
            np.array([line.flux for line in drawn], dtype=float))


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
