"""A plan as a table a person reads, and its execution run by run with a report for each.

* :func:`plan_rows` - the runs of a :class:`~musewise.dpu.planner.Plan` as
  :class:`PlanRow` (step, night, IFU or exposure, the inputs it reads, status and
  the planner's reason: missing, out of date because an input is newer or was marked
  invalid, other parameters...), for a table in a notebook or a script;
* :func:`execute_plan` - execute the plan in dependency order like
  :func:`~musewise.dpu.planner.make`, telling a callback each time a run starts and
  ends, so a viewer can show each run's state while the reduction goes on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

from ..exceptions import ReductionFailed
from .planner import RunPlace
from .selection import exposure_key, raw_frames
from .steps import PER_EXPOSURE, PER_IFU, PER_TARGET, PRODUCER, get_step, split_of

#: What :func:`execute_plan` reports of a run: queued, running, then succeeded or failed
#: (or skipped, when an earlier step failed).
RUN_STATES = ("queued", "running", "succeeded", "failed", "skipped")

#: ``(step, night, ifu, exposure)``: a run of a plan (exposure: MJD-OBS key of per-exposure runs;
#: night "" for a run over every night of a target).
RowKey = tuple


@dataclass
class PlanRow(RunPlace):
    """One run of a plan, as a row of the plan's table.

    Attributes
    ----------
    step : str
    night : str
        ``YYYY-MM-DD`` ("" for a run over every night of a target).
    ifu : int or None
        The IFU of a per-IFU run.
    exposure : float or None
        MJD-OBS (days) of the exposure of a per-exposure run.
    inputs : str
        What the run reads: for an existing product, the inputs its run used (``BIAS x3``,
        ``MASTER_BIAS #19``); for a run still to make, the categories it will read and,
        for products of other steps, the one found (``#19``) or ``to run`` (made first).
    status : str
        The planner's: ``current``, ``missing`` or ``out of date``.
    reason : str
        Why (the planner's reason).
    product_id : int or None
        The product found (current or out of date).
    state : str
        What became of the run when the plan was executed (:data:`RUN_STATES`; ``""``: not run).
    run_id : int or None
        The archived run, once it ran.
    error : str
        Its error, if it failed.
    seconds : float
        Its wall time (s).
    """

    step: str
    night: str
    ifu: int | None
    exposure: float | None
    inputs: str
    status: str
    reason: str
    product_id: int | None = None
    state: str = ""
    run_id: int | None = None
    error: str = ""
    seconds: float = 0.0

    @property
    def key(self) -> RowKey:
        return (self.step, self.night, self.ifu, self.exposure)


def plan_rows(plan, archive) -> list[PlanRow]:
    """The runs of a plan as table rows, in the plan's (dependency) order.

    Parameters
    ----------
    plan : Plan
        From :func:`musewise.dpu.plan` (or ``make(..., dry_run=True)``).
    archive : Archive
        The archive the plan was made on (read for the inputs of existing products).

    Returns
    -------
    list of PlanRow
    """
    by_key = {_key(plan, i): i for i in plan.items}
    products = archive.get_many(i.product_id for i in plan.items if i.product_id)
    runs = archive.get_runs({r.run_id for r in products.values() if r.run_id is not None})
    rows = []
    for item in plan.items:
        rec = products.get(item.product_id) if item.product_id else None
        run = runs.get(rec.run_id) if rec is not None and rec.run_id is not None else None
        if run is not None:
            inputs = _used_inputs(run)
        else:
            inputs = _planned_inputs(archive, plan, item, by_key)
        rows.append(PlanRow(item.step, _night(plan, item), item.ifu, item.exposure, inputs, item.status,
                            item.reason, item.product_id))
    return rows


def _night(plan, item) -> str:
    # A plan item of one night says it; an older single-night item may not (its plan's night).
    if item.night:
        return item.night
    return "" if getattr(plan, "object", "") and not item.ifu and not item.exposure else plan.night


def _key(plan, item) -> RowKey:
    return (item.step, _night(plan, item), item.ifu, item.exposure)


def _used_inputs(run) -> str:
    # Many raw frames of one tag read as "BIAS x3"; products by their ID.
    ids: dict[str, list[int]] = {}
    for i in run.inputs:
        ids.setdefault(i.tag, []).append(i.dataset_id)
    return ", ".join(f"{tag} #{v[0]}" if len(v) == 1 else f"{tag} x{len(v)}" for tag, v in ids.items())


def _planned_inputs(archive, plan, item, by_key) -> str:
    step = get_step(item.step)
    night = _night(plan, item)
    parts = []
    for cat in (step.input_tag, *step.calibrations):
        producer = PRODUCER.get(cat)
        dep = None
        if producer is not None:
            dep = by_key.get((producer, night, item.ifu, None)) or by_key.get((producer, night, None, None))
            if dep is None and item.exposure is not None:
                dep = by_key.get((producer, night, None, item.exposure))
        if dep is not None:
            parts.append(f"{cat} (to run)" if dep.needed else f"{cat} #{dep.product_id}")
        elif producer is not None and step.per != PER_IFU and any(k[0] == producer for k in by_key):
            # the per-IFU products of every IFU of the exposure
            deps = [i for k, i in by_key.items() if k[0] == producer]
            todo = sum(i.needed for i in deps)
            parts.append(f"{cat} x{len(deps)}" + (f" ({todo} to run)" if todo else ""))
        elif cat == step.input_tag and step.input_kind == "raw":
            n = len(raw_frames(archive, cat, night or plan.night, ifu=item.ifu))
            parts.append(f"{cat} x{n}")
        else:
            parts.append(cat)  # static, or chosen from the certified calibrations when it runs
    return ", ".join(parts)


def spec_exposure(archive, spec) -> float | None:
    """The exposure (MJD-OBS key) a per-exposure :class:`RunSpec` reduces (None: no such input)."""
    for i in spec.inputs:
        if i.tag == get_step(spec.step).input_tag:
            return exposure_key(archive.get(i.dataset_id).mjd_obs)
    return None


def execute_plan(plan, archive, *, commit: bool = False, p: dict | None = None, step_params: dict | None = None,
                 engine: str | None = None, progress: bool = True,
                 on_update: Callable[[RowKey, str, object], None] | None = None,
                 raise_on_failure: bool = True) -> list:
    """Execute the runs of a plan still to do, step by step in dependency order.

    Each step's runs execute on the engine together (in parallel on Dask); on Dask, the
    post-run hooks (QC) of one step run beside the next step's runs unless they gate it
    (:class:`~musewise.dpu.hooks.PostRunHooks`), and have all ended on return. A failed run
    stops the cascade: the later steps' runs are reported ``skipped``; but a failed step
    with a fallback (the night's standard star, in place of the static response) is
    recorded failed and the cascade goes on with the fallback.

    Parameters
    ----------
    plan : Plan
    archive : Archive
    commit, p, step_params, engine, progress
        As for :func:`~musewise.dpu.planner.make`.
    on_update : callable, optional
        ``on_update(key, state, outcome)`` with the run's ``(step, night, ifu, exposure)`` key, one of
        :data:`RUN_STATES`, and its :class:`RunOutcome` once it ended (else None); called from
        the thread executing the plan. With the ``local`` engine (or ``auto`` for one run) the
        runs of a step execute one after the other and each is reported as it ends; on other
        engines a step's runs are reported together when the last of them ends.
    raise_on_failure : bool
        Raise :class:`ReductionFailed` (with the failed step's outcomes) after a run failed.

    Returns
    -------
    list of RunOutcome
        Of every run executed, in order.

    Raises
    ------
    ReductionFailed
        With ``raise_on_failure``, after a failed step.
    ParameterError, CalibrationNotFoundError, NotFoundError
        From :func:`~musewise.dpu.api.prepare`, before a step's runs start.
    """
    from .api import execute, prepare
    from .config import DpuConfig
    from .hooks import PostRunHooks

    def report(key, state, outcome=None):
        if on_update is not None:
            on_update(key, state, outcome)

    params = dict(step_params or {})
    if p:
        params[plan.target] = p
    for i in plan.todo:
        report(_key(plan, i), "queued")
    dcfg = DpuConfig.from_config(archive.config)
    target = getattr(plan, "object", "") or None
    outcomes = []
    # QC of one step's products runs beside the next step's runs where it cannot change their
    # inputs (musewise.dpu.hooks); all of it has ended when the cascade returns or raises.
    with PostRunHooks(archive, dcfg.post_run_hooks, progress=progress) as hooks:
        for n, step_name in enumerate(plan.steps):
            todo = [i for i in plan.todo if i.step == step_name]
            step = get_step(step_name)
            split = split_of(step, target)
            specs, keys = [], []
            # One prepare per night of the step's runs (a target's combination: one for all nights).
            for night in dict.fromkeys(_night(plan, i) for i in todo):
                mine = [i for i in todo if _night(plan, i) == night]
                if split == PER_IFU:
                    got = prepare(step_name, night, [i.ifu for i in mine], commit=commit, p=params.get(step_name),
                                  archive=archive, target=target)
                elif split == PER_TARGET:
                    got = prepare(step_name, None, plan.ifus, commit=commit, p=params.get(step_name),
                                  archive=archive, target=target)
                else:
                    ifus = sorted({i.ifu for i in plan.items if i.ifu and _night(plan, i) == night}) or plan.ifus
                    got = prepare(step_name, night, ifus, commit=commit, p=params.get(step_name), archive=archive,
                                  target=target)
                    wanted = {i.exposure for i in mine}
                    if split == PER_EXPOSURE:
                        got = [s for s in got if spec_exposure(archive, s) in wanted]
                specs += got
                keys += [(step_name, night, s.ifu if split == PER_IFU else None,
                          spec_exposure(archive, s) if split == PER_EXPOSURE else None) for s in got]
            name = engine or dcfg.engine
            one_by_one = on_update is not None and (name == "local" or (name == "auto" and len(specs) == 1))
            if one_by_one:
                done = []
                for key, spec in zip(keys, specs):
                    report(key, "running")
                    (outcome,) = execute([spec], archive, engine="local", progress=progress, desc=step_name,
                                         hooks=hooks)
                    report(key, "succeeded" if outcome.ok else "failed", outcome)
                    done.append(outcome)
            else:
                for key in keys:
                    report(key, "running")
                done = execute(specs, archive, engine=engine, progress=progress, desc=step_name, hooks=hooks)
                for key, outcome in zip(keys, done):
                    report(key, "succeeded" if outcome.ok else "failed", outcome)
            outcomes += done
            if any(not o.ok for o in done) and step.fallback:
                # Recorded as failed; the next steps use the fallback and their runs say so.
                print(f"{step_name} failed ({'; '.join(o.error.splitlines()[0] for o in done if not o.ok)}): "
                      f"going on with {step.fallback}")
                continue
            if any(not o.ok for o in done):
                for later in plan.steps[n + 1:]:
                    for i in plan.todo:
                        if i.step == later:
                            report(_key(plan, i), "skipped")
                if raise_on_failure:
                    raise ReductionFailed(step.recipe, done)
                break
    return outcomes


def run_summary(rows: list[PlanRow]) -> str:
    """``3 succeeded, 1 failed, 2 skipped`` of the rows that ran (or were to run)."""
    counts = Counter(r.state for r in rows if r.state)
    return ", ".join(f"{counts[s]} {s}" for s in RUN_STATES if counts[s]) or "nothing run"


__all__ = ["PlanRow", "RUN_STATES", "execute_plan", "plan_rows", "run_summary", "spec_exposure"]
