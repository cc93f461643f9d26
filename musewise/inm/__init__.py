"""musewise.inm: the instrument model - raw MUSE frames for the real ESO pipeline.

Public API::

    from musewise.inm import InstrumentModel, Scene, simulate_night, write_static_calibrations, NightPlan
    write_static_calibrations(outdir, mode="WFM-NOAO-N") -> {PRO CATG: Path}
    simulate_night(outdir, night="2026-11-20", ifus=(1, 2), ...) -> [raw Path, ...]
    InstrumentModel(ifus=(1, 2), mode=..., seed=...).write_frame(path, FrameType.X, date_obs, exptime, **kw)

Modules: :mod:`.detector` (CCD, quadrants, noise, digitisation), :mod:`.layout` (slices,
wavelength solution, field geometry), :mod:`.spectra` (throughput, atmosphere, night sky),
:mod:`.lamps` (arc lines, flat lamp), :mod:`.scene` (sources), :mod:`.headers`,
:mod:`.fitsio` (streaming writer), :mod:`.model` (InstrumentModel), :mod:`.static`,
:mod:`.night` (time line of a night: afternoon calibrations on the night date from
18:00 UTC, twilight flats 23:40 UTC, standard and science from 01:00 UTC the next date).

Reducing the simulated frames with esorex (MUSE DRS 2.8.7), verified on one IFU
--------------------------------------------------------------------------------
Tags in the set-of-frames (SOF) file, one ``path TAG`` per line. Per-IFU products are
named ``<CATG>-NN.fits`` (``NN`` = IFU) when run with ``--nifu=NN``. ``static/`` is
the folder written by :func:`write_static_calibrations`.

=================  ===========================================================  ==========
recipe             SOF (raw tag <- DPR TYPE; calibrations)                        parameters
=================  ===========================================================  ==========
muse_bias          BIAS (BIAS) x3                                                --nifu=N
muse_dark          DARK (DARK) x3; MASTER_BIAS                                   --nifu=N
muse_flat          FLAT (FLAT,LAMP) x3; MASTER_BIAS, MASTER_DARK                 --nifu=N
muse_wavecal       ARC (WAVE; Ne, Xe, HgCd); MASTER_BIAS, MASTER_DARK,           --nifu=N
                   MASTER_FLAT, TRACE_TABLE, LINE_CATALOG
muse_lsf           ARC x3; MASTER_BIAS, TRACE_TABLE, WAVECAL_TABLE, LINE_CATALOG --nifu=N
muse_twilight      SKYFLAT (FLAT,SKY) x3; MASTER_BIAS, MASTER_DARK, MASTER_FLAT, (no --nifu:
                   TRACE_TABLE, WAVECAL_TABLE, GEOMETRY_TABLE                     not a parameter)
muse_scibasic      OBJECT | STD; MASTER_BIAS, MASTER_DARK, MASTER_FLAT,          --nifu=N
                   TRACE_TABLE, WAVECAL_TABLE, GEOMETRY_TABLE
muse_standard      PIXTABLE_STD; EXTINCT_TABLE, STD_FLUX_TABLE                    see below
muse_scipost       PIXTABLE_OBJECT (all IFUs, all exposures); EXTINCT_TABLE,     --skymethod=none
                   STD_RESPONSE, ASTROMETRY_WCS; optional FILTER_LIST             --lambdaref=-1
                                                                                 --filter=white,...
=================  ===========================================================  ==========

Wall times for one IFU on the 2-core machine (frames from ``simulate_night(ifus=(1,))``,
which itself takes ~4 s): muse_bias 8.6 s, muse_dark 12.6 s, muse_flat 13.9 s (48
slices of 77.0 px found), muse_wavecal 12.1 s (60-63 arc lines identified per slice,
fit RMS ~0.011 Angstrom), muse_lsf 21.3 s, muse_twilight 49 s, muse_scibasic 9.2 s
(STD) / 19.2 s (2 OBJECT), muse_scipost 34.9 s (2 exposures -> DATACUBE_FINAL 306 x 13
x 3681, 4750-9350 Angstrom, + IMAGE_FOV per filter).

Facts for the reduction layer:

* ``--skymethod=none`` in muse_scipost: ``model`` needs SKY_LINES (written here,
  format not verified with the pipeline) and a sky region; untested.
* The simulator has no differential atmospheric refraction; the pipeline corrects
  for it from the airmass by default (``--lambdaref=7000``), which moves the light by
  up to 0.42 arcsec at 4750 A and a white-light centroid by 0.12 arcsec (airmass 1.25):
  musewise passes ``--lambdaref=-1`` (:data:`musewise.dpu.config.DEFAULT_PARAMETERS`).
* Astrometry: without an ``ASTROMETRY_WCS`` muse_scipost puts the pointing at the
  centre of the pixel tables it is given, which for a subset of IFUs is not the field
  centre (IFU 1 alone: 27.6 arcsec north of it, so every Dec came out 27.6 arcsec too
  small). The static ``ASTROMETRY_WCS`` written
  for the simulated IFUs (:func:`.static.astrometry_wcs`) corrects that offset; reduce
  the IFUs the night was simulated with.
* muse_twilight processes all IFUs present; it rejects ``--nifu``.
* muse_standard on a one-IFU STD (a 12-spaxel-high strip) finds the star at the
  expected place (0.2-0.3 arcsec) and writes DATACUBE_STD, but its integrated flux is
  zero in every plane (with ``--profile`` auto, circle and square) and the recipe
  exits with status -1. So with one IFU, use the static ``STD_RESPONSE`` from
  :func:`write_static_calibrations` in muse_scipost. Not yet tried with 2+ IFUs.
* The STD frame's pointing is offset so the star lands on the simulated IFUs; the
  recipe warns that the reference table is 0.46 arcmin from the pointing (harmless).
* Cube orientation: RA decreases with x (CD1_1 < 0), Dec increases with y; a source's
  true RA/Dec is :meth:`.scene.Scene.sky_positions` of the field centre
  (:data:`.night.SCIENCE_FIELD`), and the cube's WCS maps it to where the star is;
  galaxy H-alpha
  at 6891.1 A (expected 6890.9), [OIII] 5257.4 (5257.2), Lyman-alpha emitter 6686.1
  (6686.2); sky lines 5577.39, 6299.89, 8344.89 A (1.25 A sampling).
"""

from .model import SUPPORTED_MODES, InstrumentModel
from .night import NightPlan, PlannedExposure, simulate_night
from .scene import STANDARD_STAR, Galaxy, LymanAlphaEmitter, Scene, StandardStar, Star
from .static import write_static_calibrations

__all__ = ["InstrumentModel", "Scene", "simulate_night", "write_static_calibrations",
           "NightPlan", "PlannedExposure", "Star", "Galaxy", "LymanAlphaEmitter",
           "StandardStar", "STANDARD_STAR", "SUPPORTED_MODES"]
