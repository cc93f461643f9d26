"""QC notebooks and thresholds: numbers measured, stored, and flags raised on the ``archive`` fixture.

Fixtures here
-------------
qc_dir
    A scratch folder for the small MUSE-like files of :mod:`musewise.qc.testing`.
broken_notebooks
    A QC notebook folder whose ``qc_bias`` notebook raises: the failure mode of a QC run.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from traitlets.config import Config

from musewise.qc import (
    QCConfig,
    QCError,
    QCNotApplicableError,
    QCThresholds,
    after_product,
    queue,
    review,
    review_history,
    review_state,
    run_qc,
    run_qc_many,
)
from musewise.qc import measures
from musewise.products import testing as pt
from musewise.qc import testing as qct
from musewise.qc.thresholds import judge


@pytest.fixture
def qc_dir(tmp_path):
    d = tmp_path / "qcfiles"
    d.mkdir()
    return d


@pytest.fixture
def broken_notebooks(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    d = tmp_path / "broken"
    d.mkdir()
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [new_code_cell("dataset_id = 0", metadata={"tags": ["parameters"]}),
                new_code_cell("raise RuntimeError('detector model exploded')")]
    nbformat.write(nb, d / "qc_bias.ipynb")
    return d


# ----------------------------------------------------------------------------- measures (no archive)
def test_bias_read_noise_matches_the_simulated_noise(qc_dir):
    raws = [pt.write_raw_bias(qc_dir / f"b{k}.fits", datetime(2026, 11, 20, 18, k), ron_adu=3.0, seed=k)
            for k in range(3)]
    master = pt.write_master_bias(qc_dir / "MASTER_BIAS-01.fits", raws, level_offset=0.5)
    m = measures.measure_master_bias(master, raws, ifu=1)
    for q, (gain, level) in enumerate(zip(pt.GAINS, pt.LEVELS), start=1):
        assert m.values[f"ron_adu.q{q}"] == pytest.approx(3.0, rel=0.1)
        assert m.values[f"ron.q{q}"] == pytest.approx(3.0 * gain, rel=0.1)
        assert m.values[f"raw_level.q{q}"] == pytest.approx(level, abs=0.5)
        assert m.values[f"level.q{q}"] == pytest.approx(0.5, abs=0.4)
    assert m.units["ron.q1"] == "e-" and m.units["level.q1"] == "adu"
    # Averaging 3 frames lowers the noise by ~sqrt(3): the combination looks right.
    assert 0.8 < m.values["noise_ratio.max"] < 1.4


def test_cube_sky_residuals_and_psf(qc_dir):
    clean = measures.measure_datacube(pt.write_cube(qc_dir / "c0.fits", datetime(2026, 11, 21, 2), fwhm_pix=4.0))
    dirty = measures.measure_datacube(pt.write_cube(qc_dir / "c1.fits", datetime(2026, 11, 21, 2), sky_residual=30))
    assert clean.values["sky_snr.max"] < 3 < dirty.values["sky_snr.5577"]
    assert dirty.values["sky_snr.6300"] > 3
    assert clean.values["fwhm.median"] == pytest.approx(4.0 * 0.2, rel=0.1)  # arcsec
    assert clean.units["fwhm.median"] == "arcsec"


def test_thresholds_are_configurable_and_judge_warn_bad():
    cfg = Config()
    cfg.QCThresholds.bias_ron_warn = 2.0
    cfg.QCThresholds.bias_ron_bad = 2.5
    th = QCThresholds(config=cfg)
    assert th.check("bias", {"ron.max": 1.9}).flag == "good"
    assert th.check("bias", {"ron.max": 2.2}).flag == "warning"
    v = th.check("bias", {"ron.max": 2.7, "level.absmax": 0.1})
    assert v.flag == "bad" and "ron.max" in v.summary()
    assert th.check("bias", {"ron.max": float("nan")}).flag == "good"  # unmeasured is not guessed
    assert QCThresholds().check("flat", {"missing_slices": 1}).flag == "bad"
    assert QCThresholds().check("wavecal", {"lines.min": 20}).flag == "warning"
    assert judge({}, {"x": 1}).flag == "good"
    assert QCThresholds.class_traits()["bias_ron_bad"].help


# ----------------------------------------------------------------------------- run_qc on the archive
def test_run_qc_stores_numbers_notebook_and_leaves_good_product_for_review(archive, qc_dir):
    rec, raw_ids = qct.bias_product(archive, qc_dir)
    res = run_qc(archive, rec.id)
    assert res.flag == "good" and not res.flag_applied
    run = archive.get_run(res.run_id)
    assert run.recipe == "qc_bias" and run.status == "succeeded"
    assert {i.dataset_id for i in run.inputs} == {rec.id, *raw_ids}
    stored = {q["name"]: q for q in archive.qc(rec.id)}
    assert stored["bias.ron.q1"]["unit"] == "e-" and stored["bias.ron.q1"]["run_id"] == res.run_id
    assert 2.0 < stored["bias.ron.max"]["value"] < 3.2
    # The executed notebook, with its figures embedded, is archived with the QC run.
    nb = json.loads(open(archive.path(run.notebook_id)).read())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    # A passing product still waits for a person; it is not a dependent of its QC run.
    assert archive.get(rec.id).ifus[0].flag == "unchecked"
    assert [(i.dataset_id, i.state) for i in queue(archive)] == [(rec.id, "unchecked")]
    assert archive.dependents(rec.id) == []


def test_threshold_crossed_flags_product_and_queues_it(archive, qc_dir):
    rec, _ = qct.bias_product(archive, qc_dir, level_offset=5.0)
    res = run_qc(archive, rec.id)
    assert res.flag == "bad" and res.flag_applied
    st = archive.get(rec.id).ifus[0]
    assert st.flag == "bad" and st.is_valid  # a person decides validity (QCConfig.invalidate_bad)
    hist = archive.validity_history(rec.id)
    assert hist[-1]["flag_after"] == "bad" and f"qc_bias run {res.run_id}" in hist[-1]["comment"]
    (item,) = queue(archive)
    assert item.state == "pending" and "level.absmax" in item.reason
    assert review_state(archive, rec.id)[1]["state"] == "pending"
    # Site thresholds change the verdict: the same product is only a warning with wider limits.
    cfg = Config()
    cfg.QCThresholds.bias_level_warn = 4.0
    cfg.QCThresholds.bias_level_bad = 8.0
    res2 = run_qc(archive, rec.id, thresholds=QCThresholds(config=cfg))
    assert res2.flag == "warning"
    assert archive.get(rec.id).ifus[0].flag == "warning"


def test_a_passing_qc_takes_back_an_earlier_qc_flag_but_never_a_persons(archive, qc_dir):
    from musewise.vocabulary import Privilege

    rec, _ = qct.bias_product(archive, qc_dir, level_offset=5.0, privilege=Privilege.PROJECT, project="galaxies")
    cfg = Config()
    cfg.QCThresholds.bias_level_warn = 8.0
    cfg.QCThresholds.bias_level_bad = 12.0
    loose = QCThresholds(config=cfg)  # the 5 adu level offset passes these
    assert run_qc(archive, rec.id, config=QCConfig(invalidate_bad=True)).flag == "bad"
    assert (archive.get(rec.id).ifus[0].flag, archive.get(rec.id).is_valid) == ("bad", False)
    # A member who may not review measures it with looser limits of their own: refused, nothing lifted.
    from musewise.exceptions import PermissionDeniedError

    with pytest.raises(PermissionDeniedError, match="may not set QC values"):
        run_qc(archive.as_user("bob"), rec.id, thresholds=loose)
    assert archive.get(rec.id).ifus[0].flag == "bad" and review_state(archive, rec.id)[1]["state"] == "pending"
    # The site's reviewer reruns it with the new limits: the QC's own flag and invalidation go.
    res = run_qc(archive.as_user("alice"), rec.id, thresholds=loose)
    assert res.flag == "good" and res.flag_applied
    got = archive.get(rec.id)
    assert (got.ifus[0].flag, got.ifus[0].is_valid, got.is_valid) == ("unchecked", True, True)
    assert review_state(archive, rec.id) == {}
    assert [(i.dataset_id, i.state) for i in queue(archive)] == [(rec.id, "unchecked")]  # still for a person
    assert [e["action"] for e in review_history(archive, rec.id)].count("auto_clear") == 1
    # Flagged again, then judged by a person: a later passing QC leaves the person's verdict.
    assert run_qc(archive, rec.id).flag == "bad"
    review(archive.as_user("alice"), rec.id, 1, True, "warning", "level offset understood; usable")
    res = run_qc(archive, rec.id, thresholds=loose)
    assert res.flag == "good" and not res.flag_applied
    assert archive.get(rec.id).ifus[0].flag == "warning"
    assert review_state(archive, rec.id)[1]["state"] == "reviewed"


def test_invalidate_bad_option_and_cube_qc(archive, qc_dir):
    cube = pt.write_cube(qc_dir / "DATACUBE_FINAL.fits", datetime(2026, 11, 21, 2), sky_residual=40)
    rec = qct.archive_product(archive, cube, "muse_scipost", ifu=None, category="DATACUBE_FINAL")
    res = run_qc(archive, rec.id, config=QCConfig(invalidate_bad=True))
    assert res.flag == "bad" and res.values["cube.sky_snr.max"] > 10
    # A merged cube holds no IFU: it is flagged (and with invalidate_bad, invalidated) as a
    # whole, and waits in the queue.
    assert res.flag_applied
    got = archive.get(rec.id)
    assert (got.flag, got.is_valid) == ("bad", False)
    assert [(i.dataset_id, i.ifu, i.state) for i in queue(archive)] == [(rec.id, 0, "pending")]


def test_after_product_hook(archive, qc_dir):
    rec, raw_ids = qct.bias_product(archive, qc_dir)
    assert after_product(archive, archive.get(raw_ids[0])) is None  # raw frames have no QC
    with pytest.raises(QCNotApplicableError, match="no QC notebook"):
        run_qc(archive, raw_ids[0])
    res = after_product(archive, rec.id)
    assert res is not None and res.qc_type == "bias"


def test_failed_qc_notebook_is_recorded(archive, qc_dir, broken_notebooks):
    rec, _ = qct.bias_product(archive, qc_dir)
    with pytest.raises(QCError, match="detector model exploded") as err:
        run_qc(archive, rec.id, config=QCConfig(notebooks_dir=str(broken_notebooks)))
    run = archive.get_run(err.value.run_id)
    assert run.status == "failed" and run.notebook_id is not None
    # The hook never breaks a reduction: it logs and returns None.
    assert after_product(archive, rec.id, config=QCConfig(notebooks_dir=str(broken_notebooks))) is None


def test_qc_of_several_products_runs_on_dask(archive, qc_dir):
    """QC reaches Dask by the reductions' path: each worker reopens the archive and records its run."""
    from musewise.dpu.engine import close_clients

    good, _ = qct.bias_product(archive, qc_dir / "a")
    bad, _ = qct.bias_product(archive, qc_dir / "b", level_offset=5.0, seed=1, hour=19)
    try:
        results = run_qc_many(archive, [good.id, bad.id], engine="dask", progress=False)
    finally:
        close_clients()
    assert [(r.dataset_id, r.flag) for r in results] == [(good.id, "good"), (bad.id, "bad")]
    assert all(archive.get_run(r.run_id).status == "succeeded" for r in results)
    assert archive.get(bad.id).ifus[0].flag == "bad"  # flagged through the worker's own connection
    assert [i.dataset_id for i in queue(archive) if i.state == "pending"] == [bad.id]


