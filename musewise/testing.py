"""Real servers for tests and benchmarks on 127.0.0.1: a throw-away PostgreSQL, a Dask
scheduler with its workers, a one-node Slurm cluster, Voila, headless Chromium.

Used by ``tests/conftest.py`` and ``benchmarks/``; handy for trying the
PostgreSQL backend or a site's own Dask cluster by hand::

    with TemporaryPostgres() as pg:
        arch = Archive.open(root="/tmp/x", db_url=pg.create_database())

    with TemporaryDaskCluster(2) as cluster:   # c.MusewiseConfig.dask_scheduler = cluster.address
        ...

    with TemporarySlurm() as slurm:            # c.MusewiseConfig.dask_scheduler = "jobqueue:slurm"
        ...
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
            if _listening(port):
                break
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


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class _Daemons:
    """Processes started in one folder, each writing ``<name>.log`` there, stopped together
    (each in a session of its own, so what it started goes with it)."""

    def __init__(self, dir=None):
        self._given_dir = None if dir is None else Path(dir)
        self.dir: Path | None = None
        self.processes: list[subprocess.Popen] = []
        self._saved_environ: dict = {}  # variable -> its value before _export (None: unset)

    def _make_dir(self, prefix: str) -> Path:
        self.dir = (Path(tempfile.mkdtemp(prefix=prefix)) if self._given_dir is None else self._given_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir

    def _spawn(self, name: str, argv: list, env: dict | None = None) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "wb")
        try:
            proc = subprocess.Popen([str(a) for a in argv], cwd=self.dir, stdout=log, env=env,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        self.processes.append(proc)
        return proc

    def _log(self, name: str) -> str:
        p = self.dir / f"{name}.log" if self.dir is not None else None
        return p.read_text(errors="replace")[-4000:] if p is not None and p.exists() else ""

    def _wait_until(self, ready, proc: subprocess.Popen, name: str, deadline: float) -> None:
        """Poll ``ready()`` until it is true; ServiceStartError with ``name``'s log if ``proc`` exits
        or ``deadline`` (time.time(), s) passes. Everything started is stopped first."""
        import time

        while not ready():
            if proc.poll() is not None or time.time() > deadline:
                log = self._log(name)
                why = f"exited with {proc.returncode}" if proc.poll() is not None else "did not start in time"
                self.stop()
                raise ServiceStartError(f"{name} {why}:\n{log}")
            time.sleep(0.2)

    def _stop_processes(self) -> None:
        import signal

        for proc in reversed(self.processes):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in reversed(self.processes):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)
        self.processes.clear()

    def _export(self, values: dict) -> None:
        """Set environment variables of this process while the daemons run (undone by :meth:`_unexport`):
        what the clients it starts (Slurm commands, s3fs) read to find them."""
        for k, v in values.items():
            self._saved_environ.setdefault(k, os.environ.get(k))
            os.environ[k] = v

    def _unexport(self) -> None:
        for k, v in self._saved_environ.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._saved_environ = {}

    def _remove_dir(self) -> None:
        if self.dir is not None and self._given_dir is None:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class TemporaryDaskCluster(_Daemons):
    """A Dask scheduler and its workers as a site runs them: ``dask scheduler`` and
    ``dask worker`` processes on 127.0.0.1, not started by musewise.

    ``address`` is what ``MusewiseConfig.dask_scheduler`` takes. Each worker process runs
    under its nanny, which starts it again when it dies (as at a site); one thread per
    worker process, as musewise's own LocalCluster has (one run, so one esorex, at a time).

    Parameters
    ----------
    n_workers : int
        Worker processes (each under its own nanny).
    dir : path-like, optional
        Folder for the workers' local directories and the processes' logs (default: a
        temporary folder, removed at :meth:`stop`).
    timeout : float
        Longest wait for the scheduler and every worker to come up (s).
    pythonpath : list of path-like, optional
        Folders put first on the processes' import path: a site installs the same software
        on its workers as on the hub, and a test's own module stands in for that here
        (Dask pickles a module's functions by reference, so the scheduler must import it).
    """

    def __init__(self, n_workers: int = 2, *, dir=None, timeout: float = 90.0, pythonpath=()):
        super().__init__(dir)
        self.n_workers, self.timeout = int(n_workers), float(timeout)
        self.pythonpath = [str(p) for p in pythonpath]
        self.address = ""

    def _python(self, name: str, args: list) -> subprocess.Popen:
        import sys

        env = dict(os.environ)
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(self.pythonpath + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        return self._spawn(name, [sys.executable, "-m", *args], env)

    def start(self) -> "TemporaryDaskCluster":
        import time

        self._make_dir("musewise-dask-")
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        sched = self._python("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                          "--port", str(port), "--no-dashboard"])
        self._wait_until(lambda: _listening(port), sched, "scheduler", time.time() + self.timeout)
        for i in range(self.n_workers):
            self._python(f"worker{i + 1}", [
                "distributed.cli.dask_worker", self.address, "--host", "127.0.0.1", "--nthreads", "1",
                "--nworkers", "1", "--nanny", "--no-dashboard", "--name", f"worker{i + 1}",
                "--local-directory", str(self.dir / f"worker{i + 1}")])
        try:
            self.wait_for_workers(self.n_workers, time.time() + self.timeout)
        except ServiceStartError:
            self.stop()
            raise
        return self

    def worker_pids(self) -> dict:
        """``{worker name: pid}`` of the worker processes the scheduler knows now."""
        from distributed import Client

        with Client(self.address, timeout=self.timeout) as client:
            # client.run hands each worker to a function taking ``dask_worker``
            return {info["name"]: info["pid"] for info in
                    client.run(lambda dask_worker: {"name": dask_worker.name, "pid": os.getpid()}).values()}

    def wait_for_workers(self, n: int, deadline: float) -> None:
        """Wait until ``n`` workers are connected, or raise ServiceStartError with their logs."""
        import time

        from distributed import Client

        with Client(self.address, timeout=self.timeout) as client:
            try:
                client.wait_for_workers(n, timeout=max(1.0, deadline - time.time()))
            except Exception as exc:  # distributed's TimeoutError
                logs = "\n".join(self._log(f"worker{i + 1}") for i in range(self.n_workers))
                raise ServiceStartError(f"{n} dask workers did not connect to {self.address}: {exc}\n{logs}")

    def stop(self) -> None:
        """Stop the workers (and what they started) and the scheduler; remove a temporary folder."""
        self._stop_processes()
        self._remove_dir()


class TemporarySlurm(_Daemons):
    """A one-node Slurm cluster on this machine: ``munged``, ``slurmctld`` and ``slurmd`` (Debian's
    ``slurm-wlm`` and ``munge``) with their own key, ports, configuration and state in a
    temporary folder, run as a site runs them but by this process.

    While it runs, ``SLURM_CONF`` names its configuration, so the Slurm commands this
    process runs (``sbatch``, ``squeue``, ``scancel`` of dask-jobqueue's SLURMCluster) reach it;
    ``env`` is that setting for other processes. Its one partition is ``partition``; the node
    offers ``cpus`` cores and ``memory_mb`` MB, and Slurm holds jobs to what they asked for
    (``select/cons_tres``, ``CR_Core_Memory``). :meth:`stop` cancels what is still queued or running.

    Parameters
    ----------
    cpus : int, optional
        Cores the node offers (default: this machine's).
    memory_mb : int, optional
        Memory the node offers (MB; default: this machine's less 1 GB).
    dir : path-like, optional
        Folder of the configuration, state and logs (default: a temporary folder, removed at :meth:`stop`).
    timeout : float
        Longest wait for the daemons, and for the node to be idle (s).
    """

    partition = "muse"

    def __init__(self, *, cpus: int | None = None, memory_mb: int | None = None, dir=None, timeout: float = 60.0):
        import psutil

        if not self.installed():
            raise ConfigurationError("Slurm not installed: apt-get install -y slurm-wlm munge")
        super().__init__(dir)
        self.cpus = int(cpus or os.cpu_count() or 1)
        self.memory_mb = int(memory_mb or psutil.virtual_memory().total // 2**20 - 1024)
        self.timeout = float(timeout)
        self.conf: Path | None = None
        self.node = "musewise-node"

    @staticmethod
    def installed() -> bool:
        """Whether Slurm's daemons are on this machine (Debian puts them in /usr/sbin)."""
        return shutil.which("slurmctld", path=os.environ.get("PATH", "") + ":/usr/sbin") is not None

    @property
    def env(self) -> dict:
        """The environment settings that point Slurm's commands at this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def _sbin(self, name: str) -> str:
        return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin") or name

    def _command(self, *args, check: bool = True) -> str:
        out = subprocess.run([self._sbin(args[0]), *map(str, args[1:])], capture_output=True, text=True,
                             env={**os.environ, **self.env}, timeout=30)
        if check and out.returncode != 0:
            raise ServiceStartError(f"{' '.join(map(str, args))} failed: {out.stderr.strip()}")
        return out.stdout

    def start(self) -> "TemporarySlurm":
        import time

        d = self._make_dir("musewise-slurm-")
        os.chmod(d, 0o755)  # munged wants its socket's folders open to all
        for sub in ("state", "spool"):
            (d / sub).mkdir(exist_ok=True)
        key = d / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        socket_path = d / "munge.socket"
        deadline = time.time() + self.timeout
        munged = self._spawn("munged", [self._sbin("munged"), "--foreground", "--force",
                                        f"--socket={socket_path}", f"--key-file={key}",
                                        f"--pid-file={d / 'munged.pid'}", f"--seed-file={d / 'munged.seed'}",
                                        f"--log-file={d / 'munged-daemon.log'}"])
        self._wait_until(socket_path.exists, munged, "munged", deadline)
        host = socket.gethostname().split(".")[0]
        ctld_port, node_port = free_port(), free_port()
        (d / "plugstack.conf").write_text("")
        self.conf = d / "slurm.conf"
        self.conf.write_text("\n".join([
            "ClusterName=musewise-test",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}", f"SlurmdPort={node_port}",
            "AuthType=auth/munge", f"AuthInfo=socket={socket_path}", "CredType=cred/munge",
            "SlurmUser=root", "SlurmdUser=root",
            f"StateSaveLocation={d / 'state'}", f"SlurmdSpoolDir={d / 'spool'}",
            f"SlurmctldPidFile={d / 'slurmctld.pid'}", f"SlurmdPidFile={d / 'slurmd.pid'}",
            f"PlugStackConfig={d / 'plugstack.conf'}",
            # no cgroups in a container: processes are tracked by their parents, and tasks
            # are not bound to cores; the scheduler still holds jobs to what they asked for
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
            "SchedulerType=sched/backfill", "MpiDefault=none", "ReturnToService=2",
            "KillWait=5", "MinJobAge=600", "SlurmdTimeout=30", "InactiveLimit=0",
            f"NodeName={self.node} NodeAddr=127.0.0.1 NodeHostname={host} CPUs={self.cpus} "
            f"RealMemory={self.memory_mb} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP", ""]))
        env = {**os.environ, **self.env}
        ctld = self._spawn("slurmctld", [self._sbin("slurmctld"), "-D", "-i", "-f", self.conf], env)
        self._wait_until(lambda: "UP" in self._command("scontrol", "ping", check=False), ctld, "slurmctld", deadline)
        slurmd = self._spawn("slurmd", [self._sbin("slurmd"), "-D", "-N", self.node, "-f", self.conf], env)
        self._wait_until(lambda: self.node_state() == "idle", slurmd, "slurmd", deadline)
        self._export(self.env)
        return self

    def node_state(self) -> str:
        """The node's state as ``sinfo`` gives it (``idle``, ``mixed``, ``allocated``, ``down``...)."""
        return self._command("sinfo", "-h", "-N", "-o", "%T", check=False).strip().rstrip("*")

    def jobs(self) -> list[dict]:
        """Every job the controller knows (running, queued, and ended in the last 10 min): ``scontrol
        show job`` of each as ``{field: value}`` (``JobId``, ``JobName``, ``JobState``, ``NumCPUs``,
        ``MinMemoryNode``, ``TRES``...)."""
        out = self._command("scontrol", "show", "job", "--oneliner", check=False)
        jobs = []
        for line in out.splitlines():
            if "JobId=" not in line:
                continue
            fields = {}
            for part in line.split():
                name, _, value = part.partition("=")
                fields[name] = value
            jobs.append(fields)
        return jobs

    def dpu_settings(self, folder, *, memory: str = "3GB", heavy_memory: str = "6GB", heavy_cpus: int = 2,
                     jobs: int = 2) -> dict:
        """``DpuConfig`` settings that run a reduction's runs as this cluster's batch jobs through
        dask-jobqueue (with ``MusewiseConfig.dask_scheduler = "jobqueue:slurm"``): light runs in jobs
        of ``memory`` and one core (at most ``jobs`` at once), heavy ones in jobs of ``heavy_memory``
        and ``heavy_cpus`` cores; the jobs' logs and Dask folders in ``folder``. Everything listens
        on 127.0.0.1."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return {"cluster_kwargs": {
                    "queue": self.partition, "memory": memory, "walltime": "01:00:00",
                    "log_directory": str(folder), "local_directory": str(folder),
                    "scheduler_options": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"},
                    "worker_extra_args": ["--host", "127.0.0.1", "--no-dashboard"]},
                "heavy_cluster_kwargs": {"memory": heavy_memory, "job_cpu": int(heavy_cpus)},
                "cluster_jobs": int(jobs)}

    def cancel(self, job_id) -> None:
        """``scancel`` a job, as its owner or an operator would."""
        self._command("scancel", job_id)

    def stop(self) -> None:
        """Cancel the jobs, stop the daemons and what the jobs left running; remove a temporary folder."""
        import time

        import psutil

        if self.conf is not None and any(p.poll() is None for p in self.processes):
            self._command("scancel", "--full", "--partition", self.partition, check=False)
            deadline = time.time() + 15
            while time.time() < deadline and self._command("squeue", "-h", check=False).strip():
                time.sleep(0.5)
        self._stop_processes()
        # a job's steps run under slurmstepd, in sessions of their own: end any left behind
        if self.conf is not None:
            for proc in psutil.process_iter():
                try:
                    if proc.environ().get("SLURM_CONF") == str(self.conf) and proc.pid != os.getpid():
                        proc.kill()
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    pass
        self.conf = None
        self._unexport()
        self._remove_dir()


class TemporaryS3(_Daemons):
    """A real S3 server on 127.0.0.1 (moto's standalone server) with one empty bucket.

    ``url(prefix)`` is what ``MusewiseConfig.datastore_url`` takes and ``options`` what
    ``MusewiseConfig.datastore_options`` takes. The server accepts any credentials; the
    test ones are put in this process's environment (where s3fs looks for them, as at a
    site) while it runs, and taken out at :meth:`stop`.

    Parameters
    ----------
    bucket : str
        Name of the bucket created at start.
    dir : path-like, optional
        Folder of the server's log (default: a temporary folder, removed at :meth:`stop`).
    timeout : float
        Longest wait for the server to answer (s).
    """

    #: Credentials moto accepts (any would do); s3fs reads them from the environment.
    CREDENTIALS = {"AWS_ACCESS_KEY_ID": "musewise-test", "AWS_SECRET_ACCESS_KEY": "musewise-test",
                   "AWS_DEFAULT_REGION": "us-east-1"}

    def __init__(self, bucket: str = "musewise", *, dir=None, timeout: float = 60.0):
        super().__init__(dir)
        self.bucket, self.timeout = bucket, float(timeout)
        self.endpoint = ""

    @property
    def options(self) -> dict:
        """fsspec storage options of the server (the endpoint; credentials come from the environment)."""
        return {"endpoint_url": self.endpoint}

    def url(self, prefix: str = "datastore") -> str:
        """``s3://<bucket>/<prefix>``."""
        return f"s3://{self.bucket}/{prefix.strip('/')}"

    def filesystem(self):
        """An s3fs filesystem on the server (fresh: no listings cached)."""
        import s3fs

        return s3fs.S3FileSystem(endpoint_url=self.endpoint, skip_instance_cache=True)

    def start(self) -> "TemporaryS3":
        import sys
        import time

        self._make_dir("musewise-s3-")
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self._export(self.CREDENTIALS)
        env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
        server = self._spawn("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env)
        self._wait_until(lambda: _listening(port), server, "moto", time.time() + self.timeout)
        try:
            self.filesystem().mkdir(self.bucket)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (its buckets live in its memory and go with it); restore the environment."""
        self._stop_processes()
        self._remove_dir()
        self._unexport()
