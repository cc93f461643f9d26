"""What the viewers show and export: a 1-D :class:`Spectrum` and a 2-D :class:`Image`.

Both are small in-memory containers (a spectrum is ~3681 values, an image
320 x 320) with a FITS writer and reader, so everything a user sees in a
viewer can be saved and read back with the same names and units.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..exceptions import DatastoreError, InvalidFrameError, NotFoundError

__all__ = ["Spectrum", "Image"]


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise NotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise InvalidFrameError(path, "is a directory, not a FITS file")


def _open_fits(path: Path, **kwargs) -> fits.HDUList:
    """Open a FITS file or raise :class:`InvalidFrameError` saying why it cannot be read."""
    _check_readable(path)
    try:
        hdul = fits.open(path, **kwargs)
        len(hdul)  # forces astropy to scan every header: a corrupt one fails here
        return hdul
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise InvalidFrameError(path, f"not a readable FITS file ({exc})") from exc


def _write_hdus(path: str | os.PathLike, hdus: list, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise DatastoreError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        fits.HDUList(hdus).writeto(tmp, overwrite=True, checksum=True)
        os.replace(tmp, path)  # readers never see a half-written file
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DatastoreError(f"cannot write {path}: {exc}") from exc
    return path


def _ascii(text: str) -> str:
    """A label as printable ASCII for a FITS card (Angstrom sign, plus-minus, Greek)."""
    for a, b in (("Å", "A"), ("±", "+-"), ("α", "a"), ("β", "b"), ("σ", "sigma"), ("λ", "lambda")):
        text = text.replace(a, b)
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:68]


def _meta_cards(meta: dict) -> list[tuple[str, object]]:
    cards = []
    for key, value in meta.items():
        if isinstance(value, (bool, int, float, str)) and value is not None:
            cards.append((f"HIERARCH MUSEWISE {key.upper()}",
                          _ascii(value) if isinstance(value, str) else value))
    return cards


@dataclass(frozen=True, eq=False)
class Spectrum:
    """A 1-D spectrum with its variance.

    Attributes
    ----------
    wave : numpy.ndarray
        Wavelength of each pixel, Angstrom (air if ``air`` else vacuum).
    data : numpy.ndarray
        Flux density, in ``unit`` (MUSE: 1e-20 erg/s/cm2/Angstrom).
    var : numpy.ndarray or None
        Variance of ``data``, in ``unit`` squared.
    unit : str
        Flux unit as written in BUNIT.
    label : str
        What this is, e.g. ``"spaxel (120, 85)"``.
    air : bool
        Wavelengths are in air (``AWAV``), the MUSE pipeline default.
    meta : dict
        Scalars recorded in the FITS header on export (x, y, radius, source file).
    """

    wave: np.ndarray
    data: np.ndarray
    var: np.ndarray | None = None
    unit: str = ""
    label: str = ""
    air: bool = True
    meta: dict = field(default_factory=dict)

    @property
    def sigma(self) -> np.ndarray | None:
        """Standard deviation sqrt(var), in ``unit``; None without variance."""
        return None if self.var is None else np.sqrt(np.clip(self.var, 0, None))

    def to_fits(self, path: str | os.PathLike, overwrite: bool = True) -> Path:
        """Write the spectrum as FITS: ``DATA`` and ``STAT`` 1-D extensions.

        A linear wavelength axis is written as WCS keywords (CRVAL1, CD1_1,
        CRPIX1, CTYPE1 AWAV/WAVE, CUNIT1 Angstrom); any other axis as an extra
        ``WAVE`` extension.

        Parameters
        ----------
        path : path-like
            Output file.
        overwrite : bool
            Replace an existing file.

        Returns
        -------
        pathlib.Path
            The written file.

        Raises
        ------
        DatastoreError
            If the file exists and ``overwrite`` is False, or cannot be written.
        """
        wave = np.asarray(self.wave, dtype=np.float64)
        primary = fits.PrimaryHDU()
        primary.header["HIERARCH MUSEWISE KIND"] = "SPECTRUM"
        primary.header["OBJECT"] = _ascii(self.label)
        for k, v in _meta_cards(self.meta):
            primary.header[k] = v
        step = np.diff(wave)
        linear = wave.size > 1 and np.allclose(step, step[0], rtol=1e-6, atol=1e-9)
        hdus = [primary]
        for name, arr, unit in (("DATA", self.data, self.unit),
                                ("STAT", self.var, f"({self.unit})**2" if self.unit else "")):
            if arr is None:
                continue
            h = fits.ImageHDU(np.asarray(arr, dtype=np.float32), name=name)
            h.header["BUNIT"] = unit
            h.header["CTYPE1"] = "AWAV" if self.air else "WAVE"
            h.header["CUNIT1"] = "Angstrom"
            if linear:
                h.header["CRPIX1"] = 1.0
                h.header["CRVAL1"] = float(wave[0])
                h.header["CD1_1"] = float(step[0])
            hdus.append(h)
        if not linear:
            hdus.append(fits.ImageHDU(wave, name="WAVE"))
        return _write_hdus(path, hdus, overwrite)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "Spectrum":
        """Read a spectrum written by :meth:`to_fits` (or any 1-D ``DATA`` [+ ``STAT``] FITS).

        Raises
        ------
        NotFoundError
            If the file does not exist.
        InvalidFrameError
            If it is not FITS or has no 1-D data with a wavelength axis.
        """
        path = Path(path)
        with _open_fits(path) as hdul:
            names = [h.name for h in hdul]
            data_hdu = hdul["DATA"] if "DATA" in names else next(
                (h for h in hdul if h.data is not None and h.data.ndim == 1), None)
            if data_hdu is None or data_hdu.data is None or data_hdu.data.ndim != 1:
                raise InvalidFrameError(path, "no 1-D spectrum (DATA extension) found")
            h = data_hdu.header
            data = np.array(data_hdu.data, dtype=np.float32)
            var = np.array(hdul["STAT"].data, dtype=np.float32) if "STAT" in names else None
            if "WAVE" in names:
                wave = np.array(hdul["WAVE"].data, dtype=np.float64)
            elif "CRVAL1" in h:
                step = h.get("CD1_1", h.get("CDELT1", 1.0))
                wave = h["CRVAL1"] + step * (np.arange(data.size) + 1 - h.get("CRPIX1", 1.0))
                wave = wave * _wave_unit_factor(h.get("CUNIT1", "Angstrom"), path)
            else:
                raise InvalidFrameError(path, "spectrum has no wavelength axis (CRVAL1/CD1_1)")
            meta = {k.split("MUSEWISE ", 1)[1].lower(): v for k, v in hdul[0].header.items()
                    if k.startswith("MUSEWISE ") and k != "MUSEWISE KIND"}
            return cls(wave=wave, data=data, var=var, unit=h.get("BUNIT", ""),
                       label=hdul[0].header.get("OBJECT", ""),
                       air=h.get("CTYPE1", "AWAV") != "WAVE", meta=meta)


def _wave_unit_factor(cunit: str, path) -> float:
    """Factor converting a FITS CUNIT of a spectral axis to Angstrom."""
    factors = {"angstrom": 1.0, "a": 1.0, "aa": 1.0, "nm": 10.0, "um": 1e4, "m": 1e10}
    key = str(cunit).strip().lower()
    if key not in factors:
        raise InvalidFrameError(path, f"unsupported wavelength unit CUNIT {cunit!r}")
    return factors[key]


@dataclass(frozen=True, eq=False)
class Image:
    """A 2-D image (white light, wavelength plane, narrow band, IMAGE_FOV, master frame).

    Attributes
    ----------
    data : numpy.ndarray
        Pixel values (ny, nx), in ``unit``.
    var : numpy.ndarray or None
        Variance, ``unit`` squared.
    unit : str
        BUNIT of the data.
    label : str
        What this is, e.g. ``"white light"`` or ``"plane 5006.84 A"``.
    wcs_header : astropy.io.fits.Header or None
        Celestial WCS keywords (CTYPE1/2, CRVAL1/2, CD...), if known.
    meta : dict
        Scalars recorded in the FITS header on export.
    """

    data: np.ndarray
    var: np.ndarray | None = None
    unit: str = ""
    label: str = ""
    wcs_header: fits.Header | None = None
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) in pixels."""
        return tuple(self.data.shape)

    def to_fits(self, path: str | os.PathLike, overwrite: bool = True) -> Path:
        """Write the image as FITS with ``DATA`` (and ``STAT``) extensions and its WCS.

        Returns
        -------
        pathlib.Path
            The written file.

        Raises
        ------
        DatastoreError
            If the file exists and ``overwrite`` is False, or cannot be written.
        """
        primary = fits.PrimaryHDU()
        primary.header["HIERARCH MUSEWISE KIND"] = "IMAGE"
        primary.header["OBJECT"] = _ascii(self.label)
        for k, v in _meta_cards(self.meta):
            primary.header[k] = v
        hdus = [primary]
        for name, arr, unit in (("DATA", self.data, self.unit),
                                ("STAT", self.var, f"({self.unit})**2" if self.unit else "")):
            if arr is None:
                continue
            h = fits.ImageHDU(np.asarray(arr, dtype=np.float32), name=name)
            if self.wcs_header is not None:
                h.header.update(self.wcs_header)
            h.header["BUNIT"] = unit
            hdus.append(h)
        return _write_hdus(path, hdus, overwrite)

    @classmethod
    def read(cls, path: str | os.PathLike, ext: str | int | None = None) -> "Image":
        """Read a 2-D FITS product: IMAGE_FOV, a master bias/flat of one IFU, an exported image.

        Parameters
        ----------
        path : path-like
            The FITS file.
        ext : str or int, optional
            Extension to read. Default: ``DATA`` if it is 2-D, else the first 2-D HDU.
            A ``STAT`` extension of the same shape is read as the variance.

        Raises
        ------
        NotFoundError
            If the file does not exist.
        InvalidFrameError
            If it is not FITS, or has no 2-D image (a cube: use :class:`CubeViewer`).
        """
        path = Path(path)
        with _open_fits(path, memmap=True) as hdul:
            def ndim(h):
                return int(h.header.get("NAXIS", 0)) if h.is_image else 0

            if ext is not None:
                try:
                    hdu = hdul[ext]
                except (KeyError, IndexError) as exc:
                    raise InvalidFrameError(path, f"has no extension {ext!r}") from exc
            else:
                names = [h.name for h in hdul]
                hdu = hdul["DATA"] if "DATA" in names and ndim(hdul["DATA"]) == 2 else next(
                    (h for h in hdul if ndim(h) == 2), None)
            if hdu is None or ndim(hdu) != 2:
                if any(ndim(h) == 3 for h in hdul):
                    raise InvalidFrameError(path, "is a cube, not a 2-D image: use CubeViewer")
                raise InvalidFrameError(path, "has no 2-D image extension")
            try:
                data = np.array(hdu.data, dtype=np.float32)
            except (OSError, ValueError, TypeError) as exc:
                raise InvalidFrameError(path, f"image data unreadable ({exc})") from exc
            var = None
            # DATA pairs with STAT; a multi-IFU frame's CHAN05.DATA with CHAN05.STAT
            stat_name = hdu.name[:-4] + "STAT" if hdu.name.endswith("DATA") else "STAT"
            if stat_name in [h.name for h in hdul] and hdul[stat_name].header.get("NAXIS") == 2:
                stat = hdul[stat_name]
                if (stat.header["NAXIS2"], stat.header["NAXIS1"]) == data.shape:
                    var = np.array(stat.data, dtype=np.float32)
            label = hdul[0].header.get("HIERARCH ESO PRO CATG", "") or hdul[0].header.get(
                "OBJECT", "") or path.name
            return cls(data=data, var=var, unit=hdu.header.get("BUNIT", ""), label=str(label),
                       wcs_header=celestial_header(hdu.header), meta={"file": path.name})


def celestial_header(header: fits.Header) -> fits.Header | None:
    """The celestial WCS keywords (axes 1 and 2) of a header, or None if there are none."""
    keys = ["CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2",
            "CD1_1", "CD1_2", "CD2_1", "CD2_2", "CDELT1", "CDELT2", "PC1_1", "PC1_2", "PC2_1",
            "PC2_2", "EQUINOX", "RADESYS"]
    out = fits.Header()
    for k in keys:
        if k in header:
            out[k] = header[k]
    return out if "CTYPE1" in out else None
