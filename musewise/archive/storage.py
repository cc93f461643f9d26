"""Putting files into the archive: ingest of raw frames and static tables, stored files, fsck.

Each file is checked (:func:`musewise.ingest.inspect_file`), stored in the datastore and
registered in one transaction of the archive, so a failure leaves neither a row
without its file nor a visible file without its row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import DataError as SADataError
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from ..exceptions import BytesStoredAlready, DuplicateError, InvalidFrameError, MusewiseError, PermissionDeniedError
from ..ingest import FrameInfo, find_fits, inspect_file
from ..vocabulary import (
    RAW_COLLECTION,
    STATIC_CALIB_COLLECTION,
    STATIC_COLLECTION,
    CollectionType,
    DatasetKind,
    Privilege,
    QualityFlag,
)
from . import calibrations
from .collections import INGESTED_COLLECTION, ensure_collection
from .privileges import can_add_to_project, visible_datasets
from .records import DatasetRecord
from .schema import Collection, Dataset, DatasetIfu, StoredFile, User
from .templates import path_for


@dataclass
class IngestResult:
    """Outcome of ingesting one file: the dataset, and whether it was new."""

    record: DatasetRecord
    created: bool


@dataclass
class IngestReport:
    """Outcome of ingesting many files."""

    ingested: list[DatasetRecord] = field(default_factory=list)
    duplicates: list[DatasetRecord] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    bytes: int = 0

    def summary(self) -> str:
        return (
            f"{len(self.ingested)} ingested, {len(self.duplicates)} already archived, "
            f"{len(self.refused)} refused ({self.bytes / 1e9:.2f} GB new)"
        )


def once_more_if_raced(transaction, *args, **kwargs):
    """Call ``transaction(*args, **kwargs)``, an archive transaction that stores files, and call
    it once more if it lost a race.

    Another process may store the same bytes, or make the same collection, between this one's
    check and its insert. The unique keys refuse the second insert: as
    :class:`~musewise.exceptions.BytesStoredAlready` when the other file's row cannot be
    seen yet, or as the database's IntegrityError. The retry finds what the other process
    committed and follows the same rule as for any duplicate. A refusal that is not a race
    (bytes held only under other members' datasets) fails the retry too, and that error is
    the one raised.
    """
    try:
        return transaction(*args, **kwargs)
    except (BytesStoredAlready, SAIntegrityError):
        return transaction(*args, **kwargs)


def ingest(arch, path, *, privilege: Privilege | int = Privilege.CONSORTIUM, project: str | None = None,
           ifu: int | None = None, info: FrameInfo | None = None, valid_from: float | None = None,
           valid_to: float | None = None, move: bool = False) -> IngestResult:
    """See :meth:`Archive.ingest`."""
    info = info or inspect_file(path, ifu=ifu)
    try:
        did, created = once_more_if_raced(_ingest_once, arch, Path(path), info, privilege, project,
                                          valid_from, valid_to, move)
    except SADataError as exc:
        # inspect_file checks what it knows of the registry; whatever else the database refuses
        # (a value out of a column's range) refuses this file, not an ingest of many.
        raise InvalidFrameError(path, f"a header value does not fit the archive: {exc.orig}") from exc
    return IngestResult(arch.get(did), created)


def _ingest_once(arch, path: Path, info, privilege, project, valid_from, valid_to, move) -> tuple[int, bool]:
    with arch.transaction() as tx:
        ds, created = _ingest_file(arch, tx, path, info, privilege, project, valid_from, valid_to, move)
        return ds.id, created


def _ingest_file(arch, tx, path: Path, info: FrameInfo, privilege, project, valid_from, valid_to,
                 move):
    s = tx.session
    name = {DatasetKind.RAW: RAW_COLLECTION, DatasetKind.STATIC: STATIC_COLLECTION}.get(info.kind,
                                                                                       INGESTED_COLLECTION)
    coll = ensure_collection(s, name, CollectionType.RUN, description="as ingested")
    proj = arch.project_row(s, project)
    user = arch.acting_user(s)
    if not can_add_to_project(user, proj.id, arch.roles(s, user)):
        # Checked before any byte is stored.
        raise PermissionDeniedError(f"user {user.name!r} may not ingest into project {proj.name!r}: "
                                    "only its members may")
    sf, fresh = store_file(arch, tx, path, info, move=move)
    if not fresh:
        # The same bytes as ingested before are the same frame: its existing dataset, if the
        # user may see one. Otherwise the user's own dataset over the same file: a dataset
        # the user may not see is neither returned nor named, nor is its existence told.
        old = s.scalar(select(Dataset).where(Dataset.file_id == sf.id, Dataset.run_id.is_(None),
                                             visible_datasets(user)).order_by(Dataset.id).limit(1))
        if old is not None:
            return old, False
    ds = add_dataset(arch, s, sf, info, owner=user, project_id=proj.id,
                          privilege=privilege, collection=coll)
    if info.kind == DatasetKind.STATIC:
        calib = ensure_collection(s, STATIC_CALIB_COLLECTION, CollectionType.CALIBRATION,
                                  description="static calibration tables, certified for their dates")
        calibrations.certify_row(s, calib, ds, valid_from, valid_to, arch.acting_user(s),
                                 "static table, certified on ingest")
    return ds, True

def store_file(arch, tx, path: Path, info: FrameInfo, run_id: int | None = None, *,
               move: bool = False):
    """See :meth:`Archive.store_file`."""
    s = tx.session
    relpath = path_for(info, path.name, run_id=run_id)
    pending = arch.datastore.put(path, relpath + ".incoming", move=move)
    existing = s.scalar(select(StoredFile).where(StoredFile.sha256 == pending.sha256))
    if existing is None and pending.known_file_id is not None:
        # Identical bytes archived under datasets this user may not see: the writer service
        # saw the bytes come from this user (a file claim), so their dataset may share the
        # file. Only its ID is needed: the row becomes visible with the user's dataset.
        existing = StoredFile(id=int(pending.known_file_id), sha256=pending.sha256, size=pending.size)
    if existing is not None:
        pending.discard()
        return existing, False
    pending.relpath = path_for(info, path.name, run_id=run_id, sha256=pending.sha256)
    tx.files.append(pending)
    sf = StoredFile(sha256=pending.sha256, size=pending.size, path=pending.relpath, original_name=path.name)
    s.add(sf)
    try:
        s.flush()
    except SAIntegrityError as exc:
        if "sha256" not in str(exc.orig):
            raise
        # The unique checksum holds a row this transaction could not see: another process's
        # that has just committed, or a file under datasets this user may not see.
        raise BytesStoredAlready(path, pending.sha256, through_writer_service=pending.via_writer) from exc
    return sf, True


def add_dataset(arch, s: Session, stored: StoredFile, info: FrameInfo, *, owner: User, project_id: int | None,
                privilege, collection: Collection, run_id: int | None = None) -> Dataset:
    """See :meth:`Archive.add_dataset`."""
    exposure = info.date_obs.isoformat(timespec="seconds") if info.date_obs is not None else None
    ds = Dataset(
        kind=info.kind.value, category=info.category, file_id=stored.id, night=info.night,
        date_obs=info.date_obs, mjd_obs=info.mjd_obs, exptime=info.exptime, mode=info.mode,
        object=info.object, ifu=info.ifu, pipeline_version=info.pipeline_version,
        header=info.header, owner_id=owner.id, project_id=project_id,
        privilege=int(Privilege(int(privilege))), run_id=run_id, collection_id=collection.id,
        exposure=exposure, is_valid=True, flag=QualityFlag.UNCHECKED.value, comment="",
    )
    ds.ifus = [DatasetIfu(ifu=i, is_valid=True, flag=QualityFlag.UNCHECKED.value) for i in info.ifus]
    s.add(ds)
    s.flush()
    return ds

def ingest_many(arch, paths, *, progress: bool = True, **kw) -> IngestReport:
    """See :meth:`Archive.ingest_many`."""
    from tqdm.auto import tqdm

    files = find_fits(paths)
    report = IngestReport()
    total = sum(os.path.getsize(f) for f in files if f.is_file())
    with tqdm(total=total, unit="B", unit_scale=True, desc="ingest", disable=not progress) as bar:
        for f in files:
            size = os.path.getsize(f) if f.is_file() else 0  # before a move takes it away
            try:
                res = ingest(arch, f, **kw)
            except InvalidFrameError as exc:
                report.refused.append((str(f), exc.reason))
            except DuplicateError as exc:
                report.refused.append((str(f), str(exc)))
            else:
                if res.created:
                    report.ingested.append(res.record)
                    report.bytes += res.record.size
                else:
                    report.duplicates.append(res.record)
            bar.update(size)
    return report


def fsck(arch, verify_checksums: bool = False, *, repair: bool = False, min_age: float = 3600.0) -> dict:
    """See :meth:`Archive.fsck`."""
    if repair:
        with arch.session() as s:
            arch.require_admin(s)
        removed = _remove_leftovers(arch, float(min_age))
        out = fsck(arch, verify_checksums)
        out["removed"] = removed
        return out
    with arch.session() as s:
        rows = dict(s.execute(select(StoredFile.path, StoredFile.sha256)).all())
    on_disk = set(arch.datastore.walk())
    report = {
        "orphans": sorted(on_disk - set(rows)),
        "temporaries": sorted(arch.datastore.temporaries()),
        "missing": sorted(set(rows) - on_disk),
        "corrupt": [],
    }
    if verify_checksums:
        for p, sha in rows.items():
            if p in on_disk:
                try:
                    arch.datastore.verify(p, sha)
                except MusewiseError:
                    report["corrupt"].append(p)
    return report


def _remove_leftovers(arch, min_age: float) -> list[str]:
    # The listing of files comes first and the rows after it: a file committed with its row
    # in between is then seen with its row, never taken for an orphan.
    store = arch.datastore
    candidates = set(store.temporaries()) | set(store.walk())
    with arch.session() as s:
        kept = set(s.scalars(select(StoredFile.path)))
    removed = []
    for rel in sorted(candidates - kept):
        if store.age(rel) >= min_age:
            store.remove(rel)
            removed.append(rel)
    return removed


__all__ = ["IngestReport", "IngestResult", "add_dataset", "fsck", "ingest", "ingest_many", "store_file"]
