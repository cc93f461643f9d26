"""OUTPUT_WCS: the common grid a field's exposures are resampled onto.

muse_scipost and muse_exp_combine take an ``OUTPUT_WCS`` frame to fix where and how
large the output cube is ("for example a MUSE cube", MUSE DRS manual). Resampling every
exposure of a field onto one such grid is what lets their cubes be combined voxel by
voxel afterwards (:mod:`musewise.recipes.cubecombine`), without the ~25 GB per exposure
muse_exp_combine needs to hold all pixel tables at once.

:func:`write_output_wcs` writes a small file holding only the grid of a cube: its
celestial and spectral WCS and its size, on a ``DATA`` cube of int8 zeros (a quarter
of a float32 cube's size: 400 MB for 24 IFUs). It carries no
``MJD-OBS`` or recipe, so :meth:`Archive.ingest` archives it as a static calibration,
certified for the range given (``valid_from``, ``valid_to`` in MJD: the nights of the
field); from then on scipost and exp_combine runs of those nights select it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.io import fits

__all__ = ["GRID_CARDS", "write_output_wcs"]

#: WCS keywords copied from the reference cube's DATA header.
GRID_CARDS = ("WCSAXES", "CTYPE1", "CTYPE2", "CTYPE3", "CUNIT1", "CUNIT2", "CUNIT3", "CRPIX1", "CRPIX2",
              "CRPIX3", "CRVAL1", "CRVAL2", "CRVAL3", "CD1_1", "CD1_2", "CD2_1", "CD2_2", "CD3_3", "CD1_3",
              "CD2_3", "CD3_1", "CD3_2", "RADESYS", "EQUINOX", "SPECSYS")


def write_output_wcs(cube_path: str | os.PathLike, out_path: str | os.PathLike, *,
                     mode: str | None = None) -> Path:
    """Write the grid of a cube as an ``OUTPUT_WCS`` frame.

    Parameters
    ----------
    cube_path : path
        A MUSE cube (``DATA`` extension with a 3D WCS), e.g. a field's combined cube.
    out_path : path
        The OUTPUT_WCS file: a primary header (``ESO PRO CATG = OUTPUT_WCS``, ``OBJECT``,
        ``ESO INS MODE``) and a ``DATA`` cube of the cube's size (int8 zeros) whose header
        has the cube's WCS.
    mode : str, optional
        ``ESO INS MODE`` (default: the cube's).

    Returns
    -------
    Path
        ``out_path``.
    """
    with fits.open(cube_path, memmap=True) as h:
        p0, dh = h[0].header, h["DATA"].header
        nl, ny, nx = int(dh["NAXIS3"]), int(dh["NAXIS2"]), int(dh["NAXIS1"])
        ph = fits.Header()
        ph["INSTRUME"] = "MUSE"
        ph["HIERARCH ESO PRO CATG"] = "OUTPUT_WCS"
        ph["OBJECT"] = str(p0.get("OBJECT", ""))
        ph["HIERARCH ESO INS MODE"] = mode or str(p0.get("ESO INS MODE", ""))
        ph["HIERARCH MUSEWISE GRID FROM"] = (Path(cube_path).name[:40], "cube whose grid this is")
        ph["ORIGIN"] = "musewise.products.outputwcs"
        eh = fits.Header()
        for key in GRID_CARDS:
            if key in dh:
                eh[key] = (dh[key], dh.comments[key])
    # muse_scipost takes the grid from a 3D DATA extension (a 2D image of the same WCS is
    # ignored: "fit to data", MUSE DRS 2.8.7): int8 zeros, 1 byte a voxel.
    fits.HDUList([fits.PrimaryHDU(header=ph),
                  fits.ImageHDU(np.zeros((nl, ny, nx), np.int8), eh, name="DATA")]).writeto(out_path, overwrite=True)
    return Path(out_path)
