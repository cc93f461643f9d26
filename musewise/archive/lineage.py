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
from typing import Iterator

from sqlalchemy import select

from .. import __version__
from ..exceptions import NotFoundError, PermissionDeniedError, ReferenceInputError, RunStateError
from ..ingest import FrameInfo, inspect_file
from ..products.catalog import SOURCE_CATALOG, read_sources
from ..vocabulary import (
    CollectionType,
    DatasetKind,
    Privilege,
    RunStatus,
    kind_of_category,
    reference_calibrations,
    reference_chain,
    run_collection,
    user_calibrations,
    user_chain,
)
from .calibrations import certify_row, default_range
from .liveness import process_identity
from .collections import chain_prepend, ensure_collection
from .privileges import visible_runs
from .records import DatasetRecord, RunInputRecord, RunRecord
from .schema import Collection, CollectionChain, Dataset, Project, Run, RunInput, User, utcnow
from .sources import record_sources
from .storage import once_more_if_raced


def _run_record(s, run: Run, output_ids=(), notebooks: set[int] = frozenset()) -> RunRecord:
    # output_ids and notebooks: those the user may see; another's hidden dataset is not named.
    proj = s.get(Project, run.project_id) if run.project_id else None
    return RunRecord(
        id=run.id, recipe=run.recipe, parameters=dict(run.parameters or {}), night=run.night,
        ifu=run.ifu, mode=run.mode, status=run.status, pipeline_version=run.pipeline_version,
        musewise_version=run.musewise_version, notebook_id=run.notebook_id if run.notebook_id in notebooks else None,
        user=run.user.name,
        project=proj.name if proj else None, privilege=Privilege(run.privilege), started=run.started,
        ended=run.ended, error=run.error, details=dict(run.details or {}),
        inputs=tuple(RunInputRecord(i.dataset_id, i.tag, i.reason) for i in run.inputs),
        output_ids=tuple(output_ids),
        collection=s.get(Collection, run.collection_id).name if run.collection_id else "",
        is_reference=bool(run.is_reference), collections=tuple(run.collections or ()),
    )


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


def _reference_rights(arch, s, user, proj) -> None:
    # Only members of a project (or administrators) write its reference reduction.
    if user.is_admin:
        return
    if proj.id not in arch.roles(s, user):
        raise PermissionDeniedError(f"user {user.name!r} is not a member of project {proj.name!r} and may not "
                                    f"add to its reference reduction")


def _allowed_for_reference(s, proj, ds) -> bool:
    # Raw frames, static tables and the project's own reference runs.
    from .collections import INSTRUMENT_COLLECTIONS

    coll = ds.collection
    if coll.name in INSTRUMENT_COLLECTIONS:
        return True
    chain = s.scalar(select(Collection).where(Collection.name == reference_chain(proj.name)))
    if chain is None:
        return False
    return s.get(CollectionChain, (chain.id, coll.id)) is not None


def begin_run(arch, recipe, parameters, *, night, ifu, mode, inputs, pipeline_version, privilege,
              project, details, reference, collections) -> int:
    privilege = Privilege(int(privilege))
    with arch.transaction() as tx:
        s = tx.session
        user = arch.acting_user(s)
        proj = arch.project_row(s, project)
        if reference:
            _reference_rights(arch, s, user, proj)
        rows, seen = [], set()
        for did, tag, reason in inputs:
            ds = arch.load(s, did)  # an input must exist and be visible to the user
            if int(did) in seen:
                continue
            seen.add(int(did))
            if reference and not _allowed_for_reference(s, proj, ds):
                raise ReferenceInputError(
                    f"{recipe}: input #{ds.id} ({ds.category}, collection {ds.collection.name}) is not part of "
                    f"the reference reduction of project {proj.name!r}: a reference run (commit=True) reads only "
                    f"{reference_chain(proj.name)}, raw frames and static data")
            rows.append((int(did), tag, reason))
        run = Run(recipe=recipe, parameters=_jsonable(parameters or {}), night=night, ifu=ifu, mode=mode,
                  status=RunStatus.RUNNING.value, pipeline_version=pipeline_version,
                  musewise_version=__version__, user_id=user.id, project_id=proj.id,
                  # who runs it (host, pid, start time, boot): a killed run is later found by that
                  privilege=int(privilege), details=_jsonable({**process_identity(), **(details or {})}),
                  is_reference=bool(reference),
                  collections=list(collections or []))
        s.add(run)
        s.flush()
        name = run_collection(run.id, project=proj.name) if reference else run_collection(run.id, user=user.name)
        coll = ensure_collection(s, name, CollectionType.RUN, owner_id=None if reference else user.id,
                                 project_id=proj.id if reference else None,
                                 description=f"run {run.id} {recipe}")
        run.collection_id = coll.id
        for did, tag, reason in rows:
            s.add(RunInput(run_id=run.id, dataset_id=did, tag=tag, reason=reason or ""))
        return run.id


