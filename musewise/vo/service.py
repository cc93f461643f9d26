"""The ``vo`` hub service: a PostgreSQL server, two DaCHS data centres and the gateway, as one process tree.

``musewise hub`` starts it (:func:`musewise.hubcli.configure`) as the managed service
``vo``; the hub gives it its address, prefix and API token in the environment
(``JUPYTERHUB_SERVICE_URL``, ``JUPYTERHUB_SERVICE_PREFIX``, ``JUPYTERHUB_API_TOKEN``),
and the archive settings as for every service. It:

1. starts its own PostgreSQL server under ``<state>/postgres`` (the data centres'
   databases; none of the archive's data is in it);
2. prepares and starts the ``public`` and ``consortium`` data centres, each under
   ``<state>/<audience>``, on free ports of 127.0.0.1;
3. publishes the releases each audience may see (:func:`musewise.vo.publish.publish`),
   and again whenever that changes (checked every ``--refresh`` seconds, when a data
   centre whose server died is also started again);
4. serves the gateway (:mod:`musewise.vo.gateway`) from the first second (503 with the
   reason while the data centres start, or if they could not: the hub waits only 30 s for
   a service, and exits when one fails) and, when stopped (SIGINT or SIGTERM from the hub,
   or the hub's death, seen within 2 s), stops the data centres and its PostgreSQL server.

Run by hand: ``python -m musewise.vo --state DIR --public-url URL --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

from ..exceptions import PermissionDeniedError, ServiceStartError
from .dachs import DachsServer, database_name, role_names
from .publish import AUDIENCES, audience_view, publish

log = logging.getLogger("musewise.vo")


class VOService:
    """The data centres of every audience over one PostgreSQL server.

    Parameters
    ----------
    archive : Archive
        As an administrator.
    state_dir : path-like
        Where the PostgreSQL server and the data centres keep their folders.
    public_url : str
        The gateway's URL as clients reach it (``http://host:8000/services/vo``).
    authority : str
        IVOA authority of the identifiers.
    """

    def __init__(self, archive, state_dir, public_url: str, authority: str = "musewise.consortium"):
        from ..archive.pgserver import PostgresServer, free_port

        self.archive = archive
        self.state = Path(state_dir)
        self.public_url = public_url.rstrip("/")
        self.postgres = PostgresServer(self.state / "postgres", tcp=True, tcp_roles={
            database_name(a): tuple(role_names(a).values()) for a in AUDIENCES})
        self.servers = {a: DachsServer(self.state / a, name=a, postgres=self.postgres, port=free_port(),
                                       public_url=self.public_url, authority=authority,
                                       title=f"MUSE consortium releases ({a})")
                        for a in AUDIENCES}
        self.published: dict[str, tuple] = {}
        self._cancelled = threading.Event()

    def start(self) -> "VOService":
        """Start PostgreSQL and every data centre, publishing first; returns self.

        Raises
        ------
        ServiceStartError
            A part did not start, or :meth:`cancel` was called meanwhile; what had
            started is stopped again.
        """
        self.state.mkdir(parents=True, exist_ok=True)
        try:
            self._go_on()
            if self.postgres.running():
                # Left by a VO service that was killed: its TCP password lived only in that process.
                log.warning("the PostgreSQL server of a VO service that was killed is still running: restarting it")
                self.postgres.stop()
            self.postgres.start()
            for audience, server in self.servers.items():
                for step in (server.prepare, lambda: self.refresh(audience), server.start):
                    self._go_on()
                    step()
                log.info("VO %s data centre on %s", audience, server.url)
        except BaseException:
            self.stop()
            raise
        return self

    def cancel(self) -> None:
        """Make a :meth:`start` under way in another thread give up at its next step."""
        self._cancelled.set()

    def _go_on(self) -> None:
        if self._cancelled.is_set():
            raise ServiceStartError("the VO service was stopped while starting")

    def refresh(self, audience: str | None = None) -> list[str]:
        """Publish again for the audiences whose visible releases changed; returns those audiences."""
        changed = []
        for a in ([audience] if audience else list(self.servers)):
            view = audience_view(self.archive, a)
            if self.published.get(a) != view.state:
                self.published[a] = publish(self.archive, self.servers[a], a, view).state
                changed.append(a)
        return changed

    def revive(self) -> list[str]:
        """Start again every data centre whose server died; returns their audiences."""
        dead = [a for a, server in self.servers.items() if server.proc is not None and not server.running()]
        for a in dead:
            log.warning("VO %s data centre exited (%s): starting it again", a, self.servers[a].proc.returncode)
            self.servers[a].start()
        return dead

    def is_member(self, name: str) -> bool:
        """May hub user ``name`` see consortium data (a registered member or administrator)?"""
        try:
            user = self.archive.as_user(name).user
        except PermissionDeniedError:
            return False
        return bool(user.is_member or user.is_admin)

    def stop(self) -> None:
        """Stop the data centres and the PostgreSQL server."""
        for server in self.servers.values():
            server.stop()
        self.postgres.stop()


def main(argv=None) -> None:
    """Run the ``vo`` service (as the hub starts it, or by hand)."""
    from jupyterhub.services.auth import HubAuth
    from tornado.httpserver import HTTPServer
    from tornado.ioloop import IOLoop, PeriodicCallback
    from tornado.netutil import bind_sockets

    from ..archive import Archive
    from .gateway import make_app

    p = argparse.ArgumentParser(prog="python -m musewise.vo", description=__doc__.splitlines()[0])
    p.add_argument("--state", required=True, help="folder of the PostgreSQL server and the data centres")
    p.add_argument("--public-url", required=True, help="the service's URL as clients reach it")
    p.add_argument("--refresh", type=float, default=30.0, help="seconds between checks for new releases")
    p.add_argument("--authority", default="musewise.consortium", help="IVOA authority of identifiers")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname).1s %(asctime)s vo] %(message)s", stream=sys.stderr)
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10102"))
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/vo/")
    # The gateway answers at once (503 while the data centres start, which takes minutes with
    # large releases): the hub waits only 30 s for a service to answer and exits if it does not.
    sockets = bind_sockets(url.port or 80, url.hostname or "127.0.0.1")
    hub_pid = os.getppid()
    archive = Archive.open()
    service = VOService(archive, args.state, args.public_url, authority=args.authority)
    targets: dict[str, str] = {}
    began = time.monotonic()
    failure: list[str] = []

    def unavailable() -> str:
        if failure:
            return f"the VO service could not start: {failure[0]} (see the hub's log)"
        return f"the VO data centres are starting ({time.monotonic() - began:.0f} s so far); try again shortly"

    app = make_app(targets, prefix=prefix, hub_auth=HubAuth(cache_max_age=60), is_member=service.is_member,
                   unavailable=unavailable)
    HTTPServer(app, xheaders=True).add_sockets(sockets)
    loop = IOLoop.current()
    work = ThreadPoolExecutor(1, thread_name_prefix="vo")  # start, revive and publish one at a time

    def stop(*_):
        loop.add_callback_from_signal(loop.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # the hub's spawner sends SIGINT first
    busy = asyncio.Lock()

    async def refresh():
        if busy.locked():
            return
        async with busy:
            try:
                await loop.run_in_executor(work, service.revive)
                await loop.run_in_executor(work, service.refresh)
            except Exception:  # a failed publication must not stop the service: the old rows stay served
                log.exception("VO publication failed")

    async def start():
        try:
            await loop.run_in_executor(work, service.start)
        except Exception as exc:  # the gateway stays, saying why; the hub and its other services go on
            failure.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            log.exception("the VO service could not start")
            return
        targets.update({a: s.url for a, s in service.servers.items()})
        log.info("VO data centres ready in %.0f s", time.monotonic() - began)
        PeriodicCallback(refresh, args.refresh * 1000).start()

    def orphaned():
        # A hub killed outright sends no signal: without this the data centres and their database
        # would outlive it and hold its ports.
        if os.getppid() != hub_pid:
            log.warning("the hub (pid %d) exited: stopping the VO service", hub_pid)
            loop.stop()

    PeriodicCallback(orphaned, 2000).start()
    loop.add_callback(start)
    log.info("VO gateway at %s%s (public URL %s)", url.geturl().rstrip("/"), prefix, args.public_url)
    try:
        loop.start()
    finally:
        service.cancel()  # a start under way gives up at its next step
        service.stop()
        work.shutdown(wait=False, cancel_futures=True)
        archive.close()


if __name__ == "__main__":
    main()
