"""Copy a registry from one database to another (SQLite -> PostgreSQL), leaving the source as it was.

``musewise hub`` uses it once, when it starts managing a PostgreSQL server for an
archive that lived in the default SQLite file (:mod:`musewise.hubdb`). The copy is
made from a copy of the SQLite file's bytes (and its write-ahead log), so the source is
only read, never opened through SQLite, and never written, not even to bring its schema
up to date: the copy is upgraded instead.

Examples
--------
>>> copy_registry("/data/musewise/archive.sqlite", pg_engine)   # doctest: +SKIP
{'datasets': 1234, 'files': 1200, ...}
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Engine

from ..exceptions import ConfigurationError
from .database import make_engine, upgrade

#: Rows inserted per statement.
BATCH = 500


def snapshot_sqlite(path: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy SQLite database ``path`` with its write-ahead log to ``dest``, only reading the source.

    The bytes are copied, not opened through SQLite: a connection, even a read-only one,
    may create the source's ``-wal`` and ``-shm`` files or checkpoint into it. The copy is
    then opened (its log replayed into it) and checked.

    Raises
    ------
    ConfigurationError
        If ``path`` is not a readable, sound SQLite database.
    """
    src_path, dest = Path(path), Path(dest)
    if not src_path.is_file():
        raise ConfigurationError(f"no SQLite archive at {src_path}")
    try:
        shutil.copyfile(src_path, dest)
        wal = Path(f"{src_path}-wal")
        if wal.exists():
            shutil.copyfile(wal, Path(f"{dest}-wal"))
        con = sqlite3.connect(dest)
        try:
            ok = con.execute("PRAGMA quick_check").fetchone()[0]
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()
    except (OSError, sqlite3.Error) as exc:
        raise ConfigurationError(f"cannot read the SQLite archive {src_path}: {exc}") from exc
    if ok != "ok":
        raise ConfigurationError(f"the SQLite archive {src_path} is damaged ({ok}): not copying it; "
                                 "was it being written meanwhile?")
    return dest


def copy_registry(sqlite_path: str | os.PathLike, target: Engine, *, work_dir=None) -> dict[str, int]:
    """Copy every row of the SQLite registry at ``sqlite_path`` into the empty database of ``target``.

    Parameters
    ----------
    sqlite_path : path
        The SQLite archive file; read through a snapshot, never written.
    target : sqlalchemy.engine.Engine
        The destination, as its schema owner (PostgreSQL). Its schema is created at the
        newest revision; it must hold no datasets yet.
    work_dir : path, optional
        Where the snapshot is made (removed after). Default: the system's temporary folder.

    Returns
    -------
    dict
        Rows copied per table.

    Raises
    ------
    ConfigurationError
        If the target already holds datasets (a second copy would mix two archives).
    """
    from .schema import Base
    from . import schema_review  # noqa: F401 - its tables belong to the metadata

    upgrade(target)
    tables = Base.metadata.sorted_tables
    with target.connect() as conn:
        if conn.scalar(select(func.count()).select_from(Base.metadata.tables["datasets"])):
            raise ConfigurationError("the target database already holds datasets: not copying into it")
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="musewise-copy-", dir=work_dir) as tmp:
        snap = snapshot_sqlite(sqlite_path, Path(tmp) / "snapshot.sqlite")
        source = make_engine(f"sqlite:///{snap}")
        try:
            upgrade(source)  # the snapshot, not the source: an older archive is copied at today's schema
            with source.connect() as src, target.begin() as dst:
                if dst.dialect.name == "postgresql":
                    # Rows are copied as they are, in one go: foreign keys between tables that refer
                    # to each other, and the service-only guard trigger, are not checked meanwhile.
                    dst.execute(text("SET LOCAL session_replication_role = replica"))
                # What the empty schema was created with (the first administrator, the default
                # project) gives way to the source's rows.
                for table in reversed(tables):
                    dst.execute(table.delete())
                for table in tables:
                    rows = [dict(r._mapping) for r in src.execute(select(table))]
                    for i in range(0, len(rows), BATCH):
                        dst.execute(insert(table), rows[i:i + BATCH])
                    counts[table.name] = len(rows)
                if dst.dialect.name == "postgresql":
                    _reset_sequences(dst, tables)
        finally:
            source.dispose()
    return counts


def _reset_sequences(conn, tables) -> None:
    # Rows came with their IDs: the next ID each sequence hands out must follow the largest copied.
    for table in tables:
        for col in table.primary_key.columns:
            seq = conn.scalar(text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": col.name})
            if seq:
                conn.execute(text(f"SELECT setval('{seq}', COALESCE((SELECT max({col.name}) "
                                  f"FROM {table.name}), 0) + 1, false)"))


__all__ = ["copy_registry", "snapshot_sqlite"]
