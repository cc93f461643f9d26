"""Runs that fail on the way: killed, pipeline errors, a full disk, a dead Dask worker.

Whatever stops a run, it ends recorded ``failed`` with the reason; nothing of it enters
the archive (no product row, no file left in the datastore); no run stays ``running``
(a run whose process is gone is closed when the planner next looks, see
:mod:`musewise.archive.liveness`); and the next ``dpu.make`` builds what is missing.

The liveness rules run on SQLite and PostgreSQL (``archive`` fixture, cheap); the failure
modes run the real pipeline on one IFU (``pipeline`` mark), each in its own archive.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
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
