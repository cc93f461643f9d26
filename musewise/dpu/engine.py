"""Execution engines: where runs execute.

Engines are a small base class plus a registry (as papermill's engines):
subclass :class:`Engine`, override :meth:`Engine.map`, and :func:`register_engine`
it under a name that ``DpuConfig.engine`` can select.

* ``local`` - runs one after the other in this process;
* ``dask`` - runs as Dask tasks on the cluster given by
  ``MusewiseConfig.dask_scheduler``: empty starts a ``distributed.LocalCluster``
  with ``MusewiseConfig.n_workers`` processes of one thread (kept for the
  session and reused by later calls); ``tcp://host:8786`` connects to a site's
  running scheduler (its workers started with ``--nthreads 1``); ``jobqueue:slurm``
  (or ``pbs``, ``sge``, ``lsf``, ``htcondor``, ``oar``) starts dask-jobqueue
  clusters whose batch jobs are the workers, one worker of one thread per job,
  scaled to the runs waiting (``pip install 'musewise[jobqueue]'``): the jobs of
  ``DpuConfig.heavy_recipes`` ask for ``heavy_cluster_kwargs`` (their own memory and
  cores) when a site gives them, the others for ``cluster_kwargs``
  (:meth:`DpuConfig.batch_job_kwargs`), e.g.::

      c.MusewiseConfig.dask_scheduler = "jobqueue:slurm"
      c.DpuConfig.cluster_kwargs = {"queue": "muse", "memory": "8GB", "walltime": "04:00:00"}
      c.DpuConfig.heavy_cluster_kwargs = {"memory": "64GB", "job_cpu": 8}
      c.DpuConfig.cluster_jobs = 12

Workers receive settings, never archive objects: each opens its own archive.
"""

from __future__ import annotations

import threading
from typing import Callable, Sequence

from ..exceptions import ConfigurationError, NotFoundError


class Engine:
    """Base class of execution engines; override :meth:`map`."""

    name = "base"

    def map(self, func: Callable, items: Sequence, *, progress: bool = True, desc: str = "",
            heavy: Sequence[bool] | None = None, on_error: Callable | None = None, priority: int = 0) -> list:
        """Apply ``func`` to each item and return the results in order.

        ``on_error(item, exc)``, if given, makes the result of an item whose call raised
        (on Dask: whose worker died, ``KilledWorker``) instead of raising: the other items
        go on and keep their results. ``priority``: where items of several calls wait for
        the same workers, those of the higher priority start first (Dask's ``priority``).
        """
        raise NotImplementedError


class LocalEngine(Engine):
    """Run one item after the other in this process."""

    name = "local"

    def map(self, func, items, *, progress=True, desc="", heavy=None, on_error=None, priority=0):
        from tqdm.auto import tqdm

        # one at a time already: heavy runs need no extra limit here
        out = []
        for i in tqdm(items, desc=desc, disable=not progress):
            try:
                out.append(func(i))
            except Exception as exc:
                if on_error is None:
                    raise
                out.append(on_error(i, exc))
        return out


class DaskEngine(Engine):
    """Run items as Dask tasks (see the module docstring for the cluster choices)."""

    name = "dask"

    def __init__(self, config, dpu_config=None):
        self.config = config
        self.dpu_config = dpu_config

    def map(self, func, items, *, progress=True, desc="", heavy=None, on_error=None, priority=0):
        import queue

        from tqdm.auto import tqdm

        heavy = [bool(h) for h in heavy] if heavy is not None else [False] * len(items)
        # on a batch cluster heavy runs may have jobs (so a scheduler) of their own
        clients = {h: get_client(self.config, self.dpu_config, heavy=h) for h in set(heavy)}
        limit = int(getattr(self.dpu_config, "heavy_concurrency", 1) or 1)
        futures = [clients[h].submit(_under_lease if h else func, *((func, item, limit) if h else (item,)),
                                     pure=False, key=f"{desc or 'run'}-{i}-{id(item)}", priority=priority)
                   for i, (item, h) in enumerate(zip(items, heavy))]
        index = {f.key: i for i, f in enumerate(futures)}
        finished: queue.Queue = queue.Queue()  # futures of one or two clients, as each ends
        for fut in futures:
            fut.add_done_callback(finished.put)
        results: list = [None] * len(futures)
        with tqdm(total=len(futures), desc=desc, disable=not progress) as bar:
            for _ in futures:
                fut = finished.get()
                i = index[fut.key]
                try:
                    results[i] = fut.result()
                except Exception as exc:  # KilledWorker: the task's workers died (allowed-failures times)
                    if on_error is None:
                        raise
                    results[i] = on_error(items[i], exc)
                bar.update(1)
        return results


#: Name of the cluster-wide Dask semaphore that memory-heavy runs share.
HEAVY_SEMAPHORE = "musewise-heavy-runs"


def _under_lease(func, item, limit: int):
    # Runs on a worker: a cluster-wide semaphore keeps memory-heavy runs from running
    # together, on a LocalCluster or on any scheduler, however many workers there are.
    from distributed import Semaphore

    with Semaphore(max_leases=limit, name=HEAVY_SEMAPHORE):
        return func(item)


