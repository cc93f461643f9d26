"""Synthetic sky scenes: stars, a galaxy with emission lines, a Lyman-alpha emitter.

A scene is a list of sources, each made of *components*: a spectrum (total flux
density above the atmosphere, erg s-1 cm-2 Angstrom-1) times a normalised
spatial profile (fraction of the flux per spaxel of 0.2 x 0.2 arcsec). Keeping
every component separable (spectrum x image) lets the instrument model build a
whole CCD as a few small matrix products (see
:meth:`musewise.inm.model.InstrumentModel.electrons`). The price is that the
PSF does not change with wavelength and the galaxy has no velocity field.

Positions are offsets from the field centre in arcsec along the instrument's x
and y axes (``ESO INS DROT POSANG = 0``: +y is North, +x is West, i.e. towards
decreasing RA). :mod:`musewise.inm.layout` maps them to IFUs and slices: IFU 1
covers y = +26.4..+28.8 arcsec, IFU 2 y = +24.0..+26.4 arcsec, each IFU a
60 arcsec wide strip 2.4 arcsec high, IFU 24 the bottom one.

The default scene (:meth:`Scene.default`) puts a bright star, the galaxy and the
Lyman-alpha emitter across IFUs 1-2 (the IFUs the tests simulate) and more stars
elsewhere in the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .layout import SPAXEL, sky_offsets_to_field
from .spectra import blackbody, gaussian_lines

#: Speed of light (km/s).
C_KMS = 299792.458

#: Rest-frame air wavelengths (Angstrom) of nebular lines, and flux ratios to H-alpha
#: typical of a star-forming galaxy.
NEBULAR_LINES = {
    "[OII]3726": (3726.03, 0.9), "[OII]3729": (3728.82, 1.2), "Hbeta": (4861.33, 0.35),
    "[OIII]4959": (4958.91, 0.25), "[OIII]5007": (5006.84, 0.75),
    "[NII]6548": (6548.05, 0.1), "Halpha": (6562.80, 1.0), "[NII]6584": (6583.45, 0.3),
    "[SII]6717": (6716.44, 0.2), "[SII]6731": (6730.82, 0.15),
}
LYA_REST = 1215.67

#: A spatial profile: (x, y in geometry-frame spaxels, seeing FWHM in arcsec) ->
#: fraction of the flux per spaxel.
Profile = Callable[[np.ndarray, np.ndarray, float], np.ndarray]
#: A spectrum: (wavelength in Angstrom, LSF sigma in Angstrom) -> flux density.
Spectrum = Callable[[np.ndarray, float], np.ndarray]


@dataclass(frozen=True)
class Component:
    """One separable piece of a source: ``flux(lambda, x, y) = spectrum * profile``."""

    spectrum: Spectrum
    profile: Profile
    name: str = ""


def moffat(r2: np.ndarray, fwhm_spx: float, beta: float = 2.5) -> np.ndarray:
    """Moffat profile normalised to unit integral, per spaxel**2 (``r2`` in spaxel**2)."""
    alpha = fwhm_spx / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return (beta - 1.0) / (np.pi * alpha ** 2) * (1.0 + r2 / alpha ** 2) ** -beta


class Source:
    """Base class of scene sources: override :meth:`components`."""

    #: Offset from the field centre along instrument x and y (arcsec).
    dx: float = 0.0
    dy: float = 0.0

    def components(self) -> list[Component]:
        """The separable components of the source."""
        raise NotImplementedError

    @property
    def field_position(self) -> tuple[float, float]:
        """Position in the geometry frame (spaxels)."""
        x, y = sky_offsets_to_field(self.dx, self.dy)
        return float(x), float(y)


@dataclass
class Star(Source):
    """A point source with a black-body spectrum, seen through a Moffat PSF.

    Parameters
    ----------
    dx, dy : float
        Offset from the field centre (arcsec).
    flux_5500 : float
        Flux density at 5500 Angstrom (erg s-1 cm-2 Angstrom-1).
    temperature : float
        Black-body temperature (K).
    """

    dx: float = 0.0
    dy: float = 0.0
    flux_5500: float = 1e-16
    temperature: float = 6000.0
    spectrum_fn: Callable[[np.ndarray], np.ndarray] | None = None

    def flux(self, lam) -> np.ndarray:
        """Flux density above the atmosphere (erg s-1 cm-2 Angstrom-1) at ``lam`` (Angstrom)."""
        lam = np.asarray(lam, dtype=float)
        if self.spectrum_fn is not None:
            return self.spectrum_fn(lam)
        return self.flux_5500 * blackbody(lam, self.temperature)

    def components(self):
        x0, y0 = self.field_position

        def spec(lam, lsf_sigma):
            return self.flux(lam)

        def prof(x, y, seeing):
            return moffat((x - x0) ** 2 + (y - y0) ** 2, seeing / SPAXEL)

        return [Component(spec, prof, "star")]


def _exp_disk(x0, y0, h_arcsec, q, pa_deg):
    h = h_arcsec / SPAXEL
    c, s = np.cos(np.radians(pa_deg)), np.sin(np.radians(pa_deg))

    def prof(x, y, seeing):
        u, v = (x - x0) * c + (y - y0) * s, -(x - x0) * s + (y - y0) * c
        # Seeing softens the centre: add it in quadrature to the scale length.
        hs = np.hypot(h, 0.5 * seeing / SPAXEL)
        return np.exp(-np.sqrt(u ** 2 + (v / q) ** 2) / hs) / (2 * np.pi * hs ** 2 * q)

    return prof


@dataclass
class Galaxy(Source):
    """An inclined exponential disk with a red continuum and nebular emission lines.

    Parameters
    ----------
    dx, dy : float
        Offset of the nucleus from the field centre (arcsec).
    redshift : float
        Redshift of the lines and continuum.
    continuum_5500 : float
        Total continuum flux density at 5500 Angstrom observed (erg s-1 cm-2 A-1).
    halpha_flux : float
        Total H-alpha flux (erg s-1 cm-2); other lines scale by :data:`NEBULAR_LINES`.
    scale_length : float
        Disk scale length (arcsec); the line emission is 0.7 times as extended.
    axis_ratio, position_angle : float
        Minor/major axis ratio and major-axis angle from +x (degrees).
    velocity_dispersion : float
        Line-of-sight velocity dispersion of the gas (km/s).
    """

    dx: float = 0.0
    dy: float = 0.0
    redshift: float = 0.05
    continuum_5500: float = 3e-16
    halpha_flux: float = 4e-15
    scale_length: float = 2.5
    axis_ratio: float = 0.6
    position_angle: float = 30.0
    velocity_dispersion: float = 60.0

    def line_wavelengths(self) -> dict[str, float]:
        """Observed air wavelengths of the emission lines (Angstrom)."""
        return {k: w * (1 + self.redshift) for k, (w, _) in NEBULAR_LINES.items()}

    def components(self):
        x0, y0 = self.field_position
        z = self.redshift

        def cont(lam, lsf_sigma):
            rest = lam / (1 + z)
            # Old population: red slope with a softened 4000 A break.
            brk = 0.6 + 0.4 / (1 + np.exp(-(rest - 4000.0) / 40.0))
            return self.continuum_5500 * (lam / 5500.0) ** 1.0 * brk / (
                0.6 + 0.4 / (1 + np.exp(-(5500.0 / (1 + z) - 4000.0) / 40.0)))

        def lines(lam, lsf_sigma):
            cen = [w * (1 + z) for w, _ in NEBULAR_LINES.values()]
            flx = [self.halpha_flux * r for _, r in NEBULAR_LINES.values()]
            sig = [np.hypot(lsf_sigma, c * self.velocity_dispersion / C_KMS) for c in cen]
            return gaussian_lines(lam, cen, flx, sig)

        return [
            Component(cont, _exp_disk(x0, y0, self.scale_length, self.axis_ratio,
                                      self.position_angle), "galaxy continuum"),
            Component(lines, _exp_disk(x0, y0, 0.7 * self.scale_length, self.axis_ratio,
                                       self.position_angle), "galaxy lines"),
        ]


@dataclass
class LymanAlphaEmitter(Source):
    """A compact, faint high-redshift galaxy seen only in its Lyman-alpha line.

    Parameters
    ----------
    dx, dy : float
        Offset from the field centre (arcsec).
    redshift : float
        Redshift; the line falls at ``1215.67 (1 + z)`` Angstrom (in band for
        z ~ 2.9-6.6).
    line_flux : float
        Lyman-alpha flux (erg s-1 cm-2).
    size : float
        Gaussian sigma of the emitting region (arcsec), convolved with the seeing.
    """

    dx: float = 0.0
    dy: float = 0.0
    redshift: float = 4.5
    line_flux: float = 6e-17
    size: float = 0.15

    @property
    def line_wavelength(self) -> float:
        """Observed wavelength of the line peak region (Angstrom)."""
        return LYA_REST * (1 + self.redshift)

    def components(self):
        x0, y0 = self.field_position
        lc = self.line_wavelength

        def spec(lam, lsf_sigma):
            # Asymmetric profile: sharp blue edge (IGM absorption), red wing.
            s1, s2 = np.hypot(lsf_sigma, 1.5), np.hypot(lsf_sigma, 4.0)
            return gaussian_lines(lam, [lc, lc + 3.0], [0.55 * self.line_flux,
                                                       0.45 * self.line_flux], [s1, s2])

        def prof(x, y, seeing):
            fwhm = np.hypot(seeing, 2.3548 * self.size)
            return moffat((x - x0) ** 2 + (y - y0) ** 2, fwhm / SPAXEL)

        return [Component(spec, prof, "Lyman-alpha emitter")]


@dataclass
class Scene:
    """What the telescope points at: sources plus (optionally) the night sky.

    Parameters
    ----------
    sources : list of Source
        The astronomical sources.
    sky : bool
        Add the night-sky continuum and emission lines of
        :func:`musewise.inm.spectra.sky_spectrum`.
    sky_scale : float
        Multiplier of the night-sky brightness (moon, zenith distance).
    name : str
        Target name written to ``OBJECT`` / ``ESO OBS TARG NAME``.
    """

    sources: list = field(default_factory=list)
    sky: bool = True
    sky_scale: float = 1.0
    name: str = "SIM-FIELD"

    def components(self) -> list[Component]:
        """All separable components of all sources."""
        return [c for s in self.sources for c in s.components()]

    def sky_positions(self, ra: float, dec: float) -> list[tuple[Source, float, float]]:
        """Where the sources are on the sky when the field centre points at ``ra``, ``dec``.

        Offsets are taken in the tangent plane (gnomonic, as the cube's ``RA---TAN``
        WCS), +x West and +y North (``ESO INS DROT POSANG = 0``).

        Parameters
        ----------
        ra, dec : float
            Pointing of the field centre (degrees).

        Returns
        -------
        list of (Source, float, float)
            Each source with its RA and Dec (degrees).
        """
        a0, d0 = np.radians(ra), np.radians(dec)
        out = []
        for s in self.sources:
            xi, eta = np.radians(-s.dx / 3600.0), np.radians(s.dy / 3600.0)  # xi: towards East
            den = np.cos(d0) - eta * np.sin(d0)
            a = a0 + np.arctan2(xi, den)
            d = np.arctan2(np.sin(d0) + eta * np.cos(d0), np.hypot(xi, den))
            out.append((s, float(np.degrees(a) % 360.0), float(np.degrees(d))))
        return out

    @classmethod
    def default(cls, galaxy_redshift: float = 0.05, lae_redshift: float = 4.5) -> "Scene":
        """The standard deep field: one galaxy, six stars, a Lyman-alpha emitter.

        Parameters
        ----------
        galaxy_redshift : float
            Redshift of the emission-line galaxy.
        lae_redshift : float
            Redshift of the Lyman-alpha emitter (4.5 puts the line at 6686 A).
        """
        return cls(
            sources=[
                Galaxy(dx=-15.0, dy=26.4, redshift=galaxy_redshift),
                Star(dx=14.0, dy=27.6, flux_5500=8e-16, temperature=5500.0),
                Star(dx=22.0, dy=25.0, flux_5500=2e-16, temperature=4000.0),
                LymanAlphaEmitter(dx=2.0, dy=27.4, redshift=lae_redshift),
                Star(dx=-20.0, dy=5.0, flux_5500=5e-16, temperature=7000.0),
                Star(dx=10.0, dy=-12.0, flux_5500=3e-16, temperature=5000.0),
                Star(dx=-5.0, dy=-24.0, flux_5500=1e-15, temperature=9000.0),
                Star(dx=25.0, dy=15.0, flux_5500=1.5e-16, temperature=3800.0),
            ],
            name="SIM-DEEP-FIELD",
        )


@dataclass(frozen=True)
class StandardStar:
    """A spectrophotometric standard star, consistent with the ``STD_FLUX_TABLE``.

    Attributes
    ----------
    name : str
        Name (the ``STD_FLUX_TABLE`` extension name and the STD frame's OBJECT).
    ra, dec : float
        ICRS position (degrees).
    flux_5500 : float
        Flux density at 5500 Angstrom (erg s-1 cm-2 Angstrom-1).
    temperature : float
        Black-body temperature of its smooth spectrum (K).
    """

    name: str = "SIM-STD-1"
    ra: float = 28.7125
    dec: float = -27.4764
    flux_5500: float = 4e-14
    temperature: float = 12000.0

    def flux(self, lam) -> np.ndarray:
        """Flux density (erg s-1 cm-2 Angstrom-1) above the atmosphere."""
        return self.flux_5500 * blackbody(np.asarray(lam, dtype=float), self.temperature)

    def scene(self, dx: float = 0.0, dy: float = 0.0) -> Scene:
        """The star alone (plus sky) at offset ``dx``, ``dy`` (arcsec)."""
        return Scene([Star(dx=dx, dy=dy, spectrum_fn=self.flux)], name=self.name)


#: The standard star observed by :func:`musewise.inm.night.simulate_night`.
STANDARD_STAR = StandardStar()


def ifu_centre_offset(ifus: Sequence[int]) -> float:
    """Offset y (arcsec) of the middle of the strip covered by ``ifus``.

    Used to place the standard star on the simulated IFUs.
    """
    rows = [150.0 - (i - 1) * 12 - 5.5 for i in ifus]
    y = 0.5 * (min(rows) + max(rows))
    return float((y - sky_offsets_to_field(0, 0)[1]) * SPAXEL)
