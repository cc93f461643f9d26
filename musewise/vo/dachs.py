"""A GAVO DaCHS data centre that musewise runs itself: the TAP, ObsCore and DataLink server.

DaCHS (Debian ``python3-gavo``; Demleitner et al. 2014, A&C 7, 27) is the Virtual
Observatory server many archives run. It answers ADQL over TAP (synchronous and
asynchronous, VOTable out, ``TAP_SCHEMA``, capabilities, availability), keeps
``ivoa.obscore`` as a view over the tables that publish to it, and serves
DataLink documents and product files. musewise does not write any of that: it
gives DaCHS a folder, a database and one resource descriptor (``musewise.rd``,
beside this module), and feeds it rows of released products.

Layout of a data centre's folder ``base``::

    gavo.rc                       DaCHS's settings (GAVOSETTINGS)
    root/etc/{dsn,feed,...}       database profiles (0600: passwords)
    root/inputs/musewise/q.rd     the resource descriptor
    root/inputs/musewise/products.csv   the rows imported (one per released product)
    root/inputs/musewise/sources.csv    the sources of released catalogues
    root/inputs/musewise/<table>.csv    the archive's tables as the audience sees them
    root/inputs/musewise/releases/<name>-<version>/   exported release folders

DaCHS runs on Debian's own Python (``/usr/bin/dachs``), never the interpreter of
musewise: its processes get a clean environment, so nothing of the caller's
virtualenv leaks into it.

Each data centre has its own database (``dachs_<name>``) and its own database roles
(``<name>_gavoadmin``, ``<name>_gavo``, ``<name>_untrusted``), which the PostgreSQL
server admits to that database only (:class:`~musewise.archive.pgserver.PostgresServer`
``tcp_roles``): the public data centre's roles cannot even connect to the
consortium's database.
"""

from __future__ import annotations

import csv
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ..exceptions import ConfigurationError, InvalidArgumentError, ServiceStartError
from .tables import ARCHIVE_TABLES

#: DaCHS's command (Debian package python3-gavo).
DACHS = "/usr/bin/dachs"
#: The resource descriptor musewise installs (``<inputs>/musewise/q.rd``).
RD_SOURCE = Path(__file__).with_name("musewise.rd")
#: Resource directory of the descriptor, inside DaCHS's inputs.
RESDIR = "musewise"
#: PostgreSQL extensions DaCHS's init needs, and their Debian packages.
EXTENSIONS = {"pg_sphere": "postgresql-15-pgsphere", "q3c": "postgresql-15-q3c"}
#: DaCHS's own profile names and the privileges their roles get from ``dachs init``.
PROFILES = ("feed", "trustedquery", "untrustedquery")
#: Columns of ``products.csv``, as the descriptor's grammar reads them: the ObsCore columns
#: musewise fills (:mod:`musewise.release.obscore`), then where DaCHS finds the files.
PRODUCT_COLUMNS = (
    "dataproduct_type", "dataproduct_subtype", "calib_level", "obs_collection", "obs_id", "obs_title",
    "obs_publisher_did", "target_name", "s_ra", "s_dec", "s_fov", "s_region", "s_resolution", "s_xel1",
    "s_xel2", "t_min", "t_max", "t_exptime", "t_resolution", "t_xel", "em_min", "em_max", "em_res_power",
    "em_xel", "em_ucd", "o_ucd", "facility_name", "instrument_name", "release", "dataset_id",
    "accref", "size", "provenance_path", "notebook_path", "preview_path",
)
#: Columns of ``sources.csv``: the sources of released catalogues (:mod:`musewise.archive.sources`).
SOURCE_COLUMNS = ("catalog_did", "release", "dataset_id", "source_id", "kind", "ra", "dec", "wavelength",
                  "flux", "flux_err", "snr", "spectrum", "image")
#: Every CSV file the descriptor imports (``<name>.csv``) and its columns.
TABLES = {"products": PRODUCT_COLUMNS, "sources": SOURCE_COLUMNS, **ARCHIVE_TABLES}


def dachs_available() -> bool:
    """Is DaCHS installed (Debian ``python3-gavo``)?"""
    return Path(DACHS).exists()


def role_names(name: str) -> dict[str, str]:
    """Database role of each DaCHS profile of data centre ``name``."""
    return {"feed": f"{name}_gavoadmin", "trustedquery": f"{name}_gavo", "untrustedquery": f"{name}_untrusted"}


def database_name(name: str) -> str:
    """The database of data centre ``name``."""
    return f"dachs_{name}"


