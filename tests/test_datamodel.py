"""The archive's data model: collections, identity apart from bytes, validity, certified calibrations.

Each test runs on SQLite and on a real PostgreSQL server (the ``archive`` fixture).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from musewise.archive.datastore import sha256_file
from musewise.exceptions import (
    CalibrationNotFoundError,
    PermissionDeniedError,
    ReferenceInputError,
    ReleaseRefusedError,
)
from musewise.products import testing as pt
from musewise.qc import testing as qct
from musewise.vocabulary import Privilege


def _run(arch, src, category, inputs=(), *, ifu=1, reference=False, recipe="muse_bias", night="2026-11-20"):
    """One run of ``recipe`` on ``inputs`` that made the file ``src``: the product's record."""
    run = arch.begin_run(recipe, {}, night=night, ifu=ifu, inputs=[(i, "INPUT", "test") for i in inputs],
                         reference=reference,
                         privilege=Privilege(arch.config.reference_privilege) if reference else Privilege.PRIVATE)
    return arch.finish_run(run, [(str(src), category, ifu)])[0]


@pytest.fixture
def bias_files(tmp_path):
    """Three raw biases and two different master-bias files made from them (same night, IFU 1)."""
    t0 = datetime(2026, 11, 20, 18)
    raws = [pt.write_raw_bias(tmp_path / f"MUSE.bias.{k}.fits", t0, seed=k) for k in range(3)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = pt.write_master_bias(tmp_path / "a" / "MASTER_BIAS-01.fits", raws, 0.0, t0)
    b = pt.write_master_bias(tmp_path / "b" / "MASTER_BIAS-01.fits", raws, 1.0, t0)
    return raws, a, b


def test_two_identical_runs_give_two_datasets_with_the_pipelines_bytes(archive, bias_files):
    raws, master, _ = bias_files
    raw_ids = [archive.ingest(p).record.id for p in raws]
    before = Path(master).read_bytes()
    one = _run(archive, master, "MASTER_BIAS", raw_ids)
    two = _run(archive, master, "MASTER_BIAS", raw_ids)
    assert one.id != two.id and one.run_id != two.run_id and one.collection != two.collection
    assert archive.get_run(one.run_id).output_ids == (one.id,)
    assert archive.get_run(two.run_id).output_ids == (two.id,)
    # the listing names each run's products as the single lookup does
    listed = {r.id: r.output_ids for r in archive.runs()}
    assert listed[one.run_id] == (one.id,) and listed[two.run_id] == (two.id,)
    assert {k: v.output_ids for k, v in archive.get_runs([one.run_id, two.run_id]).items()} == {
        one.run_id: (one.id,), two.run_id: (two.id,)}
    # Nothing is written into products: both are the pipeline's file byte for byte, stored once.
    assert Path(master).read_bytes() == before
    assert one.sha256 == two.sha256 == sha256_file(master)[0] and one.storage_path == two.storage_path
    assert Path(archive.path(two.id)).read_bytes() == before
    # Raw frames are still recognised when ingested again.
    again = archive.ingest(raws[0])
    assert not again.created and again.record.id == raw_ids[0]


def test_a_cube_marked_bad_is_neither_selected_nor_released(archive, tmp_path):
    from musewise.release import create_release

    cube = qct.archive_product(archive, pt.write_cube(tmp_path / "DATACUBE_FINAL.fits", datetime(2026, 11, 21, 2)),
                               "muse_scipost", [], ifu=None, category="DATACUBE_FINAL")
    assert cube.ifus == () and cube.usable
    path = archive.search_path()
    assert [r.id for r in archive.find("DATACUBE_FINAL", collections=path, night="2026-11-20")] == [cube.id]
    out = archive.set_validity(cube.id, is_valid=False, flag="bad", comment="sky residuals at 5577 A")
    assert (out.is_valid, out.flag, out.comment) == (False, "bad", "sky residuals at 5577 A")
    assert archive.find("DATACUBE_FINAL", collections=path, night="2026-11-20") == []
    assert archive.query(category="DATACUBE_FINAL", valid=True) == []
    with pytest.raises(ReleaseRefusedError, match="marked invalid"):
        create_release(archive, "DR9", "1", [cube.id])
    hist = archive.validity_history(cube.id)
    assert (hist[-1]["ifu"], hist[-1]["valid_before"], hist[-1]["valid_after"]) == (None, True, False)


def test_invalidation_by_any_path_marks_dependents_affected(archive, bias_files, tmp_path):
    from musewise.release import create_release

    raws, master, _ = bias_files
    raw_ids = [archive.ingest(p).record.id for p in raws]
    bias = _run(archive, master, "MASTER_BIAS", raw_ids)
    flat = _run(archive, pt.write_master(tmp_path / "MASTER_FLAT-01.fits", "MASTER_FLAT",
                                          np.ones((8, 8), "f4"), datetime(2026, 11, 20, 19)),
                "MASTER_FLAT", [bias.id], recipe="muse_flat")
    cube = _run(archive, pt.write_cube(tmp_path / "DATACUBE_FINAL.fits", datetime(2026, 11, 21, 2)),
                "DATACUBE_FINAL", [flat.id], ifu=None, recipe="muse_scipost")
    # A raw bias (this one holds IFU 1 only) invalid: what was made from it is affected, up to the cube.
    archive.set_validity(raw_ids[0], 1, is_valid=False, comment="readout glitch")
    assert not archive.get(raw_ids[0]).usable
    assert {r.id for r in archive.affected(raw_ids[0])} == {bias.id, flat.id, cube.id}
    assert not archive.get(cube.id).usable and archive.get(cube.id).affected_by == raw_ids[0]
    assert archive.find("DATACUBE_FINAL", night="2026-11-20") == []
    with pytest.raises(ReleaseRefusedError, match="affected"):
        create_release(archive, "DR9", "1", [cube.id])
    assert any(e["flag_after"] == "affected" for e in archive.validity_history(cube.id))
    # Valid again: the mark it caused is lifted.
    archive.set_validity(raw_ids[0], 1, is_valid=True, comment="glitch was in the quick-look only")
    assert archive.get(cube.id).usable and archive.affected(raw_ids[0]) == []


@pytest.fixture
def reference_and_trial(archive, bias_files):
    """The project's reference master bias, then a newer private trial of alice's (alice is in the project).

    Returns (raw ids, reference record, trial record, alice's archive).
    """
    raws, ref_file, trial_file = bias_files
    raw_ids = [archive.ingest(p).record.id for p in raws]
    alice = archive.as_user("alice")
    archive.add_member("alice", "consortium", "member")
    ref = _run(archive, ref_file, "MASTER_BIAS", raw_ids, reference=True)
    trial = _run(alice, trial_file, "MASTER_BIAS", raw_ids)
    return raw_ids, ref, trial, alice


def test_reference_runs_read_only_the_reference_reduction(archive, reference_and_trial):
    raw_ids, ref, trial, alice = reference_and_trial
    assert ref.collection.startswith("consortium/run/") and trial.collection.startswith("u/alice/run/")
    assert ref.collection in archive.collection("consortium/reference").members
    mjd = ref.mjd_obs
    # Her own work prefers her trial; a reference run ignores it and says why.
    assert alice.best_calibration("MASTER_BIAS", ifu=1, mjd=mjd).record.id == trial.id
    choice = alice.best_calibration("MASTER_BIAS", ifu=1, mjd=mjd, reference=True)
    assert choice.record.id == ref.id and choice.collection == "consortium/calib"
    lost = {lo.dataset_id: lo.reason for lo in choice.losers}
    assert "personal trial of alice" in lost[trial.id] and "reference run reads only" in lost[trial.id]
    # Handing the private input to a reference run is refused, naming it.
    with pytest.raises(ReferenceInputError, match=f"#{trial.id}.*u/alice/run"):
        alice.begin_run("muse_flat", {}, night="2026-11-20", ifu=1, inputs=[(trial.id, "MASTER_BIAS", "")],
                        reference=True)
    # Only members of the project write its reference reduction.
    with pytest.raises(PermissionDeniedError, match="not a member"):
        archive.as_user("carol").begin_run("muse_bias", {}, night="2026-11-20", ifu=1,
                                           inputs=[(raw_ids[0], "BIAS", "")], reference=True)


def test_a_new_member_sees_the_reference_reduction_at_once(archive, bias_files):
    raws, ref_file, _ = bias_files
    raw_ids = [archive.ingest(p).record.id for p in raws]
    ref = _run(archive, ref_file, "MASTER_BIAS", raw_ids, reference=True)
    archive.add_user("newcomer")  # first login from the hub: registered, in no project
    new = archive.as_user("newcomer")
    assert [r.id for r in new.query(category="MASTER_BIAS")] == [ref.id]
    assert new.best_calibration("MASTER_BIAS", ifu=1, mjd=ref.mjd_obs).record.id == ref.id
    assert new.query(category="MASTER_BIAS", collections=["consortium/reference"])[0].id == ref.id
    assert archive.as_user("eve").query(category="MASTER_BIAS") == []  # outside users: public data only


def test_outside_its_certified_range_a_calibration_loses_with_the_reason(archive, bias_files):
    raws, first, second = bias_files
    raw_ids = [archive.ingest(p).record.id for p in raws]
    a = _run(archive, first, "MASTER_BIAS", raw_ids)
    b = _run(archive, second, "MASTER_BIAS", raw_ids)
    mjd = a.mjd_obs
    assert [c.begin_mjd for c in archive.certifications(dataset_id=a.id)] == [pytest.approx(mjd - 7)]
    assert archive.best_calibration("MASTER_BIAS", ifu=1, mjd=mjd).record.id == b.id  # newest first
    # A reviewer narrows b's range to the night before: b is no longer chosen, and says why.
    archive.certify(b.id, "u/admin/calib", mjd - 3, mjd - 0.5, comment="bias level jumped after the warm-up")
    choice = archive.best_calibration("MASTER_BIAS", ifu=1, mjd=mjd)
    assert choice.record.id == a.id
    lost = {lo.dataset_id: lo.reason for lo in choice.losers}
    assert "does not cover" in lost[b.id]
    # Another user's calibrations and personal collection are not theirs to change, even when shared.
    archive.publish([a.id], Privilege.CONSORTIUM)
    with pytest.raises(PermissionDeniedError):
        archive.as_user("alice").certify(a.id, "u/admin/calib", mjd - 1, mjd + 1, comment="x")
    from musewise.archive.calibrations import certification_history

    hist = certification_history(archive, b.id)
    assert [h["action"] for h in hist] == ["certify", "change"] and hist[-1]["user"] == "admin"
    # Withdrawn altogether: nothing covers, and the error says what was refused.
    archive.decertify(a.id, "u/admin/calib", comment="superseded")
    with pytest.raises(CalibrationNotFoundError, match="does not cover"):
        archive.best_calibration("MASTER_BIAS", ifu=1, mjd=mjd)


def test_search_path_is_the_users_to_see_and_set(reference_and_trial):
    _, ref, trial, alice = reference_and_trial
    assert alice.search_path()[:2] == ["u/alice/calib", "u/alice"]
    assert alice.find("MASTER_BIAS")[0].id == trial.id
    alice.collections = ["consortium/calib", "consortium/reference", "MUSE/raw"]
    assert [r.id for r in alice.find("MASTER_BIAS")] == [ref.id]
    assert alice.best_calibration("MASTER_BIAS", ifu=1, mjd=ref.mjd_obs).record.id == ref.id
    # Personal chains are the user's own; a project's chains are its managers'.
    alice.define_chain("u/alice/mine", ["u/alice/calib", "consortium/calib"])
    assert alice.collection("u/alice/mine").members == ("u/alice/calib", "consortium/calib")
    with pytest.raises(PermissionDeniedError, match="may not change"):
        alice.define_chain("consortium/reference", ["u/alice"])


def _build_0002_archive(url: str, datastore: Path) -> None:
    """An archive as revision 0002 left it, with rows written as the code of that time wrote them."""
    from musewise.archive.database import make_engine, upgrade

    eng = make_engine(url)
    upgrade(eng, "0002")
    now = "2026-11-20 12:00:00"
    rows = [
        "INSERT INTO users (id, name, full_name, email, is_admin, is_member, created) VALUES "
        "(1, 'admin', '', '', true, true, :now), (2, 'alice', '', '', false, true, :now)",
        "INSERT INTO projects (id, name, description, created) VALUES (1, 'consortium', '', :now)",
        "INSERT INTO files (id, sha256, size, path, original_name, created) VALUES "
        "(1, 'a1', 10, 'raw/2026-11-20/BIAS/a1_b.fits', 'b.fits', :now), "
        "(2, 'a2', 10, 'static/undated/GEOMETRY_TABLE/a2_g.fits', 'g.fits', :now), "
        "(3, 'a3', 10, 'calibration/2026-11-20/run000001/MASTER_BIAS/a3_m.fits', 'm.fits', :now), "
        "(4, 'a4', 10, 'calibration/2026-11-20/run000002/MASTER_BIAS/a4_m.fits', 'm.fits', :now)",
        "INSERT INTO runs (id, recipe, parameters, night, ifu, status, user_id, project_id, privilege, started, "
        "details) VALUES (1, 'muse_bias', '{}', '2026-11-20', 1, 'succeeded', 1, 1, 2, :now, '{}'), "
        "(2, 'muse_bias', '{}', '2026-11-20', 1, 'succeeded', 2, 1, 1, :now, '{}')",
        "INSERT INTO datasets (id, kind, category, file_id, night, date_obs, mjd_obs, mode, ifu, owner_id, "
        "project_id, privilege, run_id, created) VALUES "
        "(1, 'raw', 'BIAS', 1, '2026-11-20', '2026-11-20 18:00:00', 61364.75, 'WFM-NOAO-N', NULL, 1, 1, 3, NULL, :now), "
        "(2, 'static', 'GEOMETRY_TABLE', 2, NULL, NULL, NULL, NULL, NULL, 1, 1, 3, NULL, :now), "
        "(3, 'calibration', 'MASTER_BIAS', 3, '2026-11-20', '2026-11-20 18:00:00', 61364.75, 'WFM-NOAO-N', 1, 1, 1, "
        "2, 1, :now), "
        "(4, 'calibration', 'MASTER_BIAS', 4, '2026-11-20', '2026-11-20 18:00:00', 61364.75, 'WFM-NOAO-N', 1, 2, 1, "
        "1, 2, :now)",
        "INSERT INTO dataset_ifus (dataset_id, ifu, is_valid, flag, comment) VALUES "
        "(1, 1, true, 'good', ''), (1, 2, false, 'bad', 'lamp'), (3, 1, true, 'good', ''), "
        "(4, 1, false, 'bad', 'stripes')",
        "INSERT INTO run_inputs (run_id, dataset_id, tag, reason) VALUES (1, 1, 'BIAS', ''), (2, 1, 'BIAS', '')",
    ]
    with eng.begin() as conn:
        for sql in rows:
            conn.execute(text(sql.replace("true", "1").replace("false", "0") if url.startswith("sqlite")
                              else sql), {"now": now})
        if not url.startswith("sqlite"):  # as if the rows had taken their ids from the sequences
            for table in ("users", "projects", "files", "runs", "datasets"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT max(id) FROM {table}))"))
    eng.dispose()


