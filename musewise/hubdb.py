"""The PostgreSQL server ``musewise hub`` runs itself when the archive is the default SQLite file.

SQLite cannot protect one member's rows from another's kernel: anyone who can read the
file reads every row, and a member who may only read it often cannot open it at all
(WAL mode needs a ``-shm`` file they may not create). So a hub whose users' servers run
under their own unix accounts (``MusewiseHub.system_users``) serves the archive from a
PostgreSQL server of its own instead, with nothing set up by hand:

* the server lives in ``<root>/postgres`` (:class:`musewise.archive.pgserver.PostgresServer`),
  runs as the ``postgres`` system account, listens on its unix socket only, with peer
  authentication: a member's database role is their unix account, never a password;
* on the first start the SQLite registry is copied into it
  (:func:`musewise.archive.transfer.copy_registry`, from a read-only snapshot: the SQLite
  file's contents stay as they were) and a note of the copy is left in
  ``<root>/postgres/registry-copied.json``; later starts find the note and reuse the server.
  The SQLite file is then closed to everyone but root (0600): it is a stale copy, and
  readable it would show every member's private rows;
* every archive user gets a role (:func:`musewise.archive.pgserver.ensure_user_role`),
  and row-level security (:mod:`musewise.archive.rls`) decides what each sees and changes;
* the site config file (``<root>/musewise_config.py``) is given the server's address, so
  the administrator's ``musewise --root <root> ...`` on the server uses the same archive
  (as root, the peer map makes it the schema owner);
* the hub stops the server when it stops; ``python -m musewise.hubdb start --root <root>``
  starts it alone (for the administrator's command line while the hub is stopped).

A hub pointed at a PostgreSQL ``db_url`` of its own is left alone, and so is the
single-astronomer default (no hub: SQLite).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from .config import MusewiseConfig
from .exceptions import ConfigurationError

log = logging.getLogger("musewise.hub")

#: The note a copy of the SQLite registry leaves in the server's folder.
COPY_NOTE = "registry-copied.json"
#: Lines around what ``musewise hub`` writes into the site config file.
BLOCK_BEGIN = "# >>> musewise hub: managed database (written by `musewise hub`; edits here are replaced)"
BLOCK_END = "# <<< musewise hub: managed database"


def server_dir(root: str | os.PathLike) -> Path:
    """The folder of the hub's own PostgreSQL server for data root ``root``."""
    return Path(root) / "postgres"


def datastore_socket(root: str | os.PathLike) -> Path:
    """The unix socket of the datastore's writer service (:mod:`musewise.archive.storeservice`)
    for data root ``root``: where members' processes store what they archive."""
    return Path(root) / "run" / "datastore.sock"


def writes_through_service(config: MusewiseConfig) -> bool:
    """Whether members of a hub with its own PostgreSQL archive through the writer service:
    their roles may only read a datastore that is a local folder (an object store is written
    with credentials of its own)."""
    return "://" not in config.datastore_url or config.datastore_url.startswith("file://")


def is_managed(db_url: str, root: str | os.PathLike) -> bool:
    """Whether ``db_url`` is the socket of the server :func:`start` runs for ``root``."""
    if not db_url.startswith("postgresql"):
        return False
    host = make_url(db_url).query.get("host")
    return host is not None and Path(str(host)) == server_dir(root) / "sock"


def wanted(config: MusewiseConfig, system_users: bool) -> bool:
    """Whether a hub with these settings runs its own PostgreSQL server.

    Yes on the default SQLite archive when users' servers run under their own accounts
    (a hub of one astronomer's account keeps SQLite: every server is that account anyway),
    and whenever the configured URL already is that server's (a restart).
    """
    return (system_users and config.db_url.startswith("sqlite:")) or is_managed(config.db_url, config.root)


