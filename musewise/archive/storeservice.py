"""The datastore's writer: stores files for members' processes, which may only read the datastore.

At a site the datastore belongs to the archive service (root) and members' kernels run
under their own unix accounts (``hub/README.md``): they read the files their privileges
allow and can write none, so that no one can change or plant a stored file. Their
reductions and ingests still archive files, through this service:

* it listens on a unix socket; who calls is what the kernel says the connecting
  process is (``SO_PEERCRED``), never a name in the request;
* a file is handed over as an open file descriptor (``SCM_RIGHTS``), not a path: the
  service reads what the caller itself could open, nothing more (a path would let a
  member copy another member's private file, or ``/etc/shadow``, into the store);
* it writes under a temporary name, checksumming while it copies
  (:meth:`Datastore.put`), and moves the file to its final name when the caller's
  transaction is about to commit (:meth:`PendingFile.commit`): the same write-once rule
  (identical bytes adopted, different ones refused) as a direct write. The final name
  must carry the checksum of the bytes (``templates.path_for``), so a member cannot take
  a name meant for other bytes;
* bytes archived already are found by their checksum, and the caller's process, having
  handed them over, is recorded as holding them (a :class:`~.schema.FileClaim`): its
  dataset may then share the stored file even where the archive's other datasets over
  it are hidden from the caller (identical products of two members' runs). Naming a
  file, or its checksum, is never enough;
* a file only its caller committed may be removed again, and only while no row of the
  registry names it (the caller's transaction failed); a file of the archive is never
  removed;
* after the caller's transaction committed, the new files get their owner, group and
  mode from the registry's rows (:func:`musewise.archive.filemodes.protect`), read by the
  service itself: the caller names files, the registry says who may read them.

Requests are one JSON object per connection; the answer is a JSON object with ``ok``
or ``error`` (and the error's kind). :class:`StoreClient` is the caller's side, used by
:class:`~musewise.archive.datastore.Datastore` when ``MusewiseConfig.datastore_service``
names the socket. Run it with ``python -m musewise.archive.storeservice --socket PATH``
(``musewise hub`` runs it as a managed service).
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import stat
import struct
import sys
import threading
import time
import uuid
from pathlib import Path

from ..exceptions import DatastoreError, IntegrityError, MusewiseError, PermissionDeniedError

#: Largest request (bytes of JSON): a list of file IDs to protect after a big ingest fits.
MAX_REQUEST = 4 * 1024 * 1024
#: How long a committed file may be taken back by its caller (s): a transaction's rollback
#: follows its file moves within seconds; an entry older than this is forgotten.
UNDO_WINDOW = 3600.0
_ERRORS = {"DatastoreError": DatastoreError, "IntegrityError": IntegrityError,
           "PermissionDeniedError": PermissionDeniedError}


# ------------------------------------------------------------------------------ caller's side
class StoreClient:
    """The caller's side of the writer service (see the module docstring).

    Parameters
    ----------
    socket_path : str
        The service's unix socket.
    timeout : float
        Seconds to wait for an answer (a copy of a 3 GB cube takes a few seconds).
    """

    def __init__(self, socket_path: str, timeout: float = 600.0):
        self.socket_path = str(socket_path)
        self.timeout = float(timeout)

    def __repr__(self):
        return f"StoreClient({self.socket_path!r})"

    def put(self, source, relpath: str) -> dict:
        """Hand the local file ``source`` to the service, stored under a temporary name for ``relpath``.

        Returns ``{"token", "sha256", "size"}`` (bytes): the token names the pending
        file in :meth:`commit`, :meth:`discard` and :meth:`undo`.
        """
        try:
            fd = os.open(source, os.O_RDONLY)
        except OSError as exc:
            raise DatastoreError(f"cannot copy {source} into the datastore: {exc}") from exc
        try:
            return self._call({"op": "put", "relpath": relpath}, fds=[fd])
        finally:
            os.close(fd)

    def commit(self, token: str, relpath: str) -> bool:
        """Move a pending file to its final name; True if identical bytes were already there."""
        return bool(self._call({"op": "commit", "token": token, "relpath": relpath})["adopted"])

    def discard(self, token: str) -> None:
        """Remove a pending file that was not committed."""
        self._call({"op": "discard", "token": token})

    def undo(self, token: str) -> None:
        """Remove a file this caller committed, its transaction having failed."""
        self._call({"op": "undo", "token": token})

    def protect(self, file_ids) -> int:
        """Have the service set owner, group and mode of stored files from the registry; returns how many."""
        return int(self._call({"op": "protect", "file_ids": [int(i) for i in file_ids]})["protected"])

    def _call(self, request: dict, fds=()) -> dict:
        data = json.dumps(request).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.socket_path)
                socket.send_fds(sock, [data], list(fds))
                sock.shutdown(socket.SHUT_WR)
                answer = _read_all(sock, MAX_REQUEST)
        except OSError as exc:
            raise DatastoreError(f"the datastore's writer service at {self.socket_path} cannot be reached: "
                                 f"{exc}") from exc
        try:
            reply = json.loads(answer)
        except ValueError as exc:
            raise DatastoreError(f"the datastore's writer service gave no answer to {request['op']!r}") from exc
        if "error" in reply:
            raise _ERRORS.get(reply.get("kind"), DatastoreError)(reply["error"])
        return reply


def _read_all(sock, limit: int, first: bytes = b"") -> bytes:
    chunks, n = [first], len(first)
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        n += len(chunk)
        if n > limit:
            raise DatastoreError(f"request larger than {limit} bytes")
        chunks.append(chunk)


# ------------------------------------------------------------------------------ service's side
class StoreService:
    """The service: the archive's datastore, written on behalf of callers identified by the kernel.

    Parameters
    ----------
    archive : Archive
        The service's own archive (its schema-owner connection: it sees every row, which
        :meth:`undo` and :meth:`protect` need). Its datastore must be a local folder.
    socket_path : str
        Where to listen. Its folder must be traversable by the callers.
    group : str, optional
        Unix group whose members may connect (socket mode 0660); default anyone (0666),
        since every request is judged by the caller's uid anyway.
    """

    def __init__(self, archive, socket_path: str, group: str | None = None):
        if not archive.datastore.is_local:
            raise DatastoreError(f"{archive.datastore.url} is not a local folder: members of an object "
                                 "store write with their own credentials, not through this service")
        self.archive, self.store = archive, archive.datastore
        self.socket_path = str(socket_path)
        self.group = group
        self._pending: dict[str, tuple[int, object]] = {}
        self._committed: dict[str, tuple[int, object, float]] = {}
        self._lock = threading.Lock()
        self._server: socketserver.UnixStreamServer | None = None

    # --- the operations (uid: the caller's, from the kernel)
    def put(self, uid: int, relpath: str, fd: int) -> dict:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DatastoreError("only a regular file can be stored")
        self.store.location(relpath)  # refuses paths outside the store before anything is written
        with os.fdopen(os.dup(fd), "rb", buffering=0) as src:
            pending = self.store.put(src, relpath)
        token = uuid.uuid4().hex
        with self._lock:
            self._pending[token] = (uid, pending)
        return {"token": token, "sha256": pending.sha256, "size": pending.size,
                "file_id": self._claim(uid, pending.sha256)}

    def _claim(self, uid: int, sha256: str) -> int | None:
        # The caller's process handed over these bytes: it holds them. If they are archived
        # already (perhaps under datasets the caller may not see), that is recorded as the
        # caller's claim, so its own dataset may share the stored file (rls: datasets' add).
        import pwd

        from sqlalchemy import select
        from sqlalchemy.exc import IntegrityError as SAIntegrityError

        from .schema import FileClaim, StoredFile, User

        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            return None
        fid = None
        try:
            with self.archive.transaction() as tx:
                s = tx.session
                fid = s.scalar(select(StoredFile.id).where(StoredFile.sha256 == sha256))
                user_id = s.scalar(select(User.id).where(User.name == name))
                if fid is not None and user_id is not None and s.get(FileClaim, (user_id, fid)) is None:
                    s.add(FileClaim(user_id=user_id, file_id=fid))
        except SAIntegrityError:
            pass  # the same caller's other request claimed it at the same instant
        return fid

    def commit(self, uid: int, token: str, relpath: str) -> dict:
        pending = self._take(self._pending, uid, token, "pending")
        base = relpath.rsplit("/", 1)[-1]
        if not base.startswith(pending.sha256[:12] + "_"):
            pending.discard()
            raise PermissionDeniedError(f"{relpath!r}: a stored file's name begins with the checksum of its "
                                        "bytes (musewise.archive.templates.path_for)")
        self.store.location(relpath)
        pending.relpath = relpath
        pending.commit()
        with self._lock:
            now = time.monotonic()
            for k in [k for k, v in self._committed.items() if now - v[2] > UNDO_WINDOW]:
                del self._committed[k]
            self._committed[token] = (uid, pending, now)
        return {"adopted": pending.adopted}

    def discard(self, uid: int, token: str) -> dict:
        self._take(self._pending, uid, token, "pending").discard()
        return {}

    def undo(self, uid: int, token: str) -> dict:
        from sqlalchemy import func, select

        from .schema import StoredFile

        with self._lock:
            entry = self._committed.get(token)
        if entry is None or entry[0] != uid:
            raise PermissionDeniedError("no file committed by you under this token (or it is too old to undo)")
        pending = entry[1]
        with self.archive.session() as s:
            named = s.scalar(select(func.count(StoredFile.id)).where(StoredFile.path == pending.relpath))
        if named:
            raise PermissionDeniedError(f"{pending.relpath} is the archive's (a row names it): it is never removed")
        with self._lock:
            self._committed.pop(token, None)
        pending.undo()
        return {}

    def protect(self, uid: int, file_ids) -> dict:
        from . import filemodes

        with self.archive.session() as s:
            return {"protected": filemodes.protect(self.archive, s, file_ids=[int(i) for i in file_ids])}

    def _take(self, table: dict, uid: int, token: str, what: str):
        with self._lock:
            entry = table.get(str(token))
            if entry is None or entry[0] != uid:
                raise PermissionDeniedError(f"no {what} file of yours under this token")
            del table[str(token)]
        return entry[1]

    # --- serving
    def handle(self, uid: int, request: dict, fds: list[int]) -> dict:
        """Answer one request of the caller ``uid`` (see the module docstring)."""
        op = request.get("op")
        try:
            if op == "put":
                if len(fds) != 1:
                    raise DatastoreError("put needs exactly one open file")
                return self.put(uid, str(request["relpath"]), fds[0])
            if op == "commit":
                return self.commit(uid, str(request["token"]), str(request["relpath"]))
            if op == "discard":
                return self.discard(uid, str(request["token"]))
            if op == "undo":
                return self.undo(uid, str(request["token"]))
            if op == "protect":
                return self.protect(uid, request.get("file_ids") or [])
            raise DatastoreError(f"unknown request {op!r}")
        except MusewiseError as exc:
            return {"error": str(exc), "kind": _kind(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            return {"error": f"malformed {op!r} request: {exc}", "kind": "DatastoreError"}
        except OSError as exc:
            return {"error": f"the datastore could not write: {exc}", "kind": "DatastoreError"}

    def serve_forever(self, ready=None) -> None:
        """Listen on :attr:`socket_path` until :meth:`shutdown` (``ready``: an Event set once listening)."""
        service = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                sock = self.request
                creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                _pid, uid, _gid = struct.unpack("3i", creds)
                fds: list[int] = []
                try:
                    msg, fds, _flags, _addr = socket.recv_fds(sock, MAX_REQUEST, 4)
                    body = _read_all(sock, MAX_REQUEST, msg)
                    try:
                        request = json.loads(body)
                    except ValueError:
                        reply = {"error": "a request is one JSON object", "kind": "DatastoreError"}
                    else:
                        reply = service.handle(uid, request if isinstance(request, dict) else {}, fds)
                    sock.sendall(json.dumps(reply).encode())
                except (OSError, MusewiseError):
                    pass  # the caller went away: what it had pending stays until fsck --repair
                finally:
                    for fd in fds:
                        os.close(fd)

        path = Path(self.socket_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        server.daemon_threads = True
        self._server = server
        if self.group is not None:
            import grp

            os.chown(path, 0, grp.getgrnam(self.group).gr_gid)
            os.chmod(path, 0o660)
        else:
            os.chmod(path, 0o666)
        if ready is not None:
            ready.set()
        try:
            server.serve_forever(poll_interval=0.2)
        finally:
            server.server_close()
            path.unlink(missing_ok=True)

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` (from another thread)."""
        if self._server is not None:
            self._server.shutdown()


