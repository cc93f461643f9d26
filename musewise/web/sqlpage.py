"""Read-only SQL over the archive, limited to what the user may see.

Design
------
A user's SQL never runs against the archive database itself. It runs in a
per-request **SQLite sandbox**, an in-memory database holding only what the
user may see, on both archive backends:

* **SQLite archive**: the archive file is attached read-only (``mode=ro``,
  ``PRAGMA query_only``) under a schema name drawn at random for each request,
  after the query text is fixed, so a query cannot name the base tables. TEMP views named like the
  registry tables (``datasets``, ``runs``, ...) select from it only the rows
  the privilege rule (:mod:`musewise.archive.privileges`) lets the user see;
  the visible dataset and run IDs are computed by that same rule through
  SQLAlchemy and put in temporary tables the views join.
* **PostgreSQL archive** (or any other): the visible rows of the tables the
  query names are copied into the sandbox. PostgreSQL roles cannot be used for
  this safely: a session whose login role may read every row can always
  ``set_config('role', ...)`` its way back inside the same statement.

In both cases an ``sqlite3`` authorizer then allows only ``SELECT``, reads
through the sandbox's views and tables and an allow-list of functions; every
write, ``PRAGMA``, ``ATTACH``, schema change, ``load_extension`` and any direct
read of the attached base tables' columns is refused at compile time. The statement is
also wrapped as ``SELECT * FROM (<sql>)`` so a second, stacked statement is a
syntax error, and a progress handler stops queries running longer than
``timeout`` seconds.

The user sees the tables of :data:`TABLES` with SQLite's SQL dialect
(``json_extract(header, '$."ESO OBS NAME"')`` reads a header keyword).
"""

from __future__ import annotations

import re
import sqlite3
import time
import uuid

from sqlalchemy import select, text

from ..archive.privileges import visible_datasets, visible_runs
from ..archive.schema import Dataset, Run
from ..exceptions import PermissionDeniedError, QueryError

#: Tables the SQL page offers: name -> (columns, which rows are visible).
#: ``dataset``: rows of visible datasets (by the given column); ``run``: rows of
#: visible runs; ``all``: every row. Columns not listed (e.g. e-mail addresses)
#: are never offered.
TABLES: dict[str, tuple[tuple[str, ...], str, str | None]] = {
    "datasets": (("id", "kind", "category", "file_id", "night", "date_obs", "mjd_obs", "exptime", "mode",
                  "object", "ifu", "pipeline_version", "header", "owner_id", "project_id", "privilege",
                  "run_id", "created", "collection_id", "exposure", "is_valid", "flag", "comment",
                  "affected_by"), "dataset", "id"),
    "certifications": (("id", "collection_id", "dataset_id", "category", "ifu", "mode", "begin_mjd", "end_mjd",
                        "certified_by", "certified", "comment"), "dataset", "dataset_id"),
    "dataset_ifus": (("dataset_id", "ifu", "is_valid", "flag", "comment", "updated_by", "updated"),
                     "dataset", "dataset_id"),
    "files": (("id", "sha256", "size", "path", "original_name", "created"), "file", "id"),
    "qc_parameters": (("id", "dataset_id", "ifu", "name", "value", "unit", "run_id"), "dataset", "dataset_id"),
    "validity_events": (("id", "dataset_id", "ifu", "user_id", "at", "valid_before", "valid_after",
                         "flag_before", "flag_after", "comment"), "dataset", "dataset_id"),
    "runs": (("id", "recipe", "parameters", "night", "ifu", "mode", "status", "pipeline_version",
              "musewise_version", "notebook_id", "user_id", "project_id", "privilege", "started", "ended",
              "error", "details"), "run", "id"),
    "run_inputs": (("run_id", "dataset_id", "tag", "reason"), "run", "run_id"),
    "users": (("id", "name", "full_name", "is_admin", "is_member"), "all", None),
    "projects": (("id", "name", "description"), "all", None),
    "memberships": (("user_id", "project_id", "role"), "all", None),
}

