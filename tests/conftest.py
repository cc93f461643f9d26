"""Shared fixtures of the musewise test suite.

Fixtures
--------
postgres_server (session)
    A real PostgreSQL server from Debian's packages, started in a temporary
    folder on 127.0.0.1 and a free port, stopped at the end. Skips (locally) or
    fails (with ``CI=true``) when PostgreSQL is not installed.
db_url (parametrised: ``sqlite``, ``postgresql``)
    A fresh, empty database for each test, on each backend.
archive_config
    A :class:`MusewiseConfig` rooted in a temporary folder, with ``db_url``.
archive
    An :class:`Archive` opened by user ``admin`` (first user: administrator),
    with users ``alice`` and ``bob`` (members of project ``galaxies``), ``carol``
    (consortium member, no project) and ``eve`` (outside user, public data only).
sim_frames (session)
    A small simulated night for IFU 1 written by the instrument model.
output_dir
    ``test-output/<test name>/`` for screenshots and other artefacts a person may look at.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bindir() -> Path | None:
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


def need(condition: bool, reason: str):
    """Skip locally, but fail in CI, when a real part is missing: CI must run everything."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A real PostgreSQL server on 127.0.0.1; yields a base URL without database name."""
    bindir = _pg_bindir()
    need(bindir is not None, "PostgreSQL server not installed (make test installs it: apt-get install postgresql)")
    data = tmp_path_factory.mktemp("pgdata")
    sock = tmp_path_factory.mktemp("pgsock")
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
        shutil.chown(sock, "postgres")
        os.chmod(data.parent, 0o755)
        os.chmod(sock.parent, 0o755)
        for parent in list(data.parents)[:-1]:
            try:
                os.chmod(parent, os.stat(parent).st_mode | 0o005)
            except PermissionError:
                pass
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "musewise",
                                 "--auth=trust", "-E", "UTF8", "--no-sync"]),
                   check=True, capture_output=True)
    port = free_port()
    log = data / "server.log"
    subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
                                 f"-h 127.0.0.1 -p {port} -k {sock} -c fsync=off -c max_connections=200",
                                 "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://musewise@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True)


def _create_pg_database(base_url: str) -> str:
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    dsn = base_url.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base_url}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh empty database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'archive.sqlite'}"
    return _create_pg_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def archive_config(tmp_path, db_url):
    from musewise.config import MusewiseConfig

    return MusewiseConfig.load(root=str(tmp_path / "root"), db_url=db_url, user="admin", project="consortium")


@pytest.fixture
def archive(archive_config):
    from musewise.archive import Archive

    arch = Archive(archive_config, user="admin")
    arch.add_project("galaxies", "a science project")
    arch.add_user("alice", projects={"galaxies": "reviewer"})
    arch.add_user("bob", projects=["galaxies"])
    arch.add_user("carol")
    arch.add_user("eve", member=False)
    yield arch
    arch.close()


@pytest.fixture(scope="session")
def sim_frames(tmp_path_factory):
    """A small simulated night (IFU 1): a dict frame type -> list of paths, plus 'static'."""
    from musewise.inm import simulate_night

    out = tmp_path_factory.mktemp("night")
    paths = simulate_night(out, night="2026-11-20", ifus=(1,), n_bias=3, n_dark=1, n_flat=2,
                           n_arc_per_lamp=1, n_skyflat=1, n_std=1, n_object=2, seed=7, progress=False)
    from musewise.ingest import inspect_file

    frames: dict[str, list[Path]] = {}
    for p in paths:
        info = inspect_file(p)
        key = info.category if info.kind.value == "raw" else "static"
        frames.setdefault(key, []).append(Path(p))
    return frames


@pytest.fixture
def output_dir(request) -> Path:
    d = REPO / "test-output" / request.node.name.replace("/", "_").replace("[", "_").replace("]", "")
    d.mkdir(parents=True, exist_ok=True)
    return d
