"""Whether a "running" run still has a process behind it, and closing those that do not.

A run is recorded ``running`` when it begins (:func:`musewise.archive.lineage.begin_run`)
and ends ``succeeded`` or ``failed`` when its process says so. A process killed on the
way (SIGKILL, the kernel's OOM killer, a dead Dask worker, a reboot) says nothing, and
its run would stay ``running`` forever. So every run records who runs it, in its
``details``:

* ``host``, ``pid``, ``pid_started`` (the process's start time, s since the epoch, so a
  pid reused by a later process is not taken for the run's) and ``boot_id`` (the
  kernel's boot, so a pid after a reboot is not either);
* ``heartbeat``: refreshed by the executing process every
  ``DpuConfig.heartbeat_interval`` seconds while the notebook runs (a lease).

:func:`stale_runs` finds the runs that are dead, by the strongest evidence there is:

1. on this host (same host name and boot): the process is gone, or another process now
   has its pid ("process N on host H is gone");
2. on another host, or after a reboot (PostgreSQL, shared by several machines): its
   heartbeat is older than ``lease`` seconds ("no heartbeat for ...");
3. a run recorded before runs had either (no pid, no heartbeat): started longer ago
   than ``max_age`` (the longest a run may take: the recipe's time limit and the
   notebook's).

A run whose process is alive is never closed, whatever its age: the evidence is
the process. :func:`close_stale_runs` records those found as failed with the reason.
The planner (and ``musewise runs``) call it before they look, so the steps of a killed
run are planned again; nothing of a killed run was archived (its products only enter
the datastore in :func:`~musewise.archive.lineage.finish_run`'s transaction), and the
work dir it left is kept, as a failed run's is.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from datetime import datetime, timezone

from sqlalchemy import select, update

from ..vocabulary import RunStatus
from .schema import Run, utcnow

#: Two start times of one process agree to this (s): /proc's clock ticks, rounding.
_START_TOLERANCE = 2.0


def host_name() -> str:
    """This machine's name as runs record it."""
    return os.uname().nodename or socket.gethostname()


