"""Privileges enforced by PostgreSQL itself: a role per archive user, row-level security, grants.

On PostgreSQL each archive user has a database role of the same name (created by
:func:`musewise.archive.pgserver.ensure_user_role`, member of
:data:`~musewise.archive.pgserver.USERS_ROLE`), logging in by peer authentication as
the unix account of that name. Whatever SQL that role sends - through
:class:`~musewise.archive.Archive`, the CLI, or psycopg straight to the socket - the
server shows it only the rows the privilege rule lets it see, and lets it change only
what it has the right to change:

* **reading** (every table holding dataset rows or their headers, per-IFU states, QC
  values, the sources of source catalogues, validity and certification history, review state, runs and their inputs):
  :func:`musewise.archive.privileges.visibility`, compiled from the same SQLAlchemy
  expression the Python filters use (:func:`~musewise.archive.privileges.current_role_viewer`
  stands in for the user), so the two cannot drift apart;
* **datasets**: a user adds rows only as their owner, into projects they belong to and
  collections they may write; UPDATE only where they may review
  (:func:`~musewise.archive.privileges.review_right`: owner, project reviewers and
  managers, administrators), and a trigger keeps privilege and project to the owner and
  administrators and the identity columns (owner, file, collection, run, kind,
  category) to the service; DELETE only by the owner;
* **validity, flags, QC values, certified ranges, review state**: reviewers;
* **collections and chains** (the reference chain of a project): the owner of a personal
  collection, the project's managers (:func:`~musewise.archive.privileges.manage_right`);
* **files** (checksum, storage path, original name): seen with a dataset over them (or
  while no dataset claims them, during an ingest); any role may add one, and a dataset
  only over a file it sees or has a **file claim** on (it showed the writer service the
  bytes: identical bytes archived by someone else, :mod:`.storeservice`);
* **users, projects, memberships, releases**: read-only; administration goes through
  the service account.

The schema owner (the archive service, which runs the reference reduction) is not
subject to row-level security. :func:`install` is idempotent and cheap when nothing
changed (a hash of the script is kept as the comment of the ``datasets`` table).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import and_, literal_column, or_, select, text
from sqlalchemy.dialects import postgresql

from .pgserver import ENSURE_GROUP_SQL, USERS_ROLE
from .privileges import current_role_viewer, manage_right, review_right, visibility
from .schema import (
    CatalogSource,
    Certification,
    CertificationEvent,
    Collection,
    CollectionChain,
    Dataset,
    DatasetIfu,
    FileClaim,
    QCParameter,
    Run,
    RunInput,
    ValidityEvent,
)
from .schema_review import QCClaim, ReviewEvent, ReviewState

_LOCK = 7_130_511  # pg_advisory_xact_lock key: one installer at a time
#: Whether no dataset refers to a stored file. SECURITY DEFINER: it looks at every dataset,
#: which the files policy needs (a subquery there would see only the caller's), and says
#: nothing more than that one bit.
UNCLAIMED_FN = "musewise_file_unclaimed"
_UNCLAIMED = f"""
CREATE OR REPLACE FUNCTION {UNCLAIMED_FN}(f integer) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS
$body$ SELECT NOT EXISTS (SELECT 1 FROM datasets WHERE file_id = f) $body$
"""


#: Whether the logged-in role may add a dataset over a stored file: no dataset claims the
#: file yet (its own ingest), a dataset it may see is over it, or it showed the writer
#: service the bytes (a file claim). SECURITY DEFINER (it reads every dataset, as the
#: datasets policy cannot: a policy of datasets reading datasets would recurse), judging
#: ``session_user``, the role that logged in, which a member cannot change.
ADDABLE_FN = "musewise_file_addable"


def _addable() -> str:
    v = current_role_viewer("session_user")
    d = Dataset
    seen = select(d.id).where(d.file_id == literal_column("f"), visibility(d.privilege, d.owner_id, d.project_id, v))
    claimed = select(FileClaim.file_id).where(FileClaim.file_id == literal_column("f"), FileClaim.user_id == v.id)
    return f"""
CREATE OR REPLACE FUNCTION {ADDABLE_FN}(f integer) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS
$body$ SELECT NOT EXISTS (SELECT 1 FROM datasets WHERE file_id = f)
    OR EXISTS ({_sql(seen)}) OR EXISTS ({_sql(claimed)}) $body$
