"""Real servers for tests and benchmarks: a throw-away PostgreSQL on 127.0.0.1.

Used by ``tests/conftest.py`` and ``benchmarks/``; handy for trying the
PostgreSQL backend by hand::

    with TemporaryPostgres() as pg:
        arch = Archive.open(root="/tmp/x", db_url=pg.create_database())
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

from .archive.pgserver import PostgresServer, free_port, postgres_bindir
from .exceptions import ConfigurationError, ServiceStartError


class TemporaryPostgres:
    """A PostgreSQL server in a temporary folder (a :class:`~musewise.archive.pgserver.PostgresServer`).

    It listens on 127.0.0.1 for the service role (password in ``url``, known only to
    this process) and on a unix socket ``sock`` with peer authentication for archive
    users' roles. ``url`` is the SQLAlchemy base URL (no database name);
    :meth:`create_database` makes a fresh empty database and returns its URL.

    Parameters
    ----------
    dir : path-like, optional
        Folder to create the server's folder in (default: the system's temporary
        folder); benchmarks filling gigabytes put it on a larger disk.
    """

    def __init__(self, dir=None):
        if postgres_bindir() is None:
            raise ConfigurationError("PostgreSQL server not installed: apt-get install -y postgresql")
        self.dir = None if dir is None else str(dir)
        self.base = self.url = self.server = None

    def start(self) -> "TemporaryPostgres":
        self.base = Path(tempfile.mkdtemp(prefix="musewise-pg-", dir=self.dir))
        os.chmod(self.base, 0o755)  # test users' accounts reach the socket through it
        self.server = PostgresServer(self.base, tcp=True).start()
        self.url = self.server.tcp_url()
        return self

    @property
    def sock(self) -> Path:
        """The folder of the server's unix socket."""
        return self.server.sock

    def socket_url(self, database: str, role: str) -> str:
        """URL of ``database`` as ``role`` over the unix socket (peer authentication)."""
        return self.server.socket_url(database, role)

    def stop(self) -> None:
        if self.base is None:
            return
        self.server.stop()
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    def create_database(self) -> str:
        """Create an empty database; return its SQLAlchemy URL (service role, over TCP)."""
        name = "t_" + uuid.uuid4().hex[:12]
        self.server.create_database(name)
        return f"{self.url}/{name}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


#: Debian's Chromium and the flags it needs headless on a closed network (no background traffic).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic")


@contextlib.contextmanager
def chromium_page(width: int = 1300, height: int = 900):
    """A headless Debian Chromium page driven by Playwright (closed at exit)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def widget_notebook(path, source: str) -> Path:
    """Write a one-cell notebook (``python3`` kernel) running ``source``, for Voila tests."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return Path(path)


@contextlib.contextmanager
def voila_server(folder, target: str = ".", timeout: float = 60.0):
    """Serve notebooks of ``folder`` with Voila on 127.0.0.1 (random port, token auth).

    Yields ``(base_url, token)``; the server and the kernels it started are stopped at exit.
    """
    import secrets
    import signal
    import sys
    import time

    folder = Path(folder)
    repo = Path(__file__).resolve().parents[1]
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, PYTHONPATH=f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               JUPYTER_PLATFORM_DIRS="1")
    log_path = folder / "voila.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voila", target, "--no-browser", f"--port={port}",
             "--Voila.ip=127.0.0.1", f"--token={token}", "--Voila.port_retries=0"],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise ServiceStartError("voila exited:\n" + log_path.read_text())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise ServiceStartError("voila did not start:\n" + log_path.read_text())
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}", token
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # voila and the kernels it started
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
