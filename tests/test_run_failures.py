"""Runs that fail on the way: killed, pipeline errors, a full disk, a dead Dask worker.

Whatever stops a run, it ends recorded ``failed`` with the reason; nothing of it enters
the archive (no product row, no file left in the datastore); no run stays ``running``
(a run whose process is gone is closed when the planner next looks, see
:mod:`musewise.archive.liveness`); and the next ``dpu.make`` builds what is missing.

The liveness rules run on SQLite and PostgreSQL (``archive`` fixture, cheap); the failure
modes run the real pipeline on one IFU (``pipeline`` mark), each in its own archive.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from musewise import dpu
from musewise.archive.liveness import boot_id, host_name, judge, process_identity
from musewise.exceptions import ReductionFailed

NIGHT = "2026-11-20"
REPO = Path(__file__).resolve().parents[1]
pipeline = pytest.mark.pipeline


def _dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _set_started(arch, run_id, ago: float) -> None:
    # Test set-up only: a run that began `ago` seconds ago (the archive has no API to back-date).
    from musewise.archive.schema import Run, utcnow

    with arch.transaction() as tx:
        tx.session.get(Run, run_id).started = utcnow() - timedelta(seconds=ago)


def _running(arch) -> list:
    return arch.as_user("admin").runs(status="running")


# ------------------------------------------------------------------------------ liveness rules
def test_a_run_whose_process_is_gone_is_closed_as_failed_and_a_live_one_never(archive):
    dead = _dead_pid()
    gone = archive.begin_run("muse_bias", {}, night=NIGHT, ifu=1, details={"pid": dead, "pid_started": 1.0})
    mine = archive.begin_run("muse_bias", {}, night=NIGHT, ifu=2)  # this process: alive
    _set_started(archive, mine, 30 * 86400)  # however old: its process is alive
    reused = archive.begin_run("muse_bias", {}, night=NIGHT, ifu=3,
                               details={"pid": os.getpid(), "pid_started": 12345.0})  # the pid, another process
    assert archive.get_run(mine).details["pid"] == os.getpid()
    assert archive.get_run(mine).details["host"] == host_name()

    closed = archive.close_stale_runs()
    assert sorted(st.run_id for st in closed) == sorted([gone, reused])
    run = archive.get_run(gone)
    assert run.status == "failed"
    assert f"process {dead} on host {host_name()} is gone" in run.error
    assert run.ended is not None
    assert "another process has its pid" in archive.get_run(reused).error
    assert archive.get_run(mine).status == "running"
    # Closed once: looking again closes nothing, and the live run can still finish.
    assert archive.close_stale_runs() == []
    archive.finish_run(mine, [])
    assert archive.get_run(mine).status == "succeeded"


def test_runs_of_another_host_are_judged_by_their_lease(archive):
    """On a shared PostgreSQL another host's pid says nothing here: its heartbeat does."""
    from musewise.archive.liveness import now_text

    other = {"host": "another-node", "pid": 4242, "boot_id": "b", "pid_started": 1.0}
    fresh = archive.begin_run("muse_flat", {}, night=NIGHT, ifu=1, details={**other, "heartbeat": now_text()})
    young = archive.begin_run("muse_flat", {}, night=NIGHT, ifu=2, details=other)  # not yet beaten
    old = archive.begin_run("muse_flat", {}, night=NIGHT, ifu=3, details=other)
    archive.heartbeat_run(old)
    _set_started(archive, old, 3600)
    from musewise.archive.schema import Run

    with archive.transaction() as tx:  # its last heartbeat 20 minutes ago
        r = tx.session.get(Run, old)
        r.details = {**r.details, "heartbeat": (r.started + timedelta(seconds=2400)).isoformat()}
    assert {st.run_id for st in archive.close_stale_runs(lease=600)} == {old}
    assert "no heartbeat for" in archive.get_run(old).error and "another-node" in archive.get_run(old).error
    assert archive.get_run(fresh).status == "running" and archive.get_run(young).status == "running"
    # the heartbeat of a closed run says so (the executor stops beating)
    assert archive.heartbeat_run(old) is False
    assert archive.heartbeat_run(fresh) is True