def start(config: MusewiseConfig, *, admin: str, site_config: str | os.PathLike) -> MusewiseConfig:
    """Start (first: create and fill) the hub's PostgreSQL; the configuration that points at it.

    Parameters
    ----------
    config : MusewiseConfig
        The archive the hub serves: SQLite (copied on first use), or already the managed server.
    admin : str
        The archive administrator the service acts as (MusewiseHub.archive_admin).
    site_config : path
        The site config file to write the server's address into (the one ``musewise --root``
        reads: ``$MUSEWISE_CONFIG``, else ``<root>/musewise_config.py``).

    Returns
    -------
    MusewiseConfig
        ``config`` with ``db_url`` the service's URL of the managed database.
    """
    from .archive import Archive
    from .archive.pgserver import start_site_database
    from .archive.transfer import copy_registry
    from .archive.users import ensure_database_role

    base = server_dir(config.root)
    sqlite_file = config.archive_path() if config.db_url.startswith("sqlite:") else None
    t0 = time.monotonic()
    url = start_site_database(config.root)  # <root>/postgres
    note = base / COPY_NOTE
    if not note.exists():
        counts = {}
        if sqlite_file and Path(sqlite_file).exists():
            from sqlalchemy import create_engine

            engine = create_engine(url)
            try:
                counts = copy_registry(sqlite_file, engine, work_dir=base)
            except ConfigurationError as exc:
                raise ConfigurationError(
                    f"{exc}: {base} holds an archive without {COPY_NOTE}. To serve it as it is, write that "
                    f"file ('{{}}'); to copy {sqlite_file} again, stop the hub and remove {base}") from exc
            finally:
                engine.dispose()
            log.info("copied the SQLite registry %s into the hub's PostgreSQL (%s datasets) in %.1f s",
                     sqlite_file, counts.get("datasets", 0), time.monotonic() - t0)
        stat = Path(sqlite_file).stat() if sqlite_file and Path(sqlite_file).exists() else None
        note.write_text(json.dumps({"source": sqlite_file, "copied_at": time.time(), "rows": counts,
                                    "source_size": stat.st_size if stat else None,
                                    "source_mtime_ns": stat.st_mtime_ns if stat else None}, indent=1))
    else:
        _warn_if_written_since(note, sqlite_file)
    managed = MusewiseConfig.load(**{**config.as_dict(), "db_url": url})
    arch = Archive.open(managed, user=admin)  # the schema, row-level security, as the service
    try:
        for user in arch.users():
            ensure_database_role(arch, user["name"])
    finally:
        arch.close()
    if sqlite_file:
        close_stale_sqlite(sqlite_file)
    service = str(datastore_socket(config.root)) if writes_through_service(config) else None
    write_site_config(site_config, url, datastore_service=service)
    return managed


def _warn_if_written_since(note: Path, sqlite_file: str | None) -> None:
    if not sqlite_file or not Path(sqlite_file).exists():
        return
    copied = json.loads(note.read_text())
    st = Path(sqlite_file).stat()
    if (st.st_size, st.st_mtime_ns) != (copied.get("source_size"), copied.get("source_mtime_ns")):
        log.warning("%s changed after it was copied into the hub's PostgreSQL; the hub serves the "
                    "PostgreSQL copy and does not read the SQLite file again", sqlite_file)


def close_stale_sqlite(sqlite_file: str | os.PathLike) -> None:
    """Make the SQLite file the hub no longer serves readable by root alone (its bytes unchanged)."""
    if os.geteuid() != 0:
        return
    for f in (Path(sqlite_file), Path(f"{sqlite_file}-wal"), Path(f"{sqlite_file}-shm"),
              Path(f"{sqlite_file}-journal")):
        if f.exists() and not f.is_symlink():
            os.chown(f, 0, 0)
            f.chmod(0o600)


def write_site_config(path: str | os.PathLike, db_url: str, datastore_service: str | None = None) -> Path:
    """Put ``db_url`` (and the writer service's socket) into the site config file ``path``
    (between marker lines; the rest is kept).

    The file stays readable by everyone (users' processes read it for the data root's
    settings): the URL names a socket and a role, no secret. With the socket there, a
    member's process outside the hub (a terminal, a batch job) archives as the hub's do.
    """
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    if BLOCK_BEGIN in old and BLOCK_END in old:
        head, rest = old.split(BLOCK_BEGIN, 1)
        tail = rest.split(BLOCK_END, 1)[1].lstrip("\n")
    else:
        head, tail = (old + ("\n" if old and not old.endswith("\n") else "")), ""
    block = (f"{BLOCK_BEGIN}\n# The archive is the hub's own PostgreSQL server: `musewise --root ...` on this "
             f"machine uses it too.\nc.MusewiseConfig.db_url = {db_url!r}\n"
             + (f"# Members' processes store files through the datastore's writer service.\n"
                f"c.MusewiseConfig.datastore_service = {datastore_service!r}\n" if datastore_service else "")
             + f"{BLOCK_END}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + block + tail)
    path.chmod(0o644)
    return path


def stop(root: str | os.PathLike) -> None:
    """Stop the hub's PostgreSQL server of data root ``root`` (if running)."""
    from .archive.pgserver import stop_site_database

    stop_site_database(root)


def main(argv=None) -> int:
    """``python -m musewise.hubdb {start,stop} --root <root>``: the hub's server without the hub.

    For the administrator's ``musewise --root <root> ...`` while the hub is stopped (a
    backup, a maintenance reduction). ``start`` only starts a server the hub already made.
    """
    import argparse

    from .archive.pgserver import PostgresServer, start_site_database

    parser = argparse.ArgumentParser(prog="python -m musewise.hubdb", description=main.__doc__.split("\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--root", required=True, help="the archive's data root (the hub's <root>)")
    args = parser.parse_args(argv)
    server = PostgresServer(server_dir(args.root))
    if not (server.data / "PG_VERSION").exists():
        parser.error(f"no hub database in {server_dir(args.root)}: `musewise hub` makes it at its first start")
    if args.action == "start":
        print(start_site_database(args.root))
    elif args.action == "stop":
        stop(args.root)
    else:
        print("running" if server.running() else "stopped")
    return 0


__all__ = ["close_stale_sqlite", "datastore_socket", "is_managed", "server_dir", "start", "stop", "wanted", "write_site_config",
           "writes_through_service"]


if __name__ == "__main__":
    sys.exit(main())
