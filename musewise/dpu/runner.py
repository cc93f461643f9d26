"""Executing one run: record it, execute its notebook, archive the outcome.

:func:`execute_run` is what a Dask worker (or this process) calls for each
:class:`~musewise.dpu.selection.RunSpec`. It opens its own archive connection
from plain settings, so it works in any process that sees the same database
and datastore:

1. ``arch.begin_run`` records the run with its inputs and the reason each was chosen;
2. the recipe's template notebook is executed by the notebook-run executor
   (:func:`musewise.dpu.executor.execute_notebook`, which QC uses too: kernel
   retry, work dir retention) in a fresh work dir
   ``<scratch>/<user>/dpu/<night>/<recipe>/run<id>[-ifuNN]``;
3. ``arch.finish_run`` archives the products and the executed notebook in one
   transaction (or ``arch.fail_run`` records the failure with the executed
   notebook showing the error; no product is archived); a product that cannot be
   archived (corrupt, truncated, a full datastore) fails the run with that reason;
4. the ESO QC keywords of each product go to ``arch.add_qc``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from .executor import (NotebookJob, archive_settings, error_text, execute_notebook, open_archive, public_settings,
                       workdir_of)
from .selection import RunInput, RunSpec


@dataclasses.dataclass
class RunOutcome:
    """What became of one run.

    Attributes
    ----------
    run_id : int
    label : str
        Step, night and IFU/exposure.
    status : str
        ``succeeded`` or ``failed`` (:class:`~musewise.vocabulary.RunStatus` values).
    products : list of int
        Archive IDs of the products.
    notebook_id : int or None
        Archive ID of the executed notebook.
    error : str
    seconds : float
        Wall time of the whole run, notebook and archiving included (s).
    recipe_seconds : float
        Time the recipe itself took (s).
    workdir : str
    """

    run_id: int
    label: str
    status: str
    products: list[int]
    notebook_id: int | None
    error: str = ""
    seconds: float = 0.0
    recipe_seconds: float = 0.0
    workdir: str = ""
    step: str = ""
    ifu: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def workdir_for(config, user: str, spec: RunSpec, run_id: int) -> Path:
    """The work dir of a run (unique: named by its run ID)."""
    return workdir_of(config, user, _folder(spec), run_id, _suffix(spec))


def _folder(spec: RunSpec) -> tuple[str, ...]:
    return ("dpu", spec.night, spec.recipe)


def _suffix(spec: RunSpec) -> str:
    return f"-ifu{spec.ifu:02d}" if spec.ifu else ""


def execute_run(spec: RunSpec | dict, settings: dict, dpu_settings: dict | None = None,
                arch=None) -> RunOutcome:
    """Record, execute and archive one run (see the module docstring).

    Parameters
    ----------
    spec : RunSpec or dict
        The run.
    settings : dict
        Archive settings (:func:`archive_settings`).
    dpu_settings : dict, optional
        :class:`DpuConfig` values (templates folder, time limit, keep_workdirs, recipe_threads
        resolved to a number by :func:`musewise.dpu.api.execute`).
    arch : Archive, optional
        An open archive to use instead of reopening one (same process only).

    Returns
    -------
    RunOutcome
        Never raises for a failed recipe: the failure is recorded and returned.
    """
    from ..recipes import RecipeResult, configure, get_recipe
    from .config import DpuConfig
    from .notebook import RESULT_FILE
    from .templates import template_for

    t0 = time.perf_counter()
    if isinstance(spec, dict):
        spec = RunSpec(**{**spec, "inputs": [RunInput(**i) for i in spec["inputs"]]})
    dcfg = DpuConfig(**(dpu_settings or {}))
    arch = arch if arch is not None else open_archive(settings)
    configure(arch.config)  # a Dask worker's recipes run the site's esorex
    recipe = get_recipe(spec.recipe)
    details = {"step": spec.step, "exposure": spec.exposure, "ifus": spec.ifus, "host": os.uname().nodename,
               "omp_threads": int(dcfg.recipe_threads) or None,
               "calibration_choices": spec.choices, "target": spec.target, "nights": spec.nights}

    def parameters(run_id: int, workdir: Path) -> dict:
        return dict(
            recipe=spec.recipe, step=spec.step, run_id=run_id, ifu=spec.ifu, night=spec.night,
            sof=json.dumps(spec.sof), inputs=json.dumps([dataclasses.asdict(i) for i in spec.inputs]),
            workdir=str(workdir), params=json.dumps(spec.params),
            archive=json.dumps(public_settings(settings), default=str),
            timeout=int(dcfg.run_timeout), threads=int(dcfg.recipe_threads),
        )

    job = NotebookJob(
        recipe=spec.recipe, params=spec.params,
        template=template_for(spec.recipe, dcfg.templates_dir or None, arch.config.scratch),
        folder=_folder(spec), suffix=_suffix(spec), parameters=parameters, result_file=RESULT_FILE,
        # the recipe enforces run_timeout itself; the cell limit only catches a hung kernel
        timeout=int(dcfg.run_timeout) + 600, keep_workdir=dcfg.keep_workdirs,
        heartbeat=float(dcfg.heartbeat_interval),
        kernel_kind="" if dcfg.templates_dir else "reduction",
        run_kw=dict(night=spec.night, ifu=spec.ifu, mode=spec.mode,
                    inputs=[(i.dataset_id, i.tag, i.reason) for i in spec.inputs],
                    pipeline_version=recipe.pipeline_version, privilege=spec.privilege,
                    project=spec.project or None, details=details, reference=spec.reference,
                    collections=spec.collections or None),
    )
    nbrun = execute_notebook(arch, job)
    res, error = nbrun.result, nbrun.error
    if not error and (res is None or not res.get("ok")):
        error = "the notebook finished without recording a successful recipe result"
    run_details = nbrun.details()
    recipe_seconds = 0.0
    if res and res.get("result"):
        r = res["result"]
        run_details.update({"command": r.get("command"), "effective_parameters": r.get("params"),
                            "pipeline_version": r.get("pipeline_version")})
        if r.get("calls"):  # a run of several pipeline calls (bands): each one's command and frames
            run_details["calls"] = r["calls"]
        try:
            recipe_seconds = RecipeResult.from_dict(r).duration
        except Exception:  # an old or partial result: the run is still recorded, without the time
            pass
        run_details["recipe_seconds"] = recipe_seconds
    run_id, workdir, label = nbrun.run_id, nbrun.workdir, spec.label
    if error:
        if res and res.get("error"):
            error = res["error"] + ("\n\n" + _tail(res.get("log_text", "")) if res.get("log_text") else "")
        _fail(arch, nbrun, error, run_details)
        rr = arch.get_run(run_id)
        return RunOutcome(run_id, label, "failed", [], rr.notebook_id, error,
                          time.perf_counter() - t0, recipe_seconds, str(workdir), spec.step, spec.ifu)
    outputs = [(o["path"], o["category"] or None, o["ifu"] or spec.ifu) for o in res["result"]["outputs"]]
    try:
        made = nbrun.finish(arch, outputs, details=run_details)
    except Exception as exc:
        # A corrupt or truncated product (refused by inspection), a full datastore: the
        # transaction archived nothing and removed what it had copied; the run fails with why.
        error = f"archiving the products failed: {error_text(exc)}"
        _fail(arch, nbrun, error, run_details)
        rr = arch.get_run(run_id)
        return RunOutcome(run_id, label, "failed", [], rr.notebook_id, error,
                          time.perf_counter() - t0, recipe_seconds, str(workdir), spec.step, spec.ifu)
    qc = res.get("qc") or {}
    for rec, (path, _cat, ifu) in zip(made, outputs):
        values = qc.get(path) or {}
        if rec is not None and values:
            arch.add_qc(rec.id, values, ifu=ifu, run_id=run_id)
    rr = arch.get_run(run_id)
    return RunOutcome(run_id, label, "succeeded", list(rr.output_ids), rr.notebook_id, "",
                      time.perf_counter() - t0, recipe_seconds, str(workdir), spec.step, spec.ifu)


def _fail(arch, nbrun, error: str, details: dict) -> None:
    # A run closed meanwhile (taken for dead: its lease expired while the database was out
    # of reach) stays failed with that reason; this process's own outcome still says why.
    from ..exceptions import RunStateError

    try:
        nbrun.fail(arch, error, details=details)
    except RunStateError:
        pass


def _tail(text: str, n: int = 15) -> str:
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-n:])


__all__ = ["RunOutcome", "archive_settings", "execute_run", "open_archive", "public_settings",
           "workdir_for"]
