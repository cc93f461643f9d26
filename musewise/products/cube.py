"""Lazy, memory-mapped reading of MUSE cubes: :class:`MuseCube` and the white-light image.

:class:`MuseCube` opens a pipeline ``DATACUBE`` (primary header, then ``DATA``
and ``STAT`` float32 image extensions with axes (lambda, y, x)) by memory
mapping both extensions at their data offsets: opening costs a few header
reads whatever the cube size, and each operation reads only the bytes it needs.

* a wavelength plane is one contiguous block (~400 KB for 320 x 320);
* a spaxel spectrum is a strided read, one value per plane. With the file in
  the page cache this is a few ms; cold, the mapping is advised ``MADV_RANDOM``
  so each plane costs one 4 KB page, not a 128 KB read-ahead
  (``benchmarks/bench_widgets.py`` measures both);
* a cube in an object store (an :class:`fsspec.core.OpenFile`, e.g. from
  ``Archive.file``) is read the same way through byte ranges
  (:class:`musewise.products.remote.RangedArray`): a plane is one range, a
  spectrum one short range per plane, and the file is never fetched whole;
* the white-light image is the pipeline's ``IMAGE_FOV`` if one is given or
  lies next to the cube with the same shape, otherwise it is computed by a
  chunked NaN-aware mean over wavelength (:func:`white_light`, float32 blocks
  of ~64 MB: never a float64 copy of the cube) and, given a ``cache_dir``,
  cached in a sidecar FITS file keyed by the cube's path, size and
  modification time.

Why not mpdaf's ``Cube``: it reads a whole extension into a masked array on
first access to ``.data``, as float64 by default (~6 GB for DATA and STAT of
a full cube), which a viewer must never do. mpdaf cubes are accepted as
input, and the spectral axis is read with astropy's wcslib like mpdaf's
``WaveCoord`` (:func:`musewise.products.wcs.spectral_axis`).

:func:`white_light` is the same mean over any (n_lambda, ny, nx) array
(an astropy memory-mapped ``hdu.data`` of a cube without ``STAT``, a test array):
the QC, the web quick-look and the reduction notebooks all use it.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import threading
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..exceptions import (InvalidArgumentError, InvalidFrameError, MusewiseError, NotFoundError, OutsideCubeError,
                          UnsupportedTypeError)
from .fitsio import open_fits
from .image import Image
from .remote import RangedArray
from .spectrum import Spectrum
from .wcs import celestial_header, spectral_axis

__all__ = ["CHUNK_BYTES", "MuseCube", "filter_image", "white_light"]

#: Bytes of one extension read per step of the white-light mean (~64 MB).
CHUNK_BYTES = 64 * 2**20


def _planes_per_chunk(shape, chunk_bytes: int) -> int:
    _, ny, nx = shape
    return max(1, int(chunk_bytes) // (ny * nx * 4))


def _nanmean_planes(chunks, plane_shape, weights=None) -> np.ndarray:
    """NaN-aware (weighted) mean over the planes of float32 chunks (k, ny, nx), as float32 (ny, nx).

    Only two image-sized accumulators are held besides the chunk being summed.
    The chunks are scratch buffers: their NaNs are zeroed in place. ``weights``
    (one per plane, in the order the chunks come) weight each plane.
    """
    total = np.zeros(plane_shape, dtype=np.float64)
    count = np.zeros(plane_shape, dtype=np.float64 if weights is not None else np.int64)
    k0 = 0
    for chunk in chunks:
        finite = np.isfinite(chunk)
        np.copyto(chunk, 0.0, where=~finite)
        if weights is None:
            total += chunk.sum(axis=0, dtype=np.float64)
            count += finite.sum(axis=0)
        else:
            w = np.asarray(weights[k0:k0 + len(chunk)], dtype=np.float64)
            total += np.tensordot(w, chunk, axes=(0, 0))
            count += np.tensordot(w, finite, axes=(0, 0))
        k0 += len(chunk)
        del chunk, finite  # freed before the next chunk is read: one chunk held, not two
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / count).astype(np.float32)


def white_light(data, start: int = 0, stop: int | None = None, *,
                chunk_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """NaN-aware mean over wavelength of a cube's planes ``start:stop``, a block at a time.

    Parameters
    ----------
    data : array_like
        (n_lambda, ny, nx) flux, e.g. an astropy memory-mapped ``hdu.data`` or a
        numpy memmap; any float or integer dtype.
    start, stop : int
        Planes to average (default all).
    chunk_bytes : int
        Size of the float32 block of planes read per step, bytes.

    Returns
    -------
    numpy.ndarray
        float32 (ny, nx), in the cube's BUNIT; NaN where no plane is finite.
    """
    return _nanmean_planes(_chunks(data, start, stop, chunk_bytes), data.shape[1:])


def _chunks(data, start: int, stop: int | None, chunk_bytes: int):
    """float32 blocks of planes ``start:stop`` of ``data``, about ``chunk_bytes`` each."""
    stop = data.shape[0] if stop is None else stop
    step = _planes_per_chunk(data.shape, chunk_bytes)
    return (np.array(data[k0:min(stop, k0 + step)], dtype=np.float32) for k0 in range(start, stop, step))


def filter_image(data, throughput, *, chunk_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """A cube integrated over a filter, as muse_scipost makes its IMAGE_FOV.

    The throughput-weighted mean of each spaxel's finite planes (the MUSE pipeline's
    field-of-view image: 1e-5 of muse_scipost's own IMAGE_FOV on the same cube).

    Parameters
    ----------
    data : array_like
        (n_lambda, ny, nx) flux, memory-mapped or not, read a block of planes at a time.
    throughput : array_like
        The filter's throughput (0-1) at each plane's wavelength, length n_lambda.

    Returns
    -------
    numpy.ndarray
        float32 (ny, nx) in the cube's BUNIT; NaN where the filter sees no finite plane.
    """
    throughput = np.asarray(throughput, dtype=np.float64)
    if throughput.shape != (data.shape[0],):
        raise InvalidArgumentError(f"filter_image needs one throughput per plane ({data.shape[0]}), "
                                   f"got {throughput.shape}")
    return _nanmean_planes(_chunks(data, 0, None, chunk_bytes), data.shape[1:], weights=throughput)


def _is_remote(obj) -> bool:
    """An unopened fsspec file (``fsspec.open(url)``, ``Archive.file``): read in byte ranges."""
    return hasattr(obj, "fs") and hasattr(obj, "path") and hasattr(obj, "open") and not isinstance(obj, os.PathLike)


class _open_remote:
    """The HDUList of a remote FITS file, headers only: closes the file with the list."""

    #: Read-ahead of header reads (bytes): a header is a few 2880-byte blocks.
    BLOCK = 2**16

    def __init__(self, remote):
        self.remote = remote

    def __enter__(self) -> fits.HDUList:
        name = Path(self.remote.path)
        try:
            self.file = self.remote.fs.open(self.remote.path, "rb", block_size=self.BLOCK)
        except FileNotFoundError as exc:
            raise NotFoundError(f"no such file: {self.remote.path}") from exc
        try:
            self.hdul = fits.open(self.file, lazy_load_hdus=False)
        except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
            self.file.close()
            raise InvalidFrameError(name, f"not a readable FITS file ({exc})") from exc
        return self.hdul

    def __exit__(self, *exc):
        self.hdul.close()
        self.file.close()


def _is_mpdaf(obj) -> bool:
    return type(obj).__module__.startswith("mpdaf.") and hasattr(obj, "wave")


def _flux_times_angstrom(unit: str) -> str:
    """Unit of a flux density integrated over wavelength (BUNIT * Angstrom)."""
    try:
        import warnings

        from astropy import units as u

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MUSE's BUNIT has "multiple slashes"
            return (u.Unit(unit) * u.AA).to_string()
    except Exception:  # any unparsable BUNIT: say it in words
        return f"{unit} * Angstrom" if unit else "Angstrom"


class MuseCube:
    """A MUSE cube read lazily from disk (or wrapped from memory).

    Use :meth:`open`; the constructor takes arrays already mapped or loaded.

    Parameters
    ----------
    data, stat : array_like
        Flux and variance, shape (n_lambda, n_y, n_x); numpy memmaps or arrays.
    wave : numpy.ndarray
        Wavelength of each plane, Angstrom.
    unit : str
        BUNIT of ``data``.
    primary_header : astropy.io.fits.Header
        Observation keywords.
    wcs_header : astropy.io.fits.Header or None
        Celestial WCS of a plane.
    air : bool
        Wavelengths in air (``CTYPE3 = 'AWAV'``).
    path : pathlib.Path, optional
        File the cube was read from.
    white_light : Image, path-like or None
        A white-light image to use instead of computing one.
    cache_dir : path-like, optional
        Folder of the white-light sidecar cache; without one a computed white
        light is kept in memory only.
    """

    def __init__(self, data, stat, wave, *, unit="", primary_header=None, wcs_header=None,
                 air=True, path=None, white_light=None, cache_dir=None):
        self._data = data
        self._stat = stat
        self.wave = np.asarray(wave, dtype=np.float64)
        self.unit = unit
        self.primary_header = primary_header if primary_header is not None else fits.Header()
        self.wcs_header = wcs_header
        self.air = bool(air)
        self.path = Path(path) if path is not None else None
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._white: Image | None = None
        self._white_from: str = ""
        self._white_lock = threading.Lock()
        if isinstance(white_light, Image):
            self._white, self._white_from = white_light, "given"
        elif white_light is not None:
            self._white, self._white_from = self._read_white(Path(white_light)), "IMAGE_FOV"

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, source, *, white_light=None, cache_dir=None,
             find_image_fov=True) -> "MuseCube":
        """Open a cube without reading its pixels.

        Parameters
        ----------
        source : str, os.PathLike, fsspec.core.OpenFile, MuseCube or mpdaf.obj.Cube
            A ``DATACUBE`` FITS file (a local path, or a remote file read in byte
            ranges) or a cube object (archived datasets are resolved by the
            caller, e.g. ``archive.file(id)``). An
            mpdaf cube whose data were not loaded yet is re-opened from its file
            (memory-mapped); a loaded one is wrapped as it is.
        white_light : path-like or Image, optional
            The pipeline's ``IMAGE_FOV`` (or any white-light image) of this cube.
        cache_dir : path-like, optional
            Folder of the white-light cache (default: none, computed once in memory).
        find_image_fov : bool
            Look for an ``IMAGE_FOV*.fits`` of the same shape next to the cube.

        Returns
        -------
        MuseCube

        Raises
        ------
        NotFoundError
            The file does not exist.
        InvalidFrameError
            The file is not FITS, not a cube, has no ``STAT``, is truncated or
            compressed, or has no spectral WCS.
        """
        if isinstance(source, (str, os.PathLike)):
            source = Path(source)
        if isinstance(source, MuseCube):
            return source
        if _is_mpdaf(source):
            return cls._from_mpdaf(source, white_light=white_light, cache_dir=cache_dir)
        if _is_remote(source):
            return cls._from_fits(source, white_light=white_light, cache_dir=cache_dir,
                                  find_image_fov=False)
        if not isinstance(source, Path):
            raise UnsupportedTypeError(f"cannot open a cube from {type(source).__name__}: give a FITS "
                            "path, a remote file (fsspec OpenFile), a MuseCube or an mpdaf Cube")
        return cls._from_fits(source, white_light=white_light, cache_dir=cache_dir,
                              find_image_fov=find_image_fov)

    @classmethod
    def _from_fits(cls, path, *, white_light=None, cache_dir=None, find_image_fov=True,
                   data_ext="DATA", stat_ext="STAT"):
        remote = path if _is_remote(path) else None
        if remote is not None:
            path = Path(remote.path)  # its name, for labels and errors
        with (_open_remote(remote) if remote is not None else open_fits(path, memmap=True)) as hdul:
            names = [h.name for h in hdul]
            if isinstance(hdul[0], fits.CompImageHDU) or any(
                    isinstance(h, fits.CompImageHDU) for h in hdul):
                raise InvalidFrameError(path, "is tile-compressed; cubes are memory-mapped, "
                                        "so uncompress it first (funpack)")
            data_i = names.index(data_ext) if data_ext in names else next(
                (i for i, h in enumerate(hdul) if h.is_image and h.header.get("NAXIS") == 3),
                None)
            if data_i is None or hdul[data_i].header.get("NAXIS") != 3:
                dims = [h.header.get("NAXIS", 0) for h in hdul if h.is_image]
                what = ("a 2-D image (read it with Image.read, or open it with ImageViewer)" if 2 in dims
                        else "no image data")
                raise InvalidFrameError(path, f"is not a cube: no 3-D {data_ext} extension, "
                                        f"found {what}")
            if stat_ext not in names:
                raise InvalidFrameError(path, f"has no {stat_ext} (variance) extension; a "
                                        "MUSE DATACUBE carries DATA and STAT")
            stat_i = names.index(stat_ext)
            hd, hs = hdul[data_i].header, hdul[stat_i].header
            shape = tuple(int(hd[f"NAXIS{k}"]) for k in (3, 2, 1))
            if tuple(int(hs.get(f"NAXIS{k}", -1)) for k in (3, 2, 1)) != shape:
                raise InvalidFrameError(path, f"{stat_ext} shape differs from {data_ext} {shape}")
            data = cls._map(path, hdul, data_i, shape, remote)
            stat = cls._map(path, hdul, stat_i, shape, remote)
            wave, air = spectral_axis(hd, shape[0], axis=3, path=path)
            primary = hdul[0].header.copy()
            wcs = celestial_header(hd)
            unit = hd.get("BUNIT", "")
        if white_light is None and find_image_fov:
            white_light = cls._find_image_fov(path, shape[1:])
        return cls(data, stat, wave, unit=unit, primary_header=primary, wcs_header=wcs, air=air,
                   path=path, white_light=white_light, cache_dir=cache_dir)

    @staticmethod
    def _map(path, hdul, index, shape, remote=None):
        h = hdul[index].header
        bitpix = int(h["BITPIX"])
        if bitpix not in (-32, -64):
            raise InvalidFrameError(path, f"extension {index} has BITPIX={bitpix}; a cube must be "
                                    "float32 (-32) or float64 (-64)")
        if h.get("BSCALE", 1) != 1 or h.get("BZERO", 0) != 0:
            raise InvalidFrameError(path, f"extension {index} is scaled (BSCALE/BZERO)")
        offset = int(hdul.fileinfo(index)["datLoc"])
        dtype = np.dtype(">f4" if bitpix == -32 else ">f8")
        need = offset + dtype.itemsize * int(np.prod(shape))
        size = remote.fs.size(remote.path) if remote is not None else path.stat().st_size
        if size < need:
            raise InvalidFrameError(path, f"is truncated: extension {index} needs {need} bytes, "
                                    f"the file has {size}")
        if remote is not None:
            return RangedArray(remote.fs, remote.path, offset, dtype, shape)
        arr = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
        # Spectra are strided reads (one value per plane): read-ahead would fetch
        # 128 KB per 4-byte value from a cold disk, so ask for single pages.
        mm = getattr(arr, "_mmap", None)
        if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_RANDOM"):
            mm.madvise(mmap.MADV_RANDOM)
        return arr

    @staticmethod
    def _find_image_fov(path, shape):
        """The pipeline's IMAGE_FOV next to the cube, if exactly one has the cube's shape."""
        found = []
        for cand in sorted(path.parent.glob("IMAGE_FOV*.fits")):
            try:
                with fits.open(cand) as hdul:
                    h = next((x.header for x in hdul if x.is_image and x.header.get("NAXIS") == 2),
                             None)
                    if h is not None and (h["NAXIS2"], h["NAXIS1"]) == tuple(shape):
                        found.append(cand)
            except (OSError, ValueError):
                continue  # an unreadable neighbour is not our problem
        return found[0] if len(found) == 1 else None

    @classmethod
    def _from_mpdaf(cls, cube, *, white_light=None, cache_dir=None):
        filename = getattr(cube, "filename", None)
        if filename and not getattr(cube, "_loaded_data", True) and os.path.exists(filename):
            # Not loaded yet: the file holds exactly this cube, so map it.
            data_ext = getattr(cube, "_data_ext", "DATA")
            stat_ext = getattr(cube, "_var_ext", "STAT") or "STAT"
            with fits.open(filename) as hdul:
                names = [h.name for h in hdul]
            to_name = (lambda e: names[e] if isinstance(e, int) else e)
            return cls._from_fits(Path(filename), white_light=white_light, cache_dir=cache_dir,
                                  data_ext=to_name(data_ext), stat_ext=to_name(stat_ext))
        if cube.var is None:
            raise InvalidFrameError(filename or "<mpdaf cube>", "has no variance (STAT)")
        data = np.ma.filled(cube.data, np.nan).astype(np.float32)
        stat = np.ma.filled(cube.var, np.nan).astype(np.float32)
        wcs = celestial_header(cube.wcs.to_header()) if cube.wcs is not None else None
        ctype = str(cube.wave.wcs.wcs.ctype[0]).upper() if cube.wave is not None else "AWAV"
        return cls(data, stat, cube.wave.coord(unit="Angstrom"), unit=str(cube.unit or ""),
                   primary_header=cube.primary_header, wcs_header=wcs,
                   air=not ctype.startswith("WAVE"), path=Path(filename) if filename else None,
                   white_light=white_light, cache_dir=cache_dir)

    # --------------------------------------------------------------- geometry
    @property
    def shape(self) -> tuple[int, int, int]:
        """(n_lambda, n_y, n_x)."""
        return tuple(self._data.shape)

    @property
    def step(self) -> float:
        """Wavelength step, Angstrom."""
        return float(self.wave[1] - self.wave[0]) if self.wave.size > 1 else 1.0

    @property
    def name(self) -> str:
        """Short name for titles: OBJECT and file name."""
        obj = self.primary_header.get("OBJECT", "")
        fname = self.path.name if self.path else "in-memory cube"
        return f"{obj} ({fname})" if obj else fname

    def wave_index(self, wavelength: float) -> int:
        """Index of the plane nearest a wavelength.

        Raises
        ------
        OutsideCubeError
            If the wavelength lies outside the cube by more than half a step.
        """
        lam = float(wavelength)
        half = abs(self.step) / 2
        if not (min(self.wave[0], self.wave[-1]) - half <= lam <= max(self.wave[0], self.wave[-1])
                + half):
            raise OutsideCubeError(f"wavelength {lam:.2f} A is outside the cube "
                                   f"({self.wave[0]:.2f}-{self.wave[-1]:.2f} A)")
        return int(np.clip(np.rint((lam - self.wave[0]) / self.step), 0, self.wave.size - 1))

    def _check_spaxel(self, x, y) -> tuple[int, int]:
        _, ny, nx = self.shape
        xi, yi = int(np.rint(x)), int(np.rint(y))
        if not (0 <= xi < nx and 0 <= yi < ny):
            raise OutsideCubeError(f"spaxel ({x}, {y}) is outside the cube (x 0-{nx - 1}, "
                                   f"y 0-{ny - 1})")
        return xi, yi

    # ------------------------------------------------------------- reading
    def spectrum(self, x: int, y: int) -> Spectrum:
        """Spectrum and variance of one spaxel, exactly as stored.

        Parameters
        ----------
        x, y : int
            Spaxel column (NAXIS1) and row (NAXIS2), 0-based.

        Returns
        -------
        Spectrum
            ``data`` in BUNIT, ``var`` in BUNIT squared, ``wave`` in Angstrom.

        Raises
        ------
        OutsideCubeError
            If the spaxel is not in the cube.
        """
        x, y = self._check_spaxel(x, y)
        data = self._read_box(self._data, (slice(y, y + 1), slice(x, x + 1)))[:, 0, 0]
        var = self._read_box(self._stat, (slice(y, y + 1), slice(x, x + 1)))[:, 0, 0]
        return Spectrum(self.wave, data, var, unit=self.unit, label=f"spaxel ({x}, {y})",
                        air=self.air, meta={"x": x, "y": y, "cube": self._file_name})

    @property
    def _file_name(self) -> str:
        return self.path.name if self.path else ""

    def plane(self, wavelength: float | None = None, *, index: int | None = None) -> Image:
        """One wavelength plane (DATA and STAT).

        Parameters
        ----------
        wavelength : float, optional
            Wavelength, Angstrom; the nearest plane is returned.
        index : int, optional
            Plane index instead of a wavelength.

        Raises
        ------
        OutsideCubeError
            If the wavelength or index is outside the cube.
        """
        if index is None:
            if wavelength is None:
                raise InvalidArgumentError("give a wavelength (Angstrom) or a plane index")
            index = self.wave_index(wavelength)
        if not 0 <= index < self.shape[0]:
            raise OutsideCubeError(f"plane {index} outside 0-{self.shape[0] - 1}")
        lam = float(self.wave[index])
        return Image(np.asarray(self._data[index], dtype=np.float32),
                     np.asarray(self._stat[index], dtype=np.float32), unit=self.unit,
                     label=f"plane {lam:.2f} Å", wcs_header=self.wcs_header,
                     meta={"wave": lam, "plane": int(index), "cube": self._file_name})

    def aperture_spectrum(self, x: float, y: float, radius: float) -> Spectrum:
        """Sum of the spectra of the spaxels whose centres lie within a circle.

        Parameters
        ----------
        x, y : float
            Centre, spaxels (0-based).
        radius : float
            Radius, spaxels (0.2 arcsec each in WFM). 0 gives the centre spaxel.

        Returns
        -------
        Spectrum
            Summed flux (BUNIT) and summed variance; NaN spaxels are left out and
            a plane with no valid spaxel is NaN.

        Raises
        ------
        OutsideCubeError
            If the centre is outside the cube.
        InvalidArgumentError
            If the radius is negative.
        """
        self._check_spaxel(x, y)
        if radius < 0:
            raise InvalidArgumentError(f"aperture radius must be >= 0 spaxels, got {radius}")
        mask, sl = self.disc(x, y, radius)
        return self.masked_spectrum(mask, sl, label=f"aperture ({x:g}, {y:g}) r={radius:g}",
                                    meta={"x": float(x), "y": float(y), "radius": float(radius)})

    def masked_spectrum(self, mask: np.ndarray, slices: tuple[slice, slice], *, label: str = "",
                        meta: dict | None = None) -> Spectrum:
        """Sum of the spectra of the spaxels selected by a boolean mask over a box.

        Only the box is read (one block of ``n_lambda`` x box rows), so a region
        costs its bounding box, never the cube.

        Parameters
        ----------
        mask : numpy.ndarray of bool
            Spaxels to sum, shape of the box.
        slices : tuple of slice
            (y, x) slices of the box in the cube.
        label : str
            Label of the spectrum.
        meta : dict, optional
            Extra scalars for the spectrum's metadata (``npix`` and ``cube`` are added).

        Returns
        -------
        Spectrum
            Summed flux (BUNIT) and summed variance (BUNIT squared; spaxels taken as
            independent, i.e. the covariance of resampled neighbours is ignored). NaN
            spaxels are left out and a plane with no valid spaxel is NaN.

        Raises
        ------
        OutsideCubeError
            If the mask selects no spaxel of the cube.
        """
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            raise OutsideCubeError("the region selects no spaxel of the cube")
        box = self._read_box(self._data, slices)
        vbox = self._read_box(self._stat, slices)
        if box.shape[1:] != mask.shape:
            raise InvalidArgumentError(f"mask shape {mask.shape} differs from the box {box.shape[1:]}")
        data = np.nansum(box[:, mask], axis=1, dtype=np.float64)
        var = np.nansum(vbox[:, mask], axis=1, dtype=np.float64)
        empty = ~np.isfinite(box[:, mask]).any(axis=1)
        data[empty] = np.nan
        var[empty] = np.nan
        return Spectrum(self.wave, data.astype(np.float32), var.astype(np.float32),
                        unit=self.unit, label=label, air=self.air,
                        meta={**(meta or {}), "npix": int(mask.sum()), "cube": self._file_name})

    def _read_box(self, arr, slices) -> np.ndarray:
        """float32 (n_lambda, box_y, box_x) of one extension over a spatial box.

        A box of a file-backed cube is read with ``pread``, one run of columns per
        plane and row, on a descriptor advised random access: reading it through
        the memory map would fault in every plane's page *and* the kernel's
        fault-around neighbours (up to 64 KB a plane), so one spectrum of a cached
        3 GB cube would map ~0.5 GB into the viewer. Other arrays are indexed.
        """
        ys, xs = slices
        if not (isinstance(arr, np.memmap) and arr.filename and isinstance(arr.base, mmap.mmap)
                and arr.shape == self.shape and arr.flags.c_contiguous):
            return np.asarray(arr[(slice(None), ys, xs)], dtype=np.float32)
        nl, ny, nx = self.shape
        y0, y1, _ = ys.indices(ny)
        x0, x1, _ = xs.indices(nx)
        item = arr.dtype.itemsize
        run = (x1 - x0) * item
        out = np.empty((nl, y1 - y0, x1 - x0), dtype=arr.dtype)
        buf = memoryview(out.reshape(-1).view(np.uint8))
        fd = os.open(arr.filename, os.O_RDONLY)
        try:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            pos = 0
            for k in range(nl):
                for yy in range(y0, y1):
                    at = arr.offset + ((k * ny + yy) * nx + x0) * item
                    got = os.preadv(fd, [buf[pos:pos + run]], at)
                    if got != run:
                        raise InvalidFrameError(self.path, f"short read at byte {at}: the file is truncated")
                    pos += run
        finally:
            os.close(fd)
        return out.astype(np.float32)

    def disc(self, x: float, y: float, radius: float):
        """Spaxels of a circular aperture: a boolean mask and the (y, x) slices it covers."""
        _, ny, nx = self.shape
        y0, y1 = max(0, int(np.floor(y - radius))), min(ny, int(np.ceil(y + radius)) + 1)
        x0, x1 = max(0, int(np.floor(x - radius))), min(nx, int(np.ceil(x + radius)) + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        mask = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2 + 1e-9
        return mask, (slice(y0, y1), slice(x0, x1))

    def narrow_band(self, wavelength: float, width: float = 10.0, *,
                    continuum_width: float | None = None, gap: float | None = None) -> Image:
        """Continuum-subtracted narrow-band image around a line.

        The band is every plane within ``wavelength +- width/2``. The continuum
        is the NaN-aware mean of two side bands of ``continuum_width`` starting
        ``gap`` beyond each edge of the band, interpolated linearly to each band
        plane (so a sloped continuum is removed too); with only one side band in
        the cube that one is used as a flat continuum.

        Parameters
        ----------
        wavelength : float
            Band centre, Angstrom.
        width : float
            Full width of the band, Angstrom (at least one plane is used).
        continuum_width : float, optional
            Width of each side band, Angstrom. Default ``max(2 * width, 10)``.
        gap : float, optional
            Gap between band and side bands, Angstrom. Default ``width / 2``.

        Returns
        -------
        Image
            Line flux integrated over the band, BUNIT * Angstrom
            (1e-20 erg/s/cm2 for MUSE), with its variance.

        Raises
        ------
        OutsideCubeError
            If the band or both side bands fall outside the cube.
        InvalidArgumentError
            If ``width`` is not positive.
        """
        if width <= 0:
            raise InvalidArgumentError(f"narrow-band width must be > 0 Angstrom, got {width}")
        cw = max(2.0 * width, 10.0) if continuum_width is None else float(continuum_width)
        gap = width / 2.0 if gap is None else float(gap)
        wave = self.wave
        centre = self.wave_index(wavelength)
        band = np.flatnonzero(np.abs(wave - wavelength) <= width / 2 + 1e-9)
        if band.size == 0:
            band = np.array([centre])
        lo, hi = wave[band[0]], wave[band[-1]]
        blue = np.flatnonzero((wave < lo - gap) & (wave >= lo - gap - cw))
        red = np.flatnonzero((wave > hi + gap) & (wave <= hi + gap + cw))
        if blue.size == 0 and red.size == 0:
            raise OutsideCubeError(f"no continuum side bands inside the cube for "
                                   f"{wavelength:.2f} +- {width / 2:.2f} A")

        def read(idx):  # contiguous planes: one block read each
            sl = slice(idx[0], idx[-1] + 1)
            return (np.asarray(self._data[sl], dtype=np.float32),
                    np.asarray(self._stat[sl], dtype=np.float32))

        d_band, v_band = read(band)
        sides = []
        for idx in (blue, red):
            if idx.size:
                d, v = read(idx)
                n = np.sum(np.isfinite(d), axis=0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    mean = np.nansum(d, axis=0, dtype=np.float64) / n
                    var_mean = np.nansum(v, axis=0, dtype=np.float64) / n**2
                sides.append((wave[idx].mean(), mean, var_mean))
        lam_band = wave[band]
        if len(sides) == 2:
            (lb, mb, vb), (lr, mr, vr) = sides
            t = (lam_band - lb) / (lr - lb)            # interpolation weight of the red side
            a, b = np.sum(1 - t), np.sum(t)            # summed over the band planes
            cont = a * mb + b * mr
            cont_var = a**2 * vb + b**2 * vr
        else:
            _, m, v = sides[0]
            cont, cont_var = band.size * m, band.size**2 * v
        step = abs(self.step)
        valid = np.isfinite(d_band).any(axis=0)
        flux = (np.nansum(d_band, axis=0, dtype=np.float64) - cont) * step
        var = (np.nansum(v_band, axis=0, dtype=np.float64) + cont_var) * step**2
        flux[~valid] = np.nan
        var[~valid] = np.nan
        return Image(flux.astype(np.float32), var.astype(np.float32),
                     unit=_flux_times_angstrom(self.unit),
                     label=f"narrow band {wavelength:.2f} ± {width / 2:.2f} Å",
                     wcs_header=self.wcs_header,
                     meta={"wave": float(wavelength), "width": float(width),
                           "cont_width": cw, "gap": gap, "cube": self._file_name})

    # ---------------------------------------------------------- white light
    @property
    def white_light_source(self) -> str:
        """Where the white-light image came from: ``IMAGE_FOV``, ``given``, ``cache``,
        ``computed``, or ``""`` if not obtained yet."""
        return self._white_from

    @property
    def white_light_ready(self) -> bool:
        """True if :meth:`white_light` returns without reading the cube."""
        return self._white is not None or (self._cache_file() or Path("/nonexistent")).exists()

    def _cache_file(self) -> Path | None:
        if self.path is None or self._cache_dir is None:
            return None
        if isinstance(self._data, RangedArray):
            # an object store's files are write-once: their name and size say which cube it is
            fs = self._data.fs
            protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
            key = f"{protocol}://{self._data.path}|{self._data.offset}|{self._data.nbytes}|{self.shape}"
        elif isinstance(self._data, np.memmap):
            st = self.path.stat()
            key = f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.shape}"
        else:
            return None
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        return self._cache_dir / f"{self.path.stem}-{digest}.white.fits"

    def _read_white(self, path: Path) -> Image:
        img = Image.read(path)
        if img.shape != self.shape[1:]:
            raise InvalidFrameError(path, f"white-light image shape {img.shape} differs from "
                                    f"the cube's {self.shape[1:]}")
        return img

    def white_light(self) -> Image:
        """The white-light image: NaN-aware mean over wavelength, BUNIT.

        From the ``IMAGE_FOV`` if one was given or found, else from the sidecar
        cache, else computed once (reading the whole DATA extension in chunks)
        and written to the cache. Safe to call from a background thread.
        """
        with self._white_lock:
            if self._white is not None:
                return self._white
            cache = self._cache_file()
            if cache is not None and cache.exists():
                try:
                    self._white, self._white_from = self._read_white(cache), "cache"
                    return self._white
                except (InvalidFrameError, NotFoundError):
                    cache.unlink(missing_ok=True)  # stale or damaged: recompute
            mean = self.mean_over_wavelength()
            img = Image(mean, None, unit=self.unit, label="white light",
                        wcs_header=self.wcs_header, meta={"cube": self._file_name})
            if cache is not None:
                try:
                    img.to_fits(cache)
                except MusewiseError:
                    pass  # a read-only cache only costs the recomputation next time
            self._white, self._white_from = img, "computed"
            return img

    def mean_over_wavelength(self, start: int = 0, stop: int | None = None, *,
                             chunk_bytes: int = CHUNK_BYTES) -> np.ndarray:
        """NaN-aware mean of DATA over planes ``start:stop``, read in ~64 MB float32 chunks.

        A memory-mapped cube is read with plain sequential ``read`` calls (the
        mapping is advised random access for spectra, which would defeat the
        kernel's read-ahead here); otherwise as :func:`white_light`.

        Returns
        -------
        numpy.ndarray
            float32 (ny, nx), BUNIT; NaN where no plane is finite.
        """
        nl, ny, nx = self.shape
        stop = nl if stop is None else stop
        step = _planes_per_chunk(self.shape, chunk_bytes)
        return _nanmean_planes(self._iter_planes(self._data, start, stop, step), (ny, nx))

    def _iter_planes(self, arr, start, stop, step):
        """Yield native-endian float32 blocks of planes; sequential file reads for memmaps."""
        _, ny, nx = self.shape
        if isinstance(arr, np.memmap) and arr.filename:
            itemsize = arr.dtype.itemsize
            plane_bytes = ny * nx * itemsize
            buf = np.empty(step * ny * nx, dtype=arr.dtype)
            with open(arr.filename, "rb", buffering=0) as f:
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
                for k0 in range(start, stop, step):
                    n = min(stop, k0 + step) - k0
                    view = buf[: n * ny * nx]
                    f.seek(arr.offset + k0 * plane_bytes)
                    got = f.readinto(memoryview(view).cast("B"))
                    if got != view.nbytes:
                        raise InvalidFrameError(arr.filename, "is truncated (short read)")
                    view.byteswap(inplace=True)  # FITS is big-endian
                    yield view.view(arr.dtype.newbyteorder("=")).astype(np.float32, copy=False
                                                                         ).reshape(n, ny, nx)
        else:
            for k0 in range(start, stop, step):
                yield np.array(arr[k0:min(stop, k0 + step)], dtype=np.float32)

    def prefetch(self, background: bool = True) -> threading.Thread | None:
        """Read the whole file once so later spectra come from the page cache.

        A spectrum is one value per plane, i.e. one disk page per plane when the
        file is not cached (~0.3 s cold for 3681 planes against < 1 ms warm). A
        sequential pass costs ~2 s for a full cube and needs no memory of its own
        (``posix_fadvise(WILLNEED)`` would be free, but Linux caps it at the
        read-ahead window, so it is no substitute).

        Parameters
        ----------
        background : bool
            Run in a daemon thread and return it at once.

        Returns
        -------
        threading.Thread or None
            The running thread when ``background``; None for in-memory cubes.
        """
        arrays = [a for a in (self._data, self._stat) if isinstance(a, np.memmap) and a.filename]
        if not arrays:
            return None

        def run():
            buf = bytearray(16 * 2**20)
            for arr in arrays:
                try:
                    with open(arr.filename, "rb", buffering=0) as f:
                        f.seek(arr.offset)
                        left = arr.nbytes
                        while left > 0:
                            got = f.readinto(memoryview(buf)[: min(left, len(buf))])
                            if not got:
                                break
                            left -= got
                except OSError:
                    return  # only a warm-up: the reads that matter raise their own errors

        if not background:
            run()
            return None
        thread = threading.Thread(target=run, name=f"prefetch {self._file_name}", daemon=True)
        thread.start()
        return thread

    # ------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Drop the memory maps (the file is unmapped once no array refers to it)."""
        self._data = self._stat = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        nl, ny, nx = self.shape if self._data is not None else (0, 0, 0)
        return (f"<MuseCube {self.name}: {nx} x {ny} spaxels, {nl} planes "
                f"{self.wave[0]:.2f}-{self.wave[-1]:.2f} Å>")
