"""A PostgreSQL server musewise runs itself: the site database of ``musewise hub``, and the tests' server.

Users reach it only over a unix socket with *peer* authentication: the server asks
the kernel which unix account is at the other end, and that account is the database
role (``pg_ident.conf`` maps the account that runs the archive service, root or the
astronomer who started the hub, to the schema owner ``musewise``). So a user's
kernel cannot choose its database identity. Row-level security
(:mod:`musewise.archive.rls`) then decides what each role sees and changes.

A test server (``tcp=True``) also listens on 127.0.0.1, for the service role only,
with a random password that only the process that started it knows.

Examples
--------
>>> url = start_site_database("/var/lib/musewise")           # doctest: +SKIP
>>> ensure_user_role(url, "alice")                            # doctest: +SKIP
>>> user_database_url(url, "alice")                           # doctest: +SKIP
'postgresql+psycopg://alice@/musewise?host=/var/lib/musewise/postgres/sock&port=5432'
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from ..exceptions import ConfigurationError, InvalidArgumentError, ServiceStartError

#: The schema owner: the archive service's database role (bypasses row-level security).
SERVICE_ROLE = "musewise"
#: The group role every archive user's role belongs to; it holds the grants.
USERS_ROLE = "musewise_users"
#: The socket's port number (only names the socket file: a site server has no TCP).
SOCKET_PORT = 5432
#: Creates :data:`USERS_ROLE` unless it exists (roles belong to the cluster, not one database).
ENSURE_GROUP_SQL = (f"DO $$ BEGIN CREATE ROLE {USERS_ROLE} NOLOGIN; "
                    "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
#: Names a unix account, a hub user and a database role may all have.
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,62}$")


def postgres_bindir() -> Path | None:
    """Folder of Debian's PostgreSQL server programs (initdb, pg_ctl), or None."""
    for v in ("17", "16", "15", "14", "13"):
        p = Path(f"/usr/lib/postgresql/{v}/bin")
        if (p / "initdb").exists():
            return p
    return None


