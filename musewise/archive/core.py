"""The Archive: one registry (metadata, lineage) and one datastore (bytes), joined by transactions.

Every write goes through :meth:`Archive.transaction`, which commits the database
rows and the stored files together or undoes both: a failure (or a killed
process) never leaves a row without its file, and a file left without its row
is invisible, adopted by the next ingest of the same bytes and reported by
:meth:`Archive.fsck`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import and_, exists, func, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ..config import MusewiseConfig
from ..exceptions import (
    DuplicateError,
    InvalidFrameError,
    MusewiseError,
    NotFoundError,
    PermissionDeniedError,
)
from ..ingest import FrameInfo, find_fits, inspect_file
from ..vocabulary import Privilege, QualityFlag
from . import lineage
from .database import make_engine, upgrade
from .datastore import Datastore, PendingFile
from .privileges import can_review, visible_datasets
from .records import DatasetRecord, IfuState
from .schema import (
    Dataset,
    DatasetIfu,
    Membership,
    Project,
    QCParameter,
    StoredFile,
    User,
    ValidityEvent,
    utcnow,
)
from .templates import path_for

#: Columns users may sort query results by.
ORDERABLE = ("id", "date_obs", "mjd_obs", "night", "category", "created", "exptime", "ifu", "object")


@dataclass
class Transaction:
    """An open archive transaction: a database session plus the files written in it."""

    session: Session
    files: list[PendingFile] = field(default_factory=list)


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


class Archive:
    """The musewise archive as seen by one user.

    Parameters
    ----------
    config : MusewiseConfig
        Where the database and datastore are.
    user : str, optional
        Archive user acting (default: ``config.user``). Every query shows only
        what this user may see.

    Examples
    --------
    >>> arch = Archive.open(root="/tmp/mw", user="alice")      # doctest: +SKIP
    >>> arch.ingest_many(["/data/2026-11-20/"])                 # doctest: +SKIP
    >>> arch.query(category="BIAS", night="2026-11-20", ifu=3)  # doctest: +SKIP
    """

    def __init__(self, config: MusewiseConfig, user: str | None = None):
        self.config = config
        self.user_name = user or config.user
        self.engine = make_engine(config.db_url)
        self._Session = sessionmaker(self.engine, expire_on_commit=False)
        self.datastore = Datastore(config.datastore_url)
        upgrade(self.engine)
        self._bootstrap_first_user()

    @classmethod
    def open(cls, config: MusewiseConfig | None = None, user: str | None = None, **settings) -> "Archive":
        """Open (creating if needed) the archive described by ``config`` or settings.

        Parameters
        ----------
        config : MusewiseConfig, optional
            Default: :meth:`MusewiseConfig.load` with ``settings`` as overrides.
        user : str, optional
            Acting user name.
        **settings
            Overrides of configuration values, e.g. ``root="/data/musewise"``.
        """
        if config is None:
            config = MusewiseConfig.load(**settings)
        elif settings:
            config = MusewiseConfig.load(**{**config.as_dict(), **settings})
        return cls(config, user=user)

    @classmethod
    def from_cli(cls, args) -> "Archive":
        """Open the archive named by ``musewise``'s global options (``--root``, ``--db-url``, ``--user``)."""
        return cls.open(user=getattr(args, "user", None), root=getattr(args, "root", None),
                        db_url=getattr(args, "db_url", None))

    def __repr__(self):
        return f"<Archive {self.engine.url.render_as_string(hide_password=True)} user={self.user_name!r}>"

    def close(self) -> None:
        self.engine.dispose()

    def as_user(self, name: str) -> "Archive":
        """The same archive seen by another user (shares the engine)."""
        other = object.__new__(Archive)
        other.__dict__.update(self.__dict__)
        other.user_name = name
        return other

    # ------------------------------------------------------------------ sessions
    @contextlib.contextmanager
    def session(self):
        """A read-only session (rolled back at exit)."""
        s = self._Session()
        try:
            yield s
        finally:
            s.rollback()
            s.close()

    @contextlib.contextmanager
    def transaction(self):
        """Write rows and files atomically.

        Rows are flushed (so constraints are checked) before files are moved to
        their final names, and the database commits last. On any error the
        database rolls back and every file written in the transaction is removed.

        Yields
        ------
        Transaction
        """
        tx = Transaction(self._Session())
        try:
            yield tx
            tx.session.flush()
            for f in tx.files:
                f.commit()
            if tx.files:
                _crash_point("before-db-commit")
            tx.session.commit()
        except BaseException:
            tx.session.rollback()
            for f in tx.files:
                f.undo()
            raise
        finally:
            tx.session.close()

    # ------------------------------------------------------------------ users
    def _bootstrap_first_user(self) -> None:
        # The first user of an empty archive administers it, so a new site can start.
        with self.transaction() as tx:
            if tx.session.scalar(select(func.count(User.id))) == 0:
                tx.session.add(User(name=self.user_name, is_admin=True, full_name="archive administrator"))
                tx.session.add(Project(name=self.config.project, description="default project"))

    def _user(self, s: Session, name: str | None = None) -> User:
        name = name or self.user_name
        u = s.scalar(select(User).where(User.name == name))
        if u is None:
            raise PermissionDeniedError(
                f"user {name!r} is not registered in the archive; an administrator adds them "
                f"with `musewise user add {name}`"
            )
        return u

    @property
    def user(self) -> User:
        """The acting user's row (detached)."""
        with self.session() as s:
            u = self._user(s)
            s.expunge(u)  # keep its loaded attributes after the session ends
            return u

    def _require_admin(self, s: Session) -> User:
        u = self._user(s)
        if not u.is_admin:
            raise PermissionDeniedError(f"user {u.name!r} is not an archive administrator")
        return u

    def add_user(self, name: str, *, admin: bool = False, member: bool = True, full_name: str = "",
                 email: str = "", projects: dict[str, str] | list[str] = ()) -> None:
        """Register a user (administrators only).

        Parameters
        ----------
        name : str
            Login name (the JupyterHub user name).
        admin : bool
            Administrators see and may change everything.
        member : bool
            Consortium member (False: an outside user who sees only public data).
        projects : list of str or dict of str to str
            Projects to join, optionally with a role (``member``, ``reviewer``, ``manager``).
        """
        if isinstance(projects, (list, tuple)):
            projects = {p: "member" for p in projects}
        with self.transaction() as tx:
            self._require_admin(tx.session)
            if tx.session.scalar(select(User).where(User.name == name)) is not None:
                raise DuplicateError(f"user {name!r} already exists")
            u = User(name=name, is_admin=admin, is_member=member, full_name=full_name, email=email)
            tx.session.add(u)
            tx.session.flush()
            for pname, role in projects.items():
                p = self._project(tx.session, pname)
                tx.session.add(Membership(user_id=u.id, project_id=p.id, role=role))

    def add_project(self, name: str, description: str = "") -> None:
        """Create a project (administrators only)."""
        with self.transaction() as tx:
            self._require_admin(tx.session)
            if tx.session.scalar(select(Project).where(Project.name == name)) is not None:
                raise DuplicateError(f"project {name!r} already exists")
            tx.session.add(Project(name=name, description=description))

    def add_member(self, user: str, project: str, role: str = "member") -> None:
        """Add a user to a project, or change their role (administrators only)."""
        with self.transaction() as tx:
            self._require_admin(tx.session)
            u, p = self._user(tx.session, user), self._project(tx.session, project)
            m = tx.session.get(Membership, (u.id, p.id))
            if m is None:
                tx.session.add(Membership(user_id=u.id, project_id=p.id, role=role))
            else:
                m.role = role

    def users(self) -> list[dict]:
        """Registered users with their projects."""
        with self.session() as s:
            roles = s.execute(
                select(Membership.user_id, Project.name, Membership.role).join(Project)
            ).all()
            out = []
            for u in s.scalars(select(User).order_by(User.name)):
                out.append({
                    "name": u.name, "is_admin": u.is_admin, "is_member": u.is_member,
                    "projects": {p: r for uid, p, r in roles if uid == u.id},
                })
            return out

    def _project(self, s: Session, name: str | None) -> Project:
        name = name or self.config.project
        p = s.scalar(select(Project).where(Project.name == name))
        if p is None:
            raise NotFoundError(f"no project named {name!r}")
        return p

    def _roles(self, s: Session, user: User) -> dict[int, str]:
        return dict(s.execute(select(Membership.project_id, Membership.role).where(Membership.user_id == user.id)).all())

    # ------------------------------------------------------------------ ingest
    def ingest(self, path, *, privilege: Privilege | int = Privilege.CONSORTIUM, project: str | None = None,
               ifu: int | None = None, info: FrameInfo | None = None) -> IngestResult:
        """Archive one raw frame or static calibration.

        The file is checked (MUSE, complete, classifiable), copied into the
        datastore with its sha256, and registered, all in one transaction.
        The same bytes ingested twice give the existing dataset back.

        Parameters
        ----------
        path : path-like
            The FITS file.
        privilege : Privilege
            Who may see it (default: the whole consortium).
        project : str, optional
            Owning project (default: the configured project).
        ifu : int, optional
            IFU of a single-IFU product whose headers do not say.

        Raises
        ------
        InvalidFrameError
            Corrupt, truncated or non-MUSE input; nothing is stored.
        """
        info = info or inspect_file(path, ifu=ifu)
        try:
            with self.transaction() as tx:
                rec, created = self._add_file(tx, Path(path), info, privilege=privilege, project=project)
        except SAIntegrityError:
            # Another process archived the same bytes between our check and our commit.
            existing = self._find_by_checksum(path)
            if existing is None:
                raise
            return IngestResult(existing, False)
        try:
            return IngestResult(self.get(rec.id), created)
        except NotFoundError:
            raise DuplicateError(f"{path}: these bytes are already archived as dataset {rec.id}, "
                                 f"which user {self.user_name!r} may not see") from None

    def _find_by_checksum(self, path) -> DatasetRecord | None:
        from .datastore import sha256_file

        sha, _ = sha256_file(path)
        with self.session() as s:
            ds = s.scalar(select(Dataset).join(StoredFile).where(StoredFile.sha256 == sha))
            return self._record(s, ds) if ds is not None else None

    def _add_file(self, tx: Transaction, path: Path, info: FrameInfo, *, privilege, project,
                  run_id: int | None = None, owner: User | None = None):
        s = tx.session
        privilege = Privilege(int(privilege))
        user = owner or self._user(s)
        proj = self._project(s, project) if (project or privilege == Privilege.PROJECT) else None
        if proj is None:
            proj = s.scalar(select(Project).where(Project.name == self.config.project))
        relpath = path_for(info, path.name, run_id=run_id)
        pending = self.datastore.put(path, relpath + ".incoming")
        existing = s.scalar(select(StoredFile).where(StoredFile.sha256 == pending.sha256))
        if existing is not None:
            pending.discard()
            return s.scalar(select(Dataset).where(Dataset.file_id == existing.id)), False
        pending.relpath = path_for(info, path.name, run_id=run_id, sha256=pending.sha256)
        tx.files.append(pending)
        sf = StoredFile(sha256=pending.sha256, size=pending.size, path=pending.relpath, original_name=path.name)
        s.add(sf)
        s.flush()
        ds = Dataset(
            kind=info.kind.value, category=info.category, file_id=sf.id, night=info.night,
            date_obs=info.date_obs, mjd_obs=info.mjd_obs, exptime=info.exptime, mode=info.mode,
            object=info.object, ifu=info.ifu, pipeline_version=info.pipeline_version,
            header=info.header, owner_id=user.id, project_id=proj.id if proj else None,
            privilege=int(privilege), run_id=run_id,
        )
        ds.ifus = [DatasetIfu(ifu=i, is_valid=True, flag=QualityFlag.UNCHECKED.value) for i in info.ifus]
        s.add(ds)
        s.flush()
        return ds, True

    def ingest_many(self, paths, *, progress: bool = True, **kw) -> IngestReport:
        """Ingest files and folders (searched for ``*.fits``), one transaction per file.

        A refused file is reported and skipped; it does not stop the others.
        """
        from tqdm.auto import tqdm

        files = find_fits(paths)
        report = IngestReport()
        total = sum(os.path.getsize(f) for f in files if f.is_file())
        with tqdm(total=total, unit="B", unit_scale=True, desc="ingest", disable=not progress) as bar:
            for f in files:
                try:
                    res = self.ingest(f, **kw)
                except InvalidFrameError as exc:
                    report.refused.append((str(f), exc.reason))
                else:
                    if res.created:
                        report.ingested.append(res.record)
                        report.bytes += res.record.size
                    else:
                        report.duplicates.append(res.record)
                bar.update(os.path.getsize(f) if f.is_file() else 0)
        return report

    # ------------------------------------------------------------------ reading
    def _record(self, s: Session, ds: Dataset) -> DatasetRecord:
        names = dict(s.execute(select(User.id, User.name)).all()) if any(i.updated_by for i in ds.ifus) else {}
        return DatasetRecord(
            id=ds.id, kind=ds.kind, category=ds.category, night=ds.night, date_obs=ds.date_obs,
            mjd_obs=ds.mjd_obs, exptime=ds.exptime, mode=ds.mode, object=ds.object, ifu=ds.ifu,
            ifus=tuple(IfuState(i.ifu, i.is_valid, i.flag, i.comment, names.get(i.updated_by), i.updated)
                       for i in ds.ifus),
            owner=ds.owner.name, project=ds.project.name if ds.project else None,
            privilege=Privilege(ds.privilege), run_id=ds.run_id, sha256=ds.file.sha256,
            size=ds.file.size, filename=ds.file.original_name, storage_path=ds.file.path,
            pipeline_version=ds.pipeline_version, created=ds.created, header=ds.header or {},
        )

    def _visible(self, s: Session):
        return visible_datasets(self._user(s))

    def _load(self, s: Session, dataset_id: int) -> Dataset:
        ds = s.scalar(select(Dataset).where(Dataset.id == int(dataset_id), self._visible(s)))
        if ds is None:
            raise NotFoundError(f"no dataset {dataset_id} visible to user {self.user_name!r}")
        return ds

    def get(self, dataset_id: int) -> DatasetRecord:
        """The dataset with this ID.

        Raises
        ------
        NotFoundError
            If it does not exist or the user may not see it (the two are
            indistinguishable on purpose).
        """
        with self.session() as s:
            return self._record(s, self._load(s, dataset_id))

    def path(self, dataset_id: int) -> str:
        """Local filesystem path from which the dataset's file can be read."""
        rec = self.get(dataset_id)
        p = self.datastore.local_path(rec.storage_path)
        if self.config.checksum_on_read:
            self.datastore.verify(rec.storage_path, rec.sha256)
        return p

    def open_fits(self, dataset_id: int, **kw):
        """Open a dataset as an astropy HDUList (memory-mapped by default)."""
        from astropy.io import fits

        return fits.open(self.path(dataset_id), **{"memmap": True, **kw})

    def verify(self, dataset_id: int) -> None:
        """Re-read the dataset's file and check it against its recorded checksum."""
        rec = self.get(dataset_id)
        self.datastore.verify(rec.storage_path, rec.sha256)

    def select_datasets(self, s: Session, *, kind=None, category=None, night=None, date_from=None,
                        date_to=None, ifu=None, valid=None, project=None, mode=None, run_id=None,
                        owner=None, object=None, privilege=None):
        """The SELECT behind :meth:`query`, restricted to what the user may see."""
        q = select(Dataset).where(self._visible(s))
        for col, val in ((Dataset.kind, kind), (Dataset.category, category), (Dataset.night, night),
                         (Dataset.mode, mode), (Dataset.run_id, run_id), (Dataset.object, object),
                         (Dataset.privilege, privilege)):
            if val is None:
                continue
            if isinstance(val, (list, tuple, set)):
                q = q.where(col.in_([getattr(v, "value", v) for v in val]))
            else:
                q = q.where(col == getattr(val, "value", val))
        if date_from is not None:
            q = q.where(Dataset.night >= str(date_from))
        if date_to is not None:
            q = q.where(Dataset.night <= str(date_to))
        if project is not None:
            q = q.join(Project, Dataset.project_id == Project.id).where(Project.name == project)
        if owner is not None:
            q = q.where(Dataset.owner_id == select(User.id).where(User.name == owner).scalar_subquery())
        if ifu is not None:
            cond = [DatasetIfu.dataset_id == Dataset.id, DatasetIfu.ifu == int(ifu)]
            if valid is not None:
                cond.append(DatasetIfu.is_valid == bool(valid))
            q = q.where(exists().where(and_(*cond)))
        elif valid is not None:
            bad = exists().where(and_(DatasetIfu.dataset_id == Dataset.id, DatasetIfu.is_valid.is_(False)))
            q = q.where(~bad if valid else bad)
        return q

    def query(self, *, order_by: str = "date_obs", descending: bool = False, limit: int | None = None,
              offset: int = 0, **filters) -> list[DatasetRecord]:
        """Find datasets.

        Parameters
        ----------
        kind, category, night, mode, object, privilege : str or list, optional
            Exact matches (a list matches any).
        date_from, date_to : str, optional
            Range of observing nights ``YYYY-MM-DD``, inclusive.
        ifu : int, optional
            Datasets holding this IFU; with ``valid``, that IFU's validity.
        valid : bool, optional
            Only datasets whose IFUs are all valid (True) or having an invalid one (False).
        project, owner : str, optional
        run_id : int, optional
            Products of one run.
        order_by : str
            One of :data:`ORDERABLE`.
        limit, offset : int
            Paging.

        Returns
        -------
        list of DatasetRecord
        """
        if order_by not in ORDERABLE:
            raise ValueError(f"cannot order by {order_by!r}; choose one of {ORDERABLE}")
        with self.session() as s:
            q = self.select_datasets(s, **filters)
            col = getattr(Dataset, order_by)
            q = q.order_by(col.desc() if descending else col, Dataset.id).offset(int(offset))
            if limit is not None:
                q = q.limit(int(limit))
            return [self._record(s, ds) for ds in s.scalars(q).unique()]

    def count(self, **filters) -> int:
        """Number of datasets :meth:`query` would return with these filters."""
        with self.session() as s:
            q = self.select_datasets(s, **filters)
            return s.scalar(select(func.count()).select_from(q.subquery()))

    # ------------------------------------------------------------------ validity
    def set_validity(self, dataset_id: int, ifu: int | None = None, *, is_valid: bool | None = None,
                     flag: QualityFlag | str | None = None, comment: str = "") -> DatasetRecord:
        """Mark IFUs of a dataset valid or invalid and/or set their quality flag.

        Every change is audited (who, when, before, after, comment).

        Parameters
        ----------
        dataset_id : int
        ifu : int, optional
            The IFU; default all IFUs of the dataset.
        is_valid : bool, optional
        flag : QualityFlag or str, optional
        comment : str
            Why (required when invalidating).

        Raises
        ------
        PermissionDeniedError
            Unless the user is an administrator, the owner, or a reviewer/manager
            of the dataset's project.
        """
        if flag is not None:
            flag = QualityFlag(getattr(flag, "value", flag)).value
        if is_valid is False and not comment.strip():
            raise ValueError("say why in `comment` when marking data invalid")
        with self.transaction() as tx:
            s = tx.session
            user = self._user(s)
            ds = self._load(s, dataset_id)
            if not can_review(user, ds.owner_id, ds.project_id, self._roles(s, user)):
                raise PermissionDeniedError(
                    f"user {user.name!r} may not change the quality of dataset {dataset_id} "
                    f"(owner, project reviewers and administrators may)"
                )
            states = [i for i in ds.ifus if ifu is None or i.ifu == int(ifu)]
            if not states:
                raise NotFoundError(f"dataset {dataset_id} holds no IFU {ifu}")
            now = utcnow()
            for st in states:
                new_valid = st.is_valid if is_valid is None else bool(is_valid)
                new_flag = st.flag if flag is None else flag
                s.add(ValidityEvent(dataset_id=ds.id, ifu=st.ifu, user_id=user.id, at=now,
                                    valid_before=st.is_valid, valid_after=new_valid,
                                    flag_before=st.flag, flag_after=new_flag, comment=comment))
                st.is_valid, st.flag, st.comment = new_valid, new_flag, comment
                st.updated_by, st.updated = user.id, now
        return self.get(dataset_id)

    def validity_history(self, dataset_id: int) -> list[dict]:
        """Audit trail of validity and flag changes of a dataset, oldest first."""
        with self.session() as s:
            self._load(s, dataset_id)
            rows = s.execute(
                select(ValidityEvent, User.name).join(User, ValidityEvent.user_id == User.id)
                .where(ValidityEvent.dataset_id == int(dataset_id)).order_by(ValidityEvent.id)
            ).all()
            return [{"ifu": e.ifu, "user": name, "at": e.at, "valid_before": e.valid_before,
                     "valid_after": e.valid_after, "flag_before": e.flag_before,
                     "flag_after": e.flag_after, "comment": e.comment} for e, name in rows]

    def can_review(self, dataset_id: int) -> bool:
        """May the acting user change this dataset's validity and flags?"""
        with self.session() as s:
            user = self._user(s)
            ds = self._load(s, dataset_id)
            return can_review(user, ds.owner_id, ds.project_id, self._roles(s, user))

    def publish(self, dataset_ids, privilege: Privilege | int = Privilege.PROJECT, project: str | None = None) -> None:
        """Widen (or narrow) who may see datasets: owner, project reviewers or administrators."""
        privilege = Privilege(int(privilege))
        with self.transaction() as tx:
            s = tx.session
            user = self._user(s)
            proj = self._project(s, project) if project or privilege == Privilege.PROJECT else None
            roles = self._roles(s, user)
            for did in dataset_ids:
                ds = self._load(s, did)
                if not can_review(user, ds.owner_id, ds.project_id, roles):
                    raise PermissionDeniedError(f"user {user.name!r} may not publish dataset {did}")
                ds.privilege = int(privilege)
                if proj is not None:
                    ds.project_id = proj.id

    # ------------------------------------------------------------------ QC numbers
    def add_qc(self, dataset_id: int, values: dict[str, float], *, ifu: int | None = None,
               units: dict[str, str] | None = None, run_id: int | None = None) -> None:
        """Record QC parameters measured on a dataset (replacing earlier values of the same name/IFU)."""
        units = units or {}
        with self.transaction() as tx:
            s = tx.session
            ds = self._load(s, dataset_id)
            for name, value in values.items():
                old = s.scalars(select(QCParameter).where(
                    QCParameter.dataset_id == ds.id, QCParameter.name == name,
                    QCParameter.ifu.is_(None) if ifu is None else QCParameter.ifu == ifu))
                for o in old:
                    s.delete(o)
                s.add(QCParameter(dataset_id=ds.id, ifu=ifu, name=name,
                                  value=None if value is None else float(value),
                                  unit=units.get(name, ""), run_id=run_id))

    def qc(self, dataset_id: int) -> list[dict]:
        """QC parameters of a dataset."""
        with self.session() as s:
            self._load(s, dataset_id)
            rows = s.scalars(select(QCParameter).where(QCParameter.dataset_id == int(dataset_id))
                             .order_by(QCParameter.ifu, QCParameter.name))
            return [{"ifu": r.ifu, "name": r.name, "value": r.value, "unit": r.unit, "run_id": r.run_id}
                    for r in rows]

    # ------------------------------------------------------------------ runs & lineage
    def begin_run(self, recipe: str, parameters: dict, *, night: str | None = None, ifu: int | None = None,
                  mode: str | None = None, inputs=(), pipeline_version: str | None = None,
                  privilege: Privilege | int = Privilege.PRIVATE, project: str | None = None,
                  details: dict | None = None) -> int:
        """Record that a run starts; returns its ID. Committed at once, so a crash stays on record.

        Parameters
        ----------
        inputs : iterable of (dataset_id, tag, reason)
            What the run reads, the set-of-frames tag each is given, and why it was chosen.
        """
        return lineage.begin_run(self, recipe, parameters, night=night, ifu=ifu, mode=mode, inputs=inputs,
                                 pipeline_version=pipeline_version, privilege=privilege, project=project,
                                 details=details)

    def finish_run(self, run_id: int, outputs=(), *, notebook=None, details: dict | None = None) -> list[DatasetRecord]:
        """Record a successful run: ingest its outputs and executed notebook, all or nothing.

        Parameters
        ----------
        outputs : iterable of (path, category or None, ifu or None)
            Product files; category/IFU default to what their headers say.
        notebook : path-like, optional
            The executed notebook of the run.
        """
        return lineage.finish_run(self, run_id, outputs, notebook=notebook, details=details)

    def fail_run(self, run_id: int, error: str, *, notebook=None, details: dict | None = None) -> None:
        """Record a failed run with its error and executed notebook; no product is ingested."""
        lineage.fail_run(self, run_id, error, notebook=notebook, details=details)

    def get_run(self, run_id: int):
        """The :class:`RunRecord` of a run visible to the user."""
        return lineage.get_run(self, run_id)

    def runs(self, **filters):
        """Runs visible to the user (filters: recipe, night, ifu, status), newest first."""
        return lineage.list_runs(self, **filters)

    def provenance(self, dataset_id: int, *, max_nodes: int | None = None) -> "ProvenanceGraph":
        """The runs and inputs that made a dataset, as a graph holding each once.

        Parameters
        ----------
        dataset_id : int
        max_nodes : int, optional
            Most datasets + runs walked (default 20,000); a larger history comes back ``truncated``.

        Returns
        -------
        ProvenanceGraph
            Exports to W3C PROV (``to_prov_json``, ``to_provn``), Graphviz (``to_svg``) and text.

        Raises
        ------
        NotFoundError
            If the dataset does not exist or the user may not see it.
        """
        from .provenance import DEFAULT_MAX_NODES, build_provenance

        with self.session() as s:
            return build_provenance(s, self._user(s), dataset_id, max_nodes=max_nodes or DEFAULT_MAX_NODES)

    def dependents(self, dataset_id: int, recursive: bool = True) -> list[DatasetRecord]:
        """Products made (directly, or through other products) from a dataset."""
        return lineage.dependents(self, dataset_id, recursive=recursive)

    # ------------------------------------------------------------------ calibrations
    def best_calibration(self, category: str, *, ifu: int, mjd: float, mode: str | None = None,
                         window_days: float | None = None):
        """Choose the calibration to use for a frame (see :mod:`musewise.archive.calibrations`)."""
        from .calibrations import best_calibration

        return best_calibration(self, category, ifu=ifu, mjd=mjd, mode=mode,
                                window_days=self.config.calibration_window_days if window_days is None else window_days)

    # ------------------------------------------------------------------ maintenance
    def fsck(self, verify_checksums: bool = False) -> dict:
        """Compare registry and datastore.

        Returns
        -------
        dict
            ``orphans``: stored files with no row (left by killed processes);
            ``temporaries``: unfinished copies; ``missing``: rows whose file is gone;
            ``corrupt``: files whose checksum no longer matches (with ``verify_checksums``).
        """
        with self.session() as s:
            rows = dict(s.execute(select(StoredFile.path, StoredFile.sha256)).all())
        on_disk = set(self.datastore.walk())
        report = {
            "orphans": sorted(on_disk - set(rows)),
            "temporaries": sorted(self.datastore.temporaries()),
            "missing": sorted(set(rows) - on_disk),
            "corrupt": [],
        }
        if verify_checksums:
            for p, sha in rows.items():
                if p in on_disk:
                    try:
                        self.datastore.verify(p, sha)
                    except MusewiseError:
                        report["corrupt"].append(p)
        return report


def _crash_point(name: str) -> None:
    # Lets the kill-safety tests stop a real ingest at a chosen instant.
    if os.environ.get("MUSEWISE_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), 9)


__all__ = ["Archive", "IngestResult", "IngestReport", "Transaction"]