def _own_run(arch, s, run_id) -> Run:
    run = s.get(Run, int(run_id))
    if run is None:
        raise NotFoundError(f"no run {run_id}")
    user = arch.acting_user(s)
    if run.user_id != user.id and not user.is_admin:
        raise PermissionDeniedError(f"run {run_id} belongs to {run.user.name!r}, not {user.name!r}")
    if run.status != RunStatus.RUNNING.value:
        raise RunStateError(f"run {run_id} already ended ({run.status})")
    return run


def _notebook_info(run: Run, path: Path) -> FrameInfo:
    return FrameInfo(kind=DatasetKind.NOTEBOOK, category="NOTEBOOK", night=run.night, date_obs=None,
                     mjd_obs=None, exptime=None, mode=run.mode, object=run.recipe,
                     ifus=(run.ifu,) if run.ifu else (), ifu=run.ifu, pipeline_version=run.pipeline_version,
                     header={"recipe": run.recipe, "run_id": run.id})


def _store(arch, tx, run: Run, path: Path, info: FrameInfo, move: bool = False) -> Dataset:
    stored, _fresh = arch.store_file(tx, path, info, run_id=run.id, move=move)
    return arch.add_dataset(tx.session, stored, info, owner=run.user, project_id=run.project_id,
                            privilege=run.privilege, collection=tx.session.get(Collection, run.collection_id),
                            run_id=run.id)


def _store_notebook(arch, tx, run: Run, notebook) -> None:
    if notebook is None:
        return
    path = Path(notebook)
    run.notebook_id = _store(arch, tx, run, path, _notebook_info(run, path)).id


def _chain_run(arch, s, run: Run, made: list[Dataset]) -> None:
    # A finished run joins its chain (searched first), and its calibrations are certified.
    proj = s.get(Project, run.project_id)
    user = run.user
    if run.is_reference:
        chain = ensure_collection(s, reference_chain(proj.name), CollectionType.CHAINED, project_id=proj.id,
                                  description=f"reference reduction of project {proj.name}")
        calib = ensure_collection(s, reference_calibrations(proj.name), CollectionType.CALIBRATION,
                                  project_id=proj.id, description=f"certified calibrations of {proj.name}")
    else:
        chain = ensure_collection(s, user_chain(user.name), CollectionType.CHAINED, owner_id=user.id,
                                  description=f"personal trials of {user.name}")
        calib = ensure_collection(s, user_calibrations(user.name), CollectionType.CALIBRATION, owner_id=user.id,
                                  description=f"calibrations of {user.name}'s trials")
    chain_prepend(s, chain, s.get(Collection, run.collection_id))
    for ds in made:
        if ds.kind == DatasetKind.CALIBRATION.value:
            begin, end = default_range(arch.config, ds)
            certify_row(s, calib, ds, begin, end, user, f"made by run {run.id}; default range of {ds.category}")


def finish_run(arch, run_id, outputs, *, notebook, details, move=False) -> list[DatasetRecord]:
    # Inspect every output before opening the transaction: a bad file refuses the whole run.
    infos = []
    for out in outputs:
        path, category, ifu = (tuple(out) + (None, None))[:3]
        info = inspect_file(path, ifu=ifu)
        if category and category != info.category:
            info = dataclasses.replace(info, category=category, kind=kind_of_category(category))
        infos.append((Path(path), info))
    # A catalogue's table is read now too: an unreadable one refuses the run, and a moved file is gone later.
    tables = {p: read_sources(p) for p, info in infos if info.category == SOURCE_CATALOG}
    # Two runs may store identical new bytes at the same instant: the retry finds them stored.
    return once_more_if_raced(_finish, arch, run_id, infos, notebook, details, move, tables)


def _finish(arch, run_id, infos, notebook, details, move, tables) -> list[DatasetRecord]:
    with arch.transaction() as tx:
        s = tx.session
        run = _own_run(arch, s, run_id)
        made = []
        for path, info in infos:
            if info.night is None:
                info = dataclasses.replace(info, night=run.night)
            if info.mode is None:
                info = dataclasses.replace(info, mode=run.mode)
            # A run makes neither raw frames nor static tables (e.g. muse_scipost's fitted
            # SKY_LINES of one exposure): what it writes of those categories is auxiliary.
            # A calibration category stays a calibration even when its header lacks the
            # recipe and date that ingest uses to tell a shipped default.
            if info.kind in (DatasetKind.RAW, DatasetKind.STATIC):
                made_kind = kind_of_category(info.category)
                info = dataclasses.replace(info, kind=made_kind if made_kind in (
                    DatasetKind.CALIBRATION, DatasetKind.SCIENCE) else DatasetKind.AUXILIARY)
            ds = _store(arch, tx, run, path, info, move)
            # A catalogue's sources become rows in the same transaction: never one without the other.
            record_sources(s, ds, tables.get(path))
            made.append(ds)
        _store_notebook(arch, tx, run, notebook)
        _chain_run(arch, s, run, made)
        run.status, run.ended = RunStatus.SUCCEEDED.value, utcnow()
        if details:
            run.details = _jsonable({**(run.details or {}), **details})
        ids = [d.id for d in made]
    got = arch.get_many(ids)
    return [got[i] for i in ids if i in got]