def _notebook_outputs(archive, run_id):
    nb = json.loads(open(archive.path(archive.get_run(run_id).notebook_id)).read())
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    return figures, "".join("".join(o.get("text", "")) for o in outputs)


def test_a_batch_is_one_run_and_an_unreadable_product_fails_alone(archive, qc_dir):
    """A step's products share one QC run; one that cannot be read fails alone, the others are judged."""
    import os

    from musewise.qc import qc_of
    from musewise.vocabulary import Privilege

    good, _ = qct.bias_product(archive, qc_dir / "a")
    bad, _ = qct.bias_product(archive, qc_dir / "b", level_offset=5.0, seed=1, hour=19)
    broken, _ = qct.bias_product(archive, qc_dir / "c", seed=2, hour=20)
    mine, _ = qct.bias_product(archive, qc_dir / "d", seed=3, hour=21, privilege=Privilege.PRIVATE)
    path = archive.path(broken.id)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:  # the stored file spoilt after ingest: a FITS reader gives up on it
        f.write(b"NOT A FITS FILE " * 8)
    res = run_qc_many(archive, [good.id, bad.id, broken.id, mine.id], engine="local", progress=False)
    assert [r.dataset_id for r in res] == [good.id, bad.id, broken.id, mine.id]
    assert [getattr(r, "flag", None) for r in res] == ["good", "bad", None, "good"]
    err = res[2]
    assert isinstance(err, QCError) and err.run_id == res[0].run_id == res[1].run_id
    run = archive.get_run(res[0].run_id)
    assert run.status == "succeeded" and sorted(qc_of(run)) == sorted([good.id, bad.id, broken.id])
    assert run.details["flag"] == "bad" and list(run.details["failed"]) == [str(broken.id)]
    assert res[0].notebook_id == res[1].notebook_id == run.notebook_id
    # the private product is not measured in a notebook its readers share with the consortium
    assert res[3].run_id != run.id and qc_of(archive.get_run(res[3].run_id)) == [mine.id]
    assert archive.qc(broken.id) == [] and archive.get(broken.id).ifus[0].flag == "unchecked"
    assert archive.get(bad.id).ifus[0].flag == "bad"
    figures, text = _notebook_outputs(archive, run.id)
    # the three products' numbers against the limits, then the figure of the one that crossed them
    assert len(figures) == 2
    assert f"dataset {broken.id} MASTER_BIAS IFU 01 night 2026-11-20: NOT MEASURED" in text
    assert f"dataset {bad.id} MASTER_BIAS IFU 01 night 2026-11-20: BAD - level.absmax" in text
    # one product a run when the site says so
    one = run_qc_many(archive, [good.id, bad.id], config=QCConfig(products_per_run=1), engine="local",
                      progress=False)
    assert len({r.run_id for r in one}) == 2 and [r.flag for r in one] == ["good", "bad"]


