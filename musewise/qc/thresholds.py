"""QC thresholds per product type, and the verdict they give on a set of measurements.

Every threshold is a traitlet of :class:`QCThresholds`, settable in the site's
``musewise_config.py``::

    c.QCThresholds.bias_ron_bad = 4.5        # e-
    c.QCConfig.claim_minutes = 60

A measurement beyond its ``*_warn`` limit flags the product IFU ``warning``;
beyond ``*_bad``, ``bad``. A value that could not be measured (NaN) passes:
missing numbers are reported in the notebook, not guessed at.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from traitlets import Bool, Float, Int, Unicode
from traitlets.config import Configurable

from ..vocabulary import QualityFlag

#: QC type (notebook ``qc_<type>.ipynb``, run recipe ``qc_<type>``) of each product category.
QC_TYPES = {
    "MASTER_BIAS": "bias",
    "MASTER_DARK": "dark",
    "MASTER_FLAT": "flat",
    "WAVECAL_TABLE": "wavecal",
    "LSF_PROFILE": "lsf",
    "TWILIGHT_CUBE": "twilight",
    "STD_RESPONSE": "response",
    "DATACUBE_FINAL": "cube",
    # a cube cleaned by ZAP is measured as any cube (the rules of ``cube`` apply) and against the cube before
    "DATACUBE_ZAP": "zap",
    "DATACUBE_SKYFLAT": "twilight",  # muse_twilight's resampled sky flats: as flat over the field as its correction
    "TRACE_TABLE": "trace",
    "WAVECAL_RESIDUALS": "residuals",
    "PIXTABLE_OBJECT": "pixtable",
    "PIXTABLE_STD": "pixtable",
    "PIXTABLE_REDUCED": "pixtable",
    "OBJECT_RED": "reduced",
    "STD_RED": "reduced",
    "SKY_RED": "reduced",
    "IMAGE_FOV": "fov",
    "PREVIEW_FOV": "fov",
    # muse_scipost's sky model (skymethod=model, --save skymodel): one QC type for the sky of an exposure
    "SKY_SPECTRUM": "sky",
    "SKY_LINES": "sky",
    "SKY_CONTINUUM": "sky",
    "SKY_MASK": "sky",
    "SKY_IMAGE": "sky",
    "DATACUBE_STD": "std",
    "STD_TELLURIC": "std",
    "STD_FLUXES": "std",
    "OFFSET_LIST": "align",
    "SOURCE_LIST": "align",
    "OUTPUT_WCS": "grid",  # the field's grid (field_grid)
    "SOURCE_CATALOG": "sources",  # a cube's emission-line and continuum sources (step sources)
}

#: QC types whose measurement includes another's, and so are judged by its rules too.
INHERITS = {"zap": ("cube",)}


class QCThresholds(Configurable):
    """Limits that turn QC numbers into quality flags (``warning`` and ``bad``)."""

    # -- master bias
    bias_ron_warn = Float(3.5, help="Read noise of any quadrant (e-) above which a MASTER_BIAS is flagged "
                                    "'warning' (MUSE CCDs: ~2.5-3 e-).").tag(config=True)
    bias_ron_bad = Float(5.0, help="Read noise of any quadrant (e-) above which a MASTER_BIAS is 'bad'.").tag(config=True)
    bias_level_warn = Float(1.0, help="|median| of the master bias in any quadrant (adu) above which it is "
                                      "'warning' (should be ~0 after overscan subtraction).").tag(config=True)
    bias_level_bad = Float(3.0, help="|median| of the master bias in any quadrant (adu) above which it is "
                                     "'bad'.").tag(config=True)
    bias_noise_ratio_warn = Float(1.5, help="Master noise over RON/sqrt(n raw) above which the combination "
                                            "is suspect ('warning').").tag(config=True)
    bias_noise_ratio_bad = Float(3.0, help="Master noise over RON/sqrt(n raw) above which it is 'bad'.").tag(config=True)
    bias_level_spread_warn = Float(5.0, help="Scatter of the raw bias level between the input frames (adu) "
                                             "above which it is 'warning'.").tag(config=True)
    bias_level_spread_bad = Float(20.0, help="Scatter of the raw bias level between the input frames (adu) "
                                            "above which it is 'bad'.").tag(config=True)
    bias_hot_columns_warn = Int(1, help="Columns of a MASTER_BIAS standing out of their quadrant (by more than "
                                        "10 robust sigma and 3 adu) from which it is 'warning': a clean master "
                                        "has none; one is a CCD glitch or a charge trap to look at.").tag(config=True)
    bias_hot_columns_bad = Int(5, help="Columns standing out from which a MASTER_BIAS is 'bad' (a read-out "
                                       "problem rather than one defect).").tag(config=True)
    # -- master dark
    dark_current_warn = Float(3.0, help="Dark current of any quadrant (count/pix/h) above which a MASTER_DARK "
                                        "is 'warning'.").tag(config=True)
    dark_current_bad = Float(10.0, help="Dark current of any quadrant (count/pix/h) above which it is 'bad'.").tag(config=True)
    dark_hot_fraction_warn = Float(0.01, help="Fraction of hot pixels above which a MASTER_DARK is 'warning'.").tag(config=True)
    dark_hot_fraction_bad = Float(0.05, help="Fraction of hot pixels above which it is 'bad'.").tag(config=True)
    # -- master flat
    flat_missing_slices_warn = Int(1, help="Slices missing from the TRACE_TABLE (of 48) from which a "
                                           "MASTER_FLAT is 'warning'.").tag(config=True)
    flat_missing_slices_bad = Int(1, help="Slices missing from the TRACE_TABLE (of 48) from which it is "
                                          "'bad' (any missing slice loses 1/48 of the field).").tag(config=True)
    flat_uniformity_warn = Float(0.10, help="Relative scatter of the slice flat levels above which a "
                                            "MASTER_FLAT is 'warning'.").tag(config=True)
    flat_uniformity_bad = Float(0.25, help="Relative scatter of the slice flat levels above which it is "
                                           "'bad'.").tag(config=True)
    flat_lamp_warn = Float(10000.0, help="Lamp level of a MASTER_FLAT before normalisation (adu, median over "
                                         "the CCD, ESO QC FLAT MASTER MEDIAN) below which it is 'warning': MUSE "
                                         "lamp flats are exposed to ~25000 adu (the instrument model's 27500); "
                                         "under 10000 a lamp is failing or the IFU's light path is partly "
                                         "blocked.").tag(config=True)
    flat_lamp_bad = Float(2000.0, help="Lamp level (adu) below which a MASTER_FLAT is 'bad': the lamp is off or "
                                       "nearly (under ~10 % of its normal light); the normalised master still "
                                       "looks flat, but its photon noise (~2.5 % per pixel for three flats at "
                                       "500 adu, 0.3 % at 27500 adu) enters every pixel it flat-fields.").tag(config=True)
    # -- wavelength calibration
    wavecal_rms_warn = Float(0.05, help="Residual RMS of the worst slice (Angstrom) above which a "
                                        "WAVECAL_TABLE is 'warning'.").tag(config=True)
    wavecal_rms_bad = Float(0.10, help="Residual RMS of the worst slice (Angstrom) above which it is "
                                       "'bad'.").tag(config=True)
    wavecal_min_lines_warn = Int(30, help="Fewest arc lines used in a slice below which a WAVECAL_TABLE "
                                          "is 'warning'.").tag(config=True)
    wavecal_min_lines_bad = Int(15, help="Fewest arc lines used in a slice below which it is 'bad'.").tag(config=True)
    wavecal_shift_warn = Float(0.3, help="Wavelength at the slice centres (Angstrom) against the median of the "
                                         "previous nights' solutions of the IFU, worst slice, above which a "
                                         "WAVECAL_TABLE is 'warning': night-to-night changes are a few 0.01 A; "
                                         "a quarter of a pixel (0.3 A) is a moved arc or grating.").tag(config=True)
    wavecal_shift_bad = Float(1.0, help="Wavelength change against the previous nights' (Angstrom) above which a "
                                        "WAVECAL_TABLE is 'bad' (cubes would be off by a pixel).").tag(config=True)
    # -- line spread function
    lsf_fwhm_warn = Float(3.6, help="Median LSF FWHM of an LSF_PROFILE (Angstrom) above which it is 'warning': "
                                    "MUSE's LSF is 2.4-3.0 A FWHM (the instrument model's 3.2 A); wider means a "
                                    "slice out of focus or blended arc lines.").tag(config=True)
    lsf_fwhm_bad = Float(4.5, help="Median LSF FWHM (Angstrom) above which an LSF_PROFILE is 'bad' (the sky "
                                   "model fitted with it would leave line residuals).").tag(config=True)
    lsf_spread_warn = Float(0.2, help="(max - min) / median of the slices' LSF FWHM above which an LSF_PROFILE is "
                                      "'warning' (the 48 slices of an IFU differ by ~10 %).").tag(config=True)
    lsf_spread_bad = Float(0.5, help="Relative spread of the slices' LSF FWHM above which it is 'bad' (some "
                                     "slice's fit failed).").tag(config=True)
    lsf_missing_slices_warn = Int(1, help="Slices without an LSF (of 48) from which an LSF_PROFILE is 'warning' "
                                          "(the sky of those slices is modelled with a wrong width).").tag(config=True)
    lsf_missing_slices_bad = Int(4, help="Slices without an LSF from which it is 'bad'.").tag(config=True)
    # -- twilight illumination correction
    twilight_rms_warn = Float(0.05, help="Relative scatter of a TWILIGHT_CUBE's correction over the field above "
                                         "which it is 'warning' (after the lamp flat the sky is flat to a few "
                                         "per cent).").tag(config=True)
    twilight_rms_bad = Float(0.15, help="Relative scatter of the correction above which it is 'bad' (a cloud "
                                        "or a wrongly normalised IFU).").tag(config=True)
    twilight_minrel_warn = Float(0.8, help="1st percentile of the correction relative to its median below which "
                                           "a TWILIGHT_CUBE is 'warning' (a vignetted or dead region).").tag(config=True)
    twilight_minrel_bad = Float(0.5, help="1st percentile relative to the median below which it is 'bad'.").tag(config=True)
    # -- standard-star response
    response_delta_warn = Float(0.1, help="Largest change (mag) of a STD_RESPONSE in any band against the "
                                          "median of the previous nights' above which it is 'warning': the "
                                          "throughput drifts by a few 0.01 mag a month; 0.1 mag is thin cloud "
                                          "or a star partly off the IFUs.").tag(config=True)
    response_delta_bad = Float(0.3, help="Largest change (mag) against the previous nights' above which a "
                                         "STD_RESPONSE is 'bad' (not to be used for flux calibration).").tag(config=True)
    # -- data cube
    cube_sky_snr_warn = Float(3.0, help="Significance (sigma) of the median sky-line residual above which a "
                                        "DATACUBE_FINAL is 'warning'.").tag(config=True)
    cube_sky_snr_bad = Float(10.0, help="Significance (sigma) of the median sky-line residual above which it "
                                        "is 'bad'.").tag(config=True)
    cube_fwhm_warn = Float(1.5, help="PSF FWHM of point sources (arcsec) above which a DATACUBE_FINAL is "
                                     "'warning'.").tag(config=True)
    cube_fwhm_bad = Float(2.5, help="PSF FWHM of point sources (arcsec) above which it is 'bad'.").tag(config=True)
    cube_seeing_ratio_warn = Float(1.5, help="PSF FWHM over the DIMM seeing of the header above which a "
                                             "DATACUBE_FINAL is 'warning': the image quality at the telescope is "
                                             "near or below the DIMM's; much wider means a defocus or exposures "
                                             "combined with wrong offsets.").tag(config=True)
    cube_seeing_ratio_bad = Float(2.0, help="PSF FWHM over the DIMM seeing above which it is 'bad'.").tag(config=True)
    cube_offset_warn = Float(1.0, help="Largest exposure offset of a combined cube's OFFSET_LIST (arcsec) above "
                                       "which it is 'warning': VLT pointing errors between dithers are a few "
                                       "tenths of an arcsec; more means the alignment matched the wrong "
                                       "sources.").tag(config=True)
    cube_star_dmag_warn = Float(0.1, help="Difference (mag) between the flux of the brightest catalogued star "
                                          "in a DATACUBE_FINAL and its catalogue flux (5000-9000 A) above which "
                                          "it is 'warning': MUSE's flux calibration holds to ~5 %; 10 % is a "
                                          "wrong response, a cloud or a star partly off the field.").tag(config=True)
    cube_star_dmag_bad = Float(0.3, help="Star flux against its catalogue (mag) above which a cube is 'bad' "
                                         "(not flux calibrated: a wrong or missing response).").tag(config=True)
    cube_offset_bad = Float(3.0, help="Largest exposure offset (arcsec) above which a combined cube is "
                                      "'bad'.").tag(config=True)
    # -- trace table (the slices' positions on the CCD; missing slices: flat_missing_slices_*)
    trace_width_min_warn = Float(70.0, help="Narrowest slice of a TRACE_TABLE (pix) below which it is 'warning': "
                                            "a MUSE slice is ~77 pix wide on the CCD (the instrument model's "
                                            "77.0); a narrower one was traced on a partly dark flat or an edge "
                                            "was lost.").tag(config=True)
    trace_width_min_bad = Float(60.0, help="Narrowest slice (pix) below which a TRACE_TABLE is 'bad' (the slice "
                                           "loses columns of sky).").tag(config=True)
    trace_width_max_warn = Float(84.0, help="Widest slice (pix) above which a TRACE_TABLE is 'warning': slices are "
                                            "84 pix apart, so a wider slice takes in its neighbour's gap.").tag(config=True)
    trace_width_max_bad = Float(95.0, help="Widest slice (pix) above which it is 'bad' (two slices traced as one).").tag(config=True)
    trace_width_spread_warn = Float(0.05, help="(widest - narrowest) / median slice width above which a TRACE_TABLE "
                                               "is 'warning' (MUSE slices differ by ~1 %).").tag(config=True)
    trace_width_spread_bad = Float(0.15, help="Relative spread of the slice widths above which it is 'bad'.").tag(config=True)
    trace_geometry_warn = Int(1, help="Slices whose edges are not on either side of their centre, or pairs of "
                                      "neighbouring slices whose edges cross, from which a TRACE_TABLE is "
                                      "'warning'.").tag(config=True)
    trace_geometry_bad = Int(1, help="Edge errors or crossings from which it is 'bad' (any: pixels of one "
                                     "slice are given to another).").tag(config=True)
    trace_shift_warn = Float(0.5, help="Slice centres against the median of the IFU's earlier nights' traces "
                                       "(pix, worst slice) above which a TRACE_TABLE is 'warning': the image of "
                                       "an IFU on its CCD moves by < 0.1 pix from night to night (0.000 pix "
                                       "between two simulated nights).").tag(config=True)
    trace_shift_bad = Float(2.0, help="Shift against the earlier traces (pix) above which it is 'bad': the IFU "
                                      "or its CCD moved (an intervention), or the flat is another IFU's.").tag(config=True)
    # -- wavelength-fit residuals (RMS and lines: wavecal_rms_*, wavecal_min_lines_*)
    residuals_trend_warn = Float(0.03, help="Largest |median residual| of WAVECAL_RESIDUALS in a tenth of the "
                                            "wavelength range (Angstrom) above which it is 'warning': a trend "
                                            "with wavelength is a polynomial of too low an order or a "
                                            "misidentified line (a good fit: < 0.01 A).").tag(config=True)
    residuals_trend_bad = Float(0.1, help="Largest binned median residual (Angstrom) above which it is 'bad'.").tag(config=True)
    # -- pixel tables and pre-reduced CCD images
    pixtable_dq_warn = Float(0.1, help="Fraction of a pixel table's (or a *_RED image's) pixels with a non-zero "
                                       "DQ above which it is 'warning': bad columns, cosmic rays and the gaps "
                                       "between slices flag a few per cent.").tag(config=True)
    pixtable_dq_bad = Float(0.3, help="Fraction of flagged pixels above which it is 'bad' (a saturated or "
                                      "failed exposure).").tag(config=True)
    pixtable_lambda_low_warn = Float(4800.0, help="Blue limit of a pixel table (Angstrom, ESO DRS MUSE PIXTABLE "
                                                  "LIMITS LAMBDA LOW) above which it is 'warning': MUSE's nominal "
                                                  "mode covers 4650-9300 A (from ~4600 A in the tables).").tag(config=True)
    pixtable_lambda_low_bad = Float(5000.0, help="Blue limit (Angstrom) above which it is 'bad' (a wrong wavelength "
                                                 "solution or mode).").tag(config=True)
    pixtable_lambda_high_warn = Float(9100.0, help="Red limit of a pixel table (Angstrom, LIMITS LAMBDA HIGH) below "
                                                   "which it is 'warning'.").tag(config=True)
    pixtable_lambda_high_bad = Float(8900.0, help="Red limit (Angstrom) below which it is 'bad'.").tag(config=True)
    # -- field-of-view images
    fov_sources_warn = Int(1, help="Sources above 10 sigma in an IMAGE_FOV below which it is 'warning': every "
                                   "MUSE field has some (a closed shutter or a lost guide star has none).").tag(config=True)
    fov_sources_bad = Int(0, help="Sources below which an IMAGE_FOV is 'bad' (0: never; a blank field may be "
                                  "real).").tag(config=True)
    fov_cube_corr_warn = Float(0.9, help="Correlation of an IMAGE_FOV with its cube's white light below which it "
                                         "is 'warning' (the same scene correlates > 0.99).").tag(config=True)
    fov_cube_corr_bad = Float(0.7, help="Correlation with the cube below which it is 'bad' (the image is not "
                                        "of its cube).").tag(config=True)
    # -- sky model of muse_scipost
    sky_night_warn = Float(0.3, help="Largest |log10| of a strong sky line's flux (5577, 6300, 8345, 8827 A) over "
                                     "the previous nights' median above which a sky product is 'warning': the "
                                     "airglow changes by up to a factor 2 between nights.").tag(config=True)
    sky_night_bad = Float(0.7, help="|log10| against the previous nights above which it is 'bad' (a factor 5: "
                                    "a failed fit, a sky mask on the object, a wrong flux scale).").tag(config=True)
    sky_model_warn = Float(0.5, help="Largest |log10| of a fitted strong line's flux (SKY_LINES) over the flux "
                                     "it started from (the run's input SKY_LINES), less the median of the strong "
                                     "lines' (a common scale), above which it is 'warning': one line a factor 3 "
                                     "off the others (simulated nights: < 0.05 dex).").tag(config=True)
    sky_model_bad = Float(1.0, help="|log10| against the starting line list above which SKY_LINES is 'bad' (a "
                                    "factor 10: the fit did not converge).").tag(config=True)
    sky_negative_warn = Float(0.1, help="Fraction of the sky continuum (5000-9000 A) below zero above which a "
                                        "SKY_CONTINUUM or SKY_SPECTRUM is 'warning' (the lines were over-"
                                        "subtracted).").tag(config=True)
    sky_negative_bad = Float(0.3, help="Fraction of the continuum below zero above which it is 'bad'.").tag(config=True)
    # -- standard star cube and telluric correction (star FWHM: cube_fwhm_*)
    std_star_warn = Int(1, help="Point sources found in a DATACUBE_STD below which it is 'warning' (the "
                                "standard must be in it).").tag(config=True)
    std_star_bad = Int(1, help="Point sources below which a DATACUBE_STD is 'bad' (no star: the response made "
                               "from it is meaningless).").tag(config=True)
    std_snr_warn = Float(20.0, help="Median signal-to-noise per wavelength bin of a STD_FLUXES spectrum below "
                                    "which it is 'warning': a spectrophotometric standard gives > 100 (its "
                                    "response would carry the noise).").tag(config=True)
    std_snr_bad = Float(5.0, help="Median S/N of STD_FLUXES below which it is 'bad' (the star was missed).").tag(config=True)
    telluric_max_warn = Float(1.05, help="Largest value of a STD_TELLURIC transmission above which it is "
                                         "'warning': a transmission is at most 1.").tag(config=True)
    telluric_max_bad = Float(1.2, help="Largest transmission above which it is 'bad' (the correction would add "
                                       "light).").tag(config=True)
    telluric_min_warn = Float(0.05, help="Lowest transmission (A band) below which a STD_TELLURIC is 'warning': "
                                         "at MUSE's resolution the A band's core keeps ~20 % at airmass 2.").tag(config=True)
    telluric_min_bad = Float(0.0, help="Lowest transmission below which it is 'bad' (negative: unphysical, the "
                                       "division would flip the spectrum's sign).").tag(config=True)
    telluric_clear_warn = Float(0.05, help="|transmission - 1| in 5000-6200 A, where the atmosphere has no "
                                           "absorption band, above which a STD_TELLURIC is 'warning'.").tag(config=True)
    telluric_clear_bad = Float(0.2, help="|transmission - 1| in the clear band above which it is 'bad'.").tag(config=True)
    # -- exposure alignment (largest correction: cube_offset_*)
    align_ratio_warn = Float(0.5, help="Largest correction of an OFFSET_LIST over the largest header dither above "
                                       "which it is 'warning': headers are exact to a few tenths of an arcsec, "
                                       "so corrections of the dithers' size mean the sources were matched "
                                       "wrongly or the dithers are missing from the headers.").tag(config=True)
    align_ratio_bad = Float(0.9, help="Correction over dither above which an OFFSET_LIST is 'bad' (it undoes "
                                      "the dithers).").tag(config=True)
    align_missing_warn = Int(1, help="Exposures given to muse_exp_align but missing from its OFFSET_LIST from "
                                     "which it is 'warning' (combined without a correction).").tag(config=True)
    align_missing_bad = Int(2, help="Missing exposures from which an OFFSET_LIST is 'bad'.").tag(config=True)
    align_flux_scale_warn = Float(0.1, help="Largest |FLUX_SCALE - 1| of an OFFSET_LIST above which it is "
                                            "'warning' (thin cloud in one exposure).").tag(config=True)
    align_flux_scale_bad = Float(0.3, help="Largest |FLUX_SCALE - 1| above which it is 'bad'.").tag(config=True)
    # -- a source catalogue (SOURCE_CATALOG of step sources)
    sources_sky_fraction_warn = Float(0.5, help="Fraction of a catalogue's emission-line sources within 3 A of a "
                                                "night-sky line above which it is 'warning': sky-subtraction "
                                                "residuals were taken for lines (run zap, or widen sky_ranges)."
                                      ).tag(config=True)
    sources_sky_fraction_bad = Float(0.8, help="Fraction above which a SOURCE_CATALOG is 'bad': its line "
                                               "sources are mostly sky residuals.").tag(config=True)
    # -- a field's grid (OUTPUT_WCS of field_grid)
    grid_margin_warn = Float(0.4, help="Smallest distance (arcsec) from the exposures' outermost slices to the "
                                       "edge of a field's grid below which it is 'warning': atmospheric refraction "
                                       "and the astrometric solution move the data by up to a few tenths of an "
                                       "arcsec, which could then fall off the grid.").tag(config=True)
    grid_margin_bad = Float(0.0, help="Margin (arcsec) below which a grid is 'bad': some exposure's slices lie "
                                      "outside it and their data are lost in every cube resampled "
                                      "onto it.").tag(config=True)
    grid_coverage_warn = Float(0.05, help="Fraction of a grid's spaxels inside at least one exposure below which "
                                          "it is 'warning': an exposure pointed far from the others stretches the "
                                          "grid, and every cube on it, into empty sky (a field of one IFU at "
                                          "two position angles covers ~8 %; whole-field exposures 80-100 "
                                          "%).").tag(config=True)
    grid_coverage_bad = Float(0.01, help="Coverage below which a grid is 'bad'.").tag(config=True)
    # -- ZAP
    zap_gain_warn = Float(0.8, help="Sky-line residual significance before ZAP over after (worst of the strong "
                                    "lines) below which a DATACUBE_ZAP is 'warning': ZAP left the residuals "
                                    "larger than it found them (1: unchanged, at the noise).").tag(config=True)
    zap_gain_bad = Float(0.5, help="Before / after below which a DATACUBE_ZAP is 'bad' (twice the residuals).").tag(config=True)
    zap_flux_warn = Float(0.95, help="Median white light after ZAP over before below which a DATACUBE_ZAP is "
                                     "'warning': ZAP removes sky residuals, not the sources' light.").tag(config=True)
    zap_flux_bad = Float(0.8, help="White light after / before below which it is 'bad'.").tag(config=True)

    #: (qc type, measurement name, sense, threshold prefix, unit): ``max`` fails above the
    #: limit, ``min`` below it, ``absmax`` when the absolute value is above it.
    RULES = (
        ("bias", "ron.max", "max", "bias_ron", "e-"),
        ("bias", "level.absmax", "max", "bias_level", "adu"),
        ("bias", "noise_ratio.max", "max", "bias_noise_ratio", ""),
        ("bias", "raw_level_spread.max", "max", "bias_level_spread", "adu"),
        ("bias", "hot_columns", "max_incl", "bias_hot_columns", ""),
        ("dark", "dark.max", "max", "dark_current", "count/pix/h"),
        ("dark", "hot_fraction", "max", "dark_hot_fraction", ""),
        ("flat", "missing_slices", "max_incl", "flat_missing_slices", ""),
        ("flat", "slice_level.rms", "max", "flat_uniformity", ""),
        ("flat", "lamp.median", "min", "flat_lamp", "adu"),
        ("wavecal", "rms.max", "max", "wavecal_rms", "Angstrom"),
        ("wavecal", "lines.min", "min", "wavecal_min_lines", ""),
        ("wavecal", "shift.absmax", "max", "wavecal_shift", "Angstrom"),
        ("cube", "sky_snr.max", "max", "cube_sky_snr", "sigma"),
        ("cube", "fwhm.median", "max", "cube_fwhm", "arcsec"),
        ("cube", "fwhm_seeing_ratio", "max", "cube_seeing_ratio", ""),
        ("cube", "offset.max", "max", "cube_offset", "arcsec"),
        ("cube", "star.dmag_abs", "max", "cube_star_dmag", "mag"),
        ("lsf", "fwhm.median", "max", "lsf_fwhm", "Angstrom"),
        ("lsf", "fwhm.spread", "max", "lsf_spread", ""),
        ("lsf", "missing_slices", "max_incl", "lsf_missing_slices", ""),
        ("twilight", "illum.rms", "max", "twilight_rms", ""),
        ("twilight", "illum.minrel", "min", "twilight_minrel", ""),
        ("response", "delta.absmax", "max", "response_delta", "mag"),
        ("trace", "missing_slices", "max_incl", "flat_missing_slices", ""),
        ("trace", "width.min", "min", "trace_width_min", "pix"),
        ("trace", "width.max", "max", "trace_width_max", "pix"),
        ("trace", "width.spread", "max", "trace_width_spread", ""),
        ("trace", "edge_errors", "max_incl", "trace_geometry", ""),
        ("trace", "overlaps", "max_incl", "trace_geometry", ""),
        ("trace", "shift.absmax", "max", "trace_shift", "pix"),
        ("residuals", "missing_slices", "max_incl", "flat_missing_slices", ""),
        ("residuals", "rms.max", "max", "wavecal_rms", "Angstrom"),
        ("residuals", "lines.min", "min", "wavecal_min_lines", ""),
        ("residuals", "trend.absmax", "max", "residuals_trend", "Angstrom"),
        ("pixtable", "dq_fraction", "max", "pixtable_dq", ""),
        ("pixtable", "missing_slices", "max_incl", "flat_missing_slices", ""),
        ("pixtable", "lambda.low", "max", "pixtable_lambda_low", "Angstrom"),
        ("pixtable", "lambda.high", "min", "pixtable_lambda_high", "Angstrom"),
        ("reduced", "dq_fraction", "max", "pixtable_dq", ""),
        ("fov", "n_sources", "min", "fov_sources", ""),
        ("fov", "cube_corr", "min", "fov_cube_corr", ""),
        ("sky", "night_dex.absmax", "max", "sky_night", "dex"),
        ("sky", "model_dex.absmax", "max", "sky_model", "dex"),
        ("sky", "continuum.negative_fraction", "max", "sky_negative", ""),
        ("std", "n_psf", "min", "std_star", ""),
        ("std", "star.fwhm", "max", "cube_fwhm", "arcsec"),
        ("std", "snr.median", "min", "std_snr", ""),
        ("std", "trans.max", "max", "telluric_max", ""),
        ("std", "trans.min", "min", "telluric_min", ""),
        ("std", "clear.dev", "max", "telluric_clear", ""),
        ("align", "offset.max", "max", "cube_offset", "arcsec"),
        ("align", "offset_dither_ratio", "max", "align_ratio", ""),
        ("align", "n_missing", "max_incl", "align_missing", ""),
        ("align", "flux_scale.devmax", "max", "align_flux_scale", ""),
        ("grid", "margin.min", "min", "grid_margin", "arcsec"),
        ("grid", "coverage", "min", "grid_coverage", ""),
        ("zap", "gain.min", "min", "zap_gain", ""),
        ("zap", "flux_ratio", "min", "zap_flux", ""),
        ("sources", "sky_fraction", "max", "sources_sky_fraction", ""),
    )

    def limits(self, qc_type: str) -> dict[str, dict]:
        """The limits applying to a QC type: measurement name -> {sense, warn, bad, unit}."""
        types = (qc_type, *INHERITS.get(qc_type, ()))
        return {name: {"sense": sense, "warn": getattr(self, prefix + "_warn"),
                       "bad": getattr(self, prefix + "_bad"), "unit": unit}
                for t, name, sense, prefix, unit in self.RULES if t in types}

    def check(self, qc_type: str, values: dict[str, float]) -> "Verdict":
        """Judge measurements of a product of ``qc_type`` against the limits."""
        return judge(self.limits(qc_type), values)


class QCConfig(Configurable):
    """How QC runs: notebooks, time limit, automatic flagging, claims (kernel: ``MusewiseConfig.kernel_name``)."""

    star_catalogue = Unicode("", help="Catalogue of the science fields' stars with their flux densities (ECSV "
                                      "or FITS: ra, dec in deg, flux in erg/s/cm2/A on meta['wave'] in A; "
                                      "see musewise.qc.starflux), against which the QC of a cube measures "
                                      "the flux of the brightest star it covers. Empty: not measured. "
                                      "musewise simulate writes the instrument model's as "
                                      "STAR_CATALOG.ecsv beside the raw frames.").tag(config=True)
    notebooks_dir = Unicode("", help="Folder with the QC notebooks qc_<type>.ipynb (default: the "
                                     "qc_notebooks/ folder shipped with musewise).").tag(config=True)
    execution_timeout = Int(1800, help="Longest time one QC notebook cell may run (s).").tag(config=True)
    products_per_run = Int(24, min=1, help="Most products one QC run measures: a step's products of one "
                                           "night (one per IFU) share a notebook, so a night's QC is a few "
                                           "dozen notebooks, not one per product. 1: a QC run per product."
                           ).tag(config=True)
    invalidate_bad = Bool(False, help="Also mark an IFU invalid (not only flag it 'bad') when a QC number "
                                      "crosses a 'bad' limit. Off by default: a person decides validity.").tag(config=True)
    claim_minutes = Float(120.0, help="A reviewer's claim on a product expires after this many minutes, "
                                      "so an abandoned review does not block others.").tag(config=True)


@dataclass(frozen=True)
class Check:
    """One threshold test: the value measured, the limits, and its outcome (a QualityFlag value)."""

    name: str
    value: float
    sense: str
    warn: float
    bad: float
    unit: str
    flag: str

    def describe(self) -> str:
        op = {"max": ">", "max_incl": ">=", "min": "<"}[self.sense]
        lim = self.bad if self.flag == QualityFlag.BAD.value else self.warn
        return f"{self.name} = {self.value:.4g} {self.unit} {op} {lim:g} ({self.flag})".replace("  ", " ")


@dataclass(frozen=True)
class Verdict:
    """Outcome of all checks of a product: the worst flag and the failed checks."""

    flag: str
    checks: tuple[Check, ...]

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.flag != QualityFlag.GOOD.value)

    def summary(self) -> str:
        if not self.failed:
            return "all QC numbers within limits"
        return "; ".join(c.describe() for c in self.failed)

    def as_dict(self) -> dict:
        return {"flag": self.flag, "checks": [asdict(c) for c in self.checks]}

    @classmethod
    def from_dict(cls, d: dict) -> "Verdict":
        return cls(d["flag"], tuple(Check(**c) for c in d["checks"]))


def _crosses(value: float, limit: float, sense: str) -> bool:
    if sense == "max":
        return value > limit
    if sense == "max_incl":
        return value >= limit
    return value < limit


def judge(limits: dict[str, dict], values: dict[str, float]) -> Verdict:
    """Compare ``values`` with ``limits`` (see :meth:`QCThresholds.limits`)."""
    checks = []
    rank = {QualityFlag.GOOD.value: 0, QualityFlag.WARNING.value: 1, QualityFlag.BAD.value: 2}
    worst = QualityFlag.GOOD.value
    for name, lim in limits.items():
        v = values.get(name)
        if v is None or not math.isfinite(float(v)):
            continue
        v = float(v)
        flag = QualityFlag.GOOD.value
        if _crosses(v, lim["bad"], lim["sense"]):
            flag = QualityFlag.BAD.value
        elif _crosses(v, lim["warn"], lim["sense"]):
            flag = QualityFlag.WARNING.value
        checks.append(Check(name, v, lim["sense"], float(lim["warn"]), float(lim["bad"]), lim["unit"], flag))
        if rank[flag] > rank[worst]:
            worst = flag
    return Verdict(worst, tuple(checks))


__all__ = ["Check", "INHERITS", "QCConfig", "QCThresholds", "QC_TYPES", "Verdict", "judge"]
