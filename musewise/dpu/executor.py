"""The notebook-run executor: one archived run of one papermill notebook.

Reductions (:mod:`musewise.dpu.runner`) and QC (:mod:`musewise.qc.runner`) execute
notebooks the same way, here:

1. :meth:`Archive.begin_run` records the run (committed at once, so a crash stays on record);
2. a fresh work dir ``<scratch>/<user>/<folder...>/run<id><suffix>`` is made;
3. papermill executes the notebook there on the kernel ``MusewiseConfig.kernel_name``
   (:func:`musewise.kernel.papermill_options`), a fresh one started while the previous
   run executed (:mod:`musewise.dpu.kernelpool`, ``DpuConfig.warm_kernels``), or for one of
   musewise's own notebooks one that earlier such notebooks used, reset in between
   (``NotebookJob.kernel_kind`` in ``DpuConfig.shared_kernels``; recorded as the run's
   ``kernel_notebook``); when the kernel dies or never starts
   before the notebook wrote its side file (two kernels started at the same instant by
   two workers can collide), the work dir is emptied and the notebook starts afresh,
   once (``kernel_retries``); a cell's own error or a time-out is not retried;
4. the JSON side file the notebook wrote (``NotebookJob.result_file``) is read back;
5. the caller judges it and calls :meth:`NotebookRun.finish` (products and the executed
   notebook archived in one transaction) or :meth:`NotebookRun.fail` (the reason and the
   executed notebook, showing the error, archived; no product).

While the notebook runs, a thread refreshes the run's lease (``NotebookJob.heartbeat``):
a run whose process is killed is found by its dead pid, or its stale lease from another
host, and closed as failed (:mod:`musewise.archive.liveness`).

Work dirs: a succeeded run's folder is removed (its products were moved into the
datastore) unless ``keep_workdir``; a failed run's folder is always kept, for looking into.

:func:`run_all` runs many of them on the configured engine (``DpuConfig.engine``:
here or on Dask); a worker reopens the archive from plain, picklable settings
(:func:`archive_settings`, :func:`open_archive`), so reductions and QC reach Dask
by the same path.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import shutil
import threading
from pathlib import Path
from typing import Callable

from sqlalchemy.engine import make_url


@dataclasses.dataclass
class NotebookJob:
    """What to execute: the run to record, the notebook and where its outcome is written.

    Attributes
    ----------
    recipe : str
        Recipe name the run is recorded under (``muse_bias``, ``qc_bias``).
    params : dict
        The run's parameters, as recorded.
    template : path-like
        The notebook to execute.
    folder : tuple of str
        Folders of the work dir below ``<scratch>/<user>`` (``("dpu", night, recipe)``).
    parameters : callable
        ``parameters(run_id, workdir) -> dict``: the notebook's papermill parameters.
    result_file : str
        Name of the JSON side file the notebook writes in its work dir.
    timeout : int
        Longest time one cell may run (s).
    notebook_stem : str
        The executed notebook is ``<notebook_stem>_run<id>.ipynb`` (default: the recipe).
    suffix : str
        Appended to the work dir's name (``-ifu01``).
    run_kw : dict
        Further keywords of :meth:`Archive.begin_run` (night, ifu, mode, inputs, privilege...).
    keep_workdir : bool
        Keep a succeeded run's work dir.
    heartbeat : float
        How often the run's lease is refreshed while the notebook runs (s; 0: never).
    kernel_kind : str
        Which of musewise's own notebooks this is: ``qc``, ``reduction`` (a shipped template),
        or empty for any other (a site's own notebook). A kind listed in
        ``DpuConfig.shared_kernels`` may execute in a kernel that earlier notebooks of that
        user used, reset between them (``DpuConfig.kernel_reuse_limit``,
        :mod:`musewise.dpu.kernel_state`); any other gets a fresh kernel.
    """

    recipe: str
    params: dict
    template: str | Path
    folder: tuple[str, ...]
    parameters: Callable[[int, Path], dict]
    result_file: str
    timeout: int
    notebook_stem: str = ""
    suffix: str = ""
    run_kw: dict = dataclasses.field(default_factory=dict)
    keep_workdir: bool = False
    heartbeat: float = 60.0
    kernel_kind: str = ""


@dataclasses.dataclass
class NotebookRun:
    """An executed notebook run, waiting to be finished or failed by its caller.

    Attributes
    ----------
    run_id : int
    workdir : Path
    notebook : Path or None
        The executed notebook (None if papermill never wrote one).
    result : dict or None
        The side file's content (None if the notebook wrote none).
    error : str
        Why papermill stopped (``ename: evalue``), empty if the notebook ran through.
    kernel_retries : list of str
        Errors of attempts abandoned because the kernel died.
    keep_workdir : bool
    kernel_notebook : int
        Which notebook this was of the kernel that executed it (1: a fresh kernel; more:
        one that earlier notebooks used, reset in between).
    """

    run_id: int
    workdir: Path
    notebook: Path | None
    result: dict | None
    error: str = ""
    kernel_retries: list[str] = dataclasses.field(default_factory=list)
    keep_workdir: bool = False
    kernel_notebook: int = 1

    def details(self, **more) -> dict:
        """Run details to record: the kernel retries and the kernel's reuse (if any) and ``more``."""
        d = {"kernel_retries": list(self.kernel_retries)} if self.kernel_retries else {}
        if self.kernel_notebook > 1:
            d["kernel_notebook"] = self.kernel_notebook
        d.update(more)
        return d

    def fail(self, arch, reason: str, details: dict | None = None) -> None:
        """Record the run as failed with ``reason`` and the executed notebook; the work dir is kept.

        If the notebook cannot be archived (a full datastore), the run is failed without
        it, the reason saying so: a failure is always recorded.
        """
        try:
            arch.fail_run(self.run_id, reason, notebook=self.notebook, details=details)
        except Exception as exc:
            if self.notebook is None:
                raise
            arch.fail_run(self.run_id, f"{reason}\n\n(the executed notebook {self.notebook} could not be "
                          f"archived: {error_text(exc)})", notebook=None, details=details)

    def finish(self, arch, outputs=(), details: dict | None = None) -> list:
        """Archive the products and the executed notebook (one transaction); drop the work dir.

        Parameters
        ----------
        outputs : iterable of (path, category or None, ifu or None)
            Product files (moved into the datastore unless the work dir is kept).

        Returns
        -------
        list of DatasetRecord
            As :meth:`Archive.finish_run`.
        """
        made = arch.finish_run(self.run_id, outputs, notebook=self.notebook, details=details,
                               move=not self.keep_workdir)
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return made


def workdir_of(config, user: str, folder, run_id: int, suffix: str = "") -> Path:
    """The work dir of a run: ``<scratch>/<user>/<folder...>/run<id><suffix>`` (unique: named by its run ID)."""
    return Path(config.scratch, user, *folder, f"run{run_id:06d}{suffix}")


def execute_notebook(arch, job: NotebookJob, *, retries: int = 1) -> NotebookRun:
    """Record a run and execute its notebook (steps 1-4 of the module docstring).

    Parameters
    ----------
    arch : Archive
    job : NotebookJob
    retries : int
        How many times a notebook whose kernel died is started afresh.

    Returns
    -------
    NotebookRun
        Never raises for a failing notebook: ``error`` and ``result`` say what happened;
        the caller finishes or fails the run.
    """
    import papermill as pm

    from ..kernel import papermill_options
    from .config import DpuConfig
    from .kernelpool import kernel_pool

    dcfg = DpuConfig.from_config(arch.config)
    pool = (kernel_pool(arch.config.kernel_name, dcfg.kernel_preload, dcfg.warm_kernel_idle, dcfg.kernel_reuse_limit)
            if dcfg.warm_kernels else None)
    # a kernel is shared only among one user's runs of musewise's own notebooks
    shared = job.kernel_kind and job.kernel_kind in dcfg.shared_kernels and dcfg.kernel_reuse_limit > 1
    shared_by = arch.user_name if shared else None
    run_id = arch.begin_run(job.recipe, job.params, **job.run_kw)
    workdir = workdir_of(arch.config, arch.user_name, job.folder, run_id, job.suffix)
    out_nb = workdir / f"{job.notebook_stem or job.recipe}_run{run_id:06d}.ipynb"
    attempts: list[str] = []
    result, error, nth = None, "", 1
    beat = _Heartbeat(arch, run_id, job.heartbeat)
    try:
        if workdir.exists():  # a leftover of an earlier database with the same run IDs
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        parameters = job.parameters(run_id, workdir)
        for attempt in range(retries + 1):
            error, died, km = "", False, None
            try:
                options = papermill_options(arch.config.kernel_name)
                if pool is not None:  # a fresh kernel, started while the previous run executed
                    options["km"] = km = pool.take(workdir, shared_by=shared_by)
                    nth = km.notebooks + 1
                pm.execute_notebook(str(job.template), str(out_nb), parameters=parameters, cwd=str(workdir),
                                    **options, execution_timeout=int(job.timeout))
            except Exception as exc:  # PapermillExecutionError, a dead kernel, a time-out, a full disk...
                error, died = error_text(exc), kernel_died(exc)
            finally:
                if km is not None and shared_by is not None and not error:
                    pool.give_back(km, shared_by)  # reset, then the next such notebook's
                elif km is not None:
                    pool.retire(km)  # one reduction run per kernel: no state passes to the next run
            result = read_side_file(workdir / job.result_file)
            if not (error and died and result is None) or attempt == retries:
                break
            attempts.append(error)
            for p in workdir.iterdir():
                if p.is_file():
                    p.unlink()
    except Exception as exc:  # the work dir could not be made (a full disk...): the run fails, not the caller
        error = f"preparing the run's work dir {workdir} failed: {error_text(exc)}"
    finally:
        beat.stop()  # before the caller finishes or fails the run: no write of the lease after it
    return NotebookRun(run_id, workdir, out_nb if out_nb.exists() else None, result, error, attempts,
                       job.keep_workdir, nth)


class _Heartbeat:
    """Refreshes a run's lease every ``interval`` seconds from a daemon thread, until stopped.

    The lease tells another host (or this one after a reboot) that the run's process is
    alive (:mod:`musewise.archive.liveness`); a failed refresh (database busy) is tried at
    the next beat rather than stopping the run.
    """

    def __init__(self, arch, run_id: int, interval: float):
        self.arch, self.run_id, self.interval = arch, run_id, float(interval)
        self._stop = threading.Event()
        self._thread = None
        if self.interval > 0:
            self._beat()
            self._thread = threading.Thread(target=self._loop, name=f"heartbeat-run{run_id}", daemon=True)
            self._thread.start()

    def _beat(self) -> bool:
        try:
            return self.arch.heartbeat_run(self.run_id)
        except Exception:  # a busy or briefly unreachable database: the next beat tries again
            return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._beat():
                return  # the run was closed meanwhile: nothing to keep alive

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def kernel_died(exc: BaseException) -> bool:
    """Whether papermill stopped because the kernel died or never started (worth a retry).

    A cell's own exception (``PapermillExecutionError``) or a cell's time-out is what
    the notebook does; running it again would do it again.
    """
    from nbclient.exceptions import CellTimeoutError
    from papermill.exceptions import PapermillExecutionError

    return not isinstance(exc, (PapermillExecutionError, CellTimeoutError))


def read_side_file(path) -> dict | None:
    """The JSON a notebook wrote beside itself, or None if it wrote none (or a truncated one)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except ValueError:  # the kernel died while writing it
        return None


def error_text(exc: BaseException) -> str:
    """``ename: evalue`` of a cell's exception, else ``Type: message``."""
    ename = getattr(exc, "ename", None)
    if ename:
        return f"{ename}: {getattr(exc, 'evalue', '')}"
    return f"{type(exc).__name__}: {exc}"


def run_all(arch, task: Callable, items, *, engine: str | None = None, progress: bool = True, desc: str = "",
            heavy=None, on_error: Callable | None = None, priority: int = 0, **task_kw) -> list:
    """Apply ``task`` to each item on the configured execution engine; results in order.

    ``task(item, settings=..., arch=..., **task_kw)`` must be a module-level function
    (Dask pickles it). On the ``local`` engine it gets this process's ``arch``; on Dask
    it gets ``arch=None`` and reopens the archive from ``settings``
    (:func:`open_archive`), as every worker must.

    Parameters
    ----------
    arch : Archive
    task : callable
    items : sequence
        Picklable (RunSpec, dataset IDs...).
    engine : str, optional
        ``local``, ``dask`` or ``auto`` (default ``DpuConfig.engine``); ``auto`` is local
        for a single item, Dask for several.
    heavy : sequence of bool, optional
        Items that hold much memory: at most ``DpuConfig.heavy_concurrency`` run at once.
    on_error : callable, optional
        ``on_error(item, exc)`` makes the result of an item whose task raised or whose
        worker died, and the other items go on (default: raise).
    priority : int
        Dask priority of the items: below 0 (QC beside a cascade's next step), a free
        worker takes the other items waiting first.

    After the items ran, runs whose process died meanwhile (a Dask worker killed
    mid-run, its task retried elsewhere) are closed as failed
    (:meth:`Archive.close_stale_runs`).
    """
    from .config import DpuConfig
    from .engine import get_engine

    items = list(items)
    dcfg = DpuConfig.from_config(arch.config)
    name = engine_name(engine or dcfg.engine, len(items), arch.config)
    settings = archive_settings(arch.config, arch.user_name)
    if name == "local":
        func = functools.partial(task, settings=settings, arch=arch, **task_kw)
    else:
        func = functools.partial(task, settings=settings, **task_kw)
    eng = get_engine(name, arch.config, dcfg)
    # an engine written before on_error or priority existed still works (without on_error, a
    # lost item raises; without priority, items start in the order they were given)
    takes = inspect.signature(eng.map).parameters
    kw = {"on_error": on_error} if on_error is not None and "on_error" in takes else {}
    if priority and "priority" in takes:
        kw["priority"] = priority
    try:
        return eng.map(func, items, progress=progress, desc=desc, heavy=heavy, **kw)
    finally:
        arch.close_stale_runs(**dcfg.stale_limits())


def engine_name(name: str, n_items: int, config=None) -> str:
    """The engine ``name`` resolves to for ``n_items`` items.

    ``auto`` is Dask for several items, and for one when this process already holds a
    running Dask client for ``config`` (a cascade's earlier step started the cluster): a
    memory-heavy run alone in its step (twilight, standard, one exposure's scipost) then
    shares the cluster's heavy-run limit with the QC running there beside it. Otherwise
    one item runs here, without starting a cluster for it.
    """
    if name == "auto":
        from .engine import has_client

        return "dask" if n_items > 1 or (config is not None and has_client(config)) else "local"
    return name


def archive_settings(config, user: str) -> dict:
    """Plain settings from which a worker reopens the archive (a dict, picklable)."""
    d = dict(config.as_dict())
    d["user"] = user
    return d


def public_settings(settings: dict) -> dict:
    """``settings`` without secrets (the database password), for notebooks."""
    d = dict(settings)
    try:
        d["db_url"] = make_url(d["db_url"]).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as nothing rather than leaked
        d["db_url"] = ""
    return d


def open_archive(settings: dict):
    """An :class:`~musewise.archive.Archive` from :func:`archive_settings` (cached per process)."""
    from ..archive import Archive
    from ..config import MusewiseConfig

    key = json.dumps(settings, sort_keys=True, default=str)
    arch = _ARCHIVES.get(key)
    if arch is None:
        s = dict(settings)
        user = s.pop("user", None)
        known = set(MusewiseConfig.class_trait_names(config=True))
        arch = Archive(MusewiseConfig.load(**{k: v for k, v in s.items() if k in known}), user=user)
        _ARCHIVES[key] = arch
    return arch


_ARCHIVES: dict = {}

__all__ = ["NotebookJob", "NotebookRun", "archive_settings", "engine_name", "error_text", "execute_notebook", "kernel_died",
           "open_archive", "public_settings", "read_side_file", "run_all", "workdir_of"]
