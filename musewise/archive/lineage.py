"""Runs and lineage: which run made which dataset from which inputs.

*The reduction history is the product*: every product row points to the run
that made it, every run lists its inputs with the set-of-frames tag and the
reason each was chosen, and the executed notebook of the run is itself an
archived dataset. The whole history of a product, as a graph, is built by
:mod:`musewise.archive.provenance`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from sqlalchemy import select

from .. import __version__
from ..exceptions import NotFoundError, PermissionDeniedError
from ..ingest import FrameInfo, inspect_file
from ..vocabulary import DatasetKind, Privilege, RunStatus, kind_of_category
from .privileges import visible_runs
from .records import DatasetRecord, RunInputRecord, RunRecord
from .schema import Dataset, Project, Run, RunInput, User, utcnow


def _run_record(s, run: Run, output_ids=()) -> RunRecord:
    proj = s.get(Project, run.project_id) if run.project_id else None
    return RunRecord(
        id=run.id, recipe=run.recipe, parameters=dict(run.parameters or {}), night=run.night,
        ifu=run.ifu, mode=run.mode, status=run.status, pipeline_version=run.pipeline_version,
        musewise_version=run.musewise_version, notebook_id=run.notebook_id, user=run.user.name,
        project=proj.name if proj else None, privilege=Privilege(run.privilege), started=run.started,
        ended=run.ended, error=run.error, details=dict(run.details or {}),
        inputs=tuple(RunInputRecord(i.dataset_id, i.tag, i.reason) for i in run.inputs),
        output_ids=tuple(output_ids),
    )


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


def begin_run(arch, recipe, parameters, *, night, ifu, mode, inputs, pipeline_version, privilege,
              project, details) -> int:
    privilege = Privilege(int(privilege))
    with arch.transaction() as tx:
        s = tx.session
        user = arch._user(s)
        proj = arch._project(s, project)
        run = Run(recipe=recipe, parameters=_jsonable(parameters or {}), night=night, ifu=ifu, mode=mode,
                  status=RunStatus.RUNNING.value, pipeline_version=pipeline_version,
                  musewise_version=__version__, user_id=user.id, project_id=proj.id,
                  privilege=int(privilege), details=_jsonable(details or {}))
        s.add(run)
        s.flush()
        seen = set()
        for did, tag, reason in inputs:
            arch._load(s, did)  # an input must exist and be visible to the user
            if (int(did)) in seen:
                continue
            seen.add(int(did))
            s.add(RunInput(run_id=run.id, dataset_id=int(did), tag=tag, reason=reason or ""))
        return run.id


def _own_run(arch, s, run_id) -> Run:
    run = s.get(Run, int(run_id))
    if run is None:
        raise NotFoundError(f"no run {run_id}")
    user = arch._user(s)
    if run.user_id != user.id and not user.is_admin:
        raise PermissionDeniedError(f"run {run_id} belongs to {run.user.name!r}, not {user.name!r}")
    if run.status != RunStatus.RUNNING.value:
        raise ValueError(f"run {run_id} already ended ({run.status})")
    return run


def _notebook_info(run: Run, path: Path) -> FrameInfo:
    return FrameInfo(kind=DatasetKind.NOTEBOOK, category="NOTEBOOK", night=run.night, date_obs=None,
                     mjd_obs=None, exptime=None, mode=run.mode, object=run.recipe,
                     ifus=(run.ifu,) if run.ifu else (), ifu=run.ifu, pipeline_version=run.pipeline_version,
                     header={"recipe": run.recipe, "run_id": run.id})


def _store_notebook(arch, tx, run: Run, notebook) -> None:
    if notebook is None:
        return
    path = Path(notebook)
    privilege, project = Privilege(run.privilege), None
    ds, created = arch._add_file(tx, path, _notebook_info(run, path), privilege=privilege, project=project,
                                 run_id=run.id, owner=run.user)
    if created:
        ds.project_id = run.project_id
    run.notebook_id = ds.id


def finish_run(arch, run_id, outputs, *, notebook, details) -> list[DatasetRecord]:
    # Inspect every output before opening the transaction: a bad file refuses the whole run.
    infos = []
    for out in outputs:
        path, category, ifu = (tuple(out) + (None, None))[:3]
        info = inspect_file(path, ifu=ifu)
        if category and category != info.category:
            info = dataclasses.replace(info, category=category, kind=kind_of_category(category))
        infos.append((Path(path), info))
    with arch.transaction() as tx:
        s = tx.session
        run = _own_run(arch, s, run_id)
        made = []
        for path, info in infos:
            if info.night is None:
                info = dataclasses.replace(info, night=run.night)
            if info.mode is None:
                info = dataclasses.replace(info, mode=run.mode)
            if info.kind == DatasetKind.RAW:
                info = dataclasses.replace(info, kind=DatasetKind.AUXILIARY)
            ds, created = arch._add_file(tx, path, info, privilege=Privilege(run.privilege), project=None,
                                         run_id=run.id, owner=run.user)
            if created:
                ds.project_id = run.project_id
                made.append(ds.id)
        _store_notebook(arch, tx, run, notebook)
        run.status, run.ended = RunStatus.SUCCEEDED.value, utcnow()
        if details:
            run.details = _jsonable({**(run.details or {}), **details})
    return [arch.get(i) for i in made]


def fail_run(arch, run_id, error, *, notebook, details) -> None:
    with arch.transaction() as tx:
        run = _own_run(arch, tx.session, run_id)
        run.status, run.ended, run.error = RunStatus.FAILED.value, utcnow(), str(error)[-20000:]
        if details:
            run.details = _jsonable({**(run.details or {}), **details})
        _store_notebook(arch, tx, run, notebook)


def get_run(arch, run_id) -> RunRecord:
    with arch.session() as s:
        run = s.scalar(select(Run).where(Run.id == int(run_id), visible_runs(arch._user(s))))
        if run is None:
            raise NotFoundError(f"no run {run_id} visible to user {arch.user_name!r}")
        outs = s.scalars(select(Dataset.id).where(Dataset.run_id == run.id, Dataset.kind != DatasetKind.NOTEBOOK.value))
        return _run_record(s, run, list(outs))


def list_runs(arch, *, recipe=None, night=None, ifu=None, status=None, limit=None) -> list[RunRecord]:
    with arch.session() as s:
        q = select(Run).where(visible_runs(arch._user(s)))
        for col, val in ((Run.recipe, recipe), (Run.night, night), (Run.ifu, ifu), (Run.status, status)):
            if val is not None:
                q = q.where(col == getattr(val, "value", val))
        q = q.order_by(Run.id.desc())
        if limit:
            q = q.limit(limit)
        return [_run_record(s, r) for r in s.scalars(q)]


def dependents(arch, dataset_id, recursive=True) -> list[DatasetRecord]:
    with arch.session() as s:
        arch._load(s, dataset_id)
        vis = arch._visible(s)
        found, frontier = {}, [int(dataset_id)]
        while frontier:
            runs = select(RunInput.run_id).where(RunInput.dataset_id.in_(frontier))
            rows = s.scalars(select(Dataset).where(Dataset.run_id.in_(runs), vis,
                                                   Dataset.kind != DatasetKind.NOTEBOOK.value))
            frontier = [d.id for d in rows if d.id not in found]
            for d in s.scalars(select(Dataset).where(Dataset.id.in_(frontier))):
                found[d.id] = arch._record(s, d)
            if not recursive:
                break
        return sorted(found.values(), key=lambda r: r.id)


__all__ = ["User"]