"""


def _sql(expr) -> str:
    return str(expr.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


def _rules() -> dict[str, list[tuple[str, str, str | None, str | None]]]:
    """``{table: [(policy name, command, USING, WITH CHECK)]}``, all built from :mod:`.privileges`."""
    v = current_role_viewer()
    me = v.id
    d = Dataset
    see_ds = visibility(d.privilege, d.owner_id, d.project_id, v)
    see_run = visibility(Run.privilege, Run.user_id, Run.project_id, v)
    review_ds = review_right(d.owner_id, d.project_id, v)

    c = Collection
    # Collections a role may write into or change: its own, its managed projects', and
    # instrument-level RUN collections (MUSE/raw...; writing there changes no search path).
    writable_coll = or_(c.owner_id == me, manage_right(c.project_id, v),
                        and_(c.owner_id.is_(None), c.project_id.is_(None), c.type == "run"))
    writable_coll_ids = select(c.id).where(writable_coll)
    changeable_chain_ids = select(c.id).where(or_(c.owner_id == me, manage_right(c.project_id, v)))

    def visible_ds(col):
        return col.in_(select(d.id))  # the subquery is itself under the datasets policy

    def reviewable_ds(col):
        return col.in_(select(d.id).where(review_ds))

    rules: dict[str, list] = {
        "datasets": [
            ("see", "SELECT", _sql(see_ds), None),
            # Over a file the role may see (the files policy: a dataset it sees is over it, or
            # none yet, in its own ingest) or has shown the writer service: never over a file
            # it merely names, which would open another's private bytes to it.
            ("add", "INSERT", None, _sql(and_(
                d.owner_id == me,
                or_(d.project_id.is_(None), v.is_admin, d.project_id.in_(v.projects)),
                d.collection_id.in_(writable_coll_ids))) + f" AND {ADDABLE_FN}(file_id)"),
            ("review", "UPDATE", _sql(review_ds), _sql(review_ds)),
            ("remove", "DELETE", _sql(or_(v.is_admin, d.owner_id == me)), None),
        ],
        "dataset_ifus": [
            ("see", "SELECT", _sql(visible_ds(DatasetIfu.dataset_id)), None),
            ("add", "INSERT", None, _sql(DatasetIfu.dataset_id.in_(select(d.id).where(d.owner_id == me)))),
            ("review", "UPDATE", *[_sql(reviewable_ds(DatasetIfu.dataset_id))] * 2),
            ("remove", "DELETE", _sql(DatasetIfu.dataset_id.in_(select(d.id).where(d.owner_id == me))), None),
        ],
        # A catalogue's sources: seen with the catalogue, written (when it is archived) by its owner.
        "sources": [
            ("see", "SELECT", _sql(visible_ds(CatalogSource.dataset_id)), None),
            ("add", "INSERT", None, _sql(CatalogSource.dataset_id.in_(select(d.id).where(d.owner_id == me)))),
            ("remove", "DELETE", _sql(CatalogSource.dataset_id.in_(select(d.id).where(d.owner_id == me))), None),
        ],
        # A file's row (checksum, storage path, original name) is seen with a dataset over it;
        # a row no dataset claims yet is seen too, so that an ingest finds the row it just added.
        "files": [
            ("see", "SELECT", f"id IN (SELECT file_id FROM datasets) OR {UNCLAIMED_FN}(id)", None),
            ("add", "INSERT", None, "true"),
        ],
        # Written by the writer service only; a role sees its own claims (the datasets policy reads them).
        "file_claims": [
            ("see", "SELECT", _sql(FileClaim.user_id == me), None),
        ],
        "runs": [
            ("see", "SELECT", _sql(see_run), None),
            ("add", "INSERT", None, _sql(and_(
                Run.user_id == me,
                or_(Run.project_id.is_(None), v.is_admin, Run.project_id.in_(v.projects)),
                or_(Run.is_reference.is_(False), manage_right(Run.project_id, v))))),
            ("own", "UPDATE", *[_sql(or_(v.is_admin, Run.user_id == me))] * 2),
        ],
        "run_inputs": [
            ("see", "SELECT", _sql(RunInput.run_id.in_(select(Run.id))), None),
            ("add", "INSERT", None, _sql(and_(RunInput.run_id.in_(select(Run.id).where(Run.user_id == me)),
                                              visible_ds(RunInput.dataset_id)))),
        ],
        "collections": [
            ("see", "SELECT", "true", None),
            ("add", "INSERT", None, _sql(writable_coll)),
            ("change", "UPDATE", *[_sql(or_(c.owner_id == me, manage_right(c.project_id, v)))] * 2),
        ],
        "collection_chains": [
            ("see", "SELECT", "true", None),
            ("add", "INSERT", None, _sql(CollectionChain.parent_id.in_(changeable_chain_ids))),
            ("change", "UPDATE", *[_sql(CollectionChain.parent_id.in_(changeable_chain_ids))] * 2),
            ("remove", "DELETE", _sql(CollectionChain.parent_id.in_(changeable_chain_ids)), None),
        ],
    }
    cert_ok = and_(reviewable_ds(Certification.dataset_id), Certification.collection_id.in_(
        select(c.id).where(or_(c.owner_id == me, manage_right(c.project_id, v),
                               and_(c.owner_id.is_(None), c.project_id.is_(None))))))
    rules["certifications"] = [("see", "SELECT", _sql(visible_ds(Certification.dataset_id)), None)] + [
        (f"review_{cmd.lower()}", cmd, None if cmd == "INSERT" else _sql(cert_ok),
         None if cmd == "DELETE" else _sql(cert_ok)) for cmd in ("INSERT", "UPDATE", "DELETE")]
    for table, col, who in ((QCParameter.__table__, QCParameter.dataset_id, None),
                            (QCClaim.__table__, QCClaim.dataset_id, QCClaim.user_id),
                            (ReviewState.__table__, ReviewState.dataset_id, None)):
        ok = reviewable_ds(col) if who is None else and_(reviewable_ds(col), who == me)
        rules[table.name] = [("see", "SELECT", _sql(visible_ds(col)), None)] + [
            (f"review_{cmd.lower()}", cmd, None if cmd == "INSERT" else _sql(ok),
             None if cmd == "DELETE" else _sql(ok)) for cmd in ("INSERT", "UPDATE", "DELETE")]
    # Audit trails: seen with their dataset, written only in one's own name, never changed.
    for table, col, who in ((ValidityEvent.__table__, ValidityEvent.dataset_id, ValidityEvent.user_id),
                            (CertificationEvent.__table__, CertificationEvent.dataset_id, CertificationEvent.user_id),
                            (ReviewEvent.__table__, ReviewEvent.dataset_id, ReviewEvent.user_id)):
        see = or_(col.is_(None), visible_ds(col)) if table.name == "qc_review_events" else visible_ds(col)
        rules[table.name] = [("see", "SELECT", _sql(see), None),
                             ("add", "INSERT", None, _sql(and_(who == me, see)))]
    return rules


#: Tables user roles may write, and how (SELECT is granted on every table).
WRITES = {
    "datasets": "INSERT, UPDATE, DELETE", "dataset_ifus": "INSERT, UPDATE, DELETE", "files": "INSERT",
    "runs": "INSERT, UPDATE", "run_inputs": "INSERT", "collections": "INSERT, UPDATE",
    "collection_chains": "INSERT, UPDATE, DELETE", "certifications": "INSERT, UPDATE, DELETE",
    "certification_events": "INSERT", "validity_events": "INSERT", "qc_parameters": "INSERT, UPDATE, DELETE",
    "qc_claims": "INSERT, UPDATE, DELETE", "qc_review_states": "INSERT, UPDATE, DELETE",
    "qc_review_events": "INSERT", "sources": "INSERT, DELETE",
}


def _guard(service: str) -> str:
    # Which columns of a dataset row a user role may change in an UPDATE the policy allowed.
    v = current_role_viewer()
    owner_or_admin = _sql(or_(v.is_admin, literal_column("OLD.owner_id") == v.id))
    return f"""
