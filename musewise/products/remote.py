"""Image data of a FITS file in an object store, read in byte ranges.

A cube of ~3 GB in S3 is not copied whole to show one plane or one spectrum:
:class:`RangedArray` stands where a memory map stands for a local file and
fetches, for each index, only the byte ranges it covers (one range per plane
and run of rows), all in one concurrent request batch of the filesystem.
"""

from __future__ import annotations

import threading

import numpy as np

from ..exceptions import InvalidArgumentError, InvalidFrameError, OutsideCubeError, UnsupportedTypeError

__all__ = ["RangedArray"]

#: Ranges closer than this (bytes) are fetched as one: a request costs more than a few KB.
#: Kept below a plane of a cube (~360 KB in WFM) so that a spectrum stays one short range
#: per plane, fetched concurrently, rather than one range over the whole extension.
MERGE_GAP = 16 * 1024


class RangedArray:
    """A read-only 3-D array over a FITS image extension of a remote file.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        Filesystem of the file.
    path : str
        The file's path in ``fs``.
    offset : int
        Byte offset of the extension's data (FITS ``datLoc``).
    dtype : numpy.dtype
        Big-endian element type (``>f4`` or ``>f8``).
    shape : tuple of int
        (n_lambda, n_y, n_x).

    Indexing takes an int or slice per axis (spatial slices of step 1) and
    returns a numpy array. :attr:`bytes_read` counts what was fetched.
    """

    def __init__(self, fs, path: str, offset: int, dtype, shape):
        self.fs, self.path, self.offset = fs, path, int(offset)
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(n) for n in shape)
        self.ndim = 3
        self.nbytes = self.dtype.itemsize * int(np.prod(self.shape))
        self.bytes_read = 0
        self._lock = threading.Lock()

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"RangedArray({self.path!r}, shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if len(key) > 3 or any(k is Ellipsis or k is None for k in key):
            raise InvalidArgumentError("a RangedArray takes up to 3 ints or slices")
        key = key + (slice(None),) * (3 - len(key))
        nl, ny, nx = self.shape
        planes = self._axis(key[0], nl)
        ys, xs = (self._axis(k, n) for k, n in zip(key[1:], (ny, nx)))
        for idx, axis in ((ys, "y"), (xs, "x")):
            if idx.size > 1 and np.any(np.diff(idx) != 1):
                raise InvalidArgumentError(f"the {axis} slice of a RangedArray must have step 1")
        item = self.dtype.itemsize
        out = np.empty((planes.size, ys.size, nx), dtype=self.dtype)
        if planes.size and ys.size:
            rows = ys.size * nx * item  # the rows of one plane are contiguous
            starts = self.offset + (planes * ny + ys[0]) * nx * item
            self._fetch(starts, rows, out.reshape(planes.size, -1).view(np.uint8))
        out = out[:, :, xs[0]:xs[-1] + 1] if xs.size else out[:, :, :0]
        out = out.astype(self.dtype.newbyteorder("="))
        squeeze = tuple(i for i, k in enumerate(key) if isinstance(k, (int, np.integer)))
        return out.squeeze(axis=squeeze) if squeeze else out

    @staticmethod
    def _axis(k, n) -> np.ndarray:
        if isinstance(k, (int, np.integer)):
            i = int(k) + (n if k < 0 else 0)
            if not 0 <= i < n:
                raise OutsideCubeError(f"index {k} is out of range 0-{n - 1}")
            return np.array([i])
        if isinstance(k, slice):
            return np.arange(*k.indices(n))
        raise UnsupportedTypeError(f"a RangedArray takes ints and slices, not {type(k).__name__}")

    def _fetch(self, starts: np.ndarray, length: int, dest: np.ndarray) -> None:
        """Fill ``dest[i]`` with ``length`` bytes from ``starts[i]``: nearby ranges in one request."""
        groups = []  # (first row index, last row index + 1) of rows fetched together
        first = 0
        for i in range(1, starts.size + 1):
            if i == starts.size or starts[i] - (starts[i - 1] + length) > MERGE_GAP or starts[i] < starts[i - 1]:
                groups.append((first, i))
                first = i
        begin = [int(starts[a]) for a, _ in groups]
        end = [int(starts[b - 1]) + length for a, b in groups]
        blocks = self.fs.cat_ranges([self.path] * len(groups), begin, end)
        for (a, b), lo, hi, block in zip(groups, begin, end, blocks):
            if isinstance(block, Exception):
                raise block
            if len(block) != hi - lo:
                raise InvalidFrameError(self.path, f"is truncated: short read at byte {lo}")
            buf = np.frombuffer(block, dtype=np.uint8)
            for i in range(a, b):
                at = int(starts[i]) - lo
                dest[i] = buf[at:at + length]
            with self._lock:
                self.bytes_read += hi - lo
