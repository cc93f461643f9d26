"""QC covers every product the reduction archives, and each new QC type catches a spoiled product.

The doctored products are written with astropy in the formats the real pipeline writes
(a trace table of 40 slices, a pixel table with half its pixels flagged, a sky-line
fit a hundred times the night before's...); each is archived as the product of a run, and
the post-run hook (:func:`musewise.qc.after_run`) must flag it and queue it for review.
The products the real pipeline makes are measured in ``tests/test_qc_spoiled.py`` (trace
and wavelength residuals after ``dpu.make('wavecal')``) and on the ``field`` (every
category of a whole cascade, ``long``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from musewise.qc import QC_TYPES, QCThresholds, after_run, queue
from musewise.qc import measures_ccd, measures_field, measures_pixtable, measures_sky, measures_std
from musewise.qc.runner import notebook_for
from musewise.qc.thresholds import QCConfig
from musewise.products import testing as pt

NIGHT, EARLIER = "2026-11-21", "2026-11-20"


def cascade_categories() -> set[str]:
    """Every category the cascade's runs archive: the steps' products and what their recipes save besides."""
    from musewise.dpu.steps import SAVED_BESIDES, STEPS

    return {c for s in STEPS.values() for c in s.products} | {c for cs in SAVED_BESIDES.values() for c in cs}


def test_every_product_category_the_cascade_makes_has_a_qc_type_notebook_and_thresholds():
    missing = sorted(cascade_categories() - set(QC_TYPES))
    assert not missing, f"products without a QC type: {missing} (add them to musewise.qc.thresholds.QC_TYPES)"
    assert {"SKY_SPECTRUM", "SKY_LINES", "SKY_CONTINUUM", "STD_TELLURIC", "DATACUBE_STD"} <= cascade_categories()
    for qc_type in set(QC_TYPES.values()):
        assert notebook_for(qc_type, QCConfig()).is_file()
        assert QCThresholds().limits(qc_type), f"no threshold for {qc_type}"


def test_a_new_product_without_qc_would_fail_the_coverage(monkeypatch):
    from musewise.dpu import steps

    monkeypatch.setitem(steps.SAVED_BESIDES, "scipost", steps.SAVED_BESIDES["scipost"] + ("AUTOCAL_FACTORS",))
    assert cascade_categories() - set(QC_TYPES) == {"AUTOCAL_FACTORS"}


# ----------------------------------------------------------------------------- doctored products
def _primary(catg, night=NIGHT, **keys):
    h = fits.Header({"INSTRUME": "MUSE", "HIERARCH ESO PRO CATG": catg, "HIERARCH ESO INS MODE": "WFM-NOAO-N",
                     "DATE-OBS": f"{night}T01:00:00.000", "MJD-OBS": 61365.04 + (night == NIGHT)})
    h.update(keys)
    return h


def write_trace(path, n_slices=48, width=77.0, shift=0.0, night=NIGHT):
    """A TRACE_TABLE of straight slices 84 pix apart (x in 1-based pixels), ``n_slices`` of them."""
    rows = {"SliceNo": np.arange(1, n_slices + 1), "Width": np.full(n_slices, width)}
    centre = 30 + width / 2 + 84.0 * np.arange(n_slices) + shift
    for k, x in enumerate((centre, centre - width / 2, centre + width / 2)):
        rows[f"tc{k}_00"] = x
        for j in range(1, 6):
            rows[f"tc{k}_{j:02d}"] = np.zeros(n_slices)
    fits.HDUList([fits.PrimaryHDU(header=_primary("TRACE_TABLE", night)),
                  fits.table_to_hdu(Table(rows))]).writeto(path, overwrite=True)
    return path


def write_residuals(path, trend=0.0):
    """WAVECAL_RESIDUALS of 48 slices x 60 lines, two iterations, residuals 0.01 A plus ``trend`` A per 1000 A."""
    rng = np.random.default_rng(1)
    lam = np.tile(np.linspace(4800, 9200, 60), 48 * 2)
    sl = np.repeat(np.arange(1, 49), 60 * 2)
    it = np.tile(np.repeat([1, 2], 60), 48)
    res = rng.normal(0, 0.01, lam.size) + trend * (lam - 7000) / 1000
    t = Table({"slice": sl, "iteration": it, "lambda": lam, "residual": res})
    fits.HDUList([fits.PrimaryHDU(header=_primary("WAVECAL_RESIDUALS")), fits.table_to_hdu(t)]).writeto(path)
    return path


def write_pixtable(path, flagged=0.0, n_per_slice=400):
    """A one-IFU pixel table (one image extension per column) with a fraction ``flagged`` of DQ-flagged pixels."""
    n = 48 * n_per_slice
    rng = np.random.default_rng(2)
    slices = np.repeat(np.arange(1, 49), n_per_slice)
    origin = (slices | (1 << 6) | (100 << 11)).astype(np.int32)
    dq = (rng.random(n) < flagged).astype(np.int32) * 4
    cols = {"xpos": rng.random(n), "ypos": rng.random(n), "lambda": rng.uniform(4750, 9350, n),
            "data": rng.normal(20, 3, n), "dq": dq, "stat": np.full(n, 9.0), "origin": origin}
    h = _primary("PIXTABLE_OBJECT")
    h["HIERARCH ESO DRS MUSE PIXTABLE LIMITS LAMBDA LOW"] = 4750.0
    h["HIERARCH ESO DRS MUSE PIXTABLE LIMITS LAMBDA HIGH"] = 9350.0
    hdus = [fits.PrimaryHDU(header=h)]
    for name, v in cols.items():
        dtype = np.int32 if name in ("dq", "origin") else np.float32
        hdus.append(fits.ImageHDU(np.asarray(v, dtype).reshape(-1, 1), name=name.upper()))
    fits.HDUList(hdus).writeto(path)
    return path


def write_sky_lines(path, scale=1.0, night=NIGHT):
    """A scipost SKY_LINES table: the four strong lines and some fainter ones, the strong ones x ``scale``."""
    lam = np.array([5577.34, 6300.30, 6363.78, 8344.60, 8399.17, 8827.10, 8885.85])
    flux = np.array([2000.0, 1000.0, 330.0, 600.0, 500.0, 600.0, 500.0])
    strong = np.isin(np.round(lam), [5577, 6300, 8345, 8827])
    flux[strong] *= scale
    t = Table({"lambda": lam, "flux": flux})
    fits.HDUList([fits.PrimaryHDU(header=_primary("SKY_LINES", night)), fits.table_to_hdu(t)]).writeto(path)
    return path


def write_telluric(path, peak=1.0):
    """A STD_TELLURIC: 1 outside the bands, dips to 0.3 (A) and 0.7 (B), ``peak`` at 7000 A (a transmission above 1)."""
    lam = np.arange(6800.0, 7800.0, 1.25)
    tr = np.ones(lam.size)
    tr -= 0.7 * np.exp(-0.5 * ((lam - 7620) / 15) ** 2) + 0.3 * np.exp(-0.5 * ((lam - 6880) / 10) ** 2)
    tr += (peak - 1.0) * np.exp(-0.5 * ((lam - 7000) / 20) ** 2)
    t = Table({"lambda": lam, "ftelluric": tr})
    fits.HDUList([fits.PrimaryHDU(header=_primary("STD_TELLURIC")), fits.table_to_hdu(t)]).writeto(path)
    return path


def write_offsets(path, offset_arcsec=0.0):
    """An OFFSET_LIST of two exposures, the second corrected by ``offset_arcsec`` in Dec."""
    t = Table({"DATE_OBS": ["2026-11-21T01:00:00.000", "2026-11-21T01:20:00.000"], "MJD_OBS": [61365.04, 61365.06],
               "RA_OFFSET": [0.0, 0.0], "DEC_OFFSET": [0.0, offset_arcsec / 3600.0], "FLUX_SCALE": [1.0, 1.0]})
    fits.HDUList([fits.PrimaryHDU(header=_primary("OFFSET_LIST", DEC=-30.2)), fits.table_to_hdu(t)]).writeto(path)
    return path


def write_fov(path, cube=None, noise_only=False):
    """An IMAGE_FOV: the white light of ``cube`` or, ``noise_only``, noise on the cube's grid."""
    with fits.open(cube) as h:
        wl = np.nanmean(h["DATA"].data, axis=0)
        hd = h["DATA"].header.copy()
    img = np.random.default_rng(3).normal(1.0, 0.01, wl.shape) if noise_only else wl
    for k in ("CTYPE3", "CUNIT3", "CRVAL3", "CRPIX3", "CD3_3", "CDELT3", "CD1_3", "CD2_3", "CD3_1", "CD3_2"):
        hd.remove(k, ignore_missing=True)
    fits.HDUList([fits.PrimaryHDU(header=_primary("IMAGE_FOV")),
                  fits.ImageHDU(img.astype(np.float32), header=fits.Header({k: hd[k] for k in hd if k[:2] in ("CR", "CD", "CT", "CU")}), name="DATA")]).writeto(path)
    return path