def test_qc_of_several_products_refuses_before_running_and_reports_failures(archive, qc_dir, broken_notebooks,
                                                                              monkeypatch, capsys):
    from musewise.cli import main

    rec, raw_ids = qct.bias_product(archive, qc_dir)
    with pytest.raises(QCNotApplicableError):
        run_qc_many(archive, [rec.id, raw_ids[0]], engine="local", progress=False)
    assert [r.recipe for r in archive.runs()] == ["muse_bias"]  # nothing ran
    (err,) = run_qc_many(archive, [rec.id], config=QCConfig(notebooks_dir=str(broken_notebooks)),
                         engine="local", progress=False)
    assert isinstance(err, QCError) and err.dataset_id == rec.id
    assert archive.get_run(err.run_id).status == "failed"
    # The command line runs through the same path.
    monkeypatch.setenv("MUSEWISE_ROOT", archive.config.root)
    monkeypatch.setenv("MUSEWISE_DB_URL", archive.config.db_url)
    assert main(["--user", "admin", "qc", "run", str(rec.id)]) == 0
    assert "QC bias of dataset" in capsys.readouterr().out


@pytest.mark.pipeline
def test_qc_of_a_real_master_bias(archive, sim_frames, tmp_path):
    """The real ``muse_bias`` on simulated raw frames of IFU 1, then its QC notebook."""
    import shutil
    import subprocess

    from conftest import need

    need(shutil.which("esorex") is not None, "esorex not installed (apt-get install esorex cpl-plugin-muse)")
    raws = sim_frames["BIAS"][:3]
    ids = [archive.ingest(p).record.id for p in raws]
    (tmp_path / "bias.sof").write_text("".join(f"{p} BIAS\n" for p in raws))
    subprocess.run(["esorex", f"--output-dir={tmp_path}", "muse_bias", "--nifu=1", str(tmp_path / "bias.sof")],
                   cwd=tmp_path, check=True, capture_output=True)
    run = archive.begin_run("muse_bias", {"nifu": 1}, night="2026-11-20", ifu=1,
                            inputs=[(i, "BIAS", "raw bias") for i in ids])
    (rec,) = archive.finish_run(run, [(str(tmp_path / "MASTER_BIAS-01.fits"), None, 1)])
    res = run_qc(archive, rec.id)
    assert res.flag == "good", res.verdict.summary()
    # Our read noise agrees with the pipeline's own QC keyword (which, despite its
    # [count] comment, is in electrons: RON_adu x GAIN) within 5 %.
    from astropy.io import fits

    h = fits.getheader(archive.path(rec.id))
    for q in range(1, 5):
        assert res.values[f"bias.ron.q{q}"] == pytest.approx(h[f"ESO QC BIAS MASTER{q} RON"], rel=0.05)
