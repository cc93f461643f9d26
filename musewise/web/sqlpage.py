"""Read-only SQL over the archive, limited to what the user may see.

Design
------
A user's SQL never runs against the archive database itself, nor against
views over it. It runs in a per-request **SQLite sandbox**, a private
temporary database (on disk, so a large copy does not fill memory) that holds
*only* the rows the user may see: hidden rows are absent from everything the
query can reach, so no query - however its terms are ordered or evaluated,
for instance a ``CASE`` raising an integer overflow used as an error oracle -
can learn anything about them. Before the user's statement is compiled:

* the visible dataset, file and run IDs are computed by the privilege rule
  (:mod:`musewise.archive.privileges`) through SQLAlchemy;
* for each offered table of :data:`TABLES` the query names, only the offered
  columns of the visible rows are copied into the sandbox: on a SQLite archive
  by SQLite itself from the archive file attached read-only (``mode=ro``) and
  detached again before the user's query runs; on PostgreSQL (or any other
  backend) through SQLAlchemy. PostgreSQL roles are not used for this: a
  session whose login role may read every row can always
  ``set_config('role', ...)`` its way back inside the same statement.
  Columns naming a dataset the user may not see (:data:`HIDDEN_REFERENCES`, a
  run's notebook) are copied as NULL;
* the helper tables holding the visible IDs are dropped.

The user's statement then runs with, as independent safeguards:

* an ``sqlite3`` authorizer allowing only ``SELECT``, reads of the sandbox's
  copies of the offered tables (and of the query's own CTEs and subqueries)
  and an allow-list of functions: every write, ``PRAGMA``, ``ATTACH``, schema
  change, ``load_extension``, table-valued function and read of
  ``sqlite_master`` is refused at compile time, ``count(*)`` included;
* ``PRAGMA query_only`` and ``SQLITE_LIMIT_ATTACHED`` = 0;
* a statement that must be complete on its own (an unclosed ``/*`` comment or
  string is refused, so nothing appended can be commented out), wrapped as
  ``SELECT * FROM (<sql>) LIMIT n`` so a stacked statement is a syntax error;
  the row limit is also enforced while fetching, not only by the text;
* a cap on the length of any string or blob the query builds
  (``SQLITE_LIMIT_LENGTH``, :data:`MAX_VALUE_BYTES`; Python 3.11 and later)
  and on the total size of the result (:data:`MAX_RESULT_BYTES`), so
  ``printf('%900000000d', 1)`` cannot exhaust memory;
* a progress handler stopping queries running longer than ``timeout`` seconds.

The user sees the tables of :data:`TABLES` with SQLite's SQL dialect
(``json_extract(header, '$."ESO OBS NAME"')`` reads a header keyword).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from urllib.parse import quote

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
    # the sources of SOURCE_CATALOG datasets (ra, dec: deg; wavelength: Angstrom, NULL for continuum)
    "sources": (("id", "dataset_id", "source_id", "kind", "ra", "dec", "x", "y", "wavelength", "flux", "flux_err",
                 "snr", "spectrum", "image"), "dataset", "dataset_id"),
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

#: Columns naming a dataset the user may not see read NULL: (table, column).
HIDDEN_REFERENCES = frozenset({("runs", "notebook_id")})

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

#: Longest string or blob a query may build (bytes): a header is a few tens of kB.
MAX_VALUE_BYTES = 4_000_000
#: Largest result a query may return, all cells together (bytes).
MAX_RESULT_BYTES = 32_000_000

_VIS_DS, _VIS_RUN, _VIS_FILE = "_visible_datasets", "_visible_runs", "_visible_files"
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def run_readonly_sql(arch, sql: str, limit: int = 1000, timeout: float = 10.0,
                     max_bytes: int = MAX_RESULT_BYTES) -> tuple[list[str], list[tuple]]:
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
    max_bytes : int
        Refuse a result larger than this, all its cells together (bytes).

    Returns
    -------
    columns : list of str
    rows : list of tuple

    Raises
    ------
    QueryError
        If the statement is empty, incomplete, not a single read-only query,
        reads something outside the offered tables, uses a refused function,
        is malformed, builds or returns too much, or runs too long.
    """
    body = _strip(sql)
    try:
        user = arch.user
    except PermissionDeniedError as exc:
        raise QueryError(str(exc)) from exc
    tables = _named_tables(body)
    # "": a private temporary database on disk, removed when closed.
    conn = sqlite3.connect("", check_same_thread=False, uri=True)
    try:
        with arch.session() as s:
            ids = _visible_ids(s, user)
            url = arch.engine.url
            if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
                _copy_from_file(conn, url.database, tables, ids)
            else:
                _copy_through_session(conn, s, tables, ids)
        _lock(conn)
        return _execute(conn, body, int(limit), float(timeout), int(max_bytes))
    finally:
        conn.close()


def _strip(sql: str) -> str:
    body = (sql or "").strip()
    while body.endswith(";"):
        body = body[:-1].rstrip()
    if not body:
        raise QueryError("empty query: write one SELECT statement")
    if not sqlite3.complete_statement(body + "\n;"):
        # Else an unclosed /* would swallow the LIMIT appended below.
        raise QueryError("incomplete query: close every comment (/* ... */), string and quoted name")
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


def _create(conn, name: str) -> tuple[tuple[str, ...], str, str | None]:
    cols, rule, col = TABLES[name]
    conn.execute(f"CREATE TABLE main.{name} ({', '.join(cols)})")
    return cols, rule, col