def write_zap(path, before, keep=1.0):
    """A DATACUBE_ZAP: the cube ``before`` scaled by ``keep`` (ZAP taking away source light when < 1)."""
    with fits.open(before) as h:
        h[0].header["HIERARCH ESO PRO CATG"] = "DATACUBE_ZAP"
        h["DATA"].data = h["DATA"].data * keep
        h.writeto(path)
    return path


def test_measures_of_good_and_doctored_products(tmp_path):
    th = QCThresholds()
    good = measures_ccd.measure_trace_table(write_trace(tmp_path / "t.fits"), [write_trace(tmp_path / "t0.fits")])
    assert good.values["n_slices"] == 48 and good.values["shift.absmax"] == pytest.approx(0.0, abs=1e-9)
    assert good.values["width.median"] == pytest.approx(77.0) and good.values["overlaps"] == 0
    assert th.check("trace", good.values).flag == "good"
    moved = measures_ccd.measure_trace_table(write_trace(tmp_path / "t1.fits", shift=3.0), [tmp_path / "t0.fits"])
    assert moved.values["shift.absmax"] == pytest.approx(3.0) and th.check("trace", moved.values).flag == "bad"
    wide = measures_ccd.measure_trace_table(write_trace(tmp_path / "t2.fits", width=90.0))
    assert wide.values["overlaps"] == 47 and th.check("trace", wide.values).flag == "bad"

    flat = measures_ccd.measure_wavecal_residuals(write_residuals(tmp_path / "r.fits"))
    assert flat.values["rms.max"] < 0.02 and flat.values["trend.absmax"] < 0.01
    tilted = measures_ccd.measure_wavecal_residuals(write_residuals(tmp_path / "r1.fits", trend=0.05))
    assert tilted.values["trend.absmax"] == pytest.approx(0.1, abs=0.01)

    pix = measures_pixtable.measure_pixtable(write_pixtable(tmp_path / "p.fits", flagged=0.02), chunk_rows=5000)
    assert pix.values["n_slices"] == 48 and pix.values["missing_slices"] == 0
    assert pix.values["dq_fraction"] == pytest.approx(0.02, abs=0.005)
    assert pix.values["lambda.low"] == 4750.0 and pix.values["flux.median"] == pytest.approx(20.0, abs=0.2)
    assert th.check("pixtable", pix.values).flag == "good"

    tel = measures_std.measure_telluric(write_telluric(tmp_path / "tel.fits"))
    assert tel.values["a_band.min"] == pytest.approx(0.3, abs=0.02)
    assert tel.values["b_band.min"] == pytest.approx(0.7, abs=0.02)
    assert th.check("std", tel.values).flag == "good"

    sky = measures_sky.measure_sky(write_sky_lines(tmp_path / "s.fits", 1.2), [write_sky_lines(tmp_path / "s0.fits")],
                                   model_lines=tmp_path / "s0.fits")
    assert sky.values["line.5577"] == pytest.approx(2400.0)
    assert sky.values["night_dex.absmax"] == pytest.approx(np.log10(1.2))
    assert sky.values["n_lines"] == 7 and th.check("sky", sky.values).flag == "good"

    off = measures_field.measure_alignment(write_offsets(tmp_path / "o.fits", 0.2))
    assert off.values["offset.max"] == pytest.approx(0.2) and th.check("align", off.values).flag == "good"

    cube = pt.write_cube(tmp_path / "cube.fits", datetime(2026, 11, 21, 1))
    fov = measures_field.measure_fov(write_fov(tmp_path / "fov.fits", cube), cube)
    assert fov.values["cube_corr"] > 0.99 and fov.values["n_sources"] >= 1
    assert th.check("fov", fov.values).flag == "good"
    zap = measures_field.measure_zap(write_zap(tmp_path / "zap.fits", cube), cube)
    assert zap.values["flux_ratio"] == pytest.approx(1.0) and zap.values["gain.min"] == pytest.approx(1.0)


