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

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from ..config import MusewiseConfig
from ..exceptions import MusewiseError, NotFoundError, PermissionDeniedError
from ..ingest import FrameInfo
from ..vocabulary import CollectionType, Privilege, QualityFlag
from . import calibrations, lineage, liveness, qcvalues, queries, storage, users, validity
from . import sources as sources_mod
from .calibrations import CalibrationChoice
from .collections import (
    SearchPath,
    chain_members,
    default_search_path,
    ensure_collection,
    get_collection,
    resolve,
    set_chain,
)
from .database import make_engine, upgrade
from .pgserver import peer_database_url
from .datastore import Datastore, PendingFile
from .privileges import can_add_to_project, can_review, visible_datasets
from .rls import refused_by_database
from .records import CertificationRecord, CollectionRecord, DatasetRecord
from .schema import Collection, Dataset, Project, QCParameter, StoredFile, User
from .storage import IngestReport, IngestResult



@dataclass
class Transaction:
    """An open archive transaction: a database session plus the files written in it."""

    session: Session
    files: list[PendingFile] = field(default_factory=list)
    #: Stored files whose datasets were added or changed: their modes are set after the commit.
    file_ids: set[int] = field(default_factory=set)



class Archive:
    """The musewise archive as seen by one user.

    Parameters
    ----------
    config : MusewiseConfig
        Where the database and datastore are.
    user : str, optional
        Archive user acting (default: ``config.user``). Every query shows only
        what this user may see.
    collections : list of str, optional
        Collection search path of personal work (default: ``config.collections``, else
        the user's trials, then the project's reference reduction, then raw and static data).

    Examples
    --------
    >>> arch = Archive.open(root="/tmp/mw", user="alice")      # doctest: +SKIP
    >>> arch.ingest_many(["/data/2026-11-20/"])                 # doctest: +SKIP
    >>> arch.query(category="BIAS", night="2026-11-20", ifu=3)  # doctest: +SKIP
    """

    def __init__(self, config: MusewiseConfig, user: str | None = None, collections=None):
        self.config = config
        # Who asks is not who acts: a member's process acts as its own unix account.
        self.user_name = config.acting_user(user)
        #: The collection search path of personal work (None: :func:`default_search_path`).
        self.collections = list(collections) if collections else (list(config.collections) or None)
        self.engine = make_engine(peer_database_url(config.db_url))
        self._Session = sessionmaker(self.engine, expire_on_commit=False)
        #: The database role of a user's connection (PostgreSQL, not the schema owner): the
        #: identity, fixed by the server (peer authentication); None for the service or SQLite.
        self.db_role: str | None = None
        if self.engine.dialect.name == "postgresql":
            self._take_database_identity(user)
        # Local copies of an object store's files are the user's own: a private dataset
        # fetched for one member is never a file another member's process can open. A
        # member's own role writes through the site's writer service (it may only read the
        # datastore); the service's connection writes the datastore itself.
        self.datastore = Datastore(config.datastore_url, options=config.datastore_options,
                                   cache=Path(config.datastore_cache) / self.user_name,
                                   service=(config.datastore_service or None) if self.db_role else None)
        if self.db_role is None:
            upgrade(self.engine)
            if self.engine.dialect.name == "postgresql":
                from . import rls

                rls.install(self.engine)
            self._bootstrap_first_user()

    def _take_database_identity(self, user: str | None) -> None:
        # A user's role sees and changes only what row-level security allows it; its name is
        # the archive identity, and asking for another would only mislead.
        from .rls import user_role

        role = user_role(self.engine)
        if role is None:
            return
        if user is not None and user != role:
            raise PermissionDeniedError(
                f"this session is database role {role!r} (its unix account, checked by the database "
                f"server); it cannot act as archive user {user!r}")
        self.db_role = self.user_name = role

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
        """The same archive seen by another user (shares the engine).

        Raises
        ------
        PermissionDeniedError
            On a user's own database role (PostgreSQL), for any other name.
        """
        if self.db_role is not None and name != self.db_role:
            raise PermissionDeniedError(f"this session is database role {self.db_role!r}; "
                                        f"it cannot act as archive user {name!r}")
        name = self.config.acting_user(name)
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

        @event.listens_for(tx.session, "after_flush")
        def _files_to_protect(session, _ctx):
            # Datasets added or changed (a new privilege) change who may read their file.
            tx.file_ids.update(o.file_id for o in (*session.new, *session.dirty) if isinstance(o, Dataset))
        try:
            yield tx
            tx.session.flush()
            for f in tx.files:
                f.commit()
            if tx.files:
                self._crash_point("before-db-commit")
            tx.session.commit()
        except BaseException as exc:
            tx.session.rollback()
            for f in tx.files:
                f.undo()
            refused = refused_by_database(exc)
            if refused is not None:
                raise PermissionDeniedError(f"the database refused user {self.user_name!r}: {refused}") from exc
            raise
        finally:
            tx.session.close()
        if tx.file_ids:  # after the commit, outside the undo above: the files are the archive's now
            self._protect_files(file_ids=sorted(tx.file_ids))

    def protect_files(self) -> int:
        """Give every stored file the owner, group and mode its datasets' privileges call for.

        Done after each write already; run it after :func:`musewise.archive.filemodes.sync_unix_groups`
        created groups, or on an archive older than this rule. Returns the number of files set.

        Raises
        ------
        PermissionDeniedError
            On a user's own database role (only the service sees every dataset over a file).
        """
        from . import filemodes

        if self.db_role is not None:
            raise PermissionDeniedError("only the archive service sets the modes of stored files")
        with self.session() as s:
            return filemodes.protect(self, s)

    def _protect_files(self, **which) -> None:
        # The bytes get the owner, group and mode of their datasets' privileges (the service
        # only: a user's session neither sees every dataset over a file nor may chown; it asks
        # the writer service, which reads the rows itself).
        if self.db_role is not None:
            if self.datastore.writer is not None and which.get("file_ids"):
                try:
                    self.datastore.writer.protect(which["file_ids"])
                except MusewiseError as exc:
                    import warnings

                    warnings.warn(f"could not set the modes of stored files: {exc}", stacklevel=3)
            return
        from . import filemodes

        try:
            with self.session() as s:
                filemodes.protect(self, s, **which)
        except OSError as exc:  # the rows are committed; the file stays readable by the service only
            import warnings

            warnings.warn(f"could not set the modes of stored files: {exc}", stacklevel=3)

    def _crash_point(self, name: str) -> None:
        # Lets the kill-safety tests stop a real ingest at a chosen instant (MusewiseConfig.crash_point).
        if self.config.crash_point == name:
            os.kill(os.getpid(), 9)

    # ------------------------------------------------------------------ users
    def _bootstrap_first_user(self) -> None:
        # The first user of an empty archive administers it, so a new site can start.
        with self.transaction() as tx:
            if tx.session.scalar(select(func.count(User.id))) == 0:
                tx.session.add(User(name=self.user_name, is_admin=True, full_name="archive administrator"))
                tx.session.add(Project(name=self.config.project, description="default project"))

    def acting_user(self, s: Session, name: str | None = None) -> User:
        """The row of the acting user (or of ``name``) in session ``s``.

        Raises
        ------
        PermissionDeniedError
            If that user is not registered.
        """
        return users.find_user(s, name or self.user_name)

    @property
    def user(self) -> User:
        """The acting user's row (detached)."""
        with self.session() as s:
            u = self.acting_user(s)
            s.expunge(u)  # keep its loaded attributes after the session ends
            return u

    def require_admin(self, s: Session) -> User:
        """The acting user's row, if an administrator.

        Raises
        ------
        PermissionDeniedError
        """
        u = self.acting_user(s)
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
        users.add_user(self, name, admin=admin, member=member, full_name=full_name, email=email,
                       projects=projects)

    def add_project(self, name: str, description: str = "") -> None:
        """Create a project (administrators only)."""
        users.add_project(self, name, description)

    def add_member(self, user: str, project: str, role: str = "member") -> None:
        """Add a user to a project, or change their role (administrators only)."""
        users.add_member(self, user, project, role)

    def users(self) -> list[dict]:
        """Registered users with their projects."""
        return users.list_users(self)

    def project_row(self, s: Session, name: str | None = None) -> Project:
        """The row of project ``name`` (default: the configured project).

        Raises
        ------
        NotFoundError
        """
        return users.find_project(s, name or self.config.project)

    def roles(self, s: Session, user: User) -> dict[int, str]:
        """``{project id: role}`` of ``user``."""
        return users.roles_of(s, user)

    # ------------------------------------------------------------------ collections
    def search_path(self, *, reference: bool = False) -> list[str]:
        """The collection search path reads and reductions use (see :mod:`musewise.archive.collections`).

        ``archive.collections = [...]`` sets the path of personal work; reference runs
        (``reference=True``) always read the project's reference path.
        """
        if self.collections and not reference:
            return list(self.collections)
        return default_search_path(self.user_name, self.config.project, reference=reference)

    def resolve_path(self, s: Session, names=None, *, reference: bool = False) -> SearchPath:
        """A :class:`~musewise.archive.collections.SearchPath` of ``names`` (default: :meth:`search_path`)."""
        return resolve(s, self.search_path(reference=reference) if names is None else names)

    def collection(self, name: str, members: int = 50) -> CollectionRecord:
        """A collection, with (for a chain) its first ``members`` members in search order."""
        with self.session() as s:
            return self._collection_record(s, get_collection(s, name), members)

    def list_collections(self, type: CollectionType | str | None = None) -> list[CollectionRecord]:
        """Every collection (of one type), by name."""
        with self.session() as s:
            q = select(Collection).order_by(Collection.name)
            if type is not None:
                q = q.where(Collection.type == CollectionType(type).value)
            return [self._collection_record(s, c, 0) for c in s.scalars(q)]

    def _collection_record(self, s, c: Collection, members: int) -> CollectionRecord:
        owner = s.get(User, c.owner_id).name if c.owner_id else None
        project = s.get(Project, c.project_id).name if c.project_id else None
        names = tuple(m.name for m in chain_members(s, c, members)) if members and c.type == "chained" else ()
        return CollectionRecord(c.id, c.name, c.type, owner, project, c.description or "", names)

    def define_chain(self, name: str, members: list[str], description: str = "") -> None:
        """Create or replace a CHAINED collection searching ``members`` in order.

        A user may define chains under ``u/<their name>/``; a project's chains
        (``<project>/...``) need a manager of that project; anything else an administrator.

        Raises
        ------
        PermissionDeniedError, NotFoundError, InvalidArgumentError
        """
        with self.transaction() as tx:
            s = tx.session
            user = self.acting_user(s)
            owner_id, project_id = self._chain_rights(s, user, name)
            parent = ensure_collection(s, name, CollectionType.CHAINED, owner_id=owner_id, project_id=project_id,
                                       description=description)
            set_chain(s, parent, [get_collection(s, m) for m in members])

    def _chain_rights(self, s, user: User, name: str):
        if name.startswith(f"u/{user.name}/") or name == f"u/{user.name}":
            return user.id, None
        head = name.split("/", 1)[0]
        p = s.scalar(select(Project).where(Project.name == head))
        if p is not None and (user.is_admin or self.roles(s, user).get(p.id) == "manager"):
            return None, p.id
        if user.is_admin:
            return None, None
        raise PermissionDeniedError(
            f"user {user.name!r} may not change collection {name!r}: personal chains live under "
            f"u/{user.name}/, a project's chains are changed by its managers")

    # ------------------------------------------------------------------ ingest
    def ingest(self, path, *, privilege: Privilege | int = Privilege.CONSORTIUM, project: str | None = None,
               ifu: int | None = None, info: FrameInfo | None = None, valid_from: float | None = None,
               valid_to: float | None = None, move: bool = False) -> IngestResult:
        """Archive one raw frame, static calibration or product made elsewhere.

        The file is checked (MUSE, complete, classifiable), copied into the
        datastore with its sha256, and registered, all in one transaction. Raw
        frames go to collection ``MUSE/raw``, static tables to ``MUSE/static`` (and are
        certified in ``MUSE/calib`` from ``valid_from`` to ``valid_to``), anything
        else to ``MUSE/ingested``. A raw frame or static table ingested twice gives the
        existing dataset back if the user may see it; bytes archived only as datasets the
        user may not see give the user a dataset of their own over the same file (their
        existence is not told).

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
        valid_from, valid_to : float, optional
            Certified validity of a static table (MJD, days; default: open).
        move : bool
            Move the file into the datastore instead of copying it (same filesystem only;
            a file already archived is left where it is).

        Raises
        ------
        InvalidFrameError
            Corrupt, truncated or non-MUSE input; nothing is stored.
        PermissionDeniedError
            The user is not a member of the project (administrators may ingest anywhere).
        """
        return storage.ingest(self, path, privilege=privilege, project=project, ifu=ifu, info=info,
                              valid_from=valid_from, valid_to=valid_to, move=move)

    def store_file(self, tx: Transaction, path: Path, info: FrameInfo, run_id: int | None = None, *,
                   move: bool = False):
        """Copy a file into the datastore within ``tx`` and return its :class:`StoredFile` row.

        Identical bytes stored before are not stored again: their row comes back with
        ``fresh`` False, and the new dataset shares that file. ``move``: move the file
        rather than copy it where the datastore is on the same filesystem.

        Returns
        -------
        (StoredFile, bool)
            The row, and whether the bytes are new.
        """
        return storage.store_file(self, tx, path, info, run_id, move=move)

    def add_dataset(self, s: Session, stored: StoredFile, info: FrameInfo, *, owner: User, project_id: int | None,
                    privilege, collection: Collection, run_id: int | None = None) -> Dataset:
        """Register a dataset of ``info`` over a stored file, in ``collection`` (within an open transaction)."""
        return storage.add_dataset(self, s, stored, info, owner=owner, project_id=project_id, privilege=privilege,
                                   collection=collection, run_id=run_id)

    def ingest_many(self, paths, *, progress: bool = True, **kw) -> IngestReport:
        """Ingest files and folders (searched for ``*.fits``), one transaction per file.

        A refused file is reported and skipped; it does not stop the others.
        """
        return storage.ingest_many(self, paths, progress=progress, **kw)

    # ------------------------------------------------------------------ reading
    def records(self, s: Session, q) -> list[DatasetRecord]:
        """The :class:`DatasetRecord` of every dataset ``q`` selects, in its order.

        ``q`` is a ``select(Dataset)`` (e.g. from :meth:`select_datasets`, ordered and paged).
        Read as plain rows, two queries whatever the number: loading ORM objects with their
        file, owner, project, collection and IFU states costs ten times more, and the planner
        and the browser read hundreds of records at a time.
        """
        return queries.records(self, s, q)

    def visible(self, s: Session):
        """SQL condition on :class:`Dataset`: rows the acting user may see."""
        return visible_datasets(self.acting_user(s))

    def load(self, s: Session, dataset_id: int) -> Dataset:
        """The row of a dataset the acting user may see.

        Raises
        ------
        NotFoundError
            If it does not exist or is not visible (indistinguishable on purpose).
        """
        ds = s.scalar(select(Dataset).where(Dataset.id == int(dataset_id), self.visible(s)))
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
            found = self.records(s, select(Dataset).where(Dataset.id == int(dataset_id), self.visible(s)))
            if not found:
                raise NotFoundError(f"no dataset {dataset_id} visible to user {self.user_name!r}")
            return found[0]

    def get_many(self, dataset_ids) -> dict[int, DatasetRecord]:
        """``{id: DatasetRecord}`` of those of ``dataset_ids`` the user may see (one query)."""
        ids = sorted({int(i) for i in dataset_ids})
        with self.session() as s:
            return {r.id: r for r in self.records(s, select(Dataset).where(Dataset.id.in_(ids), self.visible(s)))} \
                if ids else {}

    def path(self, dataset_id: int) -> str:
        """Local filesystem path from which the dataset's file can be read.

        For an object-store datastore this is a local copy in the user's cache folder,
        fetched once and checked against the recorded checksum.
        """
        return self._readable_copy(self.get(dataset_id))

    def _readable_copy(self, rec: DatasetRecord) -> str:
        p = self.datastore.local_path(rec.storage_path, None if self.datastore.is_local else rec.sha256)
        if self.config.checksum_on_read and self.datastore.is_local:
            self.datastore.verify(rec.storage_path, rec.sha256)
        return p

    def file(self, dataset_id: int):
        """The dataset's file where it is stored, for readers that take only the bytes they need.

        Returns
        -------
        pathlib.Path or fsspec.core.OpenFile
            The stored file of a local datastore; an unopened remote file of an object
            store (read in byte ranges: nothing is copied whole, nor checksummed).
        """
        rec = self.get(dataset_id)
        if self.datastore.is_local:
            return Path(self._readable_copy(rec))
        return self.datastore.remote_file(rec.storage_path)

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
                        owner=None, object=None, privilege=None, exposure=None, collection=None,
                        collections=None):
        """The SELECT behind :meth:`query`, restricted to what the user may see."""
        return queries.select_datasets(self, s, kind=kind, category=category, night=night, date_from=date_from,
                                       date_to=date_to, ifu=ifu, valid=valid, project=project, mode=mode,
                                       run_id=run_id, owner=owner, object=object, privilege=privilege,
                                       exposure=exposure, collection=collection, collections=collections)

    def query(self, *, order_by: str = "date_obs", descending: bool = False, limit: int | None = None,
              offset: int = 0, **filters) -> list[DatasetRecord]:
        """Find datasets.

        Parameters
        ----------
        kind, category, night, mode, object, privilege, exposure : str or list, optional
            Exact matches (a list matches any).
        date_from, date_to : str, optional
            Range of observing nights ``YYYY-MM-DD``, inclusive.
        ifu : int, optional
            Datasets holding this IFU; with ``valid``, usable (or not) for that IFU.
        valid : bool, optional
            True: only usable datasets (valid, not affected by an invalid input, no IFU
            invalid); False: only the others.
        project, owner : str, optional
        run_id : int, optional
            Products of one run.
        collection : str, optional
            The RUN collection the datasets were written to.
        collections : list of str, optional
            Only datasets found through this search path (chains stand for their members).
        order_by : str
            One of :data:`ORDERABLE`.
        limit, offset : int
            Paging.

        Returns
        -------
        list of DatasetRecord
        """
        return queries.query(self, order_by=order_by, descending=descending, limit=limit, offset=offset, **filters)

    def find(self, category: str, *, collections=None, ifu: int | None = None, **filters) -> list[DatasetRecord]:
        """Usable datasets of ``category`` found through a search path, best first.

        The order is the search path's (a dataset in an earlier collection first;
        within a chain the newest run first), then the newest. Callers take the first
        per data ID (night, exposure, IFU) they need.

        Parameters
        ----------
        category : str
        collections : list of str, optional
            The search path (default: :meth:`search_path`).
        ifu : int, optional
            Only datasets usable for this IFU.
        **filters
            As for :meth:`query` (``night``, ``exposure``, ``mode``...).
        """
        return queries.find(self, category, collections=collections, ifu=ifu, **filters)

    def count(self, **filters) -> int:
        """Number of datasets :meth:`query` would return with these filters."""
        return queries.count(self, **filters)


    # ------------------------------------------------------------------ validity
    def set_validity(self, dataset_id: int, ifu: int | None = None, *, is_valid: bool | None = None,
                     flag: QualityFlag | str | None = None, comment: str = "", tx: Transaction | None = None
                     ) -> DatasetRecord:
        """Mark a dataset (or one IFU of it) valid or invalid and/or set its quality flag.

        Every change is audited (who, when, before, after, comment). Invalidating marks
        every dataset made from this one (directly or not) *affected*; validating it
        again lifts that. See :mod:`musewise.archive.validity`.

        Parameters
        ----------
        dataset_id : int
        ifu : int, optional
            One IFU of a multi-IFU file; default the dataset as a whole (for a
            single-IFU product the two are the same).
        is_valid : bool, optional
        flag : QualityFlag or str, optional
        comment : str
            Why (required when invalidating).
        tx : Transaction, optional
            Join this open transaction instead of starting one.

        Raises
        ------
        PermissionDeniedError
            Unless the user is an administrator, the owner, or a reviewer/manager
            of the dataset's project.
        """
        with self._joined(tx) as t:
            validity.set_validity(self, t.session, dataset_id, ifu, is_valid=is_valid, flag=flag,
                                  comment=comment)
        return self.get(dataset_id) if tx is None else None

    @contextlib.contextmanager
    def _joined(self, tx: Transaction | None):
        if tx is not None:
            yield tx
        else:
            with self.transaction() as t:
                yield t

    def validity_history(self, dataset_id: int) -> list[dict]:
        """Audit trail of validity and flag changes of a dataset, oldest first (``ifu`` None: the whole dataset)."""
        with self.session() as s:
            self.load(s, dataset_id)
            return validity.history(s, int(dataset_id))

    def can_review(self, dataset_id: int) -> bool:
        """May the acting user change this dataset's validity, flags and certified ranges?"""
        with self.session() as s:
            user = self.acting_user(s)
            ds = self.load(s, dataset_id)
            return can_review(user, ds.owner_id, ds.project_id, self.roles(s, user))

    def affected(self, dataset_id: int) -> list[DatasetRecord]:
        """Datasets marked affected because this one (or an input of theirs) is invalid."""
        with self.session() as s:
            self.load(s, dataset_id)
            q = select(Dataset).where(Dataset.affected_by == int(dataset_id), self.visible(s)).order_by(Dataset.id)
            return self.records(s, q)

    def publish(self, dataset_ids, privilege: Privilege | int = Privilege.PROJECT, project: str | None = None) -> None:
        """Widen (or narrow) who may see datasets: owner, project reviewers or administrators.

        Raises
        ------
        PermissionDeniedError
            If the user may not review one of the datasets, or is not a member of the
            project they would be published into.
        """
        privilege = Privilege(int(privilege))
        with self.transaction() as tx:
            s = tx.session
            user = self.acting_user(s)
            proj = self.project_row(s, project) if project or privilege == Privilege.PROJECT else None
            roles = self.roles(s, user)
            if proj is not None and not can_add_to_project(user, proj.id, roles):
                raise PermissionDeniedError(f"user {user.name!r} is not a member of project {proj.name!r}: "
                                            "only its members publish into it")
            for did in dataset_ids:
                ds = self.load(s, did)
                if not can_review(user, ds.owner_id, ds.project_id, roles):
                    raise PermissionDeniedError(f"user {user.name!r} may not publish dataset {did}")
                ds.privilege = int(privilege)
                if proj is not None:
                    ds.project_id = proj.id

    # ------------------------------------------------------------------ QC numbers
    def add_qc(self, dataset_id: int, values: dict[str, float], *, ifu: int | None = None,
               units: dict[str, str] | None = None, run_id: int | None = None, tx: Transaction | None = None) -> None:
        """Record QC parameters measured on a dataset (replacing earlier values of the same name/IFU).

        Raises
        ------
        PermissionDeniedError
            Unless the user may review the dataset (:meth:`can_review`): administrators, its
            owner (a run's own products), reviewers and managers of its project.
        """
        units = units or {}
        with self._joined(tx) as t:
            s = t.session
            ds = self.load(s, dataset_id)
            user = self.acting_user(s)
            if not can_review(user, ds.owner_id, ds.project_id, self.roles(s, user)):
                raise PermissionDeniedError(f"user {user.name!r} may not set QC values of dataset {ds.id}: "
                                            "reviewers of its project, its owner and administrators may")
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
            self.load(s, dataset_id)
            rows = s.scalars(select(QCParameter).where(QCParameter.dataset_id == int(dataset_id))
                             .order_by(QCParameter.ifu, QCParameter.name))
            return [{"ifu": r.ifu, "name": r.name, "value": r.value, "unit": r.unit, "run_id": r.run_id}
                    for r in rows]

    def sources(self, *, dataset_id: int | None = None, kind: str | None = None, wave_min: float | None = None,
                wave_max: float | None = None, min_snr: float | None = None) -> list[dict]:
        """Sources of the archived source catalogues the user may see (table ``sources``).

        Parameters
        ----------
        dataset_id : int, optional
            Only the sources of this ``SOURCE_CATALOG``.
        kind : {"line", "continuum"}, optional
            Emission-line or white-light detections.
        wave_min, wave_max : float, optional
            Line wavelength range, Angstrom (air).
        min_snr : float, optional
            Lowest signal-to-noise ratio.

        Returns
        -------
        list of dict
            ``dataset_id`` and the columns of :data:`musewise.archive.sources.FIELDS` (``ra``, ``dec``
            in degrees, ``wavelength`` in Angstrom, NULL/None for continuum sources), by catalogue and id.
        """
        return sources_mod.sources(self, dataset_id=dataset_id, kind=kind, wave_min=wave_min,
                                   wave_max=wave_max, min_snr=min_snr)

    def qc_names(self, *, category=None) -> list[tuple[str, str, int]]:
        """QC parameters measured on visible datasets: ``(name, category, number of datasets)``, by name."""
        return qcvalues.qc_names(self, category=category)

    def qc_values(self, name: str, *, category=None, date_from=None, date_to=None, ifu=None) -> list[dict]:
        """One QC parameter over every visible dataset (``category``, nights ``date_from``-``date_to``, ``ifu``).

        Returns dicts ``dataset_id, ifu, value, unit, run_id, night, category``, by night (one query;
        see :mod:`musewise.archive.qcvalues`).
        """
        return qcvalues.qc_values(self, name, category=category, date_from=date_from, date_to=date_to, ifu=ifu)

    # ------------------------------------------------------------------ runs & lineage
    def begin_run(self, recipe: str, parameters: dict, *, night: str | None = None, ifu: int | None = None,
                  mode: str | None = None, inputs=(), pipeline_version: str | None = None,
                  privilege: Privilege | int = Privilege.PRIVATE, project: str | None = None,
                  details: dict | None = None, reference: bool = False, collections=None) -> int:
        """Record that a run starts; returns its ID. Committed at once, so a crash stays on record.

        The run gets its own RUN collection. A reference run (``reference=True``) may
        read only datasets of its project's reference chain, raw frames and static data.

        Parameters
        ----------
        inputs : iterable of (dataset_id, tag, reason)
            What the run reads, the set-of-frames tag each is given, and why it was chosen.
        reference : bool
            A run of the project's reference reduction (``commit=True``).
        collections : list of str, optional
            The search path the inputs were chosen from (recorded with the run).

        Raises
        ------
        ReferenceInputError
            A reference run was given an input from outside the reference reduction.
        """
        return lineage.begin_run(self, recipe, parameters, night=night, ifu=ifu, mode=mode, inputs=inputs,
                                 pipeline_version=pipeline_version, privilege=privilege, project=project,
                                 details=details, reference=reference,
                                 collections=list(collections) if collections is not None
                                 else self.search_path(reference=reference))

    def finish_run(self, run_id: int, outputs=(), *, notebook=None, details: dict | None = None,
                   move: bool = False) -> list[DatasetRecord]:
        """Record a successful run: archive its outputs and executed notebook in its RUN collection, all or nothing.

        Calibration products are certified for the default range of their category; the
        run's collection joins the project's reference chain (reference runs) or the
        user's own chain (trials).

        Parameters
        ----------
        outputs : iterable of (path, category or None, ifu or None)
            Product files; category/IFU default to what their headers say.
        notebook : path-like, optional
            The executed notebook of the run.
        move : bool
            Move the products into the datastore instead of copying them (same filesystem).
        """
        return lineage.finish_run(self, run_id, outputs, notebook=notebook, details=details, move=move)

    def fail_run(self, run_id: int, error: str, *, notebook=None, details: dict | None = None) -> None:
        """Record a failed run with its error and executed notebook; no product is archived."""
        lineage.fail_run(self, run_id, error, notebook=notebook, details=details)

    def heartbeat_run(self, run_id: int) -> bool:
        """Refresh a running run's lease (its ``details['heartbeat']``, UTC).

        Returns
        -------
        bool
            False if the run is no longer ``running`` (e.g. closed as stale meanwhile).
        """
        return liveness.heartbeat(self, run_id)

    def stale_runs(self, *, lease: float = 600.0, max_age: float = 2 * 86400.0) -> list:
        """Runs recorded ``running`` whose process is gone (see :mod:`musewise.archive.liveness`).

        Parameters
        ----------
        lease : float
            Heartbeat age after which a run of another host (or from before a reboot) is dead (s).
        max_age : float
            Age after which a run that records neither process nor heartbeat is dead (s).

        Returns
        -------
        list of StaleRun
        """
        return liveness.stale_runs(self, lease=lease, max_age=max_age)

    def close_stale_runs(self, *, lease: float = 600.0, max_age: float = 2 * 86400.0) -> list:
        """Record the runs whose process is gone as failed, with the reason; returns them (``StaleRun``).

        A run of a live process is never closed. Any user's dead run is closed: that its
        process is gone is a fact, not a right. Parameters as :meth:`stale_runs`.
        """
        return liveness.close_stale_runs(self, lease=lease, max_age=max_age)

    def get_run(self, run_id: int):
        """The :class:`RunRecord` of a run visible to the user."""
        return lineage.get_run(self, run_id)

    def get_runs(self, run_ids) -> dict:
        """``{id: RunRecord}`` of those of ``run_ids`` visible to the user (a few queries for any number)."""
        return lineage.get_runs(self, run_ids)

    def runs(self, **filters):
        """Runs visible to the user (filters: recipe, night, ifu, status), newest first, each
        naming the products (``output_ids``) and notebook the user may see."""
        return lineage.list_runs(self, **filters)

    def provenance(self, dataset_id: int, *, max_nodes: int | None = None):
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
            return build_provenance(s, self.acting_user(s), dataset_id, max_nodes=max_nodes or DEFAULT_MAX_NODES)

    def dependents(self, dataset_id: int, recursive: bool = True) -> list[DatasetRecord]:
        """Products made (directly, or through other products) from a dataset."""
        return lineage.dependents(self, dataset_id, recursive=recursive)

    # ------------------------------------------------------------------ calibrations
    def best_calibration(self, category: str, *, ifu: int, mjd: float, mode: str | None = None,
                         collections=None, reference: bool = False,
                         window_nights: float | None = None, object: str | None = None) -> CalibrationChoice:
        """Choose the calibration to use for a frame, with the candidates that lost and why.

        See :func:`musewise.archive.calibrations.best_calibration`.

        Parameters
        ----------
        category : str
        ifu : int
        mjd : float
            MJD of the frame to calibrate (days).
        mode : str, optional
        collections : list of str, optional
            Search path (default :meth:`search_path`).
        reference : bool
            Choose for a reference run: the project's reference path only.
        window_nights : float, optional
            Refuse a dated calibration taken more than this many nights from the frame's night.
        object : str, optional
            Only a calibration of this ``OBJECT`` (a field's OFFSET_LIST or OUTPUT_WCS).
        """
        names = self.search_path(reference=reference) if collections is None else list(collections)
        return calibrations.best_calibration(self, category, ifu=ifu, mjd=mjd, mode=mode, collections=names,
                                             reference=reference, window_nights=window_nights, object=object)

    def certify(self, dataset_id: int, collection: str, begin_mjd: float | None = None,
                end_mjd: float | None = None, comment: str = "") -> CertificationRecord:
        """Certify a calibration in a CALIBRATION collection for ``[begin_mjd, end_mjd)`` (MJD, days).

        Certifying it again in the same collection changes its range (audited). Reviewers
        of the calibration (owner, project reviewers, administrators) may; default range
        when both ends are omitted: :data:`~musewise.vocabulary.DEFAULT_VALIDITY_DAYS` of its category.
        """
        return calibrations.certify(self, dataset_id, collection, begin_mjd, end_mjd, comment)

    def decertify(self, dataset_id: int, collection: str, comment: str) -> None:
        """Withdraw a calibration's certification in ``collection`` (audited; ``comment`` says why)."""
        calibrations.decertify(self, dataset_id, collection, comment)

    def certifications(self, *, category: str | None = None, collection: str | None = None,
                       dataset_id: int | None = None, ifu: int | None = None, mjd_from: float | None = None,
                       mjd_to: float | None = None, limit: int = 5000) -> list[CertificationRecord]:
        """Certified ranges (for a timeline), of visible calibrations; filters optional (MJD in days)."""
        return calibrations.list_certifications(self, category=category, collection=collection,
                                                dataset_id=dataset_id, ifu=ifu, mjd_from=mjd_from,
                                                mjd_to=mjd_to, limit=limit)

    # ------------------------------------------------------------------ maintenance
    def fsck(self, verify_checksums: bool = False, *, repair: bool = False, min_age: float = 3600.0) -> dict:
        """Compare registry and datastore, and optionally remove what killed processes left.

        Parameters
        ----------
        verify_checksums : bool
            Also re-read every stored file and check its sha256.
        repair : bool
            Remove orphans and temporaries last changed more than ``min_age`` ago
            (administrators only). Younger ones may belong to an ingest or a run still
            writing, and are left alone; files with a row are never removed.
        min_age : float
            Age a leftover must have to be removed (s).

        Returns
        -------
        dict
            ``orphans``: stored files with no row (left by killed processes);
            ``temporaries``: unfinished copies; ``missing``: rows whose file is gone;
            ``corrupt``: files whose checksum no longer matches (with ``verify_checksums``);
            with ``repair``, ``removed``: what was removed (the other lists are what remains).

        Raises
        ------
        PermissionDeniedError
            If ``repair`` is asked by someone who is not an administrator.
        """
        return storage.fsck(self, verify_checksums, repair=repair, min_age=min_age)


__all__ = ["Archive", "IngestResult", "IngestReport", "Transaction"]
