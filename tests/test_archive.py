"""The archive: ingest, queries, validity, privileges, lineage, calibration selection.

Runs on SQLite and on a real PostgreSQL server (the ``archive`` fixture is parametrised).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from musewise.archive import Archive
from musewise.exceptions import (
    CalibrationNotFoundError,
    ConfigurationError,
    InvalidFrameError,
    NotFoundError,
    PermissionDeniedError,
)
from musewise.vocabulary import Privilege

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["folder", "s3"])
def datastore_settings(request, tmp_path):
    """The ingest guarantees hold on a local folder and on an S3 object store alike."""
    from conftest import each_datastore

    return each_datastore(request, tmp_path)


def snapshot(arch: Archive):
    """Everything stored: rows visible to an admin and files in the datastore."""
    admin = arch.as_user("admin")
    return ([(r.id, r.sha256, r.is_valid) for r in admin.query(order_by="id")],
            sorted(arch.datastore.walk()))


def test_ingest_classifies_and_queries(archive, sim_frames):
    report = archive.ingest_many([p for ps in sim_frames.values() for p in ps], progress=False)
    assert not report.refused
    n_raw = sum(len(v) for k, v in sim_frames.items() if k != "static")
    assert len(archive.query(kind="raw")) == n_raw
    biases = archive.query(category="BIAS")
    assert len(biases) == len(sim_frames["BIAS"])
    b = biases[0]
    assert b.night == "2026-11-20" and b.mode == "WFM-NOAO-N"
    assert [s.ifu for s in b.ifus] == [1] and b.is_valid
    assert len(b.sha256) == 64 and b.size == sim_frames["BIAS"][0].stat().st_size
    # the stored bytes are the ingested bytes
    assert archive.path(b.id) != str(sim_frames["BIAS"][0])
    archive.verify(b.id)
    statics = {r.category for r in archive.query(kind="static")}
    assert {"LINE_CATALOG", "GEOMETRY_TABLE", "EXTINCT_TABLE"} <= statics
    assert archive.query(category="OBJECT", night="2026-11-19") == []
    assert len(archive.query(category="OBJECT", date_from="2026-11-20", date_to="2026-11-20")) == len(
        sim_frames["OBJECT"])
    assert archive.query(ifu=2, kind="raw") == []
    assert archive.count(kind="raw", ifu=1, valid=True) == n_raw
    page = archive.query(kind="raw", order_by="mjd_obs", limit=2, offset=1)
    full = archive.query(kind="raw", order_by="mjd_obs")
    assert [r.id for r in page] == [r.id for r in full[1:3]]


def test_duplicate_ingest_is_recognised(archive, sim_frames):
    f = sim_frames["BIAS"][0]
    first = archive.ingest(f)
    before = snapshot(archive)
    copy = Path(archive.config.scratch) / "renamed-copy.fits"
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(f, copy)
    again = archive.ingest(copy)
    assert first.created and not again.created
    assert again.record.id == first.record.id
    assert snapshot(archive) == before


def _corrupt_inputs(tmp_path: Path, good: Path) -> dict[str, Path]:
    out = {}
    trunc = tmp_path / "truncated.fits"
    data = good.read_bytes()
    trunc.write_bytes(data[: len(data) // 2])
    out["truncated"] = trunc
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"this is not a FITS file at all\n" * 200)
    out["not a FITS"] = junk
    other = tmp_path / "other_instrument.fits"
    with fits.open(good) as h:
        h0 = h[0].header.copy()
    h0["INSTRUME"] = "FORS2"
    fits.HDUList([fits.PrimaryHDU(header=h0), fits.ImageHDU(np.zeros((4, 4), "u2"), name="CHAN01")]).writeto(other)
    out["INSTRUME"] = other
    nodpr = tmp_path / "no_dpr.fits"
    del h0["ESO DPR TYPE"]
    h0["INSTRUME"] = "MUSE"
    fits.HDUList([fits.PrimaryHDU(header=h0), fits.ImageHDU(np.zeros((4, 4), "u2"), name="CHAN01")]).writeto(nodpr)
    out["DPR TYPE"] = nodpr
    badtype = tmp_path / "bad_type.fits"
    h0["ESO DPR TYPE"] = "COFFEE"
    fits.HDUList([fits.PrimaryHDU(header=h0), fits.ImageHDU(np.zeros((4, 4), "u2"), name="CHAN01")]).writeto(badtype)
    out["COFFEE"] = badtype
    return out


def test_corrupt_input_refused_and_nothing_changes(archive, sim_frames, tmp_path):
    archive.ingest(sim_frames["BIAS"][0])
    before = snapshot(archive)
    for expected, path in _corrupt_inputs(tmp_path, sim_frames["BIAS"][1]).items():
        with pytest.raises(InvalidFrameError, match=expected) as err:
            archive.ingest(path)
        assert str(path) in str(err.value)
    report = archive.ingest_many([tmp_path], progress=False)
    assert len(report.refused) == 5 and not report.ingested
    assert snapshot(archive) == before
    assert archive.fsck()["temporaries"] == []


def _crash_ingest(archive: Archive, path: Path, crash_at: str | None = None, kill_after: float | None = None):
    """Ingest in a separate process that is killed with SIGKILL mid-way."""
    code = (
        "import sys\nfrom musewise.config import MusewiseConfig\nfrom musewise.archive import Archive\n"
        f"a = Archive(MusewiseConfig.load(root={archive.config.root!r}, db_url={archive.config.db_url!r}, "
        f"datastore_url={archive.config.datastore_url!r}, datastore_options={dict(archive.config.datastore_options)!r}), "
        "user='admin')\n"
        f"a.ingest({str(path)!r})\n"
    )
    env = dict(os.environ)
    if crash_at:
        env["MUSEWISE_TEST_CRASH_AT"] = crash_at
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    if kill_after is not None:
        try:
            proc.wait(kill_after)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(120)


def test_ingest_is_atomic_when_the_process_is_killed(archive, sim_frames):
    f = sim_frames["OBJECT"][0]
    before = snapshot(archive)
    # killed after the file reached its final name but before the database commit
    rc = _crash_ingest(archive, f, crash_at="before-db-commit")
    assert rc == -9
    assert snapshot(archive)[0] == before[0], "no row may appear for an interrupted ingest"
    orphans = archive.fsck()["orphans"]
    assert len(orphans) == 1
    # the next ingest of the same bytes adopts the orphan instead of failing or duplicating it
    res = archive.ingest(f)
    assert res.created
    assert archive.fsck() == {"orphans": [], "temporaries": [], "missing": [], "corrupt": []}
    archive.verify(res.record.id)
    # killed at a random instant while copying: never a row without its file
    g = sim_frames["OBJECT"][1]
    _crash_ingest(archive, g, kill_after=0.8)
    rows = archive.query(category="OBJECT")
    for r in rows:
        archive.verify(r.id)
    assert archive.fsck()["missing"] == []


def test_private_data_invisible_to_others_through_every_path(archive, sim_frames):
    alice = archive.as_user("alice")
    bob = archive.as_user("bob")
    eve = archive.as_user("eve")
    carol = archive.as_user("carol")
    pub = archive.ingest(sim_frames["BIAS"][0], privilege=Privilege.PUBLIC).record
    cons = archive.ingest(sim_frames["BIAS"][1], privilege=Privilege.CONSORTIUM).record
    proj = archive.ingest(sim_frames["BIAS"][2], privilege=Privilege.PROJECT, project="galaxies").record
    # alice reduces privately: a run and a product only she may see
    run = alice.begin_run("muse_bias", {"nifu": 1}, night="2026-11-20", ifu=1,
                          inputs=[(cons.id, "BIAS", "test")], privilege=Privilege.PRIVATE)
    private = alice.finish_run(run, [(sim_frames["BIAS"][3] if len(sim_frames["BIAS"]) > 3
                                      else sim_frames["DARK"][0], "MASTER_BIAS", 1)])[0]
    assert private.privilege == Privilege.PRIVATE and private.owner == "alice"
    assert alice.get(private.id).id == private.id
    for other in (bob, carol, eve):
        ids = {r.id for r in other.query()}
        assert private.id not in ids
        assert other.count(category="MASTER_BIAS") == 0
        with pytest.raises(NotFoundError):
            other.get(private.id)
        with pytest.raises(NotFoundError):
            other.path(private.id)
        with pytest.raises(NotFoundError):
            other.provenance(private.id)
        with pytest.raises(NotFoundError):
            other.get_run(run)
        assert run not in [r.id for r in other.runs()]
        if other is eve:  # an outside user does not even see the consortium input
            with pytest.raises(NotFoundError):
                other.dependents(cons.id)
        else:
            assert private.id not in [d.id for d in other.dependents(cons.id)]
        with pytest.raises(CalibrationNotFoundError):
            other.best_calibration("MASTER_BIAS", ifu=1, mjd=private.mjd_obs or cons.mjd_obs)
    assert alice.best_calibration("MASTER_BIAS", ifu=1, mjd=cons.mjd_obs).record.id == private.id
    assert private.id in [d.id for d in alice.dependents(cons.id)]
    # privilege levels: project rows for members only, consortium rows for members, public for all
    assert {r.id for r in eve.query()} == {pub.id}
    assert proj.id in {r.id for r in bob.query()} and proj.id not in {r.id for r in carol.query()}
    assert cons.id in {r.id for r in carol.query()}
    # publishing to the project makes the product visible to project members only
    alice.publish([private.id], Privilege.PROJECT, project="galaxies")
    assert bob.get(private.id).privilege == Privilege.PROJECT
    with pytest.raises(NotFoundError):
        carol.get(private.id)
    # hostile filter values are data, not SQL
    assert archive.query(category="BIAS' OR '1'='1") == []
    assert archive.query(object="x'); DROP TABLE datasets; --") == []
    assert archive.count() >= 4


def test_unknown_user_is_refused(archive):
    with pytest.raises(PermissionDeniedError, match="not registered"):
        archive.as_user("mallory").query()


def test_validity_audit_and_rights(archive, sim_frames):
    rec = archive.ingest(sim_frames["FLAT"][0], privilege=Privilege.PROJECT, project="galaxies").record
    bob, alice, carol = (archive.as_user(n) for n in ("bob", "alice", "carol"))
    with pytest.raises(PermissionDeniedError):
        bob.set_validity(rec.id, 1, is_valid=False, comment="looks odd")
    with pytest.raises(ValueError, match="why"):
        alice.set_validity(rec.id, 1, is_valid=False)
    out = alice.set_validity(rec.id, 1, is_valid=False, flag="bad", comment="lamp off in slice 12")
    assert not out.is_valid and out.ifu_state(1).flag == "bad" and out.ifu_state(1).updated_by == "alice"
    assert archive.query(category="FLAT", valid=False)[0].id == rec.id
    assert archive.query(category="FLAT", ifu=1, valid=True) == []
    hist = archive.validity_history(rec.id)
    assert hist[-1]["user"] == "alice" and hist[-1]["valid_before"] and not hist[-1]["valid_after"]
    assert hist[-1]["comment"] == "lamp off in slice 12"
    assert alice.can_review(rec.id) and not bob.can_review(rec.id)
    with pytest.raises(NotFoundError):  # carol is not in the project: she cannot see it at all
        carol.can_review(rec.id)


def test_lineage_and_failed_runs(archive, sim_frames, tmp_path):
    raws = [archive.ingest(p).record for p in sim_frames["BIAS"]]
    run = archive.begin_run("muse_bias", {"nifu": 1, "combine": "sigclip"}, night="2026-11-20", ifu=1,
                            inputs=[(r.id, "BIAS", "raw bias of the night") for r in raws],
                            pipeline_version="muse-2.8.7")
    nb = tmp_path / "run.ipynb"
    nb.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    out = archive.finish_run(run, [(sim_frames["DARK"][0], "MASTER_BIAS", 1)], notebook=nb)
    mb = out[0]
    assert mb.kind == "calibration" and mb.run_id == run
    graph = archive.provenance(mb.id)
    made_by = graph.producer(mb.id)
    assert made_by.recipe == "muse_bias" and made_by.parameters["combine"] == "sigclip"
    assert sorted(d.id for _, d in graph.inputs(run)) == sorted(r.id for r in raws)
    assert "muse_bias" in graph.to_text() and "BIAS" in graph.to_text()
    rr = archive.get_run(run)
    assert rr.status == "succeeded" and rr.output_ids == (mb.id,)
    assert archive.get(rr.notebook_id).kind == "notebook"
    # a failed run stores its notebook and error, and no product
    before = archive.count(kind="calibration")
    run2 = archive.begin_run("muse_bias", {}, night="2026-11-20", ifu=1, inputs=[(raws[0].id, "BIAS", "")])
    archive.fail_run(run2, "esorex exited with 1: not enough frames", notebook=nb)
    r2 = archive.get_run(run2)
    assert r2.status == "failed" and "not enough frames" in r2.error and r2.output_ids == ()
    assert archive.count(kind="calibration") == before
    # a run whose output is corrupt ingests nothing at all
    run3 = archive.begin_run("muse_bias", {}, night="2026-11-20", ifu=1, inputs=[(raws[0].id, "BIAS", "")])
    bad = tmp_path / "bad.fits"
    bad.write_bytes(sim_frames["DARK"][0].read_bytes()[:100000])
    with pytest.raises(InvalidFrameError):
        archive.finish_run(run3, [(sim_frames["FLAT"][1], "MASTER_FLAT", 1), (bad, "TRACE_TABLE", 1)])
    assert archive.query(category="MASTER_FLAT") == []
    assert archive.fsck()["orphans"] == []


def test_best_calibration_by_validity_range(archive, sim_frames):
    raw = archive.ingest(sim_frames["BIAS"][0]).record
    mjd = raw.mjd_obs
    made = []
    for src in (sim_frames["FLAT"][0], sim_frames["FLAT"][1]):
        run = archive.begin_run("muse_bias", {}, night=raw.night, ifu=1, inputs=[(raw.id, "BIAS", "")])
        made += archive.finish_run(run, [(src, "MASTER_BIAS", 1)])
    older, newer = made
    choice = archive.best_calibration("MASTER_BIAS", ifu=1, mjd=mjd + 0.5, mode="WFM-NOAO-N")
    assert choice.record.id == newer.id and "newest" in choice.reason and choice.n_candidates == 2
    archive.set_validity(newer.id, 1, is_valid=False, comment="bad columns")
    assert archive.best_calibration("MASTER_BIAS", ifu=1, mjd=mjd).record.id == older.id
    with pytest.raises(CalibrationNotFoundError, match="IFU 2"):
        archive.best_calibration("MASTER_BIAS", ifu=2, mjd=mjd)
    # MASTER_BIAS is certified for +-7 d by default: 10 d later nothing covers the frame,
    # and the error names the candidate with its range.
    with pytest.raises(CalibrationNotFoundError, match="does not cover"):
        archive.best_calibration("MASTER_BIAS", ifu=1, mjd=mjd + 10)
    with pytest.raises(CalibrationNotFoundError):
        archive.best_calibration("MASTER_BIAS", ifu=1, mjd=mjd, mode="NFM-AO-N")
    static = archive.ingest(sim_frames["static"][0]).record
    assert archive.best_calibration(static.category, ifu=1, mjd=mjd + 100).record.id == static.id


def test_config_errors_are_clear(tmp_path):
    from musewise.config import MusewiseConfig

    with pytest.raises(ConfigurationError, match="unknown musewise setting"):
        MusewiseConfig.load(rooot="/x")
    with pytest.raises(ConfigurationError, match="invalid database URL|unsupported"):
        Archive.open(root=str(tmp_path), db_url="mysql+nothing://x")


def test_cli_ingest_ls_query(tmp_path, sim_frames, capsys):
    from musewise.cli import main

    root = str(tmp_path / "cli")
    assert main(["--root", root, "--user", "admin", "ingest", "-q", str(sim_frames["BIAS"][0].parent)]) == 0
    out = capsys.readouterr().out
    assert "ingested" in out
    assert main(["--root", root, "--user", "admin", "ls", "--type", "BIAS", "--ifu", "1", "--valid"]) == 0
    out = capsys.readouterr().out
    assert out.count("BIAS") >= len(sim_frames["BIAS"]) and f"{len(sim_frames['BIAS'])} of" in out
    assert main(["--root", root, "--user", "admin", "query", "--type", "OBJECT", "--format", "ids"]) == 0
    ids = capsys.readouterr().out.split()
    assert len(ids) == len(sim_frames["OBJECT"])
    assert main(["--root", root, "--user", "nobody", "ls"]) == 2
    assert "not registered" in capsys.readouterr().err
    # the console script is installed and runs
    r = subprocess.run([str(Path(sys.executable).parent / "musewise"), "--root", root, "--user", "admin",
                        "fsck"], capture_output=True, text=True)
    assert r.returncode == 0 and "orphans: 0" in r.stdout


def test_instrument_wide_and_undated_calibrations(archive, sim_frames, tmp_path):
    raw = archive.ingest(sim_frames["BIAS"][0]).record
    # an undated default (made by no recipe) is static and serves every IFU when nothing dated exists
    default = archive.ingest(next(p for p in sim_frames["static"] if "STD_RESPONSE" in p.name)).record
    assert default.kind == "static" and len(default.ifus) == 24
    assert archive.best_calibration("STD_RESPONSE", ifu=7, mjd=raw.mjd_obs).record.id == default.id
    # a merged (IFU-less) product made by a run is preferred, for any IFU
    with fits.open(sim_frames["static"][0]) as h:
        hdus = fits.HDUList([fits.PrimaryHDU(header=h[0].header.copy()), *[x.copy() for x in h[1:]]])
    hdus[0].header["ESO PRO CATG"] = "STD_RESPONSE"
    hdus[0].header["ESO PRO REC1 ID"] = "muse_standard"
    hdus[0].header["MJD-OBS"] = raw.mjd_obs
    merged = tmp_path / "STD_RESPONSE_0001.fits"
    hdus.writeto(merged)
    run = archive.begin_run("muse_standard", {}, night=raw.night, inputs=[(raw.id, "STD", "")])
    made = archive.finish_run(run, [(merged, None, None)])[0]
    assert made.kind == "calibration" and made.ifus == ()
    choice = archive.best_calibration("STD_RESPONSE", ifu=7, mjd=raw.mjd_obs)
    assert choice.record.id == made.id and "undated" not in choice.reason
