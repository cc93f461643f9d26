"""``dpu.run``: reduce one step of a night, recorded in the archive with full lineage."""

from __future__ import annotations

import time

from ..exceptions import InvalidArgumentError, ParameterError, ReductionFailed
from ..vocabulary import Privilege
from .config import DpuConfig
from .executor import engine_name, run_all
from .hooks import PostRunHooks
from .runner import RunOutcome, execute_run
from .selection import RunSpec, select_runs
from .steps import get_step


def open_default_archive(archive=None):
    """``archive``, or the archive of the default configuration."""
    if archive is not None:
        return archive
    from ..archive import Archive

    return Archive.open()


def validate_parameters(step_name: str, p: dict | None, dcfg: DpuConfig) -> dict:
    """Site defaults overlaid with ``p``, checked against the recipe before anything runs.

    Raises
    ------
    ParameterError
        Unknown, mistyped, or reserved (``nifu``, ``merge``: musewise sets them) parameter.
    """
    from ..recipes import get_recipe

    step = get_step(step_name)
    recipe = get_recipe(step.recipe)
    for reserved in ("nifu", "merge"):
        if reserved in (p or {}):
            raise ParameterError(step.recipe, f"parameter {reserved!r} is set by musewise from the "
                                 f"IFUs requested; use ifu=... instead")
    return recipe.validate(dcfg.parameters_for(step.recipe, p))


def prepare(recipe: str, date: str | None, ifu=None, *, commit: bool = False, p: dict | None = None,
            archive=None, mode: str | None = None, collections=None, target: str | None = None) -> list[RunSpec]:
    """Validate parameters and choose inputs: the runs :func:`run` would execute.

    ``commit=True`` prepares runs of the project's reference reduction: inputs come
    from its reference path only (``collections`` is then refused). With ``target``
    (an ``OBJECT``), steps reducing products take only the target's exposures, and a
    per-night combination takes those of every night of the target (``date`` may be None).

    Raises
    ------
    ParameterError, CalibrationNotFoundError, NotFoundError
        Before anything runs.
    """
    from ..recipes import configure

    arch = open_default_archive(archive)
    configure(arch.config)  # the site's esorex describes and checks the recipes
    dcfg = DpuConfig.from_config(arch.config)
    step = get_step(recipe)
    params = validate_parameters(step.name, p, dcfg)
    ifus = None if ifu is None else ([ifu] if isinstance(ifu, int) else list(ifu))
    if commit and collections is not None:
        raise ParameterError(step.recipe, "a reference run (commit=True) reads the project's reference path; "
                                          "collections=... is for personal trials")
    privilege = Privilege(arch.config.reference_privilege) if commit else Privilege.PRIVATE
    return select_runs(arch, step, None if date is None else str(date), ifus=ifus, mode=mode, params=params,
                       privilege=int(privilege), project=arch.config.project, reference=bool(commit),
                       collections=collections, target=target, windows=dcfg.window_for)


def execute(specs: list[RunSpec], archive, *, engine: str | None = None, progress: bool = True,
            desc: str = "", hooks: bool | PostRunHooks = True) -> list[RunOutcome]:
    """Execute prepared runs (in parallel on Dask when there are several), then the post-run hooks.

    Parameters
    ----------
    specs : list of RunSpec
    archive : Archive
    engine : str, optional
        ``local``, ``dask`` or ``auto`` (default ``DpuConfig.engine``).
    progress : bool
    desc : str
        Label of the progress bar.
    hooks : bool or PostRunHooks
        Call ``DpuConfig.post_run_hooks`` (QC of the new products by default) once the
        runs' products are archived, on the same engine. A cascade passes its
        :class:`~musewise.dpu.hooks.PostRunHooks`, which may run them beside its next
        batch (and waits for them at its end).

    Raises
    ------
    ConfigurationError
        A post-run hook cannot be imported; nothing ran.
    """
    dcfg = DpuConfig.from_config(archive.config)
    if hooks is True:
        hooks = PostRunHooks(archive, dcfg.post_run_hooks, beside=False, progress=progress)
    dpu_settings = {k: getattr(dcfg, k) for k in ("templates_dir", "keep_workdirs", "run_timeout",
                                                  "heartbeat_interval")}
    heavy = [s.recipe in dcfg.heavy_recipes for s in specs]
    name = engine_name(engine or dcfg.engine, len(specs), archive.config)
    dpu_settings["recipe_threads"] = recipe_threads(name, heavy, archive.config, dcfg)
    outcomes = run_all(archive, execute_run, specs, engine=name, progress=progress,
                       desc=desc or (specs[0].step if specs else "run"), heavy=heavy, dpu_settings=dpu_settings,
                       on_error=lost_run)
    if hooks:
        hooks.after(outcomes, engine=name)
    return outcomes


def recipe_threads(engine: str, heavy, config, dcfg) -> int:
    """OpenMP threads of each pipeline call of a batch of runs (``heavy``: which are heavy_recipes).

    On a batch cluster, the cores each job asks for (``job_cpu`` of
    :meth:`DpuConfig.batch_job_kwargs`): a job runs one call at a time. Elsewhere this
    host's cores shared by the runs executing at once (:func:`runs_at_once`); a site's
    ``DpuConfig.recipe_threads`` wins over both.
    """
    from .engine import is_batch_cluster

    if engine == "dask" and is_batch_cluster(config) and not int(dcfg.recipe_threads):
        return int(dcfg.batch_job_kwargs(heavy=any(heavy))["job_cpu"])
    return dcfg.threads_per_run(runs_at_once(engine, heavy, int(config.n_workers), int(dcfg.heavy_concurrency)))


