"""musewise.inm: the instrument model - raw MUSE frames for the real ESO pipeline.

Public API::

    from musewise.inm import InstrumentModel, Scene, simulate_night, write_static_calibrations, NightPlan
    write_static_calibrations(outdir, mode="WFM-NOAO-N") -> {PRO CATG: Path}
    simulate_night(outdir, night="2026-11-20", ifus=(1, 2), ...) -> [raw Path, ...]
    InstrumentModel(ifus=(1, 2), mode=..., seed=...).write_frame(path, FrameType.X, date_obs, exptime, **kw)
    simulate_programme(outdir, "deep-field", ifus=(1, 2), seed=0) -> {night: [raw Path, ...]}

Modules: :mod:`.detector` (CCD, quadrants, noise, digitisation), :mod:`.layout` (slices,
wavelength solution, field geometry), :mod:`.spectra` (throughput, atmosphere, night sky),
:mod:`.lamps` (arc lines, flat lamp), :mod:`.scene` (sources), :mod:`.headers`,
:mod:`.fitsio` (streaming writer), :mod:`.model` (InstrumentModel), :mod:`.static`,
:mod:`.spoil` (defects put on purpose into frames - a lamp off in one IFU, a hot column,
a shifted arc - so that QC is tested against failures it must catch), :mod:`.night` (time line of a night: afternoon calibrations on the night date from
18:00 UTC, twilight flats 23:40 UTC, standard and science from 01:00 UTC the next date),
:mod:`.programme` (one field over several nights in rotated, dithered OBs with an
attached ILLUM flat each; what it models and what not is in its docstring).

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
muse_standard      PIXTABLE_STD (2+ IFUs); EXTINCT_TABLE, STD_FLUX_TABLE          see below
muse_scipost       PIXTABLE_OBJECT (all IFUs, all exposures); EXTINCT_TABLE,     --skymethod=model
                   STD_RESPONSE, SKY_LINES, LSF_PROFILE (one per IFU),            (default)
                   ASTROMETRY_WCS; optional STD_TELLURIC, FILTER_LIST             --lambdaref=-1
                                                                                 --filter=white,...
=================  ===========================================================  ==========

Wall times for one IFU on the 2-core machine (frames from ``simulate_night(ifus=(1,))``,
which itself takes ~4 s): muse_bias 8.6 s, muse_dark 12.6 s, muse_flat 13.9 s (48
slices of 77.0 px found), muse_wavecal 12.1 s (60-63 arc lines identified per slice,
fit RMS ~0.011 Angstrom), muse_lsf 21.3 s, muse_twilight 49 s, muse_scibasic 9.2 s
(STD) / 19.2 s (2 OBJECT), muse_scipost 34.9 s (2 exposures -> DATACUBE_FINAL 306 x 13
x 3681, 4750-9350 Angstrom, + IMAGE_FOV per filter).

Facts for the reduction layer:

* Sky subtraction, muse_scipost ``--skymethod=model`` (the pipeline's default, and
  musewise's): it needs SKY_LINES and the LSF_PROFILE of every IFU reduced (else
  "Missing required sky lines frame", "Missing required LSF frames"). SKY_LINES is
  read from its ``LINES`` extension with columns ``name``, ``group``, ``lambda``
  (Angstrom), ``flux`` and ``dq``; without ``dq`` it is refused ("table column 'dq'
  not found") and the flux unit must be spelled ``10**(-20)*erg/(s cm^2 arcsec^2)``
  (or ``erg/(s cm^2 arcsec^2)``): astropy's spelling is refused. The recipe builds the
  sky spectrum from the darkest ``skymodel_fraction`` (10 %) of the field, refits the
  line fluxes ("Sky line fit finished successfully. Offset -0.055 A (at 5577 A) ...
  0.004 A (at 9049 A)") and subtracts lines and continuum. One IFU, one exposure:
  muse_lsf 87 s and muse_scipost 134 s on the loaded 2-core machine (58-88 s with
  ``skymethod=none``). Residuals in the fainter half of the spaxels, as a fraction of
  the simulated line (:func:`.spectra.sky_line_in_cube`): 1.5 % (5577 A), 0.9 % (6300 A),
  0.9 % (8399 A); the lines before subtraction are 0.98x the simulated
  (``tests/test_dpu.py::test_cascade_cube_is_sky_subtracted_with_the_pipeline_sky_model``).
* STD_RESPONSE must say ``ESO DRS MUSE FLUX FFCORR = T`` (made from pixel tables
  corrected by the flat-field spectrum, as muse_scibasic writes them); without it
  muse_scipost "reverts" that correction and the fluxes come out 1.79x (5577 A) to
  0.60x (8400 A) the model's. With it, the sky lines in a ``skymethod=none`` cube are
  0.94-0.95x the model's line (times the extinction the pipeline corrects, see
  :func:`.spectra.sky_line_in_cube`) from 5577 to 9001 A; 0.98x once the static response
  also includes :func:`.model.detected_fraction`.
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
  zero in every plane (with ``--profile`` auto, circle and square; the log says "Half-sizes
  used for flux integration ... 0.43", "No valid data found for object 1") and the
  recipe exits with status -1. On two IFUs (the star at their common edge, a 24-spaxel
  strip) the default ``--profile=auto`` (smoothed Moffat) works: half-size 6.46 spaxels,
  reference FWHM 3.89 px (DIMM 3.63 px), 140 s on the loaded machine; its STD_RESPONSE
  is 0.926-0.958x :func:`.spectra.response_mag` from 5000 to 9000 A (median 0.944), i.e.
  within 3 % of the model's response of reduced data, which includes
  :func:`.model.detected_fraction` (0.953). The cascade builds ``standard`` whenever the
  night has an STD frame; when muse_standard fails (one IFU) scipost takes the static
  ``STD_RESPONSE`` and its run's calibration choices say "static fallback".
* The STD frame's pointing is offset so the star lands on the simulated IFUs; the
  recipe warns that the reference table is 0.46 arcmin from the pointing (harmless).
* Position angle (:mod:`.programme`): the pipeline rotates each exposure by ``ESO INS
  DROT POSANG`` (``ESO INS DROT MODE = SKY``), North through East of the instrument's
  +y axis, and takes the header RA/DEC as the centre of the data it reduces. Verified
  on IFU 1 (``tests/test_programme.py``): a star reduced from a PA 0 and a PA 90
  exposure (``--lambdaref=-1``) lies 0.05 and 0.07 arcsec from its simulated RA/Dec,
  0.04 arcsec apart; muse_scibasic applies the OB's ILLUM ("Applying ILLUM flat-field").
* Cube orientation: RA decreases with x (CD1_1 < 0), Dec increases with y; a source's
  true RA/Dec is :meth:`.scene.Scene.sky_positions` of the field centre
  (:data:`.night.SCIENCE_FIELD`), and the cube's WCS maps it to where the star is;
  galaxy H-alpha
  at 6891.1 A (expected 6890.9), [OIII] 5257.4 (5257.2), Lyman-alpha emitter 6686.1
  (6686.2); sky lines 5577.39, 6299.89, 8344.89 A (1.25 A sampling).
"""

from .model import SUPPORTED_MODES, InstrumentModel
from .night import NightPlan, PlannedExposure, simulate_night
from .programme import Field, ObservingBlock, Programme, ProgrammeNight, simulate_programme
from .scene import STANDARD_STAR, Galaxy, LymanAlphaEmitter, Scene, StandardStar, Star
from .spoil import Spoil, SpoilKind
from .static import write_static_calibrations

__all__ = ["InstrumentModel", "Scene", "simulate_night", "write_static_calibrations",
           "NightPlan", "PlannedExposure", "Star", "Galaxy", "LymanAlphaEmitter",
           "StandardStar", "STANDARD_STAR", "SUPPORTED_MODES", "Programme", "ProgrammeNight",
           "ObservingBlock", "Field", "simulate_programme", "Spoil", "SpoilKind"]