class DachsServer:
    """One DaCHS data centre: folder, database, HTTP server on 127.0.0.1.

    Parameters
    ----------
    base : path-like
        Its folder (created; kept across restarts).
    name : str
        Short name (``public``, ``consortium``): names its database and roles.
    postgres : PostgresServer
        A running server with a TCP listener that admits this data centre's roles
        (``tcp_roles={database_name(name): role_names(name).values()}``).
    port : int
        HTTP port on 127.0.0.1.
    public_url : str
        The URL clients reach it under (through the hub's proxy:
        ``http://host:8000/services/vo``); every link DaCHS writes (capabilities,
        job URLs, DataLink) starts with it.
    authority : str
        IVOA authority of the data centre's identifiers.
    title : str
        Site name DaCHS shows.
    run_as : str, optional
        Unix account DaCHS's server runs as when started by root (default
        ``nobody``); ignored for other callers, whose own account runs it.
    """

    def __init__(self, base, *, name: str, postgres, port: int, public_url: str,
                 authority: str = "musewise.consortium", title: str = "musewise", run_as: str = "nobody"):
        if not dachs_available():
            raise ConfigurationError("GAVO DaCHS is not installed: apt-get install -y python3-gavo "
                                     "postgresql-15-pgsphere postgresql-15-q3c (make setup installs them)")
        self.base = Path(base)
        self.root = self.base / "root"
        self.name = name
        self.postgres = postgres
        self.port = int(port)
        self.public_url = public_url.rstrip("/")
        self.authority = authority
        self.title = title
        self.run_as = run_as if os.geteuid() == 0 else ""
        self.proc: subprocess.Popen | None = None

    # ------------------------------------------------------------------ paths
    @property
    def url(self) -> str:
        """Where the server listens (its own address, not the proxy's)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def resdir(self) -> Path:
        """The descriptor's folder: products.csv and the exported releases."""
        return self.root / "inputs" / RESDIR

    @property
    def releases_dir(self) -> Path:
        return self.resdir / "releases"

    def env(self) -> dict[str, str]:
        """Environment of DaCHS's processes: its settings, nothing of the caller's Python."""
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": str(self.base),
                "GAVOSETTINGS": str(self.base / "gavo.rc"), "GAVOCUSTOM": str(self.base / "nonexistent")}

    def dachs(self, *args: str, timeout: float = 600) -> str:
        """Run a ``dachs`` command; returns its output.

        Raises
        ------
        ServiceStartError
            The command failed (its output is in the message).
        """
        r = subprocess.run([DACHS, *args], env=self.env(), capture_output=True, text=True, timeout=timeout,
                           cwd=self.base)
        if r.returncode != 0:
            raise ServiceStartError(f"dachs {' '.join(args)} failed ({r.returncode}):\n"
                                    f"{(r.stdout + r.stderr)[-3000:]}")
        return r.stdout + r.stderr

    # ------------------------------------------------------------------ set-up
    def prepare(self) -> "DachsServer":
        """Write the settings and profiles, create the database, initialise DaCHS; returns self.

        Safe to repeat: the database is initialised the first time only (``initialised``
        marks it), later calls refresh the settings, the descriptor and the rows.
        """
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        group = "root" if os.geteuid() == 0 else _group_name()
        (self.base / "gavo.rc").write_text(
            "[general]\n"
            f"rootDir: {self.root}\n"
            f"gavoGroup: {group}\ngroup: {group}\n"
            "logLevel: info\n\n"
            "[web]\n"
            f"serverURL: {self.public_url}\n"
            f"bindAddress: 127.0.0.1\nserverPort: {self.port}\n"
            f"user: {self.run_as}\n"
            # Behind the hub's proxy: links must use serverURL, never the request's own address.
            "adaptProtocol: False\n"
            f"sitename: {self.title}\n\n"
            "[ivoa]\n"
            f"authority: {self.authority}\n")
        etc = self.root / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        db = database_name(self.name)
        (etc / "dsn").write_text(f"database = {db}\nhost = 127.0.0.1\nport = {self.postgres.port}\n")
        for profile, role in role_names(self.name).items():
            path = etc / profile
            if not path.exists():  # passwords are made once; dachs init sets them on the roles
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(f"include dsn\nuser = {role}\npassword = {secrets.token_hex(20)}\n")
        marker = self.base / "initialised"
        if not marker.exists():
            # DaCHS's init is not idempotent on an existing database (its MOC casts fail as
            # "already exists"), so a database is initialised once; a half-made one is remade.
            self._drop_database(db)
            self.postgres.create_database(db)
            self._check_extensions(db)
            self.dachs("init", "-d", f"host=127.0.0.1 port={self.postgres.port} dbname={db} user=musewise "
                                     f"password={self.postgres.password}")
            self.dachs("imp", "//obscore")
            marker.write_text("dachs init and imp //obscore done\n")
        else:
            self.dachs("init", "--nodb")  # the folders and settings only
        self.resdir.mkdir(parents=True, exist_ok=True)
        self.releases_dir.mkdir(exist_ok=True)
        shutil.copyfile(RD_SOURCE, self.resdir / "q.rd")
        self.write_tables({name: [] for name in TABLES if not (self.resdir / f"{name}.csv").exists()})
        self.load()
        # The inputs hold the audience's releases: the consortium's must not be readable by
        # the hub's other unix accounts (an outside user's kernel), only by the server.
        inputs = self.root / "inputs"
        if self.run_as:
            # The server's account writes its logs, jobs and caches; it only reads the rest.
            for sub in ("logs", "state", "tmp", "cache", "web"):
                for path in [self.root / sub, *(self.root / sub).rglob("*")]:
                    shutil.chown(path, self.run_as)
            for profile in ("dsn", *PROFILES):
                shutil.chown(etc / profile, self.run_as)
            shutil.chown(inputs, "root", pwd.getpwnam(self.run_as).pw_gid)
            os.chmod(inputs, 0o750)
        else:
            os.chmod(inputs, 0o700)
        return self

    def running(self) -> bool:
        """Is the HTTP server process alive?"""
        return self.proc is not None and self.proc.poll() is None

    def _check_extensions(self, db: str) -> None:
        # dachs init creates both in one transaction, and without q3c it rolls pgSphere back
        # too, then fails later on an obscure "type spoint does not exist".
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.postgres.port, user="musewise",
                             password=self.postgres.password, dbname=db, autocommit=True) as conn:
            have = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions")}
        missing = [pkg for ext, pkg in EXTENSIONS.items() if ext not in have]
        if missing:
            raise ConfigurationError(f"the PostgreSQL server lacks the extensions DaCHS needs: apt-get install -y "
                                     f"{' '.join(missing)} (make setup installs them)")

    def _drop_database(self, db: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.postgres.port, user="musewise",
                             password=self.postgres.password, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')

    def write_tables(self, tables: dict[str, list[dict]]) -> None:
        """Write the rows DaCHS imports: ``<name>.csv`` for each table given, each replaced atomically.

        Parameters
        ----------
        tables : dict
            Table name (:data:`TABLES`) -> rows (dicts; missing keys and None are empty fields,
            booleans 1 and 0).
        """
        unknown = sorted(set(tables) - set(TABLES))
        if unknown:
            raise InvalidArgumentError(f"no table {', '.join(unknown)} in the descriptor: one of {', '.join(TABLES)}")
        for name, rows in tables.items():
            columns = TABLES[name]
            path = self.resdir / f"{name}.csv"
            tmp = path.with_suffix(".csv.tmp")
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
                w.writeheader()
                for row in rows:
                    w.writerow({k: _field(row.get(k)) for k in columns})
            os.replace(tmp, path)

    def load(self) -> None:
        """Import the CSV files into the data centre's tables (products also into ``ivoa.obscore``)."""
        self.dachs("imp", f"{RESDIR}/q")

    # ------------------------------------------------------------------ server
    def start(self, timeout: float = 90.0) -> "DachsServer":
        """Start the HTTP server and wait until TAP answers; returns self.

        Raises
        ------
        ServiceStartError
        """
        self.stop_leftover()
        log = open(self.base / "server.log", "ab")
        self.proc = subprocess.Popen([DACHS, "serve", "debug"], env=self.env(), stdout=log,
                                     stderr=subprocess.STDOUT, cwd=self.base, start_new_session=True)
        log.close()
        self.pidfile.write_text(f"{self.proc.pid}\n")
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ServiceStartError(f"DaCHS ({self.name}) exited with {self.proc.returncode}:\n"
                                        f"{(self.base / 'server.log').read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/tap/availability", timeout=5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceStartError(f"DaCHS ({self.name}) did not answer on {self.url} in {timeout:.0f} s")
            time.sleep(0.5)

    @property
    def pidfile(self) -> Path:
        """Where the server's process ID is kept while it runs (its own process group's leader)."""
        return self.base / "server.pid"

    def stop(self) -> None:
        """Stop the HTTP server (its whole process group)."""
        if self.proc is not None and self.proc.poll() is None:
            _stop_group(self.proc.pid, self.proc.wait)
        self.pidfile.unlink(missing_ok=True)

    def stop_leftover(self) -> int | None:
        """Stop a server of this folder left running by a process that was killed; returns its ID.

        A VO service killed with SIGKILL cannot stop its data centres; the next start finds
        their process by :attr:`pidfile` (only a ``dachs`` process counts: IDs are reused).
        """
        try:
            pid = int(self.pidfile.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            self.pidfile.unlink(missing_ok=True)
            return None
        if not any(Path(os.fsdecode(a)).name == "dachs" for a in cmdline[:2]) or b"serve" not in cmdline:
            self.pidfile.unlink(missing_ok=True)
            return None

        def gone(timeout):
            deadline = time.monotonic() + timeout
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            if Path(f"/proc/{pid}").exists():
                raise subprocess.TimeoutExpired("dachs serve", timeout)

        _stop_group(pid, gone)
        self.pidfile.unlink(missing_ok=True)
        return pid


def _stop_group(pid: int, wait) -> None:
    # SIGTERM to the process group of ``pid``, SIGKILL if it is still there after 20 s.
    for sig, timeout in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(pid, sig)
            wait(timeout)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _field(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return 1 if value else 0  # ADQL has no booleans: 1 and 0, as TAP clients expect
    return value


def _group_name() -> str:
    import grp

    return grp.getgrgid(pwd.getpwuid(os.geteuid()).pw_gid).gr_name