def runs_at_once(engine: str, heavy, n_workers: int, heavy_concurrency: int) -> int:
    """How many runs of a batch execute at the same time: what shares the host's cores.

    One on the ``local`` engine; on Dask at most ``n_workers``, and at most
    ``heavy_concurrency`` heavy runs (the light ones then fill the other workers).
    """
    heavy = list(heavy)
    if engine == "local" or not heavy:
        return 1
    n_heavy = sum(map(bool, heavy))
    light = len(heavy) - n_heavy
    return max(1, min(n_workers, min(n_heavy, max(1, heavy_concurrency)) + light))


def lost_run(spec: RunSpec, exc: BaseException) -> RunOutcome:
    """The outcome of a run whose Dask worker died (``KilledWorker``): the other runs go on.

    Its archived run (if it began) is closed as failed by :meth:`Archive.close_stale_runs`
    once its process is found gone; the outcome says why, with no run ID (0) of its own.
    Any other exception is raised again (a bug or a bad request is not a lost run).
    """
    from .executor import error_text

    if type(exc).__name__ not in ("KilledWorker", "CommClosedError", "FutureCancelledError"):
        raise exc

    return RunOutcome(0, spec.label, "failed", [], None,
                      f"the process executing the run was lost: {error_text(exc)}", step=spec.step, ifu=spec.ifu)


def run(recipe: str, date: str | None = None, ifu=None, commit: bool = False, p: dict | None = None,
        archive=None, dry_run: bool = False, *, mode: str | None = None, engine: str | None = None,
        progress: bool = True, raise_on_failure: bool = True, collections=None, target: str | None = None):
    """Reduce one step of a night, every IFU in parallel, recorded with full lineage.

    Inputs are the night's raw frames of the step's type (or, for ``scipost`` and
    ``standard``, the newest valid pixel tables of every IFU of each exposure) and
    the best calibrations the archive offers (valid for the IFU, same mode,
    closest in time, newest version). Parameters are checked before anything runs.
    Each run executes the recipe's template notebook; products and the executed
    notebook are archived together.

    Parameters
    ----------
    recipe : str
        Step or recipe: ``bias``, ``flat``, ``wavecal``, ``scibasic``, ``scipost``,
        ``muse_bias``, or a registered Python recipe.
    date : str
        Observing night ``YYYY-MM-DD``.
    ifu : int or list of int, optional
        IFUs to reduce (1-24); default: all present in the night's raw frames.
    commit : bool
        False: a personal trial, private to you, in your own collections (``u/<you>``),
        read from your search path (your trials first, then the reference reduction).
        True: a run of the project's reference reduction, which everyone shares: it
        reads only the reference chain, raw and static data, and its products (visible
        to every consortium member) join the reference chain.
    p : dict, optional
        Recipe parameters, e.g. ``{'crsigma': 20}`` (site defaults from
        ``DpuConfig.default_parameters`` apply to the others).
    archive : Archive, optional
        Default: ``Archive.open()``.
    dry_run : bool
        Only choose the inputs and return the runs (:class:`RunSpec`) that would execute.
    mode : str, optional
        Instrument mode; default that of the night's science frames.
    engine : str, optional
        ``local``, ``dask`` or ``auto`` (default ``DpuConfig.engine``).
    collections : list of str, optional
        Search path of a personal trial (default: the archive's :meth:`~Archive.search_path`).
    raise_on_failure : bool
        Raise :class:`ReductionFailed` after all runs ended if one failed.
    target : str, optional
        A target (``OBJECT``): reduce only its exposures; a per-night combination
        (``exp_combine``) takes those of every night it was observed (``date`` may be omitted).

    Returns
    -------
    list of RunOutcome (or of RunSpec with ``dry_run``)

    Raises
    ------
    ParameterError
        Unknown or mistyped parameter; nothing ran.
    CalibrationNotFoundError
        A calibration is missing for an IFU; nothing ran.
    ReductionFailed
        A run failed (it is recorded as failed, with its executed notebook).

    Examples
    --------
    >>> from musewise import dpu
    >>> dpu.run('bias', date='2026-11-20', ifu=1)                          # doctest: +SKIP
    >>> dpu.run('scipost', date='2026-11-20', commit=True, p={'crsigma': 20})  # doctest: +SKIP
    """
    if date is None and not target:
        raise InvalidArgumentError("say which night to reduce: date='YYYY-MM-DD' (or which target: target=...)")
    arch = open_default_archive(archive)
    specs = prepare(recipe, date, ifu, commit=commit, p=p, archive=arch, mode=mode, collections=collections,
                    target=target)
    if dry_run:
        for s in specs:
            print(s.describe())
        return specs
    t0 = time.perf_counter()
    outcomes = execute(specs, arch, engine=engine, progress=progress, desc=get_step(recipe).name)
    if progress:
        ok = sum(o.ok for o in outcomes)
        print(f"{get_step(recipe).name} {date or target}: {ok}/{len(outcomes)} run(s) succeeded in "
              f"{time.perf_counter() - t0:.1f} s")
    if raise_on_failure and any(not o.ok for o in outcomes):
        raise ReductionFailed(get_step(recipe).recipe, outcomes)
    return outcomes


# ReductionFailed is imported from here by the planner; it lives in musewise.exceptions.
__all__ = ["ReductionFailed", "execute", "prepare", "recipe_threads", "run", "runs_at_once",
           "validate_parameters"]