def test_migration_0003_upgrades_an_archive_of_0002(db_url, tmp_path):
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig

    _build_0002_archive(db_url, tmp_path / "datastore")
    arch = Archive(MusewiseConfig.load(root=str(tmp_path / "root"), db_url=db_url, user="admin"), user="admin")
    raw, static, ref, trial = (arch.get(i) for i in (1, 2, 3, 4))
    assert (raw.collection, static.collection) == ("MUSE/raw", "MUSE/static")
    assert ref.collection == "consortium/run/000001" and trial.collection == "u/alice/run/000002"
    assert arch.collection("consortium/reference").members == ("consortium/run/000001",)
    assert arch.collection("u/alice").members == ("u/alice/run/000002",)
    # Verdicts: a single-IFU product takes its IFU's; a raw exposure keeps its per-IFU ones.
    assert (ref.is_valid, ref.flag) == (True, "good") and (trial.is_valid, trial.flag) == (False, "bad")
    assert raw.is_valid and raw.usable_for(1) and not raw.usable_for(2)
    assert raw.exposure == "2026-11-20T18:00:00"
    # Calibrations certified: the master bias for its category's default range, the static table open.
    (c,) = arch.certifications(dataset_id=3)
    assert c.collection == "consortium/calib" and c.begin_mjd == pytest.approx(61364.75 - 7)
    assert [(s.collection, s.begin_mjd, s.end_mjd) for s in arch.certifications(dataset_id=2)] == [
        ("MUSE/calib", None, None)]
    assert arch.best_calibration("MASTER_BIAS", ifu=1, mjd=61365.0, reference=True).record.id == 3
    # Rows now share files freely: a second dataset of file 3 is accepted.
    with arch.engine.begin() as conn:
        conn.execute(text("INSERT INTO datasets (kind, category, file_id, owner_id, privilege, collection_id, "
                          "is_valid, flag, comment, created) SELECT kind, category, file_id, owner_id, privilege, "
                          "collection_id, is_valid, flag, comment, created FROM datasets WHERE id = 3"))
    assert arch.count(category="MASTER_BIAS") == 3