def _copy_from_file(conn, path: str, tables: set[str], ids) -> None:
    """Copy the visible rows of ``tables`` from a SQLite archive file, inside SQLite."""
    conn.execute("ATTACH DATABASE ? AS archive", ("file:" + quote(str(path)) + "?mode=ro",))
    for name, values in zip((_VIS_DS, _VIS_FILE, _VIS_RUN), ids):
        conn.execute(f"CREATE TEMP TABLE {name} (id INTEGER PRIMARY KEY)")
        conn.executemany(f"INSERT OR IGNORE INTO temp.{name} VALUES (?)", ((int(i),) for i in values))
    keep = {"dataset": _VIS_DS, "run": _VIS_RUN, "file": _VIS_FILE}
    with conn:  # one read transaction on the archive: the copies are consistent with each other
        for name in sorted(tables):
            cols, rule, col = _create(conn, name)
            where = f" WHERE t.{col} IN (SELECT id FROM temp.{keep[rule]})" if rule in keep else ""
            values = [f"CASE WHEN t.{c} IN (SELECT id FROM temp.{_VIS_DS}) THEN t.{c} END"
                      if (name, c) in HIDDEN_REFERENCES else f"t.{c}" for c in cols]
            conn.execute(f"INSERT INTO main.{name} SELECT {', '.join(values)} FROM archive.{name} AS t{where}")
    conn.execute("DETACH DATABASE archive")
    for name in (_VIS_DS, _VIS_FILE, _VIS_RUN):
        conn.execute(f"DROP TABLE temp.{name}")


def _copy_through_session(conn, s, tables: set[str], ids) -> None:
    """Copy the visible rows of ``tables`` from any archive database through SQLAlchemy."""
    ids_ds, ids_files, ids_runs = ids
    keep = {"dataset": set(ids_ds), "run": set(ids_runs), "file": set(ids_files)}
    with conn:
        for name in sorted(tables):
            cols, rule, col = _create(conn, name)
            result = s.execute(text(f"SELECT {', '.join(cols)} FROM {name}"))
            at = cols.index(col) if col else None
            refs = {i for i, c in enumerate(cols) if (name, c) in HIDDEN_REFERENCES}
            rows = (tuple(None if i in refs and v not in keep["dataset"] else _sqlite_value(v)
                          for i, v in enumerate(r))
                    for r in result if rule == "all" or r[at] in keep[rule])
            conn.executemany(f"INSERT INTO main.{name} VALUES ({', '.join('?' * len(cols))})", rows)


def _sqlite_value(v):
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    if hasattr(v, "isoformat"):
        return v.isoformat(sep=" ")
    return v


def _lock(conn) -> None:
    """Make the filled sandbox read-only and bounded before the user's statement is compiled."""
    conn.execute("PRAGMA query_only = ON")
    if hasattr(conn, "setlimit"):  # Python 3.11+
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
    conn.set_authorizer(_authorize)


def _authorize(action, arg1, arg2, dbname, source):
    if action == sqlite3.SQLITE_SELECT:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_READ:
        table, column = arg1 or "", arg2
        if table.lower().startswith("sqlite_"):
            return sqlite3.SQLITE_DENY  # the schema tables, even for count(*)
        if table in TABLES and dbname == "main":
            return sqlite3.SQLITE_OK
        # count(*) and the scan of a CTE or subquery read no column. The sandbox holds the
        # copies of offered tables only, so whatever is scanned is one of them or the query's own.
        if column == "" and dbname is None:
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION:
        return sqlite3.SQLITE_OK if (arg2 or "").lower() in ALLOWED_FUNCTIONS else sqlite3.SQLITE_DENY
    if action == getattr(sqlite3, "SQLITE_RECURSIVE", 33):
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _size(v) -> int:
    return len(v) if isinstance(v, (str, bytes)) else 8


def _execute(conn, body, limit, timeout, max_bytes):
    limit = max(0, limit)
    wrapped = f"SELECT * FROM (\n{body}\n) LIMIT {limit}"
    deadline = time.monotonic() + timeout
    conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10000)
    rows, size = [], 0
    try:
        cur = conn.execute(wrapped)
        columns = [d[0] for d in cur.description or ()]
        # The limit holds however the text ends: rows past it are never fetched.
        while len(rows) < limit:
            row = cur.fetchone()
            if row is None:
                break
            size += sum(_size(v) for v in row)
            if size > max_bytes:
                raise QueryError(f"result too large: more than {max_bytes / 1e6:g} MB; "
                                 "select fewer rows or columns")
            rows.append(row)
        cur.close()
    except sqlite3.DatabaseError as exc:
        msg = str(exc)
        if "interrupted" in msg:
            raise QueryError(f"query stopped after {timeout:g} s") from exc
        if "too big" in msg:
            raise QueryError(f"a value longer than {MAX_VALUE_BYTES / 1e6:g} MB was refused ({msg})") from exc
        if "not authorized" in msg or "prohibited" in msg:
            raise QueryError(
                f"refused: only SELECT over the tables {', '.join(sorted(TABLES))} and common functions "
                f"is allowed ({msg})") from exc
        raise QueryError(f"SQL error: {msg} (one SELECT statement over {', '.join(sorted(TABLES))})") from exc
    except (sqlite3.Warning, sqlite3.ProgrammingError, ValueError, OverflowError, MemoryError) as exc:
        if isinstance(exc, QueryError):
            raise
        raise QueryError(f"SQL error: {exc}") from exc
    return columns, rows


__all__ = ["run_readonly_sql", "TABLES", "ALLOWED_FUNCTIONS", "HIDDEN_REFERENCES", "MAX_VALUE_BYTES",
           "MAX_RESULT_BYTES"]
