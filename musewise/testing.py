"""Real servers for tests and benchmarks: a throw-away PostgreSQL on 127.0.0.1.

Used by ``tests/conftest.py`` and ``benchmarks/``; handy for trying the
PostgreSQL backend by hand::

    with TemporaryPostgres() as pg:
        arch = Archive.open(root="/tmp/x", db_url=pg.create_database())
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

from .exceptions import ConfigurationError


def free_port() -> int:
    """A TCP port on 127.0.0.1 free at the time of asking."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bindir() -> Path | None:
    """Folder of Debian's PostgreSQL server programs (initdb, pg_ctl), or None."""
    for v in ("17", "16", "15", "14", "13"):
        p = Path(f"/usr/lib/postgresql/{v}/bin")
        if (p / "initdb").exists():
            return p
    return None


def _as_postgres(cmd):
    # initdb and postgres refuse to run as root: run them as the 'postgres' system user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + cmd
    return cmd


class TemporaryPostgres:
    """A PostgreSQL server in a temporary folder, listening on 127.0.0.1 only.

    ``url`` is the SQLAlchemy base URL (no database name); :meth:`create_database`
    makes a fresh empty database and returns its URL.
    """

    def __init__(self):
        self.bindir = postgres_bindir()
        if self.bindir is None:
            raise ConfigurationError("PostgreSQL server not installed: apt-get install -y postgresql")
        self.base = self.url = None

    def start(self) -> "TemporaryPostgres":
        # A folder of its own under /tmp, owned by the server's user.
        self.base = Path(tempfile.mkdtemp(prefix="musewise-pg-"))
        data, sock = self.base / "data", self.base / "sock"
        data.mkdir()
        sock.mkdir()
        if os.geteuid() == 0:
            for d in (self.base, data, sock):
                shutil.chown(d, "postgres")
        subprocess.run(_as_postgres([str(self.bindir / "initdb"), "-D", str(data), "-U", "musewise",
                                     "--auth=trust", "-E", "UTF8", "--no-sync"]), check=True, capture_output=True)
        port = free_port()
        subprocess.run(_as_postgres([str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.base / "server.log"),
                                     "-w", "-o", f"-h 127.0.0.1 -p {port} -k {sock} -c fsync=off "
                                     "-c max_connections=200", "start"]), check=True, capture_output=True)
        self.url = f"postgresql+psycopg://musewise@127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self.base is None:
            return
        subprocess.run(_as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.base / "data"), "-m", "fast",
                                     "-w", "stop"]), capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    def create_database(self) -> str:
        """Create an empty database; return its SQLAlchemy URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://") + "/postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{self.url}/{name}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