@dataclass
class _Outcome:
    """What :func:`after_run` reads of a finished run."""

    ok: bool
    products: list
    step: str = ""


def _archive_run(arch, recipe, files, *, inputs=(), night=NIGHT, ifu=1):
    run = arch.begin_run(recipe, {}, night=night, ifu=ifu, inputs=list(inputs), privilege=2)
    return arch.finish_run(run, [(str(p), c, ifu) for p, c in files])


def test_each_new_qc_type_flags_and_queues_its_spoiled_product(archive, tmp_path):
    """One spoiled product per new QC type, through the post-run hook: each is flagged and queued."""
    arch = archive
    (earlier_trace,) = _archive_run(arch, "muse_flat", [(write_trace(tmp_path / "t0.fits", night=EARLIER),
                                                          "TRACE_TABLE")], night=EARLIER)
    (earlier_sky,) = _archive_run(arch, "muse_scipost", [(write_sky_lines(tmp_path / "s0.fits", night=EARLIER),
                                                          "SKY_LINES")], night=EARLIER, ifu=None)
    cube = pt.write_cube(tmp_path / "cube.fits", datetime(2026, 11, 21, 1))
    (before,) = _archive_run(arch, "muse_scipost", [(cube, "DATACUBE_FINAL")], ifu=None)
    spoiled = {
        "trace": _archive_run(arch, "muse_flat", [(write_trace(tmp_path / "t40.fits", n_slices=40), "TRACE_TABLE")]),
        "residuals": _archive_run(arch, "muse_wavecal", [(write_residuals(tmp_path / "r.fits", 0.1),
                                                          "WAVECAL_RESIDUALS")]),
        "pixtable": _archive_run(arch, "muse_scibasic", [(write_pixtable(tmp_path / "p.fits", 0.5), "PIXTABLE_OBJECT")]),
        "sky": _archive_run(arch, "muse_scipost", [(write_sky_lines(tmp_path / "s.fits", 100.0), "SKY_LINES")], ifu=None),
        "std": _archive_run(arch, "muse_standard", [(write_telluric(tmp_path / "tel.fits", 1.5), "STD_TELLURIC")],
                            ifu=None),
        "align": _archive_run(arch, "muse_exp_align", [(write_offsets(tmp_path / "o.fits", 5.0), "OFFSET_LIST")],
                              ifu=None),
        "fov": _archive_run(arch, "muse_scipost", [(pt.write_cube(tmp_path / "c2.fits", datetime(2026, 11, 21, 2)),
                                                    "DATACUBE_FINAL"),
                                                   (write_fov(tmp_path / "fov.fits", cube, noise_only=True), "IMAGE_FOV")],
                            ifu=None)[1:],
        "zap": _archive_run(arch, "zap", [(write_zap(tmp_path / "zap.fits", cube, keep=0.5), "DATACUBE_ZAP")],
                            inputs=[(before.id, "DATACUBE_FINAL", "cube cleaned")], ifu=None),
    }
    outcomes = [_Outcome(True, [r.id for r in recs]) for recs in spoiled.values()]
    results = after_run(arch, outcomes, engine="local", progress=False)
    by_type = {r.qc_type: r for r in results}
    assert set(by_type) == set(spoiled), results
    expect = {"trace": ("bad", "missing_slices"), "residuals": ("bad", "trend.absmax"),
              "pixtable": ("bad", "dq_fraction"), "sky": ("bad", "night_dex.absmax"), "std": ("bad", "trans.max"),
              "align": ("bad", "offset.max"), "fov": ("bad", "cube_corr"), "zap": ("bad", "flux_ratio")}
    pending = {i.dataset_id for i in queue(arch) if i.state == "pending"}
    for qc_type, (flag, name) in expect.items():
        r = by_type[qc_type]
        assert r.flag == flag, f"{qc_type}: {r}"
        assert name in {c.name for c in r.verdict.failed}, f"{qc_type}: {r}"
        assert r.dataset_id in pending and r.notebook_id is not None
    assert by_type["trace"].values["trace.missing_slices"] == 8
    assert by_type["trace"].values["trace.n_previous"] == 1  # the earlier night's trace, compared with
    assert by_type["sky"].values["sky.night_dex.absmax"] == pytest.approx(2.0)
    assert by_type["zap"].values["zap.flux_ratio"] == pytest.approx(0.5)
    # the earlier night's products were not QC'd here: the trace (a calibration) waits unchecked, the
    # fitted sky lines (auxiliary) are queued only once their QC flags them
    listed = {i.dataset_id: i.state for i in queue(arch)}
    assert listed[earlier_trace.id] == "unchecked" and earlier_sky.id not in listed


# ----------------------------------------------------------------------------- real pipeline
@pytest.mark.long
def test_every_category_a_whole_cascade_archived_is_declared_and_has_a_qc_type(field):
    """The field's cascade (real esorex, every step up to both combined cubes): what its runs archived."""
    arch = field["arch"]
    made = {r.category for r in arch.query() if r.run_id is not None and r.kind not in ("raw", "static")
            and not arch.get_run(r.run_id).recipe.startswith("qc_") and r.category != "NOTEBOOK"}
    assert made - cascade_categories() == set(), "archived but not in STEPS products nor SAVED_BESIDES"
    assert made - set(QC_TYPES) == set()
