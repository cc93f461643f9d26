"""Write-once, content-checksummed file store (the bytes; the registry holds the metadata).

Files are written under a temporary name, checksummed while copied, then moved
to their final location (a template over the data ID, see
:func:`musewise.archive.templates.path_for`). A file once stored is never
overwritten: a second write to the same location must carry identical bytes.
Any fsspec filesystem works (a local folder by default; a shared filesystem or
an object store such as S3 for multi-site installations). Files of an object
store are read by the pipeline from local copies kept in a cache folder, each
checked against its recorded checksum when it is fetched; viewers read them in
byte ranges (:meth:`Datastore.remote_file`) without fetching them whole.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import uuid
from datetime import datetime, timezone
from pathlib import Path

import fsspec

from ..exceptions import DatastoreError, IntegrityError

#: Copy/hash block size (bytes): large enough to run at disk speed.
CHUNK = 16 * 1024 * 1024
TMP_MARK = ".tmp-"


def copy_hashed(src, dst=None, chunk: int = CHUNK) -> tuple[str, int]:
    """Read an open binary file to its end, writing it to ``dst`` if given, and return
    (sha256 hex digest, size in bytes) of what was read: one pass over the bytes."""
    h = hashlib.sha256()
    size = 0
    buf = bytearray(chunk)
    view = memoryview(buf)
    while True:
        n = src.readinto(buf)
        if not n:
            break
        h.update(view[:n])
        if dst is not None:
            dst.write(view[:n])
        size += n
    return h.hexdigest(), size


def sha256_file(path, chunk: int = CHUNK) -> tuple[str, int]:
    """Return (sha256 hex digest, size in bytes) of a local file."""
    with open(path, "rb", buffering=0) as f:
        return copy_hashed(f, chunk=chunk)


def _hint(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return (" (this account may only read the datastore: a site's members write through its "
                "writer service, MusewiseConfig.datastore_service)")
    return ""


class Datastore:
    """A write-once file store rooted at an fsspec URL.

    Parameters
    ----------
    url : str
        Local folder or fsspec URL (``file:///data/musewise``, ``s3://bucket/prefix``).
    options : dict, optional
        fsspec storage options of the filesystem (for S3 e.g. ``{"endpoint_url":
        "https://s3.example.org"}``; credentials come from the usual AWS chain).
    cache : path-like, optional
        Folder of the local copies of an object store's files (private to the
        process's user). Required to read files of a store that is not local.
    service : str, optional
        Unix socket of the datastore's writer service
        (:mod:`musewise.archive.storeservice`): a member's process, which may only read
        the datastore, writes through it.
    """

    def __init__(self, url: str, *, options: dict | None = None, cache=None, service: str | None = None):
        self.url = str(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **(options or {}))
        self.is_local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )
        self.cache = Path(cache) if cache is not None else None
        #: The writer service's client, or None when this process writes the store itself.
        self.writer = None
        if service:
            from .storeservice import StoreClient

            self.writer = StoreClient(service)
        else:
            self.fs.makedirs(self.root, exist_ok=True)

    def __repr__(self):
        return f"Datastore({self.url!r})"

    def location(self, relpath: str) -> str:
        """Where ``relpath`` is in the store (a path, or a bucket's key); refuses a path outside it.

        Raises
        ------
        DatastoreError
            ``relpath`` is absolute or climbs out of the store (``..``).
        """
        if relpath.startswith("/") or ".." in relpath.split("/"):
            raise DatastoreError(f"datastore paths must be relative and inside the store: {relpath!r}")
        return posixpath.join(self.root, relpath)

    def exists(self, relpath: str) -> bool:
        # Another process may have written it since this one listed the folder (object stores
        # cache listings), and write-once decisions rest on the answer.
        self.fs.invalidate_cache()
        return self.fs.exists(self.location(relpath))

    def put(self, source, relpath: str, *, move: bool = False) -> "PendingFile":
        """Copy (or move) a local file into the store under a temporary name, checksumming it.

        The file becomes visible at ``relpath`` only when :meth:`PendingFile.commit`
        is called (the archive does so inside its transaction).

        Parameters
        ----------
        source : path-like or binary file
            Local file to copy (or a file open for reading: the writer service reads what
            its caller opened).
        relpath : str
            Final location relative to the store root.
        move : bool
            Move the file instead of copying it when the store is a local folder on the
            same filesystem (no second copy on disk); it is put back where it was if the
            transaction is undone. Elsewhere (and through the writer service) the file is copied.

        Returns
        -------
        PendingFile
            With ``sha256`` and ``size`` (bytes) of what was stored.
        """
        final = self.location(relpath)
        if self.writer is not None:
            got = self.writer.put(source, relpath)
            pending = PendingFile(self, relpath, got["token"], got["sha256"], int(got["size"]), via_writer=True)
            pending.known_file_id = got.get("file_id")
            return pending
        tmp = f"{final}{TMP_MARK}{uuid.uuid4().hex}"
        try:
            self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        except OSError as exc:
            raise DatastoreError(f"cannot write into the datastore at {relpath}: {exc}{_hint(exc)}") from exc
        if hasattr(source, "readinto"):
            try:
                with self._create(tmp) as dst:
                    sha, size = copy_hashed(source, dst)
            except OSError as exc:
                self._discard(tmp)
                raise DatastoreError(f"cannot copy into the datastore at {relpath}: {exc}{_hint(exc)}") from exc
            return PendingFile(self, relpath, tmp, sha, size)
        if move and self.is_local:
            sha, size = sha256_file(source)
            try:
                os.rename(source, tmp)
            except OSError:
                pass  # another filesystem: copy below
            else:
                # Its age is that of its arrival here: fsck --repair removes only old leftovers.
                st = os.stat(tmp)
                os.utime(tmp)
                os.chmod(tmp, 0o600)
                pending = PendingFile(self, relpath, tmp, sha, size, moved_from=str(source))
                pending.times = (st.st_atime, st.st_mtime)
                pending.mode = st.st_mode
                return pending
        try:
            with open(source, "rb", buffering=0) as src, self._create(tmp) as dst:
                sha, size = copy_hashed(src, dst)
        except OSError as exc:
            self._discard(tmp)
            raise DatastoreError(f"cannot copy {source} into the datastore: {exc}{_hint(exc)}") from exc
        return PendingFile(self, relpath, tmp, sha, size)

    def _create(self, abspath: str):
        # A local copy is readable by the service alone until its transaction has committed and
        # the file got the mode its datasets' privileges give it (musewise.archive.filemodes).
        if self.is_local:
            return open(os.open(abspath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
        return self.fs.open(abspath, "wb")

    def _discard(self, abspath: str) -> None:
        try:
            if self.fs.exists(abspath):
                self.fs.rm(abspath)
        except OSError:
            pass

    def remove(self, relpath: str) -> None:
        """Delete a stored file (used only to undo a failed transaction)."""
        self._discard(self.location(relpath))

    def age(self, relpath: str) -> float:
        """Seconds since a file (committed or temporary) was last changed."""
        modified = self.fs.modified(self.location(relpath))
        if modified.tzinfo is None:
            modified = modified.replace(tzinfo=timezone.utc)
        return (datetime.now(timezone.utc) - modified).total_seconds()

    def local_path(self, relpath: str, sha256: str | None = None) -> str:
        """A local filesystem path with the file's bytes.

        A local store gives the stored file itself. An object store's file is copied
        once into :attr:`cache` (stored files never change, so a copy is never stale),
        checksummed on the way when ``sha256`` is given: a copy that differs is refused
        and not kept. Concurrent readers each write their own temporary copy; the
        first to finish is kept.

        Raises
        ------
        DatastoreError
            The file is not in the store, or a remote store has no cache folder.
        IntegrityError
            The fetched bytes differ from ``sha256``.
        """
        if self.is_local:
            p = self.location(relpath)
            if not os.path.exists(p):
                raise DatastoreError(f"file missing from the datastore: {relpath}")
            return p
        if self.cache is None:
            raise DatastoreError(f"{self.url} is not a local folder: reading its files needs a "
                                 "cache folder (MusewiseConfig.datastore_cache)")
        self.location(relpath)  # refuses paths outside the store
        local = self.cache / relpath
        if local.exists():
            return str(local)
        local.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.fs.invalidate_cache()  # an object's cached details (its ETag) may be out of date
        tmp = local.with_name(f"{local.name}{TMP_MARK}{uuid.uuid4().hex}")
        try:
            with self.open(relpath) as src, open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as dst:
                got, _ = copy_hashed(src, dst)
            if sha256 is not None and got != sha256:
                raise IntegrityError(f"{relpath}: checksum {got[:12]}... of the copy fetched from "
                                     f"{self.url} differs from recorded {sha256[:12]}...")
            os.replace(tmp, local)
        except FileNotFoundError as exc:
            raise DatastoreError(f"file missing from the datastore: {relpath}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return str(local)

    def remote_file(self, relpath: str):
        """The stored file as an :class:`fsspec.core.OpenFile`, to be read in byte ranges.

        A viewer reads the planes and spectra it shows from it instead of a whole
        local copy. Nothing is fetched until it is opened.
        """
        return fsspec.core.OpenFile(self.fs, self.location(relpath), mode="rb")

    def open(self, relpath: str, mode: str = "rb"):
        """Open a stored file for reading (write modes are refused: the store is write-once)."""
        if "r" not in mode or any(c in mode for c in "wa+"):
            raise DatastoreError("the datastore is write-once: files can only be opened for reading")
        return self.fs.open(self.location(relpath), mode)

    def verify(self, relpath: str, sha256: str) -> None:
        """Re-read a stored file and check its checksum.

        Raises
        ------
        IntegrityError
            If the bytes on disk differ from the recorded checksum.
        """
        if self.is_local:
            got, _ = sha256_file(self.location(relpath))
        else:
            self.fs.invalidate_cache()
            with self.open(relpath) as f:
                got, _ = copy_hashed(f)
        if got != sha256:
            raise IntegrityError(
                f"{relpath}: checksum {got[:12]}... differs from recorded {sha256[:12]}..."
            )

    def temporaries(self) -> list[str]:
        """Leftover temporary files of interrupted writes (relative paths)."""
        self.fs.invalidate_cache()
        out = []
        for p in self.fs.find(self.root):
            if TMP_MARK in posixpath.basename(p):
                out.append(posixpath.relpath(p, self.root))
        return out

    def walk(self) -> list[str]:
        """Every committed file in the store (relative paths)."""
        self.fs.invalidate_cache()
        return [
            posixpath.relpath(p, self.root)
            for p in self.fs.find(self.root)
            if TMP_MARK not in posixpath.basename(p)
        ]


class PendingFile:
    """A file copied into the store but not yet visible under its final name.

    ``via_writer``: it was handed to the writer service, ``tmp`` is the service's token
    for it, and committing, discarding and undoing are asked of the service.
    """

    def __init__(self, store: Datastore, relpath: str, tmp: str, sha256: str, size: int,
                 moved_from: str | None = None, via_writer: bool = False):
        self.store, self.relpath, self.tmp = store, relpath, tmp
        self.via_writer = via_writer
        self.sha256, self.size = sha256, size
        #: Where a moved file came from (it goes back there if the write is undone).
        self.moved_from = moved_from
        self.committed = False
        self.adopted = False
        #: The stored file with these bytes, as the writer service found it by checksum
        #: (the caller then holds a file claim on it), else None.
        self.known_file_id: int | None = None
        #: Permissions and (atime, mtime) of a moved file before it arrived (restored if the move is undone).
        self.mode: int | None = None
        self.times: tuple[float, float] | None = None

    def commit(self) -> None:
        """Move the file to its final name.

        If a file is already there (left by a process killed after this step but
        before its database commit) with identical bytes it is adopted; different
        bytes are refused, since stored files are never overwritten.
        """
        if self.via_writer:
            self.adopted = self.store.writer.commit(self.tmp, self.relpath)
            self.committed = True
            return
        final = self.store.location(self.relpath)
        if self.store.exists(self.relpath):
            try:
                self.store.verify(self.relpath, self.sha256)
            except IntegrityError as exc:
                self.discard()
                raise DatastoreError(
                    f"refusing to overwrite {self.relpath} with different bytes (write-once store)"
                ) from exc
            self.discard()
            self.adopted = True
        else:
            self.store.fs.mv(self.tmp, final)
            if self.store.is_local:
                # Write-once: no write permission, so a hard link to it (release export --link)
                # cannot be edited into a changed archive file.
                mode = os.stat(final).st_mode
                if self.mode is None:
                    self.mode = mode
                os.chmod(final, mode & ~0o222)
        self.committed = True

    def discard(self) -> None:
        """Remove the temporary copy (a moved file goes back where it came from)."""
        if self.via_writer:
            self.store.writer.discard(self.tmp)
            return
        if self.moved_from is not None and os.path.exists(self.tmp):
            os.rename(self.tmp, self.moved_from)
            self._restore()
            return
        self.store._discard(self.tmp)

    def _restore(self) -> None:
        if self.mode is not None:
            os.chmod(self.moved_from, self.mode)
        if self.times is not None:
            os.utime(self.moved_from, self.times)

    def undo(self) -> None:
        """Remove whatever this write left behind (temporary or final file); a moved file goes back."""
        if self.via_writer:
            if self.committed and not self.adopted:
                self.store.writer.undo(self.tmp)
            elif not self.committed:
                self.store.writer.discard(self.tmp)
            return
        if self.committed and not self.adopted:
            if self.moved_from is not None:
                os.rename(self.store.location(self.relpath), self.moved_from)
                self._restore()
            else:
                self.store.remove(self.relpath)
        else:
            self.discard()

