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
"""

from __future__ import annotations

import importlib
import logging
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


def run_post_run_hooks(arch, outcomes, hooks, *, engine: str, progress: bool = True) -> dict:
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

    Returns
    -------
    dict
        Hook name -> what it returned, or the exception it raised (logged, not re-raised:
        the reduction's products are archived whatever a hook does).
    """
    out = {}
    for name, func in hooks:
        try:
            out[name] = func(arch, list(outcomes), engine=engine, progress=progress)
        except Exception as exc:  # a broken hook must not lose a finished reduction
            log.warning("post-run hook %s failed: %s", name, exc, exc_info=True)
            out[name] = exc
    return out


__all__ = ["DEFAULT_POST_RUN_HOOKS", "load_hook", "load_hooks", "run_post_run_hooks"]
