"""Warm kernels: the next notebook run's kernel starts while the current run executes.

Starting the musewise Jupyter kernel and importing what every reduction and QC notebook
needs (numpy, astropy, matplotlib's inline backend, musewise) takes 1.5-2.5 s on this
2-core machine, and stopping it after the run another 0.6 s: per run, a large part of
what musewise adds to the pipeline's own time. A :class:`KernelPool` (one per process
that executes notebooks: this one, each Dask worker) keeps one *spare* kernel, started
in the background with ``DpuConfig.kernel_preload`` already imported:

* :meth:`KernelPool.take` hands the spare (or, if it is not ready or has died, a kernel
  started there and then) to one run, in that run's work dir, and starts the next spare;
* a kernel executes **one** notebook unless it is one of musewise's own that may share
  kernels (``DpuConfig.shared_kernels``: the QC notebooks and the shipped reduction
  templates, unless a site says otherwise): :meth:`KernelPool.retire` stops it (in the
  background) after its run, whatever happened; nothing passes from one run to the next
  but what a fresh kernel would import anyway;
* a run taken with ``shared_by=<user>`` hands its kernel back (:meth:`KernelPool.give_back`),
  which is reset (:mod:`musewise.dpu.kernel_state`: namespace, history, figures,
  rcParams, warning filters, environment) and kept for the next such run, up to
  ``reuse_limit`` notebooks. A used kernel is never handed to a run that did not ask for
  one, nor to another user's run (a service executing runs for several users keeps one
  such kernel per user). A notebook that failed has its kernel stopped, not reused;
* a spare left unused for ``idle`` seconds is stopped; all kernels are stopped when the
  process exits (a kernel also exits by itself when its parent process dies: ipykernel
  watches ``JPY_PARENT_PID``).

A kernel that dies during its run fails that run as a cold one would (the executor
retries once, on another kernel from the pool).

Every client made for a pool's kernel is a :class:`ReadyKernelClient`: jupyter_client's
``wait_for_ready`` ends by listening to IOPub until it has been quiet for 0.2 s, and a
run connected to its kernel twice (to change its work dir, then nbclient's own client),
so that waiting was 0.4 s of every run's ~1 s outside the pipeline.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
from concurrent.futures import Future
from queue import Empty

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from traitlets import DottedObjectName, Type

from ..exceptions import ServiceStartError


#: What a spare kernel runs when it preloads matplotlib: the notebooks' inline backend, and one
#: tiny figure drawn to PNG, which loads the fonts and the PNG writer (0.4-0.6 s that the first
#: figure of a run would take otherwise). The figure is closed: the run sees no figure of it.
MATPLOTLIB_WARMUP = """
get_ipython().run_line_magic('matplotlib', 'inline')
def _musewise_warmup():
    import io
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(1, 1))
    ax = fig.gca()
    plt.colorbar(ax.imshow([[0.0, 1.0]]), ax=ax)
    ax.set_title('warm-up')
    fig.savefig(io.BytesIO(), format='png')
    plt.close(fig)
_musewise_warmup()
del _musewise_warmup
"""

# Sent to a kernel that may serve several of musewise's own notebooks (musewise.dpu.kernel_state). A
# snapshot that fails leaves the kernel usable for one notebook: its reset then fails and
# the pool stops it instead of handing it on.
SNAPSHOT = """
try:
    from musewise.dpu import kernel_state as _ks
    _ks.snapshot()
    del _ks
except Exception:
    pass
