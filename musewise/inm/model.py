"""The instrument model: light -> electrons on each CCD -> raw MUSE frames.

How a CCD image is built
------------------------
Every light source is separable per slice: a spectrum along the rows (known
through the slice's wavelength solution) times a profile along the columns (the
slice's sky positions, blurred slice edges and throughput). So the expected
electrons of CCD slice ``k`` are one matrix product

    E[:, columns(k)] = M_k (4112 x K) @ S[:, columns(k)] (K x ~85)

with ``K`` the number of scene components (1 for lamps, ~12 for the deep field).
The spectral matrices without the frame's exposure time and airmass are cached
per (IFU, source set); the spatial ones are cheap and follow the frame's seeing.
Noise and digitisation are in :mod:`musewise.inm.detector`.
"""

from __future__ import annotations

import os
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
from astropy.io.fits.verify import VerifyWarning

from ..exceptions import ConfigurationError
from ..vocabulary import INSTRUMENT_MODES, N_IFU, FrameType
from . import layout as L
from .detector import (DARK_CURRENT, RAW_NX, RAW_NY, TRIM_NX, TRIM_NY, Digitiser, NoiseBank,
                       hot_pixels)
from .fitsio import write_mef
from .headers import extension_header, mjd, primary_header
from .lamps import ARC_LAMPS, ARC_REFERENCE_EXPTIME, FLAT_LAMPS, flat_lamp_spectrum, lamp_lines
from .scene import Scene
from .spoil import as_spoils
from .spectra import extinction, photons_per_erg, sky_spectrum, throughput, twilight_spectrum

#: Supported instrument modes of the simulator.
SUPPORTED_MODES = ("WFM-NOAO-N", "WFM-NOAO-E")
#: Flat-field lamp rate at the throughput peak (e-/s/pixel).
FLAT_RATE = 3000.0
#: Twilight sky rate at the throughput peak near sunset (e-/s/pixel).
TWILIGHT_RATE = 1500.0
#: Cosmic-ray events per second per CCD.
COSMIC_RATE = 1.5
#: Sky area seen by one CCD pixel of a slice (spaxels**2): 1 spaxel high, 75/77 wide.
PIXEL_AREA_SPX = L.SLICE_WIDTH_SKY / L.SLICE_WIDTH_CCD

_FT_CODE = {ft: i for i, ft in enumerate(FrameType)}


def detected_fraction(ifus: Sequence[int] = tuple(range(1, N_IFU + 1))) -> float:
    """Fraction of a spaxel's light that the pipeline finds in the CCD pixels of its slice.

    Besides :func:`.spectra.throughput`, the light of a spaxel is spread over pixels
    that each see only :data:`PIXEL_AREA_SPX` of a spaxel (a slice is 75 spaxels on 77
    pixels), dimmed by the mean slice throughput and vignetting, and partly blurred into
    the gaps between slices (:func:`.layout.column_profile`). The flat field removes the
    variations of these about their mean, not the mean itself: the response of the
    reduced data is ``throughput * detected_fraction()`` (0.953; muse_standard on IFUs
    1-2 measures 0.926-0.958 from 5000 to 9000 Angstrom).

    Parameters
    ----------
    ifus : sequence of int
        IFUs averaged over (default: all 24).
    """
    x = np.arange(TRIM_NX) + 0.5
    fractions = []
    for ifu in ifus:
        prof = L.column_profile(int(ifu))
        inside = np.zeros(TRIM_NX, bool)
        for lo, hi in zip(*L.slice_edges(int(ifu))):
            inside |= (x > lo) & (x < hi)
        fractions.append(float(prof[inside].mean()))
    return PIXEL_AREA_SPX * float(np.mean(fractions))