def test_a_run_recorded_before_runs_had_a_pid_is_closed_after_the_longest_run_time(archive):
    legacy = archive.begin_run("muse_scibasic", {}, night=NIGHT, ifu=1)
    recent = archive.begin_run("muse_scibasic", {}, night=NIGHT, ifu=2)
    from musewise.archive.schema import Run

    with archive.transaction() as tx:  # as this morning's runs were recorded: a host, no pid
        for rid in (legacy, recent):
            r = tx.session.get(Run, rid)
            r.details = {"host": r.details["host"], "step": "scibasic"}
    _set_started(archive, legacy, 9 * 3600)
    closed = archive.close_stale_runs(max_age=5 * 3600)
    assert [st.run_id for st in closed] == [legacy]
    assert "with no process or heartbeat recorded" in archive.get_run(legacy).error
    assert archive.get_run(recent).status == "running"


def test_judge_after_a_reboot_uses_the_lease():
    now = __import__("datetime").datetime(2026, 12, 1, 12, 0, 0)
    d = {**process_identity(), "boot_id": "an-earlier-boot", "heartbeat": "2026-12-01T11:59:00"}
    assert judge(now, d, now=now, lease=600, max_age=1e9) == ""  # pid alive, but another boot: lease holds
    d["heartbeat"] = "2026-12-01T11:00:00"
    assert "after a reboot" in judge(now, d, now=now, lease=600, max_age=1e9)
    assert boot_id()  # Linux: the check has a boot to compare


def test_musewise_runs_lists_runs_after_closing_the_dead(archive_config, capsys):
    from musewise.archive import Archive
    from musewise.cli import main

    arch = Archive(archive_config, user="admin")
    try:
        dead = _dead_pid()
        rid = arch.begin_run("muse_bias", {}, night=NIGHT, ifu=1, details={"pid": dead})
    finally:
        arch.close()
    assert main(["--root", archive_config.root, "--db-url", archive_config.db_url, "runs", "--user", "admin"]) == 0
    out = capsys.readouterr().out
    assert f"closed run {rid} (muse_bias) as failed: process {dead} on host" in out
    assert f"run {rid:>6} muse_bias" in out and " failed " in out
    assert main(["--root", archive_config.root, "--db-url", archive_config.db_url, "runs", "--user", "admin",
                 "--status", "running"]) == 0
    assert "no runs" in capsys.readouterr().out


# ------------------------------------------------------------------------------ real pipeline
def _need_esorex():
    from conftest import need

    need(shutil.which("esorex") is not None, "esorex not installed (apt-get install esorex cpl-plugin-muse)")


@pytest.fixture(scope="module")
def bias_night(tmp_path_factory):
    """Three bias frames of IFUs 1 and 2 (what muse_bias needs, the cheapest pipeline step)."""
    from conftest import fixture_tmp
    from musewise.inm import simulate_night

    with fixture_tmp(tmp_path_factory, "failures-night") as out:
        paths = simulate_night(out, night=NIGHT, ifus=(1, 2), n_bias=3, n_dark=0, n_flat=0, n_arc_per_lamp=0,
                               n_skyflat=0, n_std=0, n_object=0, seed=5, progress=False, static=False)
        yield [Path(p) for p in paths]


def _open(root: Path, dpu_settings: dict | None = None, **kw):
    from traitlets.config import Config

    from musewise.archive import Archive
    from musewise.config import MusewiseConfig

    cfg = MusewiseConfig.load(root=str(root), user="admin", project="consortium", **kw)
    if dpu_settings:
        cfg.config = Config({"DpuConfig": dpu_settings})
    return Archive(cfg, user="admin")


def _ingested(root: Path, frames, dpu_settings: dict | None = None, **kw):
    arch = _open(root, dpu_settings, **kw)
    rep = arch.ingest_many(frames, progress=False)
    assert not rep.refused, rep.refused
    return arch


def _assert_nothing_half_made(arch, failed_run_id):
    """No product of the failed run, no file of it in the datastore, no run left running."""
    assert arch.query(run_id=failed_run_id) == [] or all(
        r.kind == "notebook" for r in arch.query(run_id=failed_run_id))
    report = arch.fsck()
    assert report["orphans"] == [] and report["temporaries"] == [] and report["missing"] == [], report
    assert _running(arch) == []


_MAKE = textwrap.dedent("""
    import sys
    from musewise import dpu
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig

    arch = Archive(MusewiseConfig.load(root=sys.argv[1], user="admin", project="consortium"), user="admin")
    dpu.make("bias", sys.argv[2], [int(i) for i in sys.argv[3].split(",")], dry_run=False, archive=arch,
             engine="local", progress=False)
""")


