"""A 2-D image product with its variance and celestial WCS (white light, plane, IMAGE_FOV, master).

An image is small (320 x 320 for a cube's plane) and held in memory; it is
written and read as FITS with ``DATA``/``STAT`` extensions and its WCS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..exceptions import InvalidFrameError
from .fitsio import open_fits, product_hdus, write_hdus
from .wcs import celestial_header

__all__ = ["Image"]


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
        hdus = product_hdus("IMAGE", self.label, self.meta, self.data, self.var, self.unit,
                            self.wcs_header)
        return write_hdus(path, hdus, overwrite)

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
            If it is not FITS, or has no 2-D image (a cube: use
            :class:`~musewise.products.cube.MuseCube`).
        """
        path = Path(path)
        with open_fits(path, memmap=True) as hdul:
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
                    raise InvalidFrameError(path, "is a cube, not a 2-D image: read it with MuseCube.open "
                                            "(or open it with CubeViewer)")
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
