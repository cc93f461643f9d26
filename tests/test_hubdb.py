"""The hub's own PostgreSQL (musewise.hubdb), without a hub: copied once, reused, stopped (issue 11, item 3).

A real SQLite archive in a folder under /tmp (the ``postgres`` account must reach it),
a real PostgreSQL server started by :func:`musewise.hubdb.start` as ``musewise hub``
does, and the ``musewise`` command line as the administrator runs it on the server.
Needs root (the server runs as the ``postgres`` system account).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import REPO, need

from musewise.vocabulary import Privilege

pytestmark = pytest.mark.hub


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if f.exists():  # a -wal or -shm that was not there is a change too
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def _sqlite_count(path: Path, table: str) -> int:
    con = sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True)  # creates no -shm
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


@pytest.fixture
def sqlite_site():
    """A populated SQLite archive in a data root under /tmp; the server is stopped and all removed after."""
    need(os.geteuid() == 0, "the hub's PostgreSQL runs as the postgres account: needs root")
    from musewise import hubdb
    from musewise.archive import Archive
    from musewise.archive.pgserver import postgres_bindir
    from test_web import populate

    need(postgres_bindir() is not None, "PostgreSQL server not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="musewise-hubdb-"))
    root.chmod(0o711)
    try:
        arch = Archive.open(root=str(root), db_url=f"sqlite:///{root / 'archive.sqlite'}", user="admin")
        arch.add_project("galaxies", "a science project")
        arch.add_user("alice", projects={"galaxies": "reviewer"})
        arch.add_user("bob", projects=["galaxies"])
        ids = populate(arch, root / "work")
        arch.close()
        yield root, ids
    finally:
        hubdb.stop(root)
        shutil.rmtree(root, ignore_errors=True)


def _cli(root: Path, *argv) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSEWISE_")}
    r = subprocess.run([sys.executable, "-m", "musewise.cli", "--root", str(root), *argv], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_the_hub_copies_sqlite_into_its_postgresql_once_and_reuses_it(sqlite_site):
    from sqlalchemy import text

    from musewise import hubdb
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig

    root, ids = sqlite_site
    db_file = root / "archive.sqlite"
    before = _digest(db_file)
    n_datasets, n_users = _sqlite_count(db_file, "datasets"), _sqlite_count(db_file, "users")
    site_config = root / "musewise_config.py"
    site_config.write_text("c.MusewiseConfig.project = 'consortium'  # the site's own setting\n")
    sqlite_cfg = MusewiseConfig.load(root=str(root), db_url=f"sqlite:///{db_file}")
    assert hubdb.wanted(sqlite_cfg, system_users=True) and not hubdb.wanted(sqlite_cfg, system_users=False)

    managed = hubdb.start(sqlite_cfg, admin="admin", site_config=site_config)
    url = managed.db_url
    assert url.startswith("postgresql") and hubdb.is_managed(url, root)
    assert "@/" in url and ":" not in url.split("@")[0].split("//")[1]  # no password: peer authentication
    # The SQLite file is as it was, and now root's alone (a stale copy, with every private row in it).
    assert _digest(db_file) == before
    assert db_file.stat().st_mode & 0o077 == 0
    # Every row came over: the same datasets, users, runs; bob's private product is still bob's.
    arch = Archive.open(managed, user="admin")
    assert arch.engine.dialect.name == "postgresql"
    with arch.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM datasets")) == n_datasets
        assert conn.scalar(text("SELECT count(*) FROM users")) == n_users
        roles = set(conn.scalars(text("SELECT rolname FROM pg_roles")))
    assert {"alice", "bob"} <= roles  # a role per archive user, for members' servers
    assert arch.get(ids["private"]).privilege == Privilege.PRIVATE
    assert arch.as_user("bob").get(ids["private"]).owner == "bob"
    assert Path(arch.path(ids["master"])).exists()
    # New rows get new IDs (the sequences follow the copied rows).
    arch.add_user("carol")
    arch.close()

    # The site config names it, beside what was there: `musewise --root` on the server uses it.
    text_ = site_config.read_text()
    assert "the site's own setting" in text_ and repr(url) in text_
    assert site_config.stat().st_mode & 0o777 == 0o644
    users = _cli(root, "user", "list")
    assert "carol" in users and "alice" in users

    # Stopped with the hub; the administrator can start it alone for the command line.
    hubdb.stop(root)
    assert not (hubdb.server_dir(root) / "data" / "postmaster.pid").exists()
    alone = subprocess.run([sys.executable, "-m", "musewise.hubdb", "start", "--root", str(root)], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert alone.returncode == 0 and alone.stdout.strip() == url, alone.stderr
    assert "carol" in _cli(root, "user", "list")
    hubdb.stop(root)
    # A restart of the hub (the config still says SQLite) finds the server and its data.
    again = hubdb.start(sqlite_cfg, admin="admin", site_config=site_config)
    assert again.db_url == url
    arch = Archive.open(again, user="admin")
    assert "carol" in [u["name"] for u in arch.users()]  # not copied a second time over what was written
    arch.close()
    assert site_config.read_text().count(hubdb.BLOCK_BEGIN) == 1
    # ... and so does a restart from the site config alone (the URL is the managed server's).
    from_site = MusewiseConfig.load(root=str(root))
    assert from_site.db_url == url and hubdb.wanted(from_site, system_users=True)
    # A member's process outside the hub (a terminal, a batch job) finds the writer service there.
    assert from_site.datastore_service == str(hubdb.datastore_socket(root))
    assert _digest(db_file) == before


def test_the_demo_run_again_after_its_hub_starts_the_hubs_postgresql_and_stops_it(sqlite_site):
    """``make demo`` a second time, the hub stopped: the archive is the hub's PostgreSQL, which
    stopped with the hub; the demo starts it for the reduction and stops it after."""
    from musewise import hubdb
    from musewise.archive import Archive
    from musewise.archive.pgserver import PostgresServer
    from musewise.config import MusewiseConfig
    from musewise.demo import start_hub_database

    root, _ids = sqlite_site
    assert start_hub_database(root) is False  # SQLite: nothing to start
    sqlite_cfg = MusewiseConfig.load(root=str(root), db_url=f"sqlite:///{root / 'archive.sqlite'}")
    hubdb.start(sqlite_cfg, admin="admin", site_config=root / "musewise_config.py")
    hubdb.stop(root)
    server = PostgresServer(hubdb.server_dir(root))
    assert not server.running()
    with pytest.raises(Exception, match="Is the server running"):  # what the demo met before
        Archive.open(root=str(root), user="admin").users()
    assert start_hub_database(root) is True and server.running()
    arch = Archive.open(root=str(root), user="admin")
    assert {"alice", "bob"} <= {u["name"] for u in arch.users()}
    arch.close()
    assert start_hub_database(root) is False  # running already: the hub's own start finds it
    hubdb.stop(root)