CREATE OR REPLACE FUNCTION musewise_guard_dataset() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    IF current_user = '{service}' THEN
        RETURN NEW;
    END IF;
    IF (NEW.id, NEW.owner_id, NEW.file_id, NEW.collection_id, NEW.run_id, NEW.kind, NEW.category)
       IS DISTINCT FROM (OLD.id, OLD.owner_id, OLD.file_id, OLD.collection_id, OLD.run_id, OLD.kind, OLD.category)
    THEN
        RAISE EXCEPTION 'only the archive service changes what dataset % is (owner, file, collection, run)', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.privilege, NEW.project_id) IS DISTINCT FROM (OLD.privilege, OLD.project_id)
       AND NOT ({owner_or_admin}) THEN
        RAISE EXCEPTION 'only the owner of dataset % changes its privilege or project', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$body$;
DROP TRIGGER IF EXISTS musewise_guard_dataset ON datasets;
CREATE TRIGGER musewise_guard_dataset BEFORE UPDATE ON datasets
    FOR EACH ROW EXECUTE FUNCTION musewise_guard_dataset();
"""


def script(service: str) -> list[str]:
    """The statements :func:`install` runs, for schema owner ``service``."""
    out = [ENSURE_GROUP_SQL,
           "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
           f"GRANT USAGE ON SCHEMA public TO {USERS_ROLE}",
           f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {USERS_ROLE}",
           f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {USERS_ROLE}",
           f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {USERS_ROLE}"]
    out += [f"GRANT {what} ON {table} TO {USERS_ROLE}" for table, what in WRITES.items()]
    out += [_UNCLAIMED, _addable()]
    for table, policies in _rules().items():
        out.append(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        out.append(f"SELECT musewise_drop_policies('{table}')")
        for name, cmd, using, check in policies:
            out.append(f"CREATE POLICY mw_{name} ON {table} FOR {cmd} TO {USERS_ROLE}"
                       + (f" USING ({using})" if using else "") + (f" WITH CHECK ({check})" if check else ""))
    out.append(_guard(service))
    return out


_DROP_POLICIES = """
CREATE OR REPLACE FUNCTION musewise_drop_policies(t text) RETURNS void LANGUAGE plpgsql AS $body$
DECLARE p record;
BEGIN
    FOR p IN SELECT policyname FROM pg_policies WHERE schemaname = current_schema() AND tablename = t LOOP
        EXECUTE format('DROP POLICY %I ON %I', p.policyname, t);
    END LOOP;