def _make_in_new_process(root: Path, ifus="1", **popen):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", _MAKE, str(root), NIGHT, ifus], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _wait_for_esorex(arch, parent, timeout: float = 300.0):
    """The running run once esorex runs below ``parent`` (a ``psutil.Process``): mid-way through the reduction."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        runs = _running(arch)
        procs = parent.children(recursive=True)
        if runs and any("esorex" in " ".join(p.cmdline()) for p in procs if p.is_running()):
            return runs[0], procs
        time.sleep(0.2)
    raise AssertionError("esorex never started")


@pipeline
def test_killed_reduction_is_closed_as_failed_and_the_next_make_picks_up(tmp_path, bias_night):
    """(a) SIGKILL the process running ``dpu.make`` and all it started, mid-way; then a new process."""
    import psutil

    _need_esorex()
    root = tmp_path / "root"
    arch = _ingested(root, bias_night)
    proc = _make_in_new_process(root)
    try:
        run, children = _wait_for_esorex(arch, psutil.Process(proc.pid))
        for p in [psutil.Process(proc.pid)] + children:  # the whole tree: python, kernel, esorex
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        proc.wait(30)
        psutil.wait_procs(children, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    # What was seen this morning: the killed run says "running" until someone looks.
    assert arch.get_run(run.id).status == "running"
    assert run.details["pid"] == proc.pid

    again = _make_in_new_process(root)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    assert f"run {run.id} (muse_bias) closed as failed: process {proc.pid} on host {host_name()} is gone" in out
    killed = arch.get_run(run.id)
    assert killed.status == "failed" and killed.ended is not None
    assert f"process {proc.pid} on host {host_name()} is gone" in killed.error
    assert killed.output_ids == () and killed.notebook_id is None
    _assert_nothing_half_made(arch, run.id)
    # The new process rebuilt what the killed one did not make.
    (bias,) = arch.query(category="MASTER_BIAS")
    made_by = arch.get_run(bias.run_id)
    assert made_by.status == "succeeded" and made_by.id > run.id
    arch.verify(bias.id)
    assert dpu.plan("bias", NIGHT, [1], archive=arch).todo == []
    arch.close()


@pipeline
def test_pipeline_error_fails_the_runs_and_the_cascade_and_a_good_make_picks_up(tmp_path, bias_night):
    """(b) A bad parameter that passes the checks and esorex refuses: both IFUs' runs fail with esorex's reason."""
    _need_esorex()
    arch = _ingested(tmp_path / "root", bias_night)
    with pytest.raises(ReductionFailed) as exc:
        dpu.make("bias", NIGHT, [1, 2], dry_run=False, archive=arch, engine="local", progress=False,
                 p={"combine": "minmax", "nlow": 5, "nhigh": 5})
    outcomes = exc.value.outcomes
    assert sorted(o.ifu for o in outcomes) == [1, 2]  # the second IFU ran although the first failed
    for o in outcomes:
        run = arch.get_run(o.run_id)
        assert run.status == "failed"
        assert "esorex exited with status" in run.error, run.error
        assert run.notebook_id is not None  # the executed notebook shows the error
        _assert_nothing_half_made(arch, run.id)
    assert arch.query(category="MASTER_BIAS") == []
    dpu.make("bias", NIGHT, [1, 2], dry_run=False, archive=arch, engine="local", progress=False)
    assert sorted(r.ifu for r in arch.query(category="MASTER_BIAS")) == [1, 2]
    assert _running(arch) == []
    arch.close()


def _fill_when_esorex_runs(where: Path, leave: int) -> threading.Thread:
    """Another user's file fills ``where``'s filesystem to ``leave`` free bytes once esorex runs.

    The plan's disk check (:mod:`musewise.dpu.diskneed`) found room before the run started;
    the disk filling during the run is what only the run itself can meet.
    """
    import psutil

    def esorex_runs(me) -> bool:
        for p in me.children(recursive=True):
            try:
                if "esorex" in " ".join(p.cmdline()):
                    return True
            except psutil.Error:  # gone, or a zombie, while we looked
                pass
        return False

    def fill():
        me = psutil.Process()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 300 and not esorex_runs(me):
            time.sleep(0.1)
        free = shutil.disk_usage(where).free
        with open(where / "another-users-file", "wb") as fh:
            os.posix_fallocate(fh.fileno(), 0, max(free - leave, 0))

    t = threading.Thread(target=fill, daemon=True)
    t.start()
    return t


@pipeline
def test_full_datastore_fails_the_run_and_leaves_no_partial_file(tmp_path, bias_night, small_fs):
    """(c) The datastore's filesystem fills while the run goes: the run fails, nothing is left."""
    from musewise.dpu.diskneed import BYTES_PER_IFU

    _need_esorex()
    raw = sum(p.stat().st_size for p in bias_night)
    disk = small_fs("disk", raw + 300 * 2**20)  # room for the plan's estimate of a master bias
    store = disk / "store"
    arch = _ingested(tmp_path / "root", bias_night, datastore_url=str(store))
    before = sorted(p.relative_to(store) for p in store.rglob("*") if p.is_file())
    filler = _fill_when_esorex_runs(disk, 3 * 2**20)  # then 3 MiB: not a master bias
    with pytest.raises(ReductionFailed) as exc:
        dpu.make("bias", NIGHT, [1], dry_run=False, archive=arch, engine="local", progress=False)
    filler.join(10)
    (o,) = exc.value.outcomes
    run = arch.get_run(o.run_id)
    assert run.status == "failed"
    assert "archiving the products failed" in run.error and "No space left on device" in run.error, run.error
    _assert_nothing_half_made(arch, run.id)
    assert arch.query(category="MASTER_BIAS") == []
    # No partial product: only the raw frames, and the failed run's executed notebook (it fitted).
    notebook = [Path(arch.path(run.notebook_id)).relative_to(store)] if run.notebook_id else []
    assert sorted(p.relative_to(store) for p in store.rglob("*") if p.is_file()) == sorted(before + notebook)
    assert Path(o.workdir).is_dir()  # the failed run's work dir, with its products, is kept for looking into

    (disk / "another-users-file").unlink()  # room made: the next make picks up
    dpu.make("bias", NIGHT, [1], dry_run=False, archive=arch, engine="local", progress=False)
    (bias,) = arch.query(category="MASTER_BIAS")
    arch.verify(bias.id)
    # What the plan expected a master bias to take is what the pipeline wrote.
    assert abs(bias.size / BYTES_PER_IFU["MASTER_BIAS"] - 1) < 0.05, bias.size
    assert _running(arch) == []
    arch.close()


