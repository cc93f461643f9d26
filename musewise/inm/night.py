"""A simulated observing night: what is taken when, and writing it all.

Time line of night ``D`` (the local evening date; Paranal is on UTC-3 in the
southern summer, so local = UTC - 3 h). All DATE-OBS are UTC:

* Afternoon calibrations, ``D`` 18:00 UTC onwards (15:00 local): biases (one a
  minute), darks (1800 s each), lamp flats (10 s), arcs (15 s, each lamp in turn:
  Ne, Xe, HgCd). The telescope is parked (airmass 1).
* Evening twilight, ``D`` 23:40 UTC (20:40 local, just after sunset): sky flats
  (10 s, two minutes apart) on an empty field near the zenith.
* Night, from ``D+1`` 01:00 UTC (22:00 local): the standard star (60 s), then the
  science field (900 s exposures, dithered by a few tenths of an arcsecond).

So a night's science frames carry the *next* calendar date in DATE-OBS, as at
ESO; the night itself is the date the evening began (``night`` argument).

The standard star is placed on the simulated IFUs: the telescope points so that
the star falls at the middle of their strip (as an observer would offset it when
only some IFUs matter), so a one-IFU run can still derive a response curve.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..exceptions import ConfigurationError
from ..vocabulary import FrameType
from .headers import arcfile_name
from .lamps import ARC_LAMPS, ARC_REFERENCE_EXPTIME
from .model import InstrumentModel
from .scene import STANDARD_STAR, Scene, ifu_centre_offset
from .tangent import telescope_pointing

#: Science field (the Hubble Ultra Deep Field): RA, Dec (degrees).
SCIENCE_FIELD = (53.1625, -27.7914)
#: Dither pattern of the science exposures (arcsec offsets along x, y).
DITHERS = ((0.0, 0.0), (0.6, 0.2), (-0.6, -0.2), (0.3, -0.4))
#: Exposure times (s).
EXPTIMES = {FrameType.BIAS: 0.0, FrameType.DARK: 1800.0, FrameType.FLAT: 10.0,
            FrameType.ARC: ARC_REFERENCE_EXPTIME, FrameType.SKYFLAT: 10.0,
            FrameType.STD: 60.0, FrameType.OBJECT: 900.0}
#: Read-out + overhead between exposures (s).
OVERHEAD = 60.0


@dataclass(frozen=True)
class PlannedExposure:
    """One exposure of the night plan.

    Attributes
    ----------
    frame_type : FrameType
        What is taken.
    date_obs : datetime
        Start (UTC).
    exptime : float
        Exposure time (s).
    options : dict
        Extra arguments of :meth:`InstrumentModel.write_frame` (lamp, scene, ra,
        dec, seeing, header fields).
    """

    frame_type: FrameType
    date_obs: datetime
    exptime: float
    options: dict = field(default_factory=dict, compare=False)

    @property
    def filename(self) -> str:
        """ESO archive name (``MUSE.<DATE-OBS>.fits``)."""
        return arcfile_name(self.date_obs)


@dataclass(frozen=True)
class NightPlan:
    """The exposures of one simulated night, in time order.

    Build one with :meth:`for_night`; iterate over it for the exposures.
    """

    night: str
    exposures: tuple[PlannedExposure, ...]

    def __iter__(self) -> Iterator[PlannedExposure]:
        return iter(self.exposures)

    def __len__(self) -> int:
        return len(self.exposures)

    def of_type(self, frame_type: FrameType) -> list[PlannedExposure]:
        """The planned exposures of one frame type."""
        return [e for e in self.exposures if e.frame_type is FrameType(frame_type)]

    @classmethod
    def for_night(cls, night: str = "2026-11-20", ifus: Sequence[int] = (1, 2), n_bias: int = 3,
                  n_dark: int = 3, n_flat: int = 3, n_arc_per_lamp: int = 1, n_skyflat: int = 3,
                  n_std: int = 1, n_object: int = 2, seed: int = 0,
                  scene: Scene | None = None) -> "NightPlan":
        """Plan a standard night (see the module docstring for the time line).

        Parameters
        ----------
        night : str
            Local evening date ``YYYY-MM-DD``.
        ifus : sequence of int
            Simulated IFUs (the standard star is placed on them).
        n_bias, n_dark, n_flat, n_arc_per_lamp, n_skyflat, n_std, n_object : int
            Number of exposures of each kind (arcs: per lamp).
        seed : int
            Seeds the seeing of each exposure.
        scene : Scene, optional
            The science scene (default :meth:`Scene.default`).

        Raises
        ------
        ConfigurationError
            If ``night`` is not a ``YYYY-MM-DD`` date or a count is negative.
        """
        try:
            d = datetime.strptime(night, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"night must be YYYY-MM-DD, got {night!r}") from exc
        counts = dict(n_bias=n_bias, n_dark=n_dark, n_flat=n_flat, n_arc_per_lamp=n_arc_per_lamp,
                      n_skyflat=n_skyflat, n_std=n_std, n_object=n_object)
        bad = {k: v for k, v in counts.items() if int(v) < 0}
        if bad:
            raise ConfigurationError(f"exposure counts must be >= 0: {bad}")
        rng = np.random.default_rng([seed, 0x4E16])
        scene = scene if scene is not None else Scene.default()
        plan: list[PlannedExposure] = []
        obs_id = [100000 + 10 * (seed % 1000)]

        def block(frame_type, start, n, exptime, **opts):
            t, tpl_start = start, start
            obs_id[0] += 1
            for i in range(n):
                o = dict(opts)
                o.update(obs_id=obs_id[0], tpl_expno=i + 1, tpl_nexp=n, tpl_start=tpl_start,
                         exp_no=len(plan) + 1)
                plan.append(PlannedExposure(frame_type, t, exptime, o))
                t = t + timedelta(seconds=exptime + OVERHEAD)
            return t

        t = d + timedelta(hours=18)
        t = block(FrameType.BIAS, t, n_bias, EXPTIMES[FrameType.BIAS])
        t = block(FrameType.DARK, t, n_dark, EXPTIMES[FrameType.DARK])
        t = block(FrameType.FLAT, t, n_flat, EXPTIMES[FrameType.FLAT])
        for lamp in ARC_LAMPS:
            t = block(FrameType.ARC, t, n_arc_per_lamp, EXPTIMES[FrameType.ARC], lamp=lamp)

        t = d + timedelta(hours=23, minutes=40)
        for i in range(n_skyflat):  # twilight: an empty field near the zenith
            block(FrameType.SKYFLAT, t, 1, EXPTIMES[FrameType.SKYFLAT], ra=35.0, dec=-25.0,
                  target="SKYFLAT")
            t += timedelta(minutes=2)

        t = d + timedelta(days=1, hours=1)
        dy = ifu_centre_offset(ifus)
        std_scene = STANDARD_STAR.scene(0.0, dy)
        # +y is North: point 'dy' south of the star so it lands on the IFUs.
        for i in range(n_std):
            t = block(FrameType.STD, t, 1, EXPTIMES[FrameType.STD], scene=std_scene,
                      ra=STANDARD_STAR.ra, dec=STANDARD_STAR.dec - dy / 3600.0,
                      seeing=float(rng.uniform(0.6, 1.1)), target=STANDARD_STAR.name,
                      prog_id="60.A-9100(K)")
        t = max(t, d + timedelta(days=1, hours=1, minutes=30))
        ra0, dec0 = SCIENCE_FIELD
        obs_id[0] += 1
        for i in range(n_object):
            ox, oy = DITHERS[i % len(DITHERS)]
            # The telescope moves by (ox, oy): the sky moves by the opposite in the field.
            sc = dataclasses.replace(scene, sources=[
                dataclasses.replace(s, dx=s.dx - ox, dy=s.dy - oy) for s in scene.sources])
            ra, dec = telescope_pointing(ra0, dec0, ox, oy)  # +x is West
            plan.append(PlannedExposure(
                FrameType.OBJECT, t, EXPTIMES[FrameType.OBJECT],
                dict(scene=sc, ra=ra, dec=dec, seeing=float(rng.uniform(0.6, 1.1)),
                     obs_id=obs_id[0], tpl_expno=i + 1, tpl_nexp=n_object,
                     tpl_start=d + timedelta(days=1, hours=1, minutes=30),
                     prog_id="0118.A-0001(A)", exp_no=len(plan) + 1,
                     extra={"ESO OCS OFFS DRA": ox, "ESO OCS OFFS DDEC": oy})))
            t = t + timedelta(seconds=EXPTIMES[FrameType.OBJECT] + OVERHEAD)
        return cls(night, tuple(sorted(plan, key=lambda e: e.date_obs)))

    def run(self, model: InstrumentModel, outdir: str | os.PathLike,
            progress: bool = True) -> list[Path]:
        """Write every planned exposure into ``outdir`` (ESO archive file names).

        Parameters
        ----------
        model : InstrumentModel
            The instrument (IFUs, mode, seed).
        outdir : path
            Destination folder (created if missing).
        progress : bool
            Show a tqdm progress bar.

        Returns
        -------
        list of Path
            The raw files, in time order.
        """
        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        it = self.exposures
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(it), desc=f"night {self.night}", unit="frame")
        written = []
        try:
            for exp in it:
                if bar is not None:
                    bar.set_postfix_str(f"{exp.frame_type.value} {len(model.ifus)} IFU")
                written.append(model.write_frame(out / exp.filename, exp.frame_type,
                                                 exp.date_obs, exp.exptime, **dict(exp.options)))
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return written


def simulate_night(outdir: str | os.PathLike, night: str = "2026-11-20",
                   ifus: Sequence[int] = (1, 2), n_bias: int = 3, n_dark: int = 3,
                   n_flat: int = 3, n_arc_per_lamp: int = 1, n_skyflat: int = 3, n_std: int = 1,
                   n_object: int = 2, mode: str = "WFM-NOAO-N", seed: int = 0,
                   progress: bool = True, static: bool = True, spoils=()) -> list[Path]:
    """Simulate the raw frames of one observing night.

    Parameters
    ----------
    outdir : path
        Folder for the raw frames (named ``MUSE.<DATE-OBS>.fits``).
    night : str
        Observing night, the local evening date ``YYYY-MM-DD`` (see module docstring
        for the UTC time line).
    ifus : sequence of int
        IFUs to simulate (1-24). Each raw frame is ~36 MB per IFU.
    n_bias, n_dark, n_flat, n_arc_per_lamp, n_skyflat, n_std, n_object : int
        Exposures of each kind (arcs: per lamp, Ne, Xe and HgCd).
    mode : str
        ``WFM-NOAO-N`` (default) or ``WFM-NOAO-E``.
    seed : int
        Seed: the same arguments give byte-identical files.
    progress : bool
        Show a tqdm progress bar.
    static : bool
        Also write the static calibrations into ``outdir/static/``.
    spoils : sequence of Spoil or str, optional
        Defects to put on purpose into the frames they concern, e.g.
        ``["lamp_off:2", "hot_column:1:800"]`` (:mod:`musewise.inm.spoil`); for testing QC.

    Returns
    -------
    list of Path
        The raw frames written, in time order (static calibrations not included). With
        science exposures, the stars of the field and their fluxes are written to
        ``outdir/STAR_CATALOG.ecsv`` (:mod:`musewise.inm.truth`).
    """
    from .static import write_static_calibrations
    from .truth import CATALOGUE_NAME, write_star_catalogue

    model = InstrumentModel(ifus=ifus, mode=mode, seed=seed, spoils=spoils)
    plan = NightPlan.for_night(night, ifus=ifus, n_bias=n_bias, n_dark=n_dark, n_flat=n_flat,
                               n_arc_per_lamp=n_arc_per_lamp, n_skyflat=n_skyflat, n_std=n_std,
                               n_object=n_object, seed=seed, scene=model.scene)
    if static:
        write_static_calibrations(Path(outdir) / "static", mode=mode, ifus=ifus)
    if n_object:  # the truth QC compares the cubes' stars with (musewise.qc.starflux)
        write_star_catalogue(Path(outdir) / CATALOGUE_NAME, model.scene, *SCIENCE_FIELD)
    return plan.run(model, outdir, progress=progress)