END
$body$
"""


def install(engine) -> bool:
    """Install (or bring up to date) roles' grants and policies in the database of ``engine``.

    Must run as the schema owner, after :func:`musewise.archive.database.upgrade`.
    Returns True if anything was changed.
    """
    with engine.connect() as conn:
        service = conn.scalar(text("SELECT current_user"))
        revision = conn.scalar(text("SELECT version_num FROM alembic_version"))
        stmts = script(service)
        digest = "musewise rls " + hashlib.sha256("\n".join([revision or ""] + stmts).encode()).hexdigest()[:16]
        current = conn.scalar(text("SELECT obj_description('datasets'::regclass, 'pg_class')"))
        if current == digest:
            return False
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK})
        if conn.scalar(text("SELECT obj_description('datasets'::regclass, 'pg_class')")) == digest:
            return False  # another process installed it meanwhile
        raw = conn.connection.driver_connection  # psycopg: no placeholders in these statements
        raw.execute(_DROP_POLICIES)
        for stmt in stmts:
            raw.execute(stmt)
        raw.execute(f"COMMENT ON TABLE datasets IS '{digest}'")
    return True


def schema_owner(conn) -> str | None:
    """The role owning the archive's tables (the service), or None before the schema exists."""
    return conn.scalar(text("SELECT tableowner FROM pg_tables WHERE schemaname = current_schema() "
                            "AND tablename = 'datasets'"))


def user_role(engine) -> str | None:
    """The database role of ``engine``'s connections if it is a user's (not the schema owner's), else None."""
    with engine.connect() as conn:
        role = conn.scalar(text("SELECT current_user"))
        owner = schema_owner(conn)
    return None if owner is None or role == owner else role


def refused_by_database(exc: BaseException) -> str | None:
    """The first line of PostgreSQL's refusal (SQLSTATE 42501: policy, grant, guard trigger) behind ``exc``, or None."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) == "42501":
        return str(orig).splitlines()[0]
    return None


__all__ = ["WRITES", "install", "refused_by_database", "schema_owner", "script", "user_role"]