class InstrumentModel:
    """MUSE as seen by its raw data, for a chosen set of IFUs.

    Parameters
    ----------
    ifus : sequence of int
        IFUs (1-24) to simulate; each becomes a ``CHANnn`` extension.
    mode : str
        ``ESO INS MODE``: ``WFM-NOAO-N`` (default) or ``WFM-NOAO-E``.
    seed : int
        Seed of all randomness: the same seed and arguments give identical bytes.
    scene : Scene, optional
        Default scene of OBJECT frames (default :meth:`Scene.default`).
    spoils : sequence of Spoil or str, optional
        Defects put on purpose into the frames they concern (:mod:`musewise.inm.spoil`:
        ``lamp_off``, ``hot_column``, ``arc_shift``), for testing QC.

    Raises
    ------
    ConfigurationError
        If an IFU number or the mode is invalid.

    Examples
    --------
    >>> from datetime import datetime
    >>> from musewise.vocabulary import FrameType
    >>> m = InstrumentModel(ifus=(1,), seed=1)                        # doctest: +SKIP
    >>> m.write_frame("bias.fits", FrameType.BIAS, datetime(2026, 11, 20, 18), 0.0)  # doctest: +SKIP
    """

    def __init__(self, ifus: Sequence[int] = (1, 2), mode: str = "WFM-NOAO-N", seed: int = 0,
                 scene: Scene | None = None, spoils=()):
        ifus = tuple(int(i) for i in ifus)
        if not ifus or any(not 1 <= i <= N_IFU for i in ifus) or len(set(ifus)) != len(ifus):
            raise ConfigurationError(f"IFUs must be distinct numbers 1..{N_IFU}, got {ifus}")
        if mode not in INSTRUMENT_MODES:
            raise ConfigurationError(f"unknown instrument mode {mode!r}; known: {INSTRUMENT_MODES}")
        if mode not in SUPPORTED_MODES:
            raise ConfigurationError(f"mode {mode!r} is not simulated; use one of {SUPPORTED_MODES}")
        self.ifus, self.mode, self.seed = ifus, mode, int(seed)
        self.scene = scene if scene is not None else Scene.default()
        self.spoils = as_spoils(spoils)
        self._bank: NoiseBank | None = None
        self._digitiser: Digitiser | None = None
        self._electrons = None
        self._spec_cache: dict = {}

    # ------------------------------------------------------------------ helpers
    @property
    def digitiser(self) -> Digitiser:
        """The read-out electronics (noise bank created on first use)."""
        if self._digitiser is None:
            self._bank = NoiseBank(self.seed)
            self._digitiser = Digitiser(self._bank)
        return self._digitiser

    def _ebuf(self) -> np.ndarray:
        if self._electrons is None:
            self._electrons = np.empty((TRIM_NY, TRIM_NX), np.float32)
        return self._electrons

    def frame_rng(self, frame_type: FrameType, date_obs: datetime) -> np.random.Generator:
        """The generator of one exposure: a function of seed, type and start time only."""
        ms = int(round(mjd(_utc(date_obs)) * 86400_000))
        return np.random.default_rng([self.seed, _FT_CODE[frame_type], ms])

    def _dlam_dy(self, ifu: int) -> np.ndarray:
        return np.gradient(L.wavelength_map(ifu), axis=1)

    def _fill_slices(self, e: np.ndarray, ifu: int, spectra, spatial: np.ndarray) -> None:
        """``e[:, cols_k] = spectra[k] @ spatial[:, cols_k]`` for every slice ``k``."""
        for k, cols in enumerate(L.column_slices(ifu)):
            e[:, cols] = spectra[k] @ spatial[:, cols]

    # ------------------------------------------------------------ light models
    def lamp_flat_electrons(self, ifu: int, exptime: float, out: np.ndarray) -> np.ndarray:
        """Expected electrons (e-) of a lamp flat (trimmed image)."""
        lam = L.wavelength_map(ifu)
        spec = (FLAT_RATE * exptime * flat_lamp_spectrum(lam) * throughput(lam, self.mode)
                / throughput(7000.0, self.mode))
        spec *= L.lamp_illumination(ifu)[:, None]
        prof = L.column_profile(ifu)[None, :]
        self._fill_slices(out, ifu, spec[:, :, None].astype(np.float32), prof.astype(np.float32))
        return out

    def arc_electrons(self, ifu: int, lamp: str, exptime: float, out: np.ndarray) -> np.ndarray:
        """Expected electrons (e-) of an arc of one lamp (``Ne``, ``Xe`` or ``HgCd``)."""
        lines = lamp_lines(lamp)
        y = np.arange(TRIM_NY, dtype=float)
        spec = np.full((L.N_SLICE, TRIM_NY), 0.5 * exptime / ARC_REFERENCE_EXPTIME)
        s = L.LSF_SIGMA_PX
        for k in range(L.N_SLICE):
            for line in lines:
                yc = float(L.row_of_wavelength(ifu, k + 1, line.wavelength))
                lo, hi = max(int(yc - 8 * s), 0), min(int(yc + 8 * s) + 2, TRIM_NY)
                if hi <= lo:
                    continue
                amp = line.flux * exptime / ARC_REFERENCE_EXPTIME / (np.sqrt(2 * np.pi) * s)
                spec[k, lo:hi] += amp * np.exp(-0.5 * ((y[lo:hi] - yc) / s) ** 2)
        spec *= L.lamp_illumination(ifu)[:, None]
        prof = L.column_profile(ifu)[None, :]
        self._fill_slices(out, ifu, spec[:, :, None].astype(np.float32), prof.astype(np.float32))
        return out

    def twilight_electrons(self, ifu: int, exptime: float, out: np.ndarray) -> np.ndarray:
        """Expected electrons (e-) of a twilight sky flat: uniform sky, solar spectrum."""
        lam = L.wavelength_map(ifu)
        spec = (TWILIGHT_RATE * exptime * twilight_spectrum(lam) * throughput(lam, self.mode)
                / throughput(7000.0, self.mode))
        prof = L.column_profile(ifu)[None, :]
        self._fill_slices(out, ifu, spec[:, :, None].astype(np.float32), prof.astype(np.float32))
        return out

    def _scene_spectra(self, ifu: int, scene: Scene) -> np.ndarray:
        """Component spectra above the atmosphere on every slice row, (48, 4112, K).

        Units: erg s-1 cm-2 Angstrom-1 (sources: total flux; sky: per arcsec**2).
        The last component is the night sky if ``scene.sky``.
        """
        key = (ifu, id(scene))
        hit = self._spec_cache.get(key)
        if hit is not None and hit[0] is scene:
            return hit[1]
        lam = L.wavelength_map(ifu)
        lsf = L.LSF_SIGMA_PX * L.DISPERSION
        comps = scene.components()
        k_tot = len(comps) + (1 if scene.sky else 0)
        spec = np.empty((L.N_SLICE, TRIM_NY, k_tot))
        for k in range(L.N_SLICE):
            for j, c in enumerate(comps):
                spec[k, :, j] = c.spectrum(lam[k], lsf)
            if scene.sky:
                spec[k, :, -1] = scene.sky_scale * sky_spectrum(lam[k], lsf)
        if len(self._spec_cache) > 64:
            self._spec_cache.clear()
        self._spec_cache[key] = (scene, spec)
        return spec

    def scene_electrons(self, ifu: int, scene: Scene, exptime: float, airmass: float,
                        seeing: float, out: np.ndarray) -> np.ndarray:
        """Expected electrons (e-) of an on-sky exposure of ``scene`` (trimmed image).

        Parameters
        ----------
        ifu : int
            IFU number.
        scene : Scene
            What is observed.
        exptime : float
            Exposure time (s).
        airmass : float
            Mean airmass (sources are dimmed by :func:`.spectra.extinction`).
        seeing : float
            PSF FWHM (arcsec).
        out : ndarray of float32, shape (4112, 4096)
            Where to put the result.
        """
        lam = L.wavelength_map(ifu)
        spec = self._scene_spectra(ifu, scene)
        # erg/s/cm2/A -> e- per pixel row: photons x efficiency x pixel width x time.
        conv = photons_per_erg(lam) * throughput(lam, self.mode) * self._dlam_dy(ifu) * exptime
        atm = 10.0 ** (-0.4 * extinction(lam) * airmass)
        m = spec * (conv * atm)[:, :, None]
        if scene.sky:  # the sky shines from inside the atmosphere
            m[:, :, -1] = spec[:, :, -1] * conv * (L.SPAXEL ** 2)
        xs, ys = L.column_sky_coordinates(ifu)
        comps = scene.components()
        spatial = np.empty((m.shape[2], TRIM_NX))
        for j, c in enumerate(comps):
            spatial[j] = c.profile(xs, ys, seeing)
        if scene.sky:
            spatial[-1] = 1.0
        spatial *= PIXEL_AREA_SPX * L.column_profile(ifu)[None, :]
        self._fill_slices(out, ifu, m.astype(np.float32), spatial.astype(np.float32))
        return out

    def _add_dark_and_cosmics(self, e: np.ndarray, ifu: int, exptime: float,
                              rng: np.random.Generator, cosmics: bool) -> None:
        e += np.float32(DARK_CURRENT * exptime / 3600.0)
        idx, rate = hot_pixels(ifu)
        e.ravel()[idx] += (rate * exptime / 3600.0).astype(np.float32)
        if cosmics:
            n = rng.poisson(COSMIC_RATE * exptime)
            pos = rng.integers(0, e.size - 1, n)
            amp = rng.uniform(300.0, 6000.0, n).astype(np.float32)
            e.ravel()[pos] += amp
            e.ravel()[pos + 1] += 0.3 * amp  # most hits leave a short track

    # ---------------------------------------------------------------- frames
    def electrons(self, ifu: int, frame_type: FrameType, exptime: float,
                  rng: np.random.Generator | None = None, *, lamp: str | None = None,
                  scene: Scene | None = None, airmass: float = 1.0, seeing: float = 0.8,
                  out: np.ndarray | None = None) -> np.ndarray | None:
        """Expected detected electrons of one CCD for one exposure (no noise).

        Parameters
        ----------
        ifu : int
            IFU number.
        frame_type : FrameType
            What kind of exposure.
        exptime : float
            Exposure time (s).
        rng : numpy.random.Generator, optional
            Places cosmic rays (none if omitted).
        lamp : str, optional
            Arc lamp (``Ne``, ``Xe``, ``HgCd``) for ARC frames.
        scene : Scene, optional
            For OBJECT/SKY/STD frames (default: the model's scene).
        airmass, seeing : float
            Mean airmass and PSF FWHM (arcsec) for on-sky frames.
        out : ndarray, optional
            float32 (4112, 4096) buffer to fill.

        Returns
        -------
        ndarray of float32, shape (4112, 4096), or None
            Electrons per trimmed pixel; None for a BIAS (nothing but read-out).
        """
        frame_type = FrameType(frame_type)
        spoils = [sp for sp in self.spoils if sp.applies_to(ifu, frame_type)]
        if frame_type is FrameType.BIAS:
            if not spoils:
                return None
            # a spoiled bias carries charge: an image of it, no dark current (exposure 0)
            e = out if out is not None else np.empty((TRIM_NY, TRIM_NX), np.float32)
            e.fill(0.0)
            for sp in spoils:
                sp.apply(e)
            return e
        e = out if out is not None else np.empty((TRIM_NY, TRIM_NX), np.float32)
        if frame_type is FrameType.DARK:
            e.fill(0.0)
        elif frame_type in (FrameType.FLAT, FrameType.ILLUM):
            self.lamp_flat_electrons(ifu, exptime, e)
        elif frame_type is FrameType.ARC:
            if lamp not in ARC_LAMPS:
                raise ConfigurationError(f"ARC frames need lamp= one of {sorted(ARC_LAMPS)}")
            self.arc_electrons(ifu, lamp, exptime, e)
        elif frame_type is FrameType.SKYFLAT:
            self.twilight_electrons(ifu, exptime, e)
        else:
            self.scene_electrons(ifu, scene if scene is not None else self.scene, exptime,
                                 airmass, seeing, e)
        for sp in spoils:  # the light is spoiled, not the detector's own dark current
            sp.apply(e)
        np.maximum(e, 0.0, out=e)
        self._add_dark_and_cosmics(e, ifu, exptime, rng, cosmics=rng is not None)
        return e

    def write_frame(self, path: str | os.PathLike, frame_type: FrameType, date_obs: datetime,
                    exptime: float, **kw) -> Path:
        """Simulate one exposure and write it as a raw MUSE FITS file.

        Parameters
        ----------
        path : path
            Output file name (overwritten).
        frame_type : FrameType
            BIAS, DARK, FLAT, ILLUM, ARC, SKYFLAT, STD, OBJECT or SKY.
        date_obs : datetime
            Exposure start (UTC; naive datetimes are taken as UTC).
        exptime : float
            Exposure time (s); 0 for a bias.
        **kw
            ``lamp`` (ARC: ``Ne``, ``Xe`` or ``HgCd``); ``scene`` (on-sky frames);
            ``ra``, ``dec`` (deg, pointing); ``seeing`` (arcsec FWHM, default 0.8);
            ``target``; and header fields passed to
            :func:`musewise.inm.headers.primary_header` (``obs_id``, ``tpl_expno``,
            ``tpl_nexp``, ``tpl_start``, ``exp_no``, ``prog_id``, ``extra``).

        Returns
        -------
        Path
            The file written.

        Raises
        ------
        ConfigurationError
            On a missing or unknown lamp, or a negative exposure time.
        DatastoreError
            If the file cannot be written.
        """
        frame_type = FrameType(frame_type)
        if exptime < 0:
            raise ConfigurationError(f"negative exposure time {exptime}")
        date_obs = _utc(date_obs)
        lamp = kw.pop("lamp", None)
        scene = kw.pop("scene", None)
        seeing = float(kw.pop("seeing", 0.8))
        ra, dec = float(kw.pop("ra", 0.0)), float(kw.pop("dec", 0.0))
        if frame_type is FrameType.ARC and lamp not in ARC_LAMPS:
            raise ConfigurationError(f"ARC frames need lamp= one of {sorted(ARC_LAMPS)}")
        if frame_type is FrameType.ARC:
            lamps_on = (ARC_LAMPS[lamp],)
        elif frame_type in (FrameType.FLAT, FrameType.ILLUM):
            lamps_on = FLAT_LAMPS
        else:
            lamps_on = ()
        if frame_type in (FrameType.OBJECT, FrameType.SKY, FrameType.STD):
            scene = scene if scene is not None else self.scene
            kw.setdefault("target", scene.name)
        if frame_type is FrameType.SKY:
            scene = Scene([], sky=True, name="SKY")
        extra = dict(kw.pop("extra", {}) or {})
        phdr = primary_header(frame_type, date_obs, exptime, mode=self.mode, lamps_on=lamps_on,
                              ra=ra, dec=dec, seeing=seeing, extra=extra, **kw)
        airmass = 0.5 * (phdr["ESO TEL AIRM START"] + phdr["ESO TEL AIRM END"])
        rng = self.frame_rng(frame_type, date_obs)
        dig = self.digitiser
        cosmics = frame_type is not FrameType.BIAS and exptime > 0

        def extensions():
            for ifu in self.ifus:
                def fill(buf, ifu=ifu):
                    e = self.electrons(ifu, frame_type, exptime, rng if cosmics else None,
                                       lamp=lamp, scene=scene, airmass=airmass, seeing=seeing,
                                       out=self._ebuf() if frame_type is not FrameType.BIAS
                                       or self.spoils else None)
                    drift = float(rng.normal(0.0, 0.3))
                    return dig.digitise(ifu, e, rng, out=buf, bias_drift=drift)
                yield extension_header(ifu), fill

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VerifyWarning)
            return write_mef(path, phdr, extensions(), shape=(RAW_NY, RAW_NX))


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


__all__ = ["InstrumentModel", "SUPPORTED_MODES"]
