"""Spectral ingredients: telescope + instrument throughput, atmosphere, night sky.

All wavelengths are in air, Angstrom. Flux densities are in
erg s-1 cm-2 Angstrom-1 (surface brightness per arcsec**2 where stated).
"""

from __future__ import annotations

import numpy as np

from ..exceptions import NotFoundError
from ..products.lines import sky_line_fluxes

#: Collecting area of a VLT Unit Telescope (cm**2), central obstruction removed.
TELESCOPE_AREA = 48.5e4
#: Planck constant times speed of light (erg Angstrom).
HC = 6.62607015e-27 * 2.99792458e18

#: Night-sky continuum at 5000 Angstrom (erg s-1 cm-2 Angstrom-1 arcsec-2).
SKY_CONTINUUM = 6.0e-18


def throughput(lam, mode: str = "WFM-NOAO-N") -> np.ndarray:
    """End-to-end efficiency (atmosphere excluded): telescope, MUSE and CCD QE.

    Peaks at ~0.35 near 7000 Angstrom. In the nominal modes (``*-N``) a blocking
    filter cuts the light below ~4750 Angstrom (which also keeps the second
    order out); the extended modes (``*-E``) reach 4600 Angstrom.

    Parameters
    ----------
    lam : array_like
        Air wavelength (Angstrom).
    mode : str
        ``ESO INS MODE``.
    """
    lam = np.asarray(lam, dtype=float)
    t = 0.35 * np.exp(-0.5 * ((lam - 7000.0) / 2600.0) ** 2)
    cut = 4750.0 if mode.endswith("-N") else 4600.0
    return t / (1.0 + np.exp(-(lam - cut) / 12.0))


def extinction(lam) -> np.ndarray:
    """Paranal atmospheric extinction (mag per airmass): Rayleigh + aerosols + ozone."""
    lam = np.asarray(lam, dtype=float)
    ozone = 0.03 * np.exp(-0.5 * ((lam - 6000.0) / 500.0) ** 2)
    return 0.012 + 0.24 * (lam / 4500.0) ** -4 + 0.05 * (lam / 5000.0) ** -1.3 + ozone


def photons_per_erg(lam) -> np.ndarray:
    """Detected-photon conversion ``A lambda / (h c)``: (photon s-1 Angstrom-1) per
    (erg s-1 cm-2 Angstrom-1), for unit efficiency."""
    return TELESCOPE_AREA * np.asarray(lam, dtype=float) / HC


def response_mag(lam, mode: str = "WFM-NOAO-N") -> np.ndarray:
    """The ``STD_RESPONSE`` ``response`` column: ``2.5 log10`` of
    (e- s-1 Angstrom-1) per (erg s-1 cm-2 Angstrom-1) above the atmosphere."""
    return 2.5 * np.log10(np.maximum(photons_per_erg(lam) * throughput(lam, mode), 1e-30))


def gaussian_lines(lam, centres, fluxes, sigma) -> np.ndarray:
    """Sum of Gaussian lines (flux per Angstrom) evaluated at ``lam``.

    Parameters
    ----------
    lam : ndarray
        Wavelengths (Angstrom), any shape.
    centres, fluxes : sequence of float
        Line centres (Angstrom) and integrated fluxes (any unit u).
    sigma : float or sequence of float
        Line widths (Angstrom).

    Returns
    -------
    ndarray
        Flux density (u per Angstrom), same shape as ``lam``.
    """
    lam = np.asarray(lam, dtype=float)
    out = np.zeros_like(lam)
    sig = np.broadcast_to(np.asarray(sigma, dtype=float), (len(centres),))
    for c, f, s in zip(centres, fluxes, sig):
        # Only rows within 8 sigma: keeps many-line spectra cheap.
        lo, hi = np.searchsorted(lam.ravel(), [c - 8 * s, c + 8 * s]) if lam.ndim == 1 else (0, None)
        seg = lam[lo:hi] if lam.ndim == 1 else lam
        val = f / (np.sqrt(2 * np.pi) * s) * np.exp(-0.5 * ((seg - c) / s) ** 2)
        if lam.ndim == 1:
            out[lo:hi] += val
        else:
            out += val
    return out


def sky_spectrum(lam, line_sigma: float) -> np.ndarray:
    """Night-sky surface brightness (erg s-1 cm-2 Angstrom-1 arcsec-2) at ``lam``.

    A continuum that rises to the red plus the night-sky lines of
    :data:`musewise.products.lines.SKY_LINES` with their surface brightness, each a
    Gaussian of width ``line_sigma`` (Angstrom, the instrumental LSF).
    """
    lam = np.asarray(lam, dtype=float)
    cont = SKY_CONTINUUM * (lam / 5000.0) ** 0.8
    c, f = sky_line_fluxes()
    return cont + gaussian_lines(lam, c, f, line_sigma)


def sky_line_flux(wavelength: float, tolerance: float = 1.0) -> float:
    """Surface brightness of the simulated sky line at ``wavelength`` (erg s-1 cm-2 arcsec-2).

    Raises
    ------
    NotFoundError
        If no simulated sky line lies within ``tolerance`` Angstrom.
    """
    wl, fl = sky_line_fluxes()
    k = int(np.argmin(np.abs(wl - wavelength)))
    if abs(wl[k] - wavelength) > tolerance:
        raise NotFoundError(f"no simulated sky line within {tolerance} A of {wavelength} A")
    return float(fl[k])


def sky_line_in_cube(wavelength: float, airmass: float, spaxel: float = 0.2) -> float:
    """Flux of a simulated sky line in one spaxel of a flux-calibrated cube (10**-20 erg s-1 cm-2).

    The sky shines from inside the atmosphere, so the model does not dim it; the
    pipeline corrects every pixel for extinction at the exposure's airmass, which
    makes the sky in the cube brighter than the model's line by
    ``10**(0.4 extinction airmass)``.

    Parameters
    ----------
    wavelength : float
        Air wavelength of a simulated sky line (Angstrom).
    airmass : float
        Mean airmass of the exposure.
    spaxel : float
        Spaxel size (arcsec).
    """
    return (sky_line_flux(wavelength) * spaxel ** 2 * 10.0 ** (0.4 * float(extinction(wavelength)) * airmass)
            * 1e20)


def blackbody(lam, temperature: float) -> np.ndarray:
    """Planck ``B_lambda`` shape normalised to 1 at 5500 Angstrom."""
    lam = np.asarray(lam, dtype=float)
    x = 1.438777e8 / temperature  # hc/k in Angstrom K

    def b(w):
        return w ** -5 / np.expm1(x / w)

    return b(lam) / b(5500.0)


def twilight_spectrum(lam) -> np.ndarray:
    """Shape of the twilight sky: scattered sunlight (5800 K) with Rayleigh blueing."""
    lam = np.asarray(lam, dtype=float)
    return blackbody(lam, 5800.0) * (lam / 5500.0) ** -2.0