def _kind(exc: BaseException) -> str:
    for name, cls in _ERRORS.items():
        if isinstance(exc, cls):
            return name
    return "DatastoreError"


def main(argv=None) -> int:
    """``python -m musewise.archive.storeservice --socket PATH [--group G] [--root ... --db-url ...]``."""
    import argparse
    import signal

    from ..config import MusewiseConfig
    from .core import Archive

    p = argparse.ArgumentParser(prog="python -m musewise.archive.storeservice", description=__doc__.split("\n")[0])
    p.add_argument("--socket", required=True, help="path of the unix socket to listen on")
    p.add_argument("--group", help="unix group allowed to connect (default: any account)")
    p.add_argument("--root", help="data root (default: the configuration's)")
    p.add_argument("--db-url", help="archive database (default: the configuration's)")
    args = p.parse_args(argv)
    overrides = {k: v for k, v in (("root", args.root), ("db_url", args.db_url)) if v}
    config = MusewiseConfig.load(**overrides)
    # The service writes itself: a site config naming this very service must not send it to itself.
    config.datastore_service = ""
    arch = Archive(config)
    service = StoreService(arch, args.socket, group=args.group)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=service.shutdown, daemon=True).start())
    print(f"musewise datastore writer: {arch.datastore.url} at {args.socket}", file=sys.stderr, flush=True)
    try:
        service.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        arch.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["StoreClient", "StoreService", "main"]
