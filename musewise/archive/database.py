"""Database engines for the registry: SQLite embedded default, PostgreSQL for shared sites."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

from ..exceptions import ConfigurationError


def make_engine(url: str) -> Engine:
    """Create an engine for ``url``, tuned for concurrent readers and writers.

    SQLite gets WAL journaling, foreign keys and a busy timeout so parallel
    reduction workers can write without 'database is locked' failures.

    Raises
    ------
    ConfigurationError
        If the URL is malformed or names an unsupported database, or the
        PostgreSQL driver is missing (with the install command).
    """
    try:
        u = make_url(url)
    except Exception as exc:
        raise ConfigurationError(f"invalid database URL {url!r}: {exc}") from exc
    backend = u.get_backend_name()
    if backend == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        return engine
    if backend == "postgresql":
        try:
            return create_engine(u, pool_pre_ping=True)
        except ModuleNotFoundError as exc:
            raise ConfigurationError(
                "PostgreSQL needs the psycopg driver: pip install 'musewise[postgres]'"
            ) from exc
    raise ConfigurationError(f"unsupported database {backend!r}: use sqlite or postgresql")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the registry schema to an Alembic revision (default the newest), creating it if empty.

    On SQLite, foreign keys are switched off while migrating: a migration that rebuilds a
    table (SQLite cannot drop a constraint in place) would otherwise cascade the drop of
    the old table into every table referring to it.
    """
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    here = Path(__file__).parent / "migrations"
    cfg = Config()
    cfg.set_main_option("script_location", str(here))
    target = ScriptDirectory.from_config(cfg).get_current_head() if revision == "head" else revision
    with engine.connect() as conn:
        if MigrationContext.configure(conn).get_current_revision() == target:
            return  # the common case: nothing to do, and no lock taken
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()  # ends SQLAlchemy's autobegun transaction; pysqlite sent no BEGIN for a PRAGMA
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()
