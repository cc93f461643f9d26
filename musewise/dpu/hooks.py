"""Post-run hooks: what runs after a batch of reductions, named in the configuration.

The reduction layer must not import the layers above it (QC, releases), yet QC has to
run after every reduction. So the reduction's configuration names the functions to
call (``DpuConfig.post_run_hooks``), as ``"module.path:function"`` strings imported
when a batch of runs is prepared; the default, ``musewise.qc.runner:after_run``,
measures every new product in its QC notebook. A hook is::

    def hook(arch, outcomes, *, engine: str, progress: bool) -> object: ...

called once a batch's runs ended and their products were committed, with the
:class:`~musewise.dpu.runner.RunOutcome` of every run (failed ones included: a hook
picks what it needs) and the name of the engine the runs executed on (``local`` or
``dask``), so a hook's own work goes to the same place (:func:`run_post_run_hooks`
returns what each hook returned, by name).

A hook that raises does not undo the reduction: the products are already archived;
the error is logged and returned in place of the hook's result.

**Beside the next step.** In a cascade (:func:`~musewise.dpu.plan_table.execute_plan`)
the hooks of one step's batch need not hold up the next step: QC notebooks take a
sixth of a 24-IFU night when they run between the batches, on cores the next step's
runs could use. :class:`PostRunHooks` calls them in a background thread, beside the
next step's runs, at a lower Dask priority than the reductions (a free worker takes a
reduction first), and waits for all of them before the cascade returns. It does so
only when the runs are on Dask and no hook *gates the next step*: a hook says whether
its results can change what the next step selects through an attribute of the
function, ``hook.gates_next_step(config) -> bool`` (the QC hook does when
``QCConfig.invalidate_bad`` marks bad products invalid). A hook without that attribute
is assumed to gate, and runs between the batches as before. A hook that accepts a
``priority`` keyword gets it (``-1`` beside the next step, ``0`` otherwise), to hand to
:func:`~musewise.dpu.executor.run_all`.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from ..exceptions import ConfigurationError

log = logging.getLogger(__name__)

#: The hooks run unless the site says otherwise: QC of every product a run made.
DEFAULT_POST_RUN_HOOKS = ("musewise.qc.runner:after_run",)


def load_hook(name: str) -> Callable:
    """The function named ``"module.path:function"``.

    Raises
    ------
    ConfigurationError
        The name is not ``module:function``, the module cannot be imported, or it has
        no such callable (``No post-run hook named 'x' found``).
    """
    module, sep, attr = str(name).partition(":")
    if not sep or not module or not attr:
        raise ConfigurationError(f"post-run hook {name!r} must be written 'module.path:function'")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(f"No post-run hook named {name!r} found: {exc}") from exc
    func = getattr(mod, attr, None)
    if not callable(func):
        raise ConfigurationError(f"No post-run hook named {name!r} found: {module} has no function {attr!r}")
    return func


def load_hooks(names) -> list[tuple[str, Callable]]:
    """``(name, function)`` of each hook, all imported before any run starts (see :func:`load_hook`)."""
    return [(n, load_hook(n)) for n in names]


#: Dask priority of hook tasks that run beside the next step's runs: below the reductions' 0.
BESIDE_PRIORITY = -1


def gates_next_step(func: Callable, config) -> bool:
    """Whether ``func``'s results can change what the next step selects (so it must end first).

    ``func.gates_next_step(config)`` decides; a hook without it gates (the safe default).
    ``config`` is the site's traitlets configuration.
    """
    judge = getattr(func, "gates_next_step", None)
    return True if judge is None else bool(judge(config))


def run_post_run_hooks(arch, outcomes, hooks, *, engine: str, progress: bool = True,
                       priority: int = 0) -> dict:
    """Call each hook on a finished batch of runs.

    Parameters
    ----------
    arch : Archive
    outcomes : list of RunOutcome
    hooks : list of (name, callable)
        From :func:`load_hooks`.
    engine : str
        The engine the runs executed on (``local``, ``dask``...).
    progress : bool
    priority : int
        Dask priority of the hooks' own tasks, for a hook that takes ``priority``.

    Returns
    -------
    dict
        Hook name -> what it returned, or the exception it raised (logged, not re-raised:
        the reduction's products are archived whatever a hook does).
    """
    out = {}
    for name, func in hooks:
        kw = {"priority": priority} if "priority" in inspect.signature(func).parameters else {}
        try:
            out[name] = func(arch, list(outcomes), engine=engine, progress=progress, **kw)
        except Exception as exc:  # a broken hook must not lose a finished reduction
            log.warning("post-run hook %s failed: %s", name, exc, exc_info=True)
            out[name] = exc
    return out


class PostRunHooks:
    """The post-run hooks of a cascade of batches: between the batches, or beside the next one.

    Parameters
    ----------
    arch : Archive
        Shared with the background thread (the archive opens a database session per call).
    names : sequence of str
        ``DpuConfig.post_run_hooks``; all imported here, before any run starts.
    beside : bool
        Allow the hooks to run beside the next batch. They do only for batches on the
        ``dask`` engine, and only if no hook gates the next step (module docstring).
    progress : bool
        Progress bars of the hooks run between batches (those beside the next batch show
        none: their bars would cut through the next step's).

    Use :meth:`after` once a batch's products are archived and :meth:`wait` before the
    results are needed (the end of the cascade); ``with PostRunHooks(...) as hooks:``
    waits on leaving the block, whatever happened in it.
    """

    def __init__(self, arch, names, *, beside: bool = True, progress: bool = True):
        self.arch = arch
        self.hooks = load_hooks(names)  # a misspelt hook fails before any run
        self.progress = progress
        self.beside = beside and bool(self.hooks) and not any(
            gates_next_step(f, arch.config.config) for _n, f in self.hooks)
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []
        self._lock = threading.Lock()

    def after(self, outcomes, *, engine: str) -> Future | dict:
        """Call the hooks on a finished batch: now (returns their results, as
        :func:`run_post_run_hooks`), or beside the next batch on Dask (returns a Future of them)."""
        if not self.hooks or not any(getattr(o, "ok", False) for o in outcomes):
            return {}
        if not (self.beside and engine == "dask"):
            return run_post_run_hooks(self.arch, outcomes, self.hooks, engine=engine, progress=self.progress)
        with self._lock:
            if self._pool is None:
                # one thread: the hooks of successive batches run in the order of the batches
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="musewise-post-run-hooks")
            fut = self._pool.submit(run_post_run_hooks, self.arch, list(outcomes), self.hooks, engine=engine,
                                    progress=False, priority=BESIDE_PRIORITY)
            self._pending.append(fut)
        return fut

    def wait(self) -> list[dict]:
        """Wait for the hooks still running beside the batches; their results, in batch order."""
        with self._lock:
            pending, self._pending = self._pending, []
        out = [f.result() for f in pending]  # run_post_run_hooks never raises: a hook's error is its result
        with self._lock:
            if self._pool is not None and not self._pending:
                self._pool.shutdown(wait=True)
                self._pool = None
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.wait()
        return False


__all__ = ["BESIDE_PRIORITY", "DEFAULT_POST_RUN_HOOKS", "PostRunHooks", "gates_next_step", "load_hook",
           "load_hooks", "run_post_run_hooks"]