#: SQL functions a query may call (SQLite core, date/time, JSON and math functions).
ALLOWED_FUNCTIONS = frozenset("""
abs avg count max min sum total group_concat string_agg round length octet_length lower upper substr
substring trim ltrim rtrim replace instr coalesce ifnull nullif iif if typeof date time datetime julianday
strftime unixepoch timediff printf format like glob hex unhex quote char unicode sign random concat concat_ws
json json_extract json_array_length json_type json_valid json_object json_array json_group_array
json_group_object -> ->> acos asin atan atan2 ceil ceiling cos degrees exp floor ln log log10 log2 mod pi
pow power radians sin sqrt tan trunc row_number rank dense_rank percent_rank cume_dist ntile lag lead
first_value last_value nth_value likely unlikely
""".split())

_VIS_DS, _VIS_RUN, _VIS_FILE = "_visible_datasets", "_visible_runs", "_visible_files"
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def run_readonly_sql(arch, sql: str, limit: int = 1000, timeout: float = 10.0) -> tuple[list[str], list[tuple]]:
    """Run a user's SELECT over the archive rows the acting user may see.

    Parameters
    ----------
    arch : Archive
        The archive, opened as (or ``as_user``-ed to) the user asking.
    sql : str
        One SELECT (or WITH ... SELECT, or VALUES) statement in SQLite's dialect.
    limit : int
        At most this many rows are returned.
    timeout : float
        Stop the query after this many seconds (s).

    Returns
    -------
    columns : list of str
    rows : list of tuple

    Raises
    ------
    QueryError
        If the statement is empty, not a single read-only query, reads
        something outside the offered tables, uses a refused function, is
        malformed, or runs too long.
    """
    body = _strip(sql)
    try:
        user = arch.user
    except PermissionDeniedError as exc:
        raise QueryError(str(exc)) from exc
    with arch.session() as s:
        if arch.engine.url.get_backend_name() == "sqlite" and arch.engine.url.database not in (None, "", ":memory:"):
            conn, views, schema = _attached_sandbox(arch, s, user)
        else:
            conn, views, schema = *_copied_sandbox(s, user, _named_tables(body)), None
    try:
        return _execute(conn, _authorizer(views, schema), body, int(limit), float(timeout))
    finally:
        conn.close()


def _strip(sql: str) -> str:
    body = (sql or "").strip()
    while body.endswith(";"):
        body = body[:-1].rstrip()
    if not body:
        raise QueryError("empty query: write one SELECT statement")
    first = body.lstrip("( \t\r\n").split(None, 1)[0].upper() if body.lstrip("( \t\r\n") else ""
    if first not in ("SELECT", "WITH", "VALUES"):
        # A clearer message than the syntax error the wrapping below would give; not the safeguard.
        raise QueryError(f"only reading is allowed: write one SELECT statement, not {first or body[:20]!r}")
    return body


def _named_tables(sql: str) -> set[str]:
    # Only the tables a query names need copying; a name missed here simply does not exist
    # in the sandbox (an error, never a leak).
    words = {w.lower() for w in _WORD.findall(sql)}
    return {t for t in TABLES if t in words}


def _visible_ids(s, user) -> tuple[list[int], list[int], list[int]]:
    ds = s.execute(select(Dataset.id, Dataset.file_id).where(visible_datasets(user))).all()
    runs = s.scalars(select(Run.id).where(visible_runs(user))).all()
    return [d for d, _ in ds], [f for _, f in ds], list(runs)


def _fill_ids(conn, ids_ds, ids_files, ids_runs, schema="temp") -> None:
    for name, ids in ((_VIS_DS, ids_ds), (_VIS_FILE, ids_files), (_VIS_RUN, ids_runs)):
        conn.execute(f"CREATE TABLE {schema}.{name} (id INTEGER PRIMARY KEY)")
        conn.executemany(f"INSERT OR IGNORE INTO {schema}.{name} VALUES (?)", ((int(i),) for i in ids))


def _row_filter(rule: str, col: str | None, alias: str = "t") -> str:
    table = {"dataset": _VIS_DS, "run": _VIS_RUN, "file": _VIS_FILE}.get(rule)
    return f" WHERE {alias}.{col} IN (SELECT id FROM temp.{table})" if table else ""