"""
RESTORE = "__import__('musewise.dpu.kernel_state', fromlist=['restore']).restore()"


class ReadyKernelClient(AsyncKernelClient):
    """A kernel client ready as soon as its kernel answered on shell and IOPub.

    As jupyter_client's own, :meth:`wait_for_ready` asks ``kernel_info`` until the reply
    comes on the shell channel and a message of the kernel reaches this client's IOPub
    socket (so that the execution's output cannot be missed for want of a subscription);
    it then returns, where jupyter_client goes on reading IOPub until 0.2 s pass without
    a message. What is left there are the ``kernel_info`` request's own status messages,
    which nbclient skips: it takes only the messages whose parent is the cell it runs.
    """

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        """Return once the kernel answers (s: ``timeout``, default no limit); RuntimeError if it died or never did."""
        deadline = time.monotonic() + (float("inf") if timeout is None else float(timeout))
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                reply = None
            if reply is not None and reply["msg_type"] == "kernel_info_reply":
                try:
                    await self.iopub_channel.get_msg(timeout=0.2)
                except Empty:  # IOPub not subscribed yet: ask again
                    pass
                else:
                    self._handle_kernel_info_reply(reply)
                    return
            if not await self._async_is_alive():
                raise ServiceStartError("kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise ServiceStartError(f"kernel did not answer kernel_info in {timeout:.0f} s")


class PoolKernelManager(AsyncKernelManager):
    """The manager of one of the pool's kernels.

    It remembers the clients made for it, so that their sockets are closed when its
    kernel is retired (nbclient leaves a client it was given open); its clients are
    :class:`ReadyKernelClient`. ``notebooks`` counts the notebooks its kernel executed
    before it was last handed out (0: a fresh kernel).
    """

    notebooks: int = 0
    client_class = DottedObjectName("musewise.dpu.kernelpool.ReadyKernelClient")
    client_factory = Type(ReadyKernelClient, klass=AsyncKernelClient)

    def client(self, **kwargs):
        kc = super().client(**kwargs)
        self.__dict__.setdefault("_made_clients", []).append(kc)
        return kc

    def close_clients(self) -> None:
        for kc in self.__dict__.pop("_made_clients", []):
            try:
                kc.stop_channels()
            except Exception:  # a client already stopped: nothing left to close
                pass


class KernelPool:
    """One spare kernel of ``kernel_name`` kept ready for the next run (module docstring).

    Parameters
    ----------
    kernel_name : str
        ``MusewiseConfig.kernel_name``.
    config : traitlets Config
        Kernel-manager settings (:func:`musewise.kernel.papermill_options`).
    extra_arguments : list of str
        Kernel command-line arguments (:func:`musewise.kernel.papermill_options`).
    preload : sequence of str
        Modules the spare imports before its run.
    idle : float
        A spare not taken for this long is stopped (s; 0: never).
    start_timeout : float
        Longest wait for a kernel to answer after it was started (s).
    reuse_limit : int
        How many notebooks a kernel handed back with :meth:`give_back` executes before it is
        stopped (``DpuConfig.kernel_reuse_limit``; 0 or 1: one each).
    """

    def __init__(self, kernel_name: str, *, config=None, extra_arguments=(), preload=(), idle: float = 300.0,
                 start_timeout: float = 60.0, reuse_limit: int = 0):
        self.kernel_name, self.config = kernel_name, config
        self.extra_arguments, self.preload = list(extra_arguments), list(preload)
        self.idle, self.start_timeout = float(idle), float(start_timeout)
        self.reuse_limit = int(reuse_limit)
        self._lock = threading.Lock()
        self._spare: Future | None = None   # a fresh kernel, for any run
        # kernels given back and reset, by the user whose runs they served: one user's
        # kernel never serves another's run
        self._used: dict[str, Future] = {}
        self._timers: dict = {}
        self._loop = asyncio.new_event_loop()
        # Kernels are started and stopped on one event loop of the pool's own, in a daemon
        # thread, so that starting the next one never waits for the run in progress.
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"kernelpool-{kernel_name}",
                                        daemon=True)
        self._thread.start()
        self.started = 0  #: kernels started by this pool (for tests and benchmarks)

    # -- starting -------------------------------------------------------------------------
    async def _start(self) -> PoolKernelManager:
        km = PoolKernelManager(kernel_name=self.kernel_name, config=self.config)
        await km.start_kernel(extra_arguments=self.extra_arguments)
        self.started += 1
        kc = km.client()
        try:
            kc.start_channels()
            await kc.wait_for_ready(timeout=self.start_timeout)
            code = ""
            if self.preload:
                # The notebook imports these itself; here it finds them already loaded.
                code = "import " + ", ".join(self.preload)
                if any(m.startswith("matplotlib") for m in self.preload):
                    code += MATPLOTLIB_WARMUP
            if self.reuse_limit > 1:
                code += SNAPSHOT  # after the warm-up: what a reset puts back
            if code:
                # A module that fails to import is not an error here: the notebook's own
                # import then fails, in the run, where the user sees it.
                await kc.execute_interactive(code, store_history=False, timeout=self.start_timeout,
                                             output_hook=lambda msg: None)
        except BaseException:
            km.close_clients()
            await _shutdown(km, now=True)  # the start's own error is the one to report
            raise
        km.close_clients()
        return km

    def _submit_spare(self) -> None:
        self._spare = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self._expire_later(None, self._spare)

    def _expire_later(self, owner: str | None, kept: Future) -> None:
        # owner None: the fresh spare; else the kernel kept for that user's runs
        if self.idle > 0:
            if owner in self._timers:
                self._timers[owner].cancel()
            self._timers[owner] = timer = threading.Timer(self.idle, self._expire, args=(owner, kept))
            timer.daemon = True
            timer.start()

    def _expire(self, owner: str | None, kept: Future) -> None:
        with self._lock:
            if owner is None and self._spare is kept:
                self._spare = None
            elif owner is not None and self._used.get(owner) is kept:
                del self._used[owner]
            else:
                return
        self._stop_when_started(kept)

    def take(self, cwd, *, shared_by: str | None = None) -> PoolKernelManager:
        """A started kernel for one run, working in ``cwd``; the next spare starts meanwhile.

        Parameters
        ----------
        cwd : path-like
            The run's work dir.
        shared_by : str, optional
            The user (archive identity) of a run that may get a kernel an earlier run of the
            same user gave back (:meth:`give_back`, reset by
            :func:`musewise.dpu.kernel_state.restore`) instead of a fresh one: only for
            musewise's own notebooks. None: a fresh kernel.

        Raises
        ------
        Exception
            Whatever starting a kernel raised when no spare could be used (the executor
            counts it as a kernel that never started, and retries).
        """
        if shared_by is not None:
            with self._lock:
                used = self._used.pop(shared_by, None)
            km = self._ready_in(used, cwd)
            if km is not None:
                return km
        with self._lock:
            spare, self._spare = self._spare, None
            self._submit_spare()
        km = self._ready_in(spare, cwd)
        if km is not None:
            return km
        km = self._call(self._start())  # a kernel of its own, started now
        try:
            self._call(self._chdir(km, str(cwd)))
        except BaseException:
            self.retire(km)
            raise
        return km

    def _ready_in(self, kept: Future | None, cwd) -> PoolKernelManager | None:
        """The kept kernel, working in ``cwd``; None if there is none, or it never came up,
        its reset failed or it died since (killed, out of memory)."""
        if kept is None:
            return None
        km = None
        try:
            km = kept.result(timeout=self.start_timeout)
            self._call(self._chdir(km, str(cwd)))
            return km
        except Exception:
            if km is not None:
                self.retire(km)
            return None

    def spare_pid(self, timeout: float | None = None) -> int | None:
        """Process ID of the spare kernel once it has started (None: no spare, or it failed to start)."""
        with self._lock:
            spare = self._spare
        if spare is None:
            return None
        try:
            return int(spare.result(timeout=timeout or self.start_timeout).provisioner.pid)
        except Exception:
            return None

    async def _chdir(self, km, cwd: str) -> None:
        await self._execute(km, f"import os as _os; _os.chdir({cwd!r}); del _os",
                            f"change to the run's work dir {cwd}")

    async def _execute(self, km, code: str, what: str) -> None:
        """Run ``code`` in the kernel; ServiceStartError ("could not <what>") if it raised."""
        kc = km.client()
        try:
            kc.start_channels()
            await kc.wait_for_ready(timeout=self.start_timeout)
            reply = await kc.execute_interactive(code, store_history=False, timeout=self.start_timeout,
                                                 output_hook=lambda msg: None)
            if reply["content"].get("status") != "ok":
                raise ServiceStartError(f"kernel {self.kernel_name!r} could not {what}: "
                                        f"{reply['content'].get('ename', '')}: {reply['content'].get('evalue', '')}")
        finally:
            km.close_clients()

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(_as_coroutine(coro), self._loop).result(
            timeout=self.start_timeout + 30)

    # -- after a run ----------------------------------------------------------------------
    def give_back(self, km: PoolKernelManager, shared_by: str) -> None:
        """After a run taken with ``shared_by``: reset the kernel in the background and keep
        it for that user's next such run; it is stopped instead when it has executed
        ``reuse_limit`` notebooks, or when a kernel is already kept for that user."""
        km.close_clients()
        km.notebooks += 1
        with self._lock:
            keep = shared_by not in self._used and km.notebooks < self.reuse_limit
            if keep:
                self._used[shared_by] = kept = asyncio.run_coroutine_threadsafe(self._reset(km), self._loop)
                self._expire_later(shared_by, kept)
        if not keep:
            self.retire(km)

    async def _reset(self, km: PoolKernelManager) -> PoolKernelManager:
        try:
            await self._execute(km, RESTORE, "be reset for the next notebook")
        except BaseException:
            await _shutdown(km, now=True)
            raise
        return km

    # -- stopping -------------------------------------------------------------------------
    def retire(self, km: PoolKernelManager, *, wait: bool = False) -> None:
        """Stop a kernel after its one run (in the background unless ``wait``)."""
        km.close_clients()
        fut = asyncio.run_coroutine_threadsafe(_shutdown(km), self._loop)
        if wait:
            fut.result(timeout=30)

    def _stop_when_started(self, spare: Future, wait: bool = False) -> None:
        def stop(f):
            if not f.cancelled() and f.exception() is None:
                self.retire(f.result(), wait=wait)
        if wait:
            try:
                spare.result(timeout=self.start_timeout)
            except Exception:
                return
            stop(spare)
        else:
            spare.add_done_callback(stop)

    def close(self) -> None:
        """Stop the spare and the pool's event loop (also done at interpreter exit)."""
        with self._lock:
            kept = [k for k in (self._spare, *self._used.values()) if k is not None]
            self._spare = None
            self._used = {}
            for timer in self._timers.values():
                timer.cancel()
        if self._loop.is_running():
            for k in kept:
                self._stop_when_started(k, wait=True)
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


async def _as_coroutine(value):
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


async def _shutdown(km, now: bool = False) -> None:
    try:
        if await _as_coroutine(km.is_alive()):
            await km.shutdown_kernel(now=now)
        else:
            await km.cleanup_resources()
    except Exception:  # already gone: nothing to stop
        pass


_POOLS: dict = {}
_POOLS_LOCK = threading.Lock()


def kernel_pool(kernel_name: str, preload=(), idle: float = 300.0, reuse_limit: int = 0) -> KernelPool:
    """This process's :class:`KernelPool` for ``kernel_name`` (made on first use, kept)."""
    from ..kernel import papermill_options

    key = (kernel_name, tuple(preload), float(idle), int(reuse_limit))
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            opts = papermill_options(kernel_name)
            pool = KernelPool(kernel_name, config=opts["config"], extra_arguments=opts["extra_arguments"],
                              preload=preload, idle=idle, reuse_limit=reuse_limit)
            _POOLS[key] = pool
        return pool


def close_pools() -> None:
    """Stop every pool's spare kernel (at interpreter exit, or when a test wants none left)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for p in pools:
        try:
            p.close()
        except Exception:  # closing must never raise at exit
            pass


atexit.register(close_pools)

__all__ = ["KernelPool", "MATPLOTLIB_WARMUP", "PoolKernelManager", "close_pools", "kernel_pool"]