_ENGINES: dict[str, Callable] = {"local": lambda config, dpu: LocalEngine(), "dask": DaskEngine}


def register_engine(name: str, factory: Callable) -> None:
    """Make an engine available as ``DpuConfig.engine = name``; ``factory(config, dpu_config)``."""
    _ENGINES[name] = factory


def get_engine(name: str, config, dpu_config=None) -> Engine:
    """The engine called ``name``.

    Raises
    ------
    NotFoundError
        ``No engine named 'x' found``, listing the known ones.
    """
    if name not in _ENGINES:
        raise NotFoundError(f"No engine named {name!r} found; known: {', '.join(sorted(_ENGINES))}")
    return _ENGINES[name](config, dpu_config)


_CLIENT_LOCK = threading.Lock()
_CLIENTS: dict = {}


def is_batch_cluster(config) -> bool:
    """Whether ``config.dask_scheduler`` names a batch system (``jobqueue:<system>``)."""
    return (config.dask_scheduler or "").startswith("jobqueue:")


def _job_class(config, dpu_config, heavy: bool) -> str:
    from .config import DpuConfig

    own = heavy and is_batch_cluster(config) and (dpu_config or DpuConfig()).heavy_cluster_kwargs
    return "heavy" if own else ""


def _client_key(config, job_class: str = "") -> tuple:
    return (config.dask_scheduler or "", int(config.n_workers), job_class)


def has_client(config) -> bool:
    """Whether this process holds a running Dask client for ``config`` (without starting one)."""
    with _CLIENT_LOCK:
        client = _CLIENTS.get(_client_key(config))
        return client is not None and client.status == "running"


def get_client(config, dpu_config=None, *, heavy: bool = False):
    """The Dask client for ``config.dask_scheduler`` (started once per process and kept).

    ``heavy``: the client of the runs of ``DpuConfig.heavy_recipes``, which on a batch
    cluster with ``heavy_cluster_kwargs`` is a cluster of its own; elsewhere the same client.
    """
    from distributed import Client

    job_class = _job_class(config, dpu_config, heavy)
    key = _client_key(config, job_class)
    address = key[0]
    with _CLIENT_LOCK:
        client = _CLIENTS.get(key)
        if client is not None and client.status == "running":
            return client
        if not address:
            import dask
            from distributed import LocalCluster

            from .config import DpuConfig

            settings = dict((dpu_config or DpuConfig()).local_cluster_dask_config)
            # Each run starts a Jupyter kernel and esorex; one thread per worker process
            # keeps one esorex per core. The workers' nannies take the Dask settings in force
            # when they are made.
            with dask.config.set(settings):
                cluster = LocalCluster(n_workers=int(config.n_workers), threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1")
            client = Client(cluster)
        elif is_batch_cluster(config):
            client = _jobqueue_client(address.split(":", 1)[1], dpu_config, heavy=job_class == "heavy")
        else:
            client = Client(address)
        _CLIENTS[key] = client
        return client


def batch_cluster(system: str, dpu_config=None, *, heavy: bool = False):
    """A dask-jobqueue cluster for ``system`` (``slurm``, ``pbs``...) whose jobs run the heavy or the
    other runs, from :meth:`DpuConfig.batch_job_kwargs`; no job is submitted yet.

    Raises
    ------
    ConfigurationError
        An unknown system, or job settings that would put two runs in one job.
    """
    from ..optional import require
    from .config import DpuConfig

    dask_jobqueue = require("dask_jobqueue", f"MusewiseConfig.dask_scheduler 'jobqueue:{system}'")
    classes = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster",
               "lsf": "LSFCluster", "htcondor": "HTCondorCluster", "oar": "OARCluster"}
    if system not in classes:
        raise ConfigurationError(f"unknown dask-jobqueue system {system!r}; one of {sorted(classes)}")
    kwargs = (dpu_config or DpuConfig()).batch_job_kwargs(heavy)
    kwargs.setdefault("job_name", "musewise-heavy" if heavy else "musewise")
    return getattr(dask_jobqueue, classes[system])(**kwargs)


def _jobqueue_client(system: str, dpu_config, *, heavy: bool):
    from distributed import Client

    from .config import DpuConfig

    dcfg = dpu_config or DpuConfig()
    cluster = batch_cluster(system, dcfg, heavy=heavy)
    # jobs start as runs wait and end when idle: a batch system's nodes are not held for nothing
    most = int(dcfg.heavy_concurrency if heavy else dcfg.cluster_jobs)
    cluster.adapt(minimum_jobs=0, maximum_jobs=max(1, most))
    return Client(cluster)


def close_clients() -> None:
    """Shut down the clusters this process started (also done at interpreter exit)."""
    with _CLIENT_LOCK:
        for client in _CLIENTS.values():
            try:
                cluster = client.cluster
                client.close()
                if cluster is not None:
                    cluster.close()
            except Exception:  # closing must never raise at exit
                pass
        _CLIENTS.clear()


import atexit  # noqa: E402

atexit.register(close_clients)

__all__ = ["DaskEngine", "Engine", "LocalEngine", "batch_cluster", "close_clients", "get_client", "get_engine",
           "has_client", "is_batch_cluster", "register_engine"]