@pipeline
def test_full_work_dir_fails_the_run_with_the_reason(tmp_path, bias_night, small_fs):
    """(c) The work dir's filesystem fills while esorex writes its product."""
    _need_esorex()
    scratch = small_fs("scratch", 300 * 2**20)  # room for the plan's estimate of the run
    arch = _ingested(tmp_path / "root", bias_night, scratch=str(scratch / "work"))
    filler = _fill_when_esorex_runs(scratch, 8 * 2**20)  # then the notebook and logs fit, not a master bias
    with pytest.raises(ReductionFailed) as exc:
        dpu.make("bias", NIGHT, [1], dry_run=False, archive=arch, engine="local", progress=False)
    filler.join(10)
    (o,) = exc.value.outcomes
    run = arch.get_run(o.run_id)
    assert run.status == "failed"
    assert "No space left on device" in run.error, run.error
    _assert_nothing_half_made(arch, run.id)
    assert arch.query(category="MASTER_BIAS") == []
    (scratch / "another-users-file").unlink()
    dpu.make("bias", NIGHT, [1], dry_run=False, archive=arch, engine="local", progress=False)
    assert len(arch.query(category="MASTER_BIAS")) == 1
    assert _running(arch) == []
    arch.close()


def _esorex_of(run, timeout: float = 300.0):
    """The esorex process of a running run of a batch job (it runs under slurmstepd, not below us)."""
    import psutil

    job = run.details.get("batch_job", "").partition(":")[2]
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for p in psutil.process_iter(["name"]):
            try:
                if p.info["name"] == "esorex" and p.environ().get("SLURM_JOB_ID") == job:
                    return p
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        time.sleep(0.2)
    raise AssertionError(f"no esorex in batch job {job}")


