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
    "DATACUBE_ZAP": "cube",  # a cube cleaned by ZAP is measured as any cube (sky residuals, PSF)
}


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
    )

    def limits(self, qc_type: str) -> dict[str, dict]:
        """The limits applying to a QC type: measurement name -> {sense, warn, bad, unit}."""
        return {name: {"sense": sense, "warn": getattr(self, prefix + "_warn"),
                       "bad": getattr(self, prefix + "_bad"), "unit": unit}
                for t, name, sense, prefix, unit in self.RULES if t == qc_type}

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


__all__ = ["Check", "QCConfig", "QCThresholds", "QC_TYPES", "Verdict", "judge"]