def _as_server_user(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: run them as the 'postgres' system user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + cmd
    return cmd


def check_role_name(name: str) -> str:
    """``name`` if it can be a unix account and a database role at once.

    Raises
    ------
    InvalidArgumentError
    """
    if not ROLE_NAME.match(name or "") or name in (SERVICE_ROLE, USERS_ROLE, "postgres", "root"):
        raise InvalidArgumentError(f"{name!r} cannot be an archive user's database role: use lower-case "
                                   "letters, digits, '_', '.', '-' (a unix account name)")
    return name


class PostgresServer:
    """A PostgreSQL server with its data, socket and log under ``base``.

    Parameters
    ----------
    base : path-like
        Its folder (created; kept across restarts, so a site database survives).
    tcp : bool
        Also listen on 127.0.0.1 on a free port for the service role, with a random
        password (tests and benchmarks); default: the unix socket only.
    tcp_roles : dict of str to sequence of str
        More roles that may log in over that listener with a password of their own,
        each only to its database (``{database: roles}``: the roles of a VO server,
        :mod:`musewise.vo.dachs`). Written when the folder is initialised.
    """

    def __init__(self, base, *, tcp: bool = False, tcp_roles=None):
        self.bindir = postgres_bindir()
        if self.bindir is None:
            raise ConfigurationError("PostgreSQL server not installed: apt-get install -y postgresql")
        self.base = Path(base)
        self.data, self.sock, self.log = self.base / "data", self.base / "sock", self.base / "server.log"
        self.tcp = tcp
        self.tcp_roles = {db: tuple(roles) for db, roles in (tcp_roles or {}).items()}
        self.port: int | None = None
        self.password: str | None = None

    # ------------------------------------------------------------------ set-up
    def _service_accounts(self) -> list[str]:
        # Unix accounts allowed to act as the schema owner: whoever runs the service.
        names = {pwd.getpwuid(os.geteuid()).pw_name, "postgres"}
        return sorted(names)

    def init(self) -> None:
        """Create the data folder and the authentication rules (once)."""
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)  # users traverse it to reach the socket
        if (self.data / "PG_VERSION").exists():
            return
        self.data.mkdir(exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        os.chmod(self.data, 0o700)
        os.chmod(self.sock, 0o755)
        if os.geteuid() == 0:
            for d in (self.base, self.data, self.sock):
                shutil.chown(d, "postgres")
        pwfile = self.base / ".initpw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(24))  # never used: the service connects by peer or with its own password
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres")
        try:
            subprocess.run(_as_server_user([str(self.bindir / "initdb"), "-D", str(self.data), "-U", SERVICE_ROLE,
                                            "--auth-local=peer", "--auth-host=scram-sha-256",
                                            f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync"]),
                           check=True, capture_output=True)
        except subprocess.CalledProcessError as exc:
            raise ServiceStartError(f"initdb failed: {exc.stderr.decode(errors='replace')[-2000:]}") from exc
        finally:
            pwfile.unlink(missing_ok=True)
        # Peer on the socket for everyone (the unix account is the role); the service's accounts
        # map to the schema owner. TCP (tests only) is for the schema owner, with a password.
        (self.data / "pg_hba.conf").write_text(
            "local all all peer map=musewise\n"
            + (f"host all {SERVICE_ROLE} 127.0.0.1/32 scram-sha-256\n" if self.tcp else "")
            + "".join(f"host {db} {','.join(roles)} 127.0.0.1/32 scram-sha-256\n"
                      for db, roles in self.tcp_roles.items() if self.tcp))
        (self.data / "pg_ident.conf").write_text(
            "".join(f"musewise {a} {SERVICE_ROLE}\n" for a in self._service_accounts())
            + "musewise /^([a-z_][a-z0-9_.-]*)$ \\1\n")

    def start(self, timeout: float = 60.0) -> "PostgresServer":
        """Start the server (initialising it first if new); returns self.

        Raises
        ------
        ServiceStartError
        """
        self.init()
        if self.running():
            self._read_port()
            return self
        self.port = free_port() if self.tcp else SOCKET_PORT
        listen = f"-h 127.0.0.1 -p {self.port}" if self.tcp else f"-h '' -p {self.port}"
        opts = f"{listen} -k {self.sock} -c fsync=off -c max_connections=200" if self.tcp else \
            f"{listen} -k {self.sock} -c max_connections=200"
        r = subprocess.run(_as_server_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                                            "-w", "-t", str(int(timeout)), "-o", opts, "start"]),
                           capture_output=True)
        if r.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise ServiceStartError(f"PostgreSQL did not start: {r.stderr.decode(errors='replace')}\n{tail}")
        if self.tcp:
            self.password = secrets.token_hex(16)
            self._execute(f"ALTER ROLE {SERVICE_ROLE} PASSWORD '{self.password}'")
        return self

    def _read_port(self) -> None:
        pid = (self.data / "postmaster.pid").read_text().splitlines()
        self.port = int(pid[3]) if len(pid) > 3 else SOCKET_PORT

    def running(self) -> bool:
        """Is the server of this folder up?"""
        if not (self.data / "postmaster.pid").exists():
            return False
        r = subprocess.run(_as_server_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"]),
                           capture_output=True)
        return r.returncode == 0

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended)."""
        if (self.data / "postmaster.pid").exists():
            subprocess.run(_as_server_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                                            "-w", "stop"]), capture_output=True)

    # ------------------------------------------------------------------ addresses
    def socket_url(self, database: str = "postgres", role: str = SERVICE_ROLE) -> str:
        """SQLAlchemy URL of ``database`` as ``role`` over the unix socket (peer authentication)."""
        return f"postgresql+psycopg://{role}@/{database}?host={self.sock}&port={self.port or SOCKET_PORT}"

    def tcp_url(self, database: str | None = None) -> str:
        """SQLAlchemy URL over 127.0.0.1 as the service role, password included (``tcp`` servers)."""
        if not self.tcp:
            raise ConfigurationError("this PostgreSQL server has no TCP listener")
        return f"postgresql+psycopg://{SERVICE_ROLE}:{self.password}@127.0.0.1:{self.port}" + \
            (f"/{database}" if database else "")

    def _execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(host=str(self.sock), port=self.port, user=SERVICE_ROLE, dbname=database,
                             autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str) -> None:
        """Create database ``name`` unless it exists."""
        import psycopg

        with psycopg.connect(host=str(self.sock), port=self.port, user=SERVICE_ROLE, dbname="postgres",
                             autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    """A TCP port on 127.0.0.1 free at the time of asking."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_socket(server: PostgresServer, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while not (server.sock / f".s.PGSQL.{server.port}").exists():
        if time.time() > deadline:
            raise ServiceStartError(f"PostgreSQL socket did not appear in {server.sock}")
        time.sleep(0.2)