@pipeline
@pytest.mark.parametrize("cluster", ["local", "site", "slurm"])
def test_dead_dask_worker_fails_its_run_and_the_others_go_on(tmp_path, bias_night, cluster):
    """(d) The Dask worker running one IFU's run dies: killed as the OOM killer would, or its Slurm batch
    job cancelled (``scancel``). Its run is closed as failed with the reason, the other IFU's run goes on,
    and Dask's retry on a fresh worker makes the product. On musewise's own LocalCluster; on a site's
    scheduler given by address, whose nanny starts the dead worker again; on Slurm, where dask-jobqueue
    submits a new job."""
    import psutil

    from conftest import another_cluster
    from musewise.dpu.engine import close_clients

    _need_esorex()
    with contextlib.ExitStack() as stack:
        if cluster == "local":
            settings, dpu_settings, site = {"n_workers": 2}, {}, None
        else:
            settings, dpu_settings, site = stack.enter_context(another_cluster(cluster, tmp_path))
        arch = _ingested(tmp_path / "root", bias_night, dpu_settings, **settings)
        workers_before = set(site.worker_pids().values()) if cluster == "site" else set()
        killed: dict = {}

        def kill_one_worker():
            try:
                if cluster == "slurm":
                    run = _wait_for_batch_run(arch)
                    _esorex_of(run)  # mid-way through the reduction
                    site.cancel(run.details["batch_job"].partition(":")[2])
                    killed.update(run=run, pid=run.details["pid"])
                    return
                run, _ = _wait_for_esorex(arch, psutil.Process(os.getpid()))
                worker = psutil.Process(run.details["pid"])
                tree = [worker] + worker.children(recursive=True)
                for p in tree:
                    try:
                        p.send_signal(signal.SIGKILL)
                    except psutil.NoSuchProcess:
                        pass
                killed.update(run=run, pid=worker.pid)
            except Exception as exc:  # reported by the assertions below
                killed["error"] = exc

        killer = threading.Thread(target=kill_one_worker)
        killer.start()
        try:
            dpu.make("bias", NIGHT, [1, 2], dry_run=False, archive=arch, engine="dask", progress=False)
        finally:
            killer.join()
            close_clients()
        assert "error" not in killed, killed
        run = arch.get_run(killed["run"].id)
        assert run.status == "failed"
        assert f"process {killed['pid']} on host {host_name()} is gone" in run.error, run.error
        _assert_nothing_half_made(arch, run.id)
        biases = arch.query(category="MASTER_BIAS")
        assert sorted(b.ifu for b in biases) == [1, 2]  # the other run went on; the killed one was run again
        assert all(arch.get_run(b.run_id).status == "succeeded" for b in biases)
        assert run.id not in {b.run_id for b in biases}
        assert dpu.plan("bias", NIGHT, [1, 2], archive=arch).todo == []
        if cluster == "site":  # the site's nanny replaced the dead worker: two workers again, one of them new
            assert killed["pid"] in workers_before
            site.wait_for_workers(2, time.time() + 60)
            workers_after = set(site.worker_pids().values())
            assert len(workers_after) == 2 and killed["pid"] not in workers_after
        if cluster == "slurm":  # the retry ran in another batch job
            again = arch.get_run(next(b.run_id for b in biases if b.ifu == run.ifu))
            assert again.details["batch_job"] != run.details["batch_job"]
            states = {f"slurm:{j['JobId']}": j["JobState"] for j in site.jobs()}
            assert states[run.details["batch_job"]] == "CANCELLED", states
        arch.close()


def _wait_for_batch_run(arch, timeout: float = 300.0):
    """The first running run that records its batch job."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        runs = [r for r in _running(arch) if r.details.get("batch_job")]
        if runs:
            return runs[0]
        time.sleep(0.2)
    raise AssertionError("no run started in a batch job")


# ------------------------------------------------------------------------------ logged errors
@pytest.mark.parametrize("line, fails", [
    ("[ ERROR ] muse_fake: Could not save product MASTER_FAKE.fits: No space left on device", True),
    ("[ ERROR ] cpl_propertylist_save: Input/output error", True),
    ("[ ERROR ] muse_fake: only 3 of 5 sources found; offsets set to zero", False),  # the pipeline goes on
])
def test_esorex_exit_0_after_a_failed_write_fails_the_recipe(tmp_path, line, fails):
    """esorex may exit 0 after CPL logged that a product could not be written: the product is not trusted."""
    from test_recipes import stand_in_esorex

    from musewise.exceptions import RecipeError
    from musewise.recipes.esorex import EsorexRecipe

    esorex = stand_in_esorex(tmp_path / "fakebin", f'echo "[ INFO  ] muse_fake: working"\necho "{line}"\nexit 0')
    rec = EsorexRecipe("muse_fake", esorex=esorex, cache=False)
    raw = tmp_path / "raw.fits"
    raw.touch()
    sof = [(raw, "FAKE")] * 3 + [(raw, "MASTER_BIAS")]
    if fails:
        with pytest.raises(RecipeError, match="esorex logged an error it did not stop on") as exc:
            rec.run(sof, tmp_path / "w", {}, ifu=1)
        assert line.split("] ", 1)[1] in str(exc.value)
    else:
        assert rec.run(sof, tmp_path / "w", {}, ifu=1).returncode == 0
