"""Execution engines: where runs execute.

Engines are a small base class plus a registry (as papermill's engines):
subclass :class:`Engine`, override :meth:`Engine.map`, and :func:`register_engine`
it under a name that ``DpuConfig.engine`` can select.

* ``local`` - runs one after the other in this process;
* ``dask`` - runs as Dask tasks on the cluster given by
  ``MusewiseConfig.dask_scheduler``: empty starts a ``distributed.LocalCluster``
  with ``MusewiseConfig.n_workers`` processes of one thread (kept for the
  session and reused by later calls); ``tcp://host:8786`` connects to a running
  scheduler; ``jobqueue:slurm`` (or ``pbs``, ``sge``, ``lsf``, ``htcondor``)
  starts a dask-jobqueue cluster with ``DpuConfig.cluster_kwargs`` scaled to
  ``DpuConfig.cluster_jobs`` jobs (``pip install dask-jobqueue``), e.g.::

      c.MusewiseConfig.dask_scheduler = "jobqueue:slurm"
      c.DpuConfig.cluster_kwargs = {"queue": "muse", "cores": 2, "memory": "24GB",
                                    "walltime": "04:00:00"}
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
        from distributed import as_completed
        from tqdm.auto import tqdm

        client = get_client(self.config, self.dpu_config)
        heavy = list(heavy) if heavy is not None else [False] * len(items)
        limit = int(getattr(self.dpu_config, "heavy_concurrency", 1) or 1)
        futures = [client.submit(_under_lease if h else func, *((func, item, limit) if h else (item,)),
                                 pure=False, key=f"{desc or 'run'}-{i}-{id(item)}", priority=priority)
                   for i, (item, h) in enumerate(zip(items, heavy))]
        index = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(futures)
        with tqdm(total=len(futures), desc=desc, disable=not progress) as bar:
            for fut in as_completed(futures):
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


def _client_key(config) -> tuple:
    return (config.dask_scheduler or "", int(config.n_workers))


def has_client(config) -> bool:
    """Whether this process holds a running Dask client for ``config`` (without starting one)."""
    with _CLIENT_LOCK:
        client = _CLIENTS.get(_client_key(config))
        return client is not None and client.status == "running"


def get_client(config, dpu_config=None):
    """The Dask client for ``config.dask_scheduler`` (started once per process and kept)."""
    from distributed import Client

    key = _client_key(config)
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
        elif address.startswith("jobqueue:"):
            client = _jobqueue_client(address.split(":", 1)[1], dpu_config)
        else:
            client = Client(address)
        _CLIENTS[key] = client
        return client


def _jobqueue_client(system: str, dpu_config):
    from distributed import Client

    from ..optional import require

    dask_jobqueue = require("dask_jobqueue", f"MusewiseConfig.dask_scheduler 'jobqueue:{system}'")
    classes = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster",
               "lsf": "LSFCluster", "htcondor": "HTCondorCluster", "oar": "OARCluster"}
    if system not in classes:
        raise ConfigurationError(f"unknown dask-jobqueue system {system!r}; one of {sorted(classes)}")
    kwargs = dict(getattr(dpu_config, "cluster_kwargs", {}) or {})
    cluster = getattr(dask_jobqueue, classes[system])(**kwargs)
    cluster.scale(jobs=int(getattr(dpu_config, "cluster_jobs", 1)))
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

__all__ = ["DaskEngine", "Engine", "LocalEngine", "close_clients", "get_client", "get_engine",
           "has_client", "register_engine"]