def start_site_database(state_dir, database: str = "musewise") -> str:
    """Start (initialising on first use) the site's PostgreSQL under ``state_dir/postgres``.

    Nothing is set up by hand: the first call creates the server and the database, later
    calls find it running, or start it again with its data. Stop it with
    :func:`stop_site_database`.

    Parameters
    ----------
    state_dir : path-like
        The hub's state folder; users' accounts must be able to traverse it (mode 0711 or 0755).
    database : str
        Database name.

    Returns
    -------
    str
        The service's SQLAlchemy URL (over the socket, peer authentication). Give users
        :func:`user_database_url` instead.
    """
    server = PostgresServer(Path(state_dir) / "postgres").start()
    _wait_socket(server)
    server.create_database(database)
    return server.socket_url(database)


def stop_site_database(state_dir) -> None:
    """Stop the site's PostgreSQL started by :func:`start_site_database` (if running)."""
    server = PostgresServer(Path(state_dir) / "postgres")
    if server.running():
        server.stop()


def user_database_url(url: str, name: str) -> str:
    """The URL of the same database as role ``name`` (no password: peer authentication)."""
    u = make_url(url).set(username=check_role_name(name), password=None)
    return u.render_as_string(hide_password=False)


def peer_database_url(url: str) -> str:
    """The URL this process can log in with: over a unix socket without a password (peer
    authentication), its own unix account's role.

    The site configuration names the service's role (the schema owner) for root and the
    service account; a member's process (a shell on the server, a cron job) given that URL
    would be refused by the server ("Peer authentication failed"), so it connects as the
    role peer authentication grants it: its own. Any other URL is returned as it is.
    """
    u = make_url(url)
    if u.get_backend_name() != "postgresql" or u.password or os.geteuid() == 0:
        return url
    host = str(u.query.get("host") or u.host or "")
    me = pwd.getpwuid(os.geteuid()).pw_name
    if not host.startswith("/") or u.username in (None, me):
        return url
    return user_database_url(url, me)


def ensure_user_role(url, name: str) -> None:
    """Create the database role of archive user ``name`` (a login role in :data:`USERS_ROLE`), if missing.

    ``url`` is the service's URL (the schema owner's), or its SQLAlchemy engine. The
    role has no password: it logs in only by peer authentication, as the unix account
    of the same name. Its rights are those :mod:`musewise.archive.rls` grants to
    :data:`USERS_ROLE` and the policies give to its archive user.

    Raises
    ------
    InvalidArgumentError
        If ``name`` cannot be a role (:func:`check_role_name`).
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import Engine

    check_role_name(name)
    engine = url if isinstance(url, Engine) else create_engine(url)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            _ensure_group(conn)
            from sqlalchemy import text

            if conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}) is None:
                try:
                    conn.execute(text(f'CREATE ROLE "{name}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE '
                                      f'IN ROLE {USERS_ROLE}'))
                except Exception as exc:  # another database of the cluster made it meanwhile
                    if "already exists" not in str(exc):
                        raise
            conn.execute(text(f'GRANT {USERS_ROLE} TO "{name}"'))
    finally:
        if engine is not url:
            engine.dispose()


def _ensure_group(conn) -> None:
    from sqlalchemy import text

    if conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": USERS_ROLE}) is None:
        try:
            conn.execute(text(ENSURE_GROUP_SQL))
        except Exception as exc:  # pragma: no cover - a race with another database of the cluster
            if "already exists" not in str(exc):
                raise


__all__ = ["PostgresServer", "SERVICE_ROLE", "USERS_ROLE", "check_role_name", "ensure_user_role",
           "peer_database_url", "postgres_bindir", "start_site_database", "stop_site_database",
           "user_database_url"]
