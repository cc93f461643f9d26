"""Streaming FITS writer for raw frames: header blocks plus raw big-endian bytes.

astropy would build each 36 MB extension as an HDU and copy it on writing; here
the header is serialised with astropy and the pixel bytes (already in FITS
on-disk order, see :meth:`musewise.inm.detector.Digitiser.digitise`) go straight
to the file from a background thread while the next IFU is being computed
(numpy releases the GIL, so reading out and writing overlap on two cores).
"""

from __future__ import annotations

import os
import queue
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from ..exceptions import DatastoreError

BLOCK = 2880


def header_bytes(header: fits.Header) -> bytes:
    """A header serialised as FITS 2880-byte blocks (``END`` included)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        return header.tostring().encode("ascii")  # tostring pads to 2880 already


def _padding(nbytes: int) -> bytes:
    return b"\0" * (-nbytes % BLOCK)


def write_mef(path: str | os.PathLike, primary: fits.Header,
              extensions: Iterable[tuple[fits.Header, Callable[[np.ndarray], np.ndarray]]],
              n_buffers: int = 2, shape: tuple[int, int] = (0, 0)) -> Path:
    """Write a multi-extension FITS file, computing and writing extensions in parallel.

    Parameters
    ----------
    path : path
        Output file (written to ``path + '.part'`` then renamed, so a crash never
        leaves a truncated frame behind).
    primary : astropy.io.fits.Header
        Primary header (no data).
    extensions : iterable of (header, fill)
        Per extension its complete header and a function that fills a uint16 buffer
        of ``shape`` with the on-disk (big-endian) bytes and returns it.
    n_buffers : int
        Number of pixel buffers in flight (2: one computed while one is written).
    shape : (ny, nx)
        Shape of every extension's pixel array.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    DatastoreError
        If the file cannot be written.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    free: queue.Queue = queue.Queue()
    for _ in range(n_buffers):
        free.put(np.empty(shape, np.uint16))
    todo: queue.Queue = queue.Queue(maxsize=n_buffers)
    error: list[BaseException] = []

    def writer(fh):
        try:
            while True:
                item = todo.get()
                if item is None:
                    return
                hbytes, buf = item
                fh.write(hbytes)
                fh.write(memoryview(buf).cast("B"))
                fh.write(_padding(buf.nbytes))
                free.put(buf)
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)
            free.put(None)

    try:
        with open(tmp, "wb", buffering=0) as fh:
            fh.write(header_bytes(primary))
            th = threading.Thread(target=writer, args=(fh,), daemon=True)
            th.start()
            try:
                for hdr, fill in extensions:
                    buf = free.get()
                    if buf is None or error:
                        break
                    todo.put((header_bytes(hdr), fill(buf)))
            finally:
                todo.put(None)
                th.join()
            if error:
                raise error[0]
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DatastoreError(f"cannot write raw frame {path}: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
