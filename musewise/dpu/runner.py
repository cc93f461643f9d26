"""Executing one run: record it, execute its notebook, archive the outcome.

:func:`execute_run` is what a Dask worker (or this process) calls for each
:class:`~musewise.dpu.selection.RunSpec`. It opens its own archive connection
from plain settings, so it works in any process that sees the same database
and datastore:

1. ``arch.begin_run`` records the run with its inputs and the reason each was chosen;
2. the recipe's template notebook is executed with papermill in a fresh work dir
   ``<scratch>/<user>/dpu/<night>/<recipe>/run<id>[-ifuNN]``;
3. ``arch.finish_run`` archives the products and the executed notebook in one
   transaction (or ``arch.fail_run`` records the failure with the executed
   notebook showing the error; no product is archived);
4. the ESO QC keywords of each product go to ``arch.add_qc``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

from sqlalchemy.engine import make_url

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


def workdir_for(config, user: str, spec: RunSpec, run_id: int) -> Path:
    """The work dir of a run (unique: named by its run ID)."""
    suffix = f"-ifu{spec.ifu:02d}" if spec.ifu else ""
    return Path(config.scratch) / user / "dpu" / spec.night / spec.recipe / f"run{run_id:06d}{suffix}"


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
        :class:`DpuConfig` values (templates folder, time limit, keep_workdirs).
    arch : Archive, optional
        An open archive to use instead of reopening one (same process only).

    Returns
    -------
    RunOutcome
        Never raises for a failed recipe: the failure is recorded and returned.
    """
    import papermill as pm

    from ..kernel import papermill_options
    from ..recipes import get_recipe
    from .config import DpuConfig
    from .templates import template_for

    t0 = time.perf_counter()
    if isinstance(spec, dict):
        spec = RunSpec(**{**spec, "inputs": [RunInput(**i) for i in spec["inputs"]]})
    dcfg = DpuConfig(**(dpu_settings or {}))
    arch = arch if arch is not None else open_archive(settings)
    recipe = get_recipe(spec.recipe)
    details = {"step": spec.step, "exposure": spec.exposure, "ifus": spec.ifus, "host": os.uname().nodename,
               "calibration_choices": spec.choices}
    run_id = arch.begin_run(
        spec.recipe, spec.params, night=spec.night, ifu=spec.ifu, mode=spec.mode,
        inputs=[(i.dataset_id, i.tag, i.reason) for i in spec.inputs],
        pipeline_version=recipe.pipeline_version, privilege=spec.privilege,
        project=spec.project or None, details=details, reference=spec.reference,
        collections=spec.collections or None,
    )
    workdir = workdir_for(arch.config, arch.user_name, spec, run_id)
    if workdir.exists():  # a leftover of an earlier database with the same run IDs
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    out_nb = workdir / f"{spec.recipe}_run{run_id:06d}.ipynb"
    parameters = dict(
        recipe=spec.recipe, step=spec.step, run_id=run_id, ifu=spec.ifu, night=spec.night,
        sof=json.dumps(spec.sof), inputs=json.dumps([dataclasses.asdict(i) for i in spec.inputs]),
        workdir=str(workdir), params=json.dumps(spec.params),
        archive=json.dumps(public_settings(settings), default=str),
        timeout=int(dcfg.run_timeout),
    )
    from .notebook import read_result

    template = str(template_for(spec.recipe, dcfg.templates_dir or None, arch.config.scratch))
    attempts = []
    for _attempt in range(2):
        error = ""
        try:
            pm.execute_notebook(
                template, str(out_nb), parameters=parameters, cwd=str(workdir),
                **papermill_options(arch.config.kernel_name),
                execution_timeout=int(dcfg.run_timeout) + 600,
            )
        except Exception as exc:  # PapermillExecutionError, a dead kernel, a timeout...
            error = _error_text(exc)
        res = read_result(workdir)
        if not error or res is not None:
            break
        # The recipe never reported back: the kernel failed to start or died (kernels
        # launched at the same instant by two workers can collide). Start afresh once.
        attempts.append(error)
        for p in workdir.iterdir():
            if p.is_file():
                p.unlink()
    if not error and (res is None or not res.get("ok")):
        error = "the notebook finished without recording a successful recipe result"
    run_details = {"kernel_retries": attempts} if attempts else {}
    recipe_seconds = 0.0
    if res and res.get("result"):
        r = res["result"]
        run_details.update({"command": r.get("command"), "effective_parameters": r.get("params"),
                            "pipeline_version": r.get("pipeline_version")})
        try:
            from ..recipes import RecipeResult

            recipe_seconds = RecipeResult.from_dict(r).duration
        except Exception:
            pass
        run_details["recipe_seconds"] = recipe_seconds
    nb_path = out_nb if out_nb.exists() else None
    label = spec.label
    if error:
        if res and res.get("error"):
            error = res["error"] + ("\n\n" + _tail(res.get("log_text", "")) if res.get("log_text") else "")
        arch.fail_run(run_id, error, notebook=nb_path, details=run_details)
        rr = arch.get_run(run_id)
        return RunOutcome(run_id, label, "failed", [], rr.notebook_id, error,
                          time.perf_counter() - t0, recipe_seconds, str(workdir), spec.step, spec.ifu)
    outputs = [(o["path"], o["category"] or None, o["ifu"] or spec.ifu) for o in res["result"]["outputs"]]
    # A succeeded run's workdir is removed unless kept: its products move into the datastore.
    made = arch.finish_run(run_id, outputs, notebook=nb_path, details=run_details, move=not dcfg.keep_workdirs)
    qc = res.get("qc") or {}
    for rec, (path, _cat, ifu) in zip(made, outputs):
        values = qc.get(path) or {}
        if rec is not None and values:
            arch.add_qc(rec.id, values, ifu=ifu, run_id=run_id)
    rr = arch.get_run(run_id)
    if not dcfg.keep_workdirs:
        shutil.rmtree(workdir, ignore_errors=True)
    return RunOutcome(run_id, label, "succeeded", list(rr.output_ids), rr.notebook_id, "",
                      time.perf_counter() - t0, recipe_seconds, str(workdir), spec.step, spec.ifu)


def _tail(text: str, n: int = 15) -> str:
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-n:])


def _error_text(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None)
    if ename:
        return f"{ename}: {getattr(exc, 'evalue', '')}"
    return f"{type(exc).__name__}: {exc}"


__all__ = ["RunOutcome", "archive_settings", "execute_run", "open_archive", "public_settings",
           "workdir_for"]