def fail_run(arch, run_id, error, *, notebook, details) -> None:
    with arch.transaction() as tx:
        run = _own_run(arch, tx.session, run_id)
        run.status, run.ended, run.error = RunStatus.FAILED.value, utcnow(), str(error)[-20000:]
        if details:
            run.details = _jsonable({**(run.details or {}), **details})
        _store_notebook(arch, tx, run, notebook)


def _visible_notebooks(arch, s, runs) -> set[int]:
    ids = sorted({r.notebook_id for r in runs if r.notebook_id is not None})
    return {i for chunk in _chunks(ids) for i in s.scalars(select(Dataset.id).where(Dataset.id.in_(chunk),
                                                                                    arch.visible(s)))}


def _chunks(ids: list) -> Iterator[list]:
    """``ids`` in pieces short enough for one ``IN (...)`` (SQLite binds at most 32,766 parameters)."""
    for k in range(0, len(ids), 10_000):
        yield ids[k:k + 10_000]


def _run_records(arch, s, runs) -> list[RunRecord]:
    """RunRecords of ``runs`` (visible to the user), in order, in a few queries whatever their number:
    their visible products, notebooks, collections and projects are read together."""
    ids = [r.id for r in runs]
    outs: dict[int, list[int]] = {i: [] for i in ids}
    held: list = []  # the session's identity map keeps only referenced objects: _run_record finds these
    for chunk in _chunks(ids):
        for did, rid in s.execute(select(Dataset.id, Dataset.run_id).where(
                Dataset.run_id.in_(chunk), arch.visible(s),
                Dataset.kind != DatasetKind.NOTEBOOK.value).order_by(Dataset.id)):
            outs[rid].append(did)
    for model, key in ((Collection, "collection_id"), (Project, "project_id")):
        wanted = sorted({getattr(r, key) for r in runs} - {None})
        for chunk in _chunks(wanted):
            held += list(s.scalars(select(model).where(model.id.in_(chunk))))
    notebooks = _visible_notebooks(arch, s, runs)
    out = [_run_record(s, r, outs[r.id], notebooks) for r in runs]
    del held
    return out


def get_run(arch, run_id) -> RunRecord:
    with arch.session() as s:
        run = s.scalar(select(Run).where(Run.id == int(run_id), visible_runs(arch.acting_user(s))))
        if run is None:
            raise NotFoundError(f"no run {run_id} visible to user {arch.user_name!r}")
        return _run_records(arch, s, [run])[0]


def get_runs(arch, run_ids) -> dict[int, RunRecord]:
    """``{id: RunRecord}`` of those of ``run_ids`` visible to the user, in a few queries whatever their number."""
    ids = sorted({int(i) for i in run_ids})
    with arch.session() as s:
        runs = []
        for chunk in _chunks(ids):
            runs += s.scalars(select(Run).where(Run.id.in_(chunk), visible_runs(arch.acting_user(s)))).unique()
        return {r.id: r for r in _run_records(arch, s, runs)}


def list_runs(arch, *, recipe=None, night=None, ifu=None, status=None, limit=None) -> list[RunRecord]:
    with arch.session() as s:
        q = select(Run).where(visible_runs(arch.acting_user(s)))
        for col, val in ((Run.recipe, recipe), (Run.night, night), (Run.ifu, ifu), (Run.status, status)):
            if val is not None:
                q = q.where(col == getattr(val, "value", val))
        q = q.order_by(Run.id.desc())
        if limit:
            q = q.limit(limit)
        return _run_records(arch, s, list(s.scalars(q).unique()))


def dependents(arch, dataset_id, recursive=True) -> list[DatasetRecord]:
    with arch.session() as s:
        arch.load(s, dataset_id)
        vis = arch.visible(s)
        found, frontier = {}, [int(dataset_id)]
        while frontier:
            runs = select(RunInput.run_id).where(RunInput.dataset_id.in_(frontier))
            rows = s.scalars(select(Dataset).where(Dataset.run_id.in_(runs), vis,
                                                   Dataset.kind != DatasetKind.NOTEBOOK.value))
            frontier = [d.id for d in rows if d.id not in found]
            for rec in arch.records(s, select(Dataset).where(Dataset.id.in_(frontier))):
                found[rec.id] = rec
            if not recursive:
                break
        return sorted(found.values(), key=lambda r: r.id)


__all__ = ["User"]
