"""An observing programme: one field observed over several nights in rotated, dithered OBs.

What it models
--------------
* **A field** (:class:`Field`): a pointing centre (RA, Dec) and sources placed by their
  offsets on the sky from that centre (arcsec, +x West, +y North, i.e. as seen at
  position angle 0). Each source's true RA/Dec follows from the gnomonic (TAN)
  projection about the centre (:meth:`Field.radec`). The built-in field
  (:meth:`Field.deep_field`) is the deep-field scene of :meth:`.Scene.default` plus
  bright stars near the top corners of the field of view (``x = -/+ 27``, ``y = 27``
  arcsec) so that a star falls on IFUs 1-2 whichever of the position angles 0, 90 or
  270 an exposure is taken at (see :data:`CORNER_STARS`).
* **Nights** (:class:`ProgrammeNight`), each with its own calibrations, planned by
  :meth:`.NightPlan.for_night` (bias, dark, lamp flats, arcs, twilight sky flats and the
  spectrophotometric standard placed on the simulated IFUs), and its OBs. A night may
  have no calibrations of its own (``calibrations: false``): only its OBs (with their
  ILLUM) are written, and its reduction takes the calibrations of a nearby night
  (:data:`BUILTIN_PROGRAMMES` ``deep-field-shared-cal``).
* **OBs** (:class:`ObservingBlock`): a position angle (``ESO INS DROT POSANG``, degrees
  from North through East of the instrument's +y axis; the MUSE deep fields used 0, 90,
  180 and 270), an attached illumination flat (``ILLUM``, ``ESO DPR TYPE
  FLAT,LAMP,ILLUM``, 10 s, taken at the start of the OB with the telescope on target)
  and dithered exposures: each exposure offsets the telescope by a few arcsec on the
  sky (``ESO OCS OFFS DRA/DDEC``, arcsec West and North; :data:`DEEP_FIELD_DITHERS`).
* **Each exposure**: the telescope points at the field centre plus the dither offset,
  the instrument is rotated by the OB's position angle, and every source is put at its
  position in the instrument frame (:meth:`Field.instrument_offsets`); the galaxy's
  major axis turns with it. The airmass and parallactic angle follow from the hour
  angle at the exposure's time (:func:`.headers.pointing`); the seeing of each
  exposure is drawn (seeded) around a per-night median.
* **The header pointing** (``RA``/``DEC``) is the true telescope pointing, the field
  centre plus ``ESO OCS OFFS DRA/DDEC`` (:func:`.tangent.telescope_pointing`, as for
  the frames of :func:`.night.simulate_night`). The pipeline (MUSE DRS 2.8.7) puts the
  pointing at the centre of the data it reduces plus the ``CRPIX`` of ``ASTROMETRY_WCS``;
  the static folder's ``ASTROMETRY_WCS`` is written for the simulated IFUs
  (:func:`.static.astrometry_wcs`). At position angle 0 this is what
  ``tests/test_dpu.py`` verifies; that the pipeline turns the offset with the position
  angle is what the pipeline test of ``tests/test_programme.py`` (PA 0 and 90) checks
  (not yet run with this convention).

What it does not model
----------------------
* No differential atmospheric refraction (the pipeline corrects for it by default;
  ``--lambdaref=-1`` switches that off), no field distortion, no derotator wobble:
  positions are exact in the tangent plane.
* No change of the instrument between nights (same flats, wavelength solution,
  slice illumination): the ILLUM is the lamp flat of the night, not a different
  slice illumination caused by a temperature change.
* No weather: the seeing varies, the transparency and the sky brightness do not
  (the sky model is :func:`.spectra.sky_spectrum`, the same in every exposure).
* No moving sources, no variability, no PSF change with wavelength.
* Exposures follow each other with the fixed overhead of :data:`.night.OVERHEAD`;
  nothing checks that the field is still above the horizon.

Programme files
---------------
:meth:`Programme.from_file` reads YAML (``.yaml``/``.yml``) or JSON (``.json``)::

    name: my-field              # programme name (default: the file name)
    seed: 1                     # optional, default 0
    field:                      # optional, default the built-in deep field
      name: SIM-DEEP-FIELD
      ra: 53.1625               # degrees
      dec: -27.7914
    calibrations:               # optional: counts passed to NightPlan.for_night
      n_bias: 3
      n_dark: 0
    nights:
      - night: 2026-11-20       # local evening date
        obs:
          - posang: 0           # degrees
            exptime: 900        # seconds, default 900
            dithers: [[0, 0], [1.2, 0.4], [-0.8, 1.0], [0.4, -1.2]]   # arcsec West, North
      - night: 2026-11-21
        calibrations: false     # optional, default true: no bias, flat, arc... this night
        obs:
          - {posang: 90}        # default dithers: DEEP_FIELD_DITHERS

The built-in programmes are in :data:`BUILTIN_PROGRAMMES` (:meth:`Programme.named`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from ..exceptions import ConfigurationError
from ..vocabulary import FrameType
from .model import InstrumentModel
from .night import EXPTIMES, OVERHEAD, SCIENCE_FIELD, NightPlan, PlannedExposure
from .scene import Galaxy, Scene, Star
from .tangent import radec_to_tan, tan_to_radec, telescope_pointing

#: Dither offsets (arcsec West, North) of the exposures of an OB: a few arcsec, as in
#: the MUSE deep fields, but small enough in y that a star stays on a 1-2 IFU strip.
DEEP_FIELD_DITHERS = ((0.0, 0.0), (1.2, 0.3), (-0.9, -0.6), (0.4, 1.0))
#: Exposure time of the attached illumination flat (s).
ILLUM_EXPTIME = 10.0
#: First OB of a night starts at this time after the night's evening date (UTC), after
#: the standard star of :class:`.NightPlan`.
FIRST_OB = timedelta(days=1, hours=1, minutes=30)
#: Stars near the top corners of the field (sky offsets, arcsec): at position angle 90
#: (270) the star on the East (West) corner lands on IFUs 1-2, as does every star of
#: the top strip at position angle 0.
CORNER_STARS = (Star(dx=-27.0, dy=27.0, flux_5500=6e-16, temperature=6500.0),
                Star(dx=27.0, dy=27.0, flux_5500=6e-16, temperature=6500.0))


@dataclass(frozen=True)
class Field:
    """A field on the sky: its centre and its sources.

    Parameters
    ----------
    scene : Scene
        The sources; their ``dx``, ``dy`` are sky offsets from the centre (arcsec, +x
        West, +y North) and their name is the target name.
    ra, dec : float
        Field centre (degrees, ICRS).
    """

    scene: Scene
    ra: float = SCIENCE_FIELD[0]
    dec: float = SCIENCE_FIELD[1]

    @property
    def name(self) -> str:
        """Target name (``OBJECT``)."""
        return self.scene.name

    @classmethod
    def deep_field(cls, ra: float = SCIENCE_FIELD[0], dec: float = SCIENCE_FIELD[1],
                   name: str = "SIM-DEEP-FIELD") -> "Field":
        """The built-in field: :meth:`.Scene.default` plus :data:`CORNER_STARS`."""
        base = Scene.default()
        scene = dataclasses.replace(base, sources=list(base.sources) + list(CORNER_STARS),
                                    name=name)
        return cls(scene, float(ra), float(dec))

    def radec(self, dx: float, dy: float) -> tuple[float, float]:
        """RA, Dec (degrees) of the sky offset ``dx`` (West), ``dy`` (North) in arcsec."""
        return tan_to_radec(-dx, dy, self.ra, self.dec)

    def source_radec(self) -> list[tuple[float, float]]:
        """True RA, Dec (degrees) of every source, in the order of ``scene.sources``."""
        return [self.radec(s.dx, s.dy) for s in self.scene.sources]

    def instrument_offsets(self, dx: float, dy: float, ra_ptg: float, dec_ptg: float,
                           posang: float) -> tuple[float, float]:
        """Where a source at sky offset ``(dx, dy)`` appears in the instrument frame.

        Parameters
        ----------
        dx, dy : float
            Sky offset of the source from the field centre (arcsec, West, North).
        ra_ptg, dec_ptg : float
            Telescope pointing (degrees): the centre of the instrument's field.
        posang : float
            Position angle (degrees, North through East) of the instrument's +y axis.

        Returns
        -------
        (float, float)
            Offsets along the instrument's x and y axes (arcsec) from the field centre,
            the coordinates :mod:`.scene` places sources by.
        """
        ra, dec = self.radec(dx, dy)
        xi, eta = radec_to_tan(ra, dec, ra_ptg, dec_ptg)   # East, North (arcsec)
        c, s = math.cos(math.radians(posang)), math.sin(math.radians(posang))
        # Instrument axes on the sky: +y at PA posang, +x (West at PA 0) 90 deg clockwise.
        return -xi * c + eta * s, xi * s + eta * c

    def instrument_to_radec(self, x: float, y: float, ra_ptg: float, dec_ptg: float,
                            posang: float) -> tuple[float, float]:
        """RA, Dec (degrees) of the instrument-frame offset ``(x, y)`` (arcsec).

        The inverse of :meth:`instrument_offsets` for a telescope pointing
        ``(ra_ptg, dec_ptg)`` (degrees) and position angle ``posang`` (degrees).
        """
        c, s = math.cos(math.radians(posang)), math.sin(math.radians(posang))
        return tan_to_radec(-x * c + y * s, x * s + y * c, ra_ptg, dec_ptg)

    def scene_for(self, ra_ptg: float, dec_ptg: float, posang: float) -> Scene:
        """The scene as the instrument sees it at this pointing and position angle."""
        out = []
        for src in self.scene.sources:
            x, y = self.instrument_offsets(src.dx, src.dy, ra_ptg, dec_ptg, posang)
            changes = {"dx": x, "dy": y}
            if isinstance(src, Galaxy):  # its major axis is measured from instrument +x
                changes["position_angle"] = src.position_angle - posang
            out.append(dataclasses.replace(src, **changes))
        return dataclasses.replace(self.scene, sources=out)


@dataclass(frozen=True)
class ObservingBlock:
    """One OB: an ILLUM, then dithered exposures at one position angle.

    Parameters
    ----------
    posang : float
        Position angle of the instrument (degrees, North through East).
    dithers : sequence of (float, float)
        Telescope offset of each exposure from the field centre (arcsec West, North).
    exptime : float
        Exposure time of each science exposure (s).
    illum : bool
        Take an attached illumination flat at the start of the OB.
    """

    posang: float = 0.0
    dithers: tuple = DEEP_FIELD_DITHERS
    exptime: float = EXPTIMES[FrameType.OBJECT]
    illum: bool = True

    def __post_init__(self):
        d = tuple((float(x), float(y)) for x, y in self.dithers)
        if not d:
            raise ConfigurationError("an OB needs at least one exposure (dithers)")
        if self.exptime <= 0:
            raise ConfigurationError(f"exposure time must be > 0 s, got {self.exptime}")
        object.__setattr__(self, "dithers", d)
        object.__setattr__(self, "posang", float(self.posang) % 360.0)


@dataclass(frozen=True)
class ProgrammeNight:
    """One night of a programme: its evening date and its OBs, in order.

    ``calibrations`` False: the night has no calibration frames of its own (no bias,
    dark, flat, arc, twilight flat or standard star), only its OBs.
    """

    night: str
    obs: tuple[ObservingBlock, ...]
    calibrations: bool = True


@dataclass(frozen=True)
class Programme:
    """A field observed over several nights (see the module docstring).

    Parameters
    ----------
    name : str
        Programme name.
    field : Field
        What is observed.
    nights : sequence of ProgrammeNight
        The nights, each with its OBs.
    calibrations : dict
        Exposure counts of each night's calibrations, passed to
        :meth:`.NightPlan.for_night` (``n_bias``, ``n_dark``, ``n_flat``,
        ``n_arc_per_lamp``, ``n_skyflat``, ``n_std``).
    seed : int
        Default seed of :func:`simulate_programme`.
    prog_id : str
        ESO programme id of the science frames.
    """

    name: str
    field: Field
    nights: tuple[ProgrammeNight, ...]
    calibrations: dict = dataclasses.field(default_factory=dict, compare=False)
    seed: int = 0
    prog_id: str = "0118.A-0001(A)"

    def __post_init__(self):
        if not self.nights:
            raise ConfigurationError(f"programme {self.name!r} has no nights")
        names = [n.night for n in self.nights]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"programme {self.name!r} lists a night twice: {names}")
        bad = set(self.calibrations) - _CALIBRATION_KEYS
        if bad:
            raise ConfigurationError(f"unknown calibration counts {sorted(bad)}; "
                                     f"known: {sorted(_CALIBRATION_KEYS)}")

    # -------------------------------------------------------------- building
    @classmethod
    def named(cls, name: str) -> "Programme":
        """A built-in programme (:data:`BUILTIN_PROGRAMMES`).

        Raises
        ------
        ConfigurationError
            If there is no built-in programme of that name.
        """
        try:
            return BUILTIN_PROGRAMMES[name]()
        except KeyError:
            raise ConfigurationError(f"no built-in programme named {name!r}; known: "
                                     f"{sorted(BUILTIN_PROGRAMMES)}") from None

    @classmethod
    def from_dict(cls, spec: dict, name: str = "programme") -> "Programme":
        """A programme from its file contents (format in the module docstring).

        Raises
        ------
        ConfigurationError
            On a missing or malformed entry.
        """
        if not isinstance(spec, dict) or not isinstance(spec.get("nights"), list):
            raise ConfigurationError("a programme needs a list 'nights'")
        f = spec.get("field") or {}
        try:
            fld = Field.deep_field(ra=float(f.get("ra", SCIENCE_FIELD[0])),
                                   dec=float(f.get("dec", SCIENCE_FIELD[1])),
                                   name=str(f.get("name", "SIM-DEEP-FIELD")))
            nights = []
            for n in spec["nights"]:
                obs = [ObservingBlock(posang=float(o.get("posang", 0.0)),
                                      dithers=tuple(o.get("dithers", DEEP_FIELD_DITHERS)),
                                      exptime=float(o.get("exptime", EXPTIMES[FrameType.OBJECT])),
                                      illum=bool(o.get("illum", True)))
                       for o in n.get("obs", [])]
                own = n.get("calibrations", True)
                if not isinstance(own, bool):
                    raise ConfigurationError(f"night {n['night']}: 'calibrations' is true or false, "
                                             f"got {own!r}")
                nights.append(ProgrammeNight(str(n["night"]), tuple(obs), own))
            cal = {k: int(v) for k, v in (spec.get("calibrations") or {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ConfigurationError):
                raise
            raise ConfigurationError(f"malformed programme {name!r}: {exc!r}") from exc
        return cls(str(spec.get("name", name)), fld, tuple(nights), cal,
                   seed=int(spec.get("seed", 0)))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Programme":
        """Read a programme file (YAML ``.yaml``/``.yml`` or JSON ``.json``).

        Raises
        ------
        ConfigurationError
            If the file cannot be read or parsed, or is not a programme.
        """
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise ConfigurationError(f"cannot read programme file {p}: {exc}") from exc
        try:
            if p.suffix.lower() in (".yaml", ".yml"):
                import yaml

                spec = yaml.safe_load(text)
            else:
                spec = json.loads(text)
        except Exception as exc:  # the parsers' errors share no base class
            raise ConfigurationError(f"cannot parse programme file {p}: {exc}") from exc
        return cls.from_dict(spec, name=p.stem)

    @classmethod
    def resolve(cls, name_or_path: str | os.PathLike) -> "Programme":
        """A built-in programme by name, else a programme file."""
        if str(name_or_path) in BUILTIN_PROGRAMMES:
            return cls.named(str(name_or_path))
        if Path(name_or_path).is_file():
            return cls.from_file(name_or_path)
        raise ConfigurationError(f"{name_or_path!r} is neither a built-in programme "
                                 f"({', '.join(sorted(BUILTIN_PROGRAMMES))}) nor a file")

    # -------------------------------------------------------------- planning
    def plan(self, ifus: Sequence[int] = (1, 2), seed: int | None = None) -> list[NightPlan]:
        """The plan of every night: its calibrations (:class:`.NightPlan`) and its OBs.

        Parameters
        ----------
        ifus : sequence of int
            Simulated IFUs (the night's standard star is placed on them).
        seed : int, optional
            Seeds the seeing of each exposure (default ``self.seed``).

        Returns
        -------
        list of NightPlan
            One per night, exposures in time order. Science exposures carry the
            options ``posang``-rotated scene, pointing, seeing and the header fields
            ``ESO INS DROT POSANG``, ``ESO ADA POSANG``, ``ESO OCS OFFS DRA/DDEC``.
        """
        seed = self.seed if seed is None else int(seed)
        plans = []
        for k, pn in enumerate(self.nights):
            counts = dict(self.calibrations) if pn.calibrations else {key: 0 for key in _CALIBRATION_KEYS}
            cal = NightPlan.for_night(pn.night, ifus=ifus, n_object=0, seed=seed * 1000 + k,
                                      scene=self.field.scene, **counts)
            rng = np.random.default_rng([seed, k, 0x0B5])
            median_seeing = float(rng.uniform(0.6, 1.0))
            start = datetime.strptime(pn.night, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            t = start + FIRST_OB
            exps: list[PlannedExposure] = []
            for j, ob in enumerate(pn.obs):
                obs_id = 200000 + 1000 * (seed % 1000) + 10 * k + j
                tpl_start = t
                posang = {"ESO INS DROT POSANG": ob.posang, "ESO ADA POSANG": ob.posang}
                n_tpl = len(ob.dithers) + (1 if ob.illum else 0)
                common = dict(target=self.field.name, obs_id=obs_id, tpl_nexp=n_tpl,
                              tpl_start=tpl_start, prog_id=self.prog_id)
                i_tpl = 0
                if ob.illum:
                    i_tpl += 1
                    exps.append(PlannedExposure(FrameType.ILLUM, t, ILLUM_EXPTIME, dict(
                        common, ra=self.field.ra, dec=self.field.dec, tpl_expno=i_tpl,
                        extra=dict(posang))))
                    t += timedelta(seconds=ILLUM_EXPTIME + OVERHEAD)
                for ox, oy in ob.dithers:
                    i_tpl += 1
                    # The telescope moves by (ox West, oy North) from the field centre; the
                    # header holds that true pointing, as real headers do (.tangent).
                    ra, dec = telescope_pointing(self.field.ra, self.field.dec, ox, oy)
                    seeing = float(np.clip(median_seeing * rng.lognormal(0.0, 0.1), 0.4, 2.0))
                    exps.append(PlannedExposure(FrameType.OBJECT, t, ob.exptime, dict(
                        common, scene=self.field.scene_for(ra, dec, ob.posang), ra=ra, dec=dec,
                        seeing=round(seeing, 3), tpl_expno=i_tpl,
                        extra=dict(posang, **{"ESO OCS OFFS DRA": ox, "ESO OCS OFFS DDEC": oy}))))
                    t += timedelta(seconds=ob.exptime + OVERHEAD)
            # Running exposure numbers of the night, in time order.
            merged = sorted(list(cal.exposures) + exps, key=lambda e: e.date_obs)
            numbered = tuple(dataclasses.replace(e, options=dict(e.options, exp_no=i + 1))
                             for i, e in enumerate(merged))
            plans.append(NightPlan(pn.night, numbered))
        return plans


_CALIBRATION_KEYS = {"n_bias", "n_dark", "n_flat", "n_arc_per_lamp", "n_skyflat", "n_std"}


def _deep_field() -> Programme:
    return Programme("deep-field", Field.deep_field(), (
        ProgrammeNight("2026-11-20", (ObservingBlock(posang=0.0),)),
        ProgrammeNight("2026-11-21", (ObservingBlock(posang=90.0),)),
    ))


def _deep_field_4pa() -> Programme:
    return Programme("deep-field-4pa", Field.deep_field(), (
        ProgrammeNight("2026-11-20", (ObservingBlock(posang=0.0), ObservingBlock(posang=90.0))),
        ProgrammeNight("2026-11-21", (ObservingBlock(posang=180.0),
                                      ObservingBlock(posang=270.0))),
    ))


def _deep_field_shared_cal() -> Programme:
    return Programme("deep-field-shared-cal", Field.deep_field(), (
        ProgrammeNight("2026-11-20", (ObservingBlock(posang=0.0),)),
        ProgrammeNight("2026-11-21", (ObservingBlock(posang=90.0),), calibrations=False),
    ))


#: Built-in programmes: ``deep-field`` (2 nights x 1 OB x 4 exposures, PA 0 then 90),
#: ``deep-field-4pa`` (2 nights x 2 OBs x 4 exposures, PA 0, 90, 180, 270) and
#: ``deep-field-shared-cal`` (``deep-field`` whose second night has no calibrations: its
#: reduction takes those of the first).
BUILTIN_PROGRAMMES = {"deep-field": _deep_field, "deep-field-4pa": _deep_field_4pa,
                      "deep-field-shared-cal": _deep_field_shared_cal}


def simulate_programme(outdir: str | os.PathLike, programme: Programme | str,
                       ifus: Sequence[int] = (1, 2), mode: str = "WFM-NOAO-N",
                       seed: int | None = None, progress: bool = True,
                       static: bool = True) -> dict[str, list[Path]]:
    """Write the raw frames of every night of a programme.

    Parameters
    ----------
    outdir : path
        Writes ``outdir/<night>/MUSE.<DATE-OBS>.fits`` for each night and, once, the
        static calibrations into ``outdir/static/``.
    programme : Programme or str
        The programme, or a built-in name or a file (:meth:`Programme.resolve`).
    ifus : sequence of int
        IFUs to simulate (1-24); ~36 MB per IFU and frame.
    mode : str
        Instrument mode (``WFM-NOAO-N`` or ``WFM-NOAO-E``).
    seed : int, optional
        Seed (default the programme's): the same arguments give identical files.
    progress : bool
        Show a tqdm progress bar per night.
    static : bool
        Also write the static calibrations.

    Returns
    -------
    dict
        Night -> raw files written, in time order; the field's stars and their fluxes
        go to ``outdir/STAR_CATALOG.ecsv`` (:mod:`musewise.inm.truth`).
    """
    from .static import write_static_calibrations
    from .truth import CATALOGUE_NAME, write_star_catalogue

    prog = programme if isinstance(programme, Programme) else Programme.resolve(programme)
    seed = prog.seed if seed is None else int(seed)
    model = InstrumentModel(ifus=ifus, mode=mode, seed=seed, scene=prog.field.scene)
    plans = prog.plan(ifus=ifus, seed=seed)   # plan first: a bad programme writes nothing
    out = Path(outdir)
    if static:  # ASTROMETRY_WCS for the simulated IFUs, as simulate_night writes it
        write_static_calibrations(out / "static", mode=mode, ifus=ifus)
    # the truth QC compares the cubes' stars with (musewise.qc.starflux)
    write_star_catalogue(out / CATALOGUE_NAME, prog.field.scene, prog.field.ra, prog.field.dec)
    return {p.night: p.run(model, out / p.night, progress=progress) for p in plans}


__all__ = ["Programme", "ProgrammeNight", "ObservingBlock", "Field", "simulate_programme",
           "BUILTIN_PROGRAMMES", "DEEP_FIELD_DITHERS", "CORNER_STARS", "tan_to_radec",
           "radec_to_tan"]