def _attached_sandbox(arch, s, user):
    ids = _visible_ids(s, user)
    conn = sqlite3.connect("file:sandbox-" + uuid.uuid4().hex + "?mode=memory", uri=True,
                           check_same_thread=False)
    path = arch.engine.url.database
    # The user's query was written before this name existed, so it cannot name the base tables.
    schema = "a" + uuid.uuid4().hex
    conn.execute(f"ATTACH DATABASE ? AS {schema}", (f"file:{path}?mode=ro",))
    _fill_ids(conn, *ids)
    for name, (cols, rule, col) in TABLES.items():
        collist = ", ".join(f"t.{c}" for c in cols)
        conn.execute(f"CREATE TEMP VIEW {name} AS SELECT {collist} FROM {schema}.{name} AS t{_row_filter(rule, col)}")
    conn.execute("PRAGMA query_only = ON")
    return conn, set(TABLES), schema


def _copied_sandbox(s, user, tables: set[str]):
    ids_ds, ids_files, ids_runs = _visible_ids(s, user)
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    keep = {"dataset": set(ids_ds), "run": set(ids_runs), "file": set(ids_files)}
    for name in sorted(tables):
        cols, rule, col = TABLES[name]
        conn.execute(f"CREATE TABLE main.{name} ({', '.join(cols)})")
        result = s.execute(text(f"SELECT {', '.join(cols)} FROM {name}"))
        at = cols.index(col) if col else None
        rows = (tuple(_sqlite_value(v) for v in r) for r in result
                if rule == "all" or r[at] in keep[rule])
        conn.executemany(f"INSERT INTO main.{name} VALUES ({', '.join('?' * len(cols))})", rows)
    conn.execute("PRAGMA query_only = ON")
    return conn, set()


def _sqlite_value(v):
    if isinstance(v, (dict, list)):
        import json

        return json.dumps(v)
    if hasattr(v, "isoformat"):
        return v.isoformat(sep=" ")
    return v


def _authorizer(views: set[str], schema: str | None):
    allowed_tables = set(TABLES)
    view_tables = allowed_tables | {_VIS_DS, _VIS_RUN, _VIS_FILE}

    def check(action, arg1, arg2, dbname, source):
        if action == sqlite3.SQLITE_SELECT:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            table, column = arg1, arg2
            # Inside our views: the archive's tables and our visible-ID tables.
            if source in views and table in view_tables and dbname in (schema, "temp"):
                return sqlite3.SQLITE_OK
            # The query's own reads (also inside its own CTEs) must name an offered table.
            if table in allowed_tables and dbname in ("main", "temp", None):
                return sqlite3.SQLITE_OK
            # A CTE or subquery scanned without reading a column (e.g. count(*)).
            if column == "" and dbname is None:
                return sqlite3.SQLITE_OK
            # SQLite announces each archive table a flattened view scans with an empty column
            # name and no view name; no column is read, and only our views know the schema.
            if column == "" and schema is not None and dbname == schema and table in allowed_tables:
                return sqlite3.SQLITE_OK
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION:
            return sqlite3.SQLITE_OK if (arg2 or "").lower() in ALLOWED_FUNCTIONS else sqlite3.SQLITE_DENY
        if action == getattr(sqlite3, "SQLITE_RECURSIVE", 33):
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY

    return check


def _execute(conn, authorizer, body, limit, timeout):
    wrapped = f"SELECT * FROM (\n{body}\n) LIMIT {max(0, limit)}"
    conn.set_authorizer(authorizer)
    deadline = time.monotonic() + timeout
    conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10000)
    try:
        cur = conn.execute(wrapped)
        rows = cur.fetchall()
        columns = [d[0] for d in cur.description or ()]
    except sqlite3.DatabaseError as exc:
        msg = str(exc)
        if "interrupted" in msg:
            raise QueryError(f"query stopped after {timeout:g} s") from exc
        if "not authorized" in msg or "prohibited" in msg:
            raise QueryError(
                f"refused: only SELECT over the tables {', '.join(sorted(TABLES))} and common functions "
                f"is allowed ({msg})") from exc
        raise QueryError(f"SQL error: {msg} (one SELECT statement over {', '.join(sorted(TABLES))})") from exc
    except (sqlite3.Warning, sqlite3.ProgrammingError, ValueError, OverflowError) as exc:
        raise QueryError(f"SQL error: {exc}") from exc
    return columns, rows


__all__ = ["run_readonly_sql", "TABLES", "ALLOWED_FUNCTIONS"]