def boot_id() -> str:
    """The kernel's boot ID (changes at each reboot), or ``""`` where there is none."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def process_started(pid: int) -> float | None:
    """When process ``pid`` started (s since the epoch), None if there is no such process."""
    import psutil

    try:
        return float(psutil.Process(int(pid)).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        # AccessDenied: it exists (another user's); say so by a start time we cannot compare.
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return float("nan")
        return float("nan")


#: Where a batch system tells a job its ID (the only way it tells it): ``{variable: system}``.
BATCH_JOB_VARIABLES = {"SLURM_JOB_ID": "slurm", "PBS_JOBID": "pbs", "LSB_JOBID": "lsf", "JOB_ID": "sge"}


def batch_job() -> str:
    """``system:id`` of the batch job this process runs in (``slurm:1234``), or ``""``."""
    for variable, system in BATCH_JOB_VARIABLES.items():
        if os.environ.get(variable):
            return f"{system}:{os.environ[variable]}"
    return ""


def process_identity(pid: int | None = None) -> dict:
    """What a run records of the process that runs it (``host``, ``pid``, ``pid_started``, ``boot_id``,
    and ``batch_job`` when it runs in one: the job an operator cancels or whose log one reads)."""
    pid = os.getpid() if pid is None else int(pid)
    ident = {"host": host_name(), "pid": pid, "pid_started": process_started(pid), "boot_id": boot_id()}
    job = batch_job() if pid == os.getpid() else ""
    if job:
        ident["batch_job"] = job
    return ident


def now_text() -> str:
    """Now in UTC, as a heartbeat is recorded (ISO 8601)."""
    return utcnow().replace(tzinfo=None).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True)
class StaleRun:
    """A run recorded ``running`` whose process is gone.

    Attributes
    ----------
    run_id : int
    recipe : str
    reason : str
        Why it is taken for dead (recorded as the run's error).
    """

    run_id: int
    recipe: str
    reason: str


def judge(run_started: datetime, details: dict, *, now: datetime, lease: float, max_age: float) -> str:
    """Why a ``running`` run is dead, or ``""`` if it may be alive (see the module docstring).

    Parameters
    ----------
    run_started : datetime
        When the run began (UTC, naive).
    details : dict
        The run's details (``host``, ``pid``, ``pid_started``, ``boot_id``, ``heartbeat``).
    now : datetime
        UTC, naive.
    lease : float
        Age of a heartbeat after which a run of another host is dead (s).
    max_age : float
        Age after which a run that records neither pid nor heartbeat is dead (s).
    """
    host, pid = details.get("host"), details.get("pid")
    same_machine = host == host_name() and (details.get("boot_id") or "") == boot_id()
    if pid is not None and same_machine:
        started = process_started(int(pid))
        if started is None:
            return f"process {pid} on host {host} is gone (killed, or its machine stopped)"
        recorded = details.get("pid_started")
        if recorded is not None and started == started and abs(started - float(recorded)) > _START_TOLERANCE:
            return f"process {pid} on host {host} is gone (another process has its pid now)"
        return ""
    beat = details.get("heartbeat")
    if beat:
        age = (now - datetime.fromisoformat(beat)).total_seconds()
        if age > lease:
            why = "after a reboot" if host == host_name() else f"on host {host}"
            return (f"no heartbeat for {age:.0f} s (lease {lease:.0f} s) from process {pid} {why}: "
                    f"taken for dead")
        return ""
    age = (now - run_started).total_seconds()
    if pid is None and age > max_age:
        return (f"still 'running' {age / 3600:.1f} h after it began, longer than any run may take "
                f"({max_age:.0f} s), with no process or heartbeat recorded: taken for dead")
    if pid is not None and age > lease:
        # another host's run that never beat (it died before its first heartbeat)
        return f"no heartbeat in {age:.0f} s from process {pid} on host {host}: taken for dead"
    return ""


def stale_runs(arch, *, lease: float = 600.0, max_age: float = 2 * 86400.0) -> list[StaleRun]:
    """The runs recorded ``running`` that have no live process (any user's: death is a fact).

    Parameters
    ----------
    lease : float
        Heartbeat age after which a run of another host is dead (s).
    max_age : float
        Age after which a run that records no process is dead (s).
    """
    now = utcnow().replace(tzinfo=None)
    with arch.session() as s:
        rows = s.execute(select(Run.id, Run.recipe, Run.started, Run.details)
                         .where(Run.status == RunStatus.RUNNING.value)).all()
    out = []
    for rid, recipe, started, details in rows:
        if started is not None and started.tzinfo is not None:
            started = started.astimezone(timezone.utc).replace(tzinfo=None)
        why = judge(started or now, dict(details or {}), now=now, lease=lease, max_age=max_age)
        if why:
            out.append(StaleRun(rid, recipe, why))
    return out


def close_stale_runs(arch, *, lease: float = 600.0, max_age: float = 2 * 86400.0) -> list[StaleRun]:
    """Record every stale run (:func:`stale_runs`) as failed with its reason; returns them.

    Each run is closed in its own transaction, only if it is still ``running`` then (a
    run that ended meanwhile is left as it ended). Its work dir is left for looking into.
    """
    closed = []
    for st in stale_runs(arch, lease=lease, max_age=max_age):
        with arch.transaction() as tx:
            # One conditional UPDATE: of two processes closing the same run, or of a closer
            # and a run finishing at that instant, only one changes its status.
            done = tx.session.execute(
                update(Run).where(Run.id == st.run_id, Run.status == RunStatus.RUNNING.value)
                .values(status=RunStatus.FAILED.value, ended=utcnow(),
                        error=f"the run's process died: {st.reason}")).rowcount
            if done != 1:
                continue
            run = tx.session.get(Run, st.run_id)
            run.details = {**(run.details or {}), "closed_as_stale": now_text()}
        closed.append(st)
    return closed


def heartbeat(arch, run_id: int) -> bool:
    """Refresh a running run's lease; False if the run is no longer ``running`` (closed meanwhile)."""
    with arch.transaction() as tx:
        run = tx.session.get(Run, int(run_id))
        if run is None or run.status != RunStatus.RUNNING.value:
            return False
        run.details = {**(run.details or {}), "heartbeat": now_text()}
        return True


def lease_expiry(interval: float) -> float:
    """The lease (s) that goes with a heartbeat interval: several missed beats, at least 2 min."""
    return max(120.0, 5.0 * float(interval))


__all__ = ["StaleRun", "boot_id", "close_stale_runs", "heartbeat", "host_name", "judge", "lease_expiry",
           "now_text", "process_identity", "process_started", "stale_runs"]
