"""The OFFSET_LIST of ``muse_exp_align``: the offsets found between a field's exposures.

muse_exp_align detects point sources in the white-light image (IMAGE_FOV) of every
exposure, matches them between exposures and writes, per exposure, the correction
to add to its coordinates so that all line up (``RA_OFFSET``, ``DEC_OFFSET`` in degrees;
``FLUX_SCALE``). The exposures' own pointings come from their headers, which already
include the telescope offsets (``ESO OCS OFFS DRA/DDEC``): with an exact pointing the
corrections are ~0 whatever the dithers, and a correction of the size of a dither
means a header is wrong. :func:`offsets_against_headers` puts both side by side.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..exceptions import InvalidFrameError

__all__ = ["offsets_against_headers", "plot_offsets", "read_offset_list"]


def read_offset_list(path: str | os.PathLike) -> Table:
    """The OFFSET_LIST table with the corrections in arcsec on the sky.

    Returns
    -------
    astropy.table.Table
        The recipe's columns (``DATE_OBS``, ``MJD_OBS``, ``RA_OFFSET``, ``DEC_OFFSET``
        in degrees, ``FLUX_SCALE`` when present) plus ``dra_arcsec`` (East, i.e.
        RA_OFFSET x cos Dec) and ``ddec_arcsec`` (North).

    Raises
    ------
    InvalidFrameError
        If the file has no table with RA_OFFSET and DEC_OFFSET.
    """
    with fits.open(path) as hdul:
        tab = None
        for hdu in hdul[1:]:
            if isinstance(hdu, fits.BinTableHDU) and {"RA_OFFSET", "DEC_OFFSET"} <= set(hdu.columns.names):
                tab = Table(hdu.data)
                break
        dec0 = hdul[0].header.get("DEC")
    if tab is None:
        raise InvalidFrameError(path, "no OFFSET_LIST table (columns RA_OFFSET, DEC_OFFSET)")
    cosd = np.cos(np.radians(float(dec0))) if dec0 is not None else 1.0
    tab["dra_arcsec"] = np.asarray(tab["RA_OFFSET"], float) * cosd * 3600.0
    tab["ddec_arcsec"] = np.asarray(tab["DEC_OFFSET"], float) * 3600.0
    return tab


def offsets_against_headers(offset_list: str | os.PathLike, images: Sequence[str | os.PathLike]) -> Table:
    """Each exposure's header dither beside the correction muse_exp_align found.

    Parameters
    ----------
    offset_list : path
        The OFFSET_LIST product.
    images : sequence of path
        The IMAGE_FOV (or cubes) of the exposures aligned; matched to the list by DATE-OBS.

    Returns
    -------
    astropy.table.Table
        One row per image: ``date_obs``, ``posang`` (deg), header dither ``offs_dra``,
        ``offs_ddec`` (arcsec West, North), correction found ``dra``, ``ddec`` (arcsec East,
        North; NaN when the exposure is not in the list) and its length ``shift`` (arcsec).
    """
    tab = read_offset_list(offset_list)
    by_date = {str(r["DATE_OBS"]).strip()[:23]: r for r in tab} if "DATE_OBS" in tab.colnames else {}
    rows = []
    for path in images:
        h = fits.getheader(path, 0)
        date = str(h.get("DATE-OBS", "")).strip()
        r = by_date.get(date[:23])
        dra = float(r["dra_arcsec"]) if r is not None else np.nan
        ddec = float(r["ddec_arcsec"]) if r is not None else np.nan
        rows.append((date, float(h.get("ESO INS DROT POSANG", 0.0)), float(h.get("ESO OCS OFFS DRA", 0.0)),
                     float(h.get("ESO OCS OFFS DDEC", 0.0)), dra, ddec, float(np.hypot(dra, ddec))))
    out = Table(rows=rows, names=("date_obs", "posang", "offs_dra", "offs_ddec", "dra", "ddec", "shift"),
                dtype=("U32", "f8", "f8", "f8", "f8", "f8", "f8"))
    for c in ("offs_dra", "offs_ddec", "dra", "ddec", "shift"):
        out[c].unit = "arcsec"
        out[c].info.format = ".3f"
    out["posang"].unit = "deg"
    return out


def plot_offsets(table: Table, ax=None):
    """Plot the header dithers and the corrections found (arcsec), one point per exposure."""
    import matplotlib.pyplot as plt

    ax = ax or plt.figure(figsize=(5, 5)).gca()
    ax.scatter(table["offs_dra"], table["offs_ddec"], marker="s", facecolors="none", edgecolors="C0",
               label="header dither (OCS OFFS DRA, DDEC; West, North)")
    ax.scatter(-np.asarray(table["dra"]), table["ddec"], marker="x", color="C3",
               label="correction found by muse_exp_align (West, North)")
    for r in table:
        ax.annotate(str(r["date_obs"])[11:19], (r["offs_dra"], r["offs_ddec"]), fontsize=7)
    ax.axhline(0, color="0.8", lw=0.5)
    ax.axvline(0, color="0.8", lw=0.5)
    ax.set_xlabel("West [arcsec]")
    ax.set_ylabel("North [arcsec]")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(f"{len(table)} exposures: largest correction {np.nanmax(table['shift']):.3f} arcsec", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return ax