def test_ingest_and_products_can_move_into_the_datastore(archive, bias_files, tmp_path):
    import shutil

    raws, master, _ = bias_files
    copy = tmp_path / "moved.fits"
    shutil.copy(raws[0], copy)
    rec = archive.ingest(copy, move=True).record
    assert not copy.exists() and Path(archive.path(rec.id)).read_bytes() == Path(raws[0]).read_bytes()
    # A product moved by a transaction that fails goes back where it was.
    work = tmp_path / "work" / "MASTER_BIAS-01.fits"
    work.parent.mkdir()
    shutil.copy(master, work)
    run = archive.begin_run("muse_bias", {}, night="2026-11-20", ifu=1, inputs=[(rec.id, "BIAS", "")])
    with pytest.raises(Exception):
        archive.finish_run(run, [(str(work), "MASTER_BIAS", 1)], notebook=tmp_path / "missing.ipynb", move=True)
    assert work.exists() and archive.get_run(run).status == "running"
    made = archive.finish_run(run, [(str(work), "MASTER_BIAS", 1)], move=True)
    assert not work.exists() and made[0].sha256 == sha256_file(master)[0]
    assert archive.fsck(verify_checksums=True) == {"orphans": [], "temporaries": [], "missing": [], "corrupt": []}


def test_the_sql_page_shows_certifications_and_verdicts_only_of_visible_datasets(archive, bias_files):
    from musewise.web.sqlpage import run_readonly_sql

    raws, _, trial_file = bias_files
    raw_ids = [archive.ingest(p).record.id for p in raws]
    trial = _run(archive.as_user("alice"), trial_file, "MASTER_BIAS", raw_ids)  # private to alice
    sql = "SELECT dataset_id, begin_mjd FROM certifications"
    assert [r[0] for r in run_readonly_sql(archive.as_user("alice"), sql)[1]] == [trial.id]
    assert run_readonly_sql(archive.as_user("bob"), sql)[1] == []
    cols, rows = run_readonly_sql(archive.as_user("alice"), f"SELECT is_valid, flag, collection_id FROM datasets "
                                                             f"WHERE id = {trial.id}")
    assert cols == ["is_valid", "flag", "collection_id"] and rows[0][:2] == (1, "unchecked")


def test_migration_0004_adds_the_sources_table_to_an_archive_of_0003(db_url, tmp_path):
    """An archive of 0003 (built as 0002 then upgraded) gains an empty ``sources`` table; its rows stay."""
    from musewise.archive import Archive
    from musewise.archive.database import make_engine, upgrade
    from musewise.config import MusewiseConfig

    _build_0002_archive(db_url, tmp_path / "datastore")
    eng = make_engine(db_url)
    upgrade(eng, "0003")
    with eng.connect() as conn:
        n_datasets = conn.scalar(text("SELECT count(*) FROM datasets"))
    eng.dispose()
    arch = Archive(MusewiseConfig.load(root=str(tmp_path / "root"), db_url=db_url, user="admin"), user="admin")
    with arch.engine.connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "0005"
        assert conn.scalar(text("SELECT count(*) FROM sources")) == 0
        assert conn.scalar(text("SELECT count(*) FROM datasets")) == n_datasets
    assert arch.sources() == [] and arch.get(3).category == "MASTER_BIAS"
