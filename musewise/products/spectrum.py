"""A 1-D spectrum with its variance, written and read as FITS (``DATA``/``STAT`` extensions).

A spaxel or aperture spectrum of a cube is ~3681 values: a small in-memory
container, so what a viewer shows can be saved and read back with the same
names and units.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..exceptions import InvalidFrameError
from .fitsio import open_fits, product_hdus, write_hdus
from .wcs import spectral_axis

__all__ = ["Spectrum"]


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
        step = np.diff(wave)
        linear = wave.size > 1 and np.allclose(step, step[0], rtol=1e-6, atol=1e-9)
        cards = {"CTYPE1": "AWAV" if self.air else "WAVE", "CUNIT1": "Angstrom"}
        if linear:
            cards.update(CRPIX1=1.0, CRVAL1=float(wave[0]), CD1_1=float(step[0]))
        hdus = product_hdus("SPECTRUM", self.label, self.meta, self.data, self.var, self.unit, cards)
        if not linear:
            hdus.append(fits.ImageHDU(wave, name="WAVE"))
        return write_hdus(path, hdus, overwrite)

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
        with open_fits(path) as hdul:
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
                wave, _air = spectral_axis(h, data.size, axis=1, path=path)
            else:
                raise InvalidFrameError(path, "spectrum has no wavelength axis (CRVAL1/CD1_1)")
            meta = {k.split("MUSEWISE ", 1)[1].lower(): v for k, v in hdul[0].header.items()
                    if k.startswith("MUSEWISE ") and k != "MUSEWISE KIND"}
            return cls(wave=wave, data=data, var=var, unit=h.get("BUNIT", ""),
                       label=hdul[0].header.get("OBJECT", ""),
                       air=h.get("CTYPE1", "AWAV") != "WAVE", meta=meta)
