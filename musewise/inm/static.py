"""Static calibrations: the files ESO ships with the pipeline, made for the model.

Each is consistent with what the simulator does, so the real pipeline reduces
the simulated frames end to end:

=================  ===============================================  ==================
PRO CATG           Content                                           Used by
=================  ===============================================  ==================
LINE_CATALOG       Ne, Xe, HgCd arc lines (``VERSION = 3``)          muse_wavecal, muse_lsf
GEOMETRY_TABLE     slice positions in the field (``layout``)          muse_scibasic, twilight
EXTINCT_TABLE      Paranal extinction (mag/airmass)                   muse_scipost, standard
STD_FLUX_TABLE     flux of the simulated standard star                muse_standard
STD_RESPONSE       instrument response (throughput model, detected    muse_scipost (fallback)
                   fraction of the pixels)
FILTER_LIST        white, Johnson V, Cousins R and I passbands        muse_scipost (images)
SKY_LINES          night-sky line list                                muse_scipost (model)
ASTROMETRY_WCS     where the pointing falls among the simulated IFUs  muse_scipost
=================  ===============================================  ==================

Astrometry. muse_scipost references the pixel-table positions to the centre of the
data it is given (the middle of their x and y extent) and puts the pointing (``RA``,
``DEC``) at that centre plus the ``CRPIX1/2`` of ``ASTROMETRY_WCS`` (without one, at
the centre itself: "Using default MUSE WFM astrometry"). For all 24 IFUs that centre
is the field centre; for a subset it is not (for IFU 1 alone, 138 spaxels = 27.6
arcsec north of it). :func:`astrometry_wcs` therefore gives the offset from the
centre of the simulated IFUs to the field centre, where the instrument model puts the
pointing (:data:`musewise.inm.layout.FIELD_CENTRE`). The pipeline replaces its
``CRVAL1/2`` by the exposure's pointing. Verified with MUSE DRS 2.8.7 on IFU 1 and
IFUs 1-2: simulated stars within 0.03 arcsec (``tests/test_dpu.py``). The frames of
:func:`.programme.simulate_programme` follow the same convention (the true pointing in
their headers, :func:`.tangent.telescope_pointing`, and this solution for the simulated
IFUs in their static folder); ``tests/test_programme.py`` checks PA 0 and 90.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.table import Table

from ..exceptions import ConfigurationError
from ..products.lines import sky_line_fluxes
from . import layout as L
from .lamps import arc_lines
from .model import SUPPORTED_MODES, detected_fraction
from .scene import STANDARD_STAR, StandardStar
from .spectra import extinction, response_mag, throughput

#: Wavelength grid of the tabulated static calibrations (Angstrom).
TABLE_WAVELENGTHS = np.arange(4000.0, 10000.1, 5.0)


def _write(path: Path, table_hdus, catg: str, mode: str | None = None, **primary) -> Path:
    ph = fits.PrimaryHDU()
    ph.header["INSTRUME"] = "MUSE"
    ph.header["HIERARCH ESO PRO CATG"] = catg
    if mode:
        ph.header["HIERARCH ESO INS MODE"] = mode
    ph.header["ORIGIN"] = "musewise.inm (simulated static calibration)"
    for k, v in primary.items():
        ph.header[k] = v
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        fits.HDUList([ph, *table_hdus]).writeto(path, overwrite=True)
    return path


def line_catalog_table() -> Table:
    """The arc ``LINE_CATALOG``: lambda (Angstrom), flux, ion, quality."""
    lines = arc_lines()
    t = Table()
    t["lambda"] = np.array([x.wavelength for x in lines], np.float32)
    t["flux"] = np.array([x.flux for x in lines], np.float32)
    t["ion"] = np.array([x.ion for x in lines])
    t["quality"] = np.array([x.quality for x in lines], np.int32)
    t["lambda"].unit = "Angstrom"
    return t


#: Units of the ``SKY_LINES`` columns, spelled as muse_scipost requires them (it refuses
#: others with "Unsupported flux unit"; it also accepts ``erg/(s cm^2 arcsec^2)``).
SKY_LINES_UNITS = {"lambda": "Angstrom", "flux": "10**(-20)*erg/(s cm^2 arcsec^2)"}


def sky_lines_table() -> Table:
    """The ``SKY_LINES`` table (extension ``LINES``) of the simulated night sky.

    The columns muse_scipost's sky model reads (MUSE DRS 2.8.7): ``name``, ``group``
    (lines fitted with one common flux scale share a group; here each line is its own),
    ``lambda`` (air, Angstrom), ``flux`` (surface brightness, 10**-20 erg s-1 cm-2
    arcsec-2, as the instrument model puts it in the frames: no extinction, the sky
    shines from inside the atmosphere) and ``dq`` (0: use the line). The recipe refits
    the fluxes on each exposure; these are its first guesses.
    """
    wl, fl = sky_line_fluxes()
    t = Table()
    t["name"] = np.array([f"SKY{w:.0f}" for w in wl])
    t["group"] = np.arange(len(wl), dtype=np.int32)
    t["lambda"] = wl
    t["flux"] = fl * 1e20
    t["dq"] = np.zeros(len(wl), dtype=np.int32)
    return t


def geometry_table() -> Table:
    """The ``GEOMETRY_TABLE`` of all 24 IFUs x 48 slices (units: spaxels, degrees)."""
    rows = []
    for ifu in range(1, 25):
        for k in range(1, L.N_SLICE + 1):
            s, x, y = L.slice_sky_position(ifu, k)
            rows.append((ifu, k, s, x, y, 0.0, L.SLICE_WIDTH_SKY, 0.01, 0.01, 0.01, 0.1))
    names = ("SubField", "SliceCCD", "SliceSky", "x", "y", "angle", "width",
             "xerr", "yerr", "angleerr", "widtherr")
    t = Table(rows=rows, names=names, dtype=("i4", "i4", "i4") + ("f8",) * 8)
    for c in ("x", "y", "width", "xerr", "yerr", "widtherr"):
        t[c].unit = "pix"
    t["angle"].unit = "deg"
    t["angleerr"].unit = "deg"
    return t


def data_centre(ifus: Sequence[int]) -> tuple[float, float]:
    """Centre (geometry-frame spaxels) of the field covered by ``ifus``, as the pipeline takes it.

    The middle of the x and y extent of the slices of those IFUs in :func:`geometry_table`.
    """
    ys = [L.slice_sky_position(i, k)[2] for i in ifus for k in range(1, L.N_SLICE + 1)]
    xs = [L.slice_sky_position(i, k)[1] for i in ifus for k in range(1, L.N_SLICE + 1)]
    half = 0.5 * L.SLICE_WIDTH_SKY
    return 0.5 * (min(xs) - half + max(xs) + half), 0.5 * (min(ys) + max(ys))


def astrometry_wcs(ifus: Sequence[int] = tuple(range(1, 25)), mode: str = "WFM-NOAO-N") -> fits.Header:
    """The ``ASTROMETRY_WCS`` header for a reduction of ``ifus``.

    A bare header, as muse_astrometry writes: a TAN projection with 0.2 arcsec spaxels,
    North up and East left at ``ESO INS DROT POSANG = 0`` (the pipeline rotates it by
    the position angle), and ``CRPIX1/2`` the offset (spaxels) from the centre of the
    data of ``ifus`` (:func:`data_centre`) to the field centre, where the pointing is.
    ``CRVAL1/2`` are placeholders the pipeline replaces with each exposure's ``RA``/``DEC``.

    Parameters
    ----------
    ifus : sequence of int
        The IFUs whose pixel tables muse_scipost combines (all 24 by default: ``CRPIX = 0``).
    mode : str
        ``ESO INS MODE``.
    """
    cx, cy = data_centre(ifus)
    h = fits.Header()
    h["WCSAXES"] = 2
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    h["CRPIX1"] = (float(L.FIELD_CENTRE[0] - cx), "[pix] field centre - data centre")
    h["CRPIX2"] = (float(L.FIELD_CENTRE[1] - cy), "[pix] field centre - data centre")
    h["CRVAL1"], h["CRVAL2"] = 0.0, 0.0
    scale = L.SPAXEL / 3600.0
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -scale, 0.0, 0.0, scale
    h["INSTRUME"] = "MUSE"
    h["HIERARCH ESO PRO CATG"] = "ASTROMETRY_WCS"
    h["HIERARCH ESO INS MODE"] = mode
    h["HIERARCH MUSEWISE IFUS"] = (",".join(str(int(i)) for i in sorted(ifus)), "IFUs this solution is for")
    h["ORIGIN"] = "musewise.inm (simulated static calibration)"
    return h


def _filter(name, lam, thr):
    hdu = fits.table_to_hdu(Table([lam, thr], names=("lambda", "throughput")))
    hdu.header["EXTNAME"] = name
    return hdu


def filter_list() -> list[fits.BinTableHDU]:
    """``FILTER_LIST`` extensions: white (4650-9300 A), Johnson_V, Cousins_R, Cousins_I."""
    lam = np.arange(4500.0, 10000.1, 5.0)

    def box(lo, hi, edge):
        return 1.0 / (1 + np.exp(-(lam - lo) / edge)) / (1 + np.exp((lam - hi) / edge))

    return [_filter("white", lam, ((lam >= 4650) & (lam <= 9300)).astype(float)),
            _filter("Johnson_V", lam, box(4800, 6400, 60) * np.exp(-0.5 * ((lam - 5450) / 500) ** 2)),
            _filter("Cousins_R", lam, box(5600, 7600, 80)),
            _filter("Cousins_I", lam, box(7100, 9000, 80))]


def write_static_calibrations(outdir: str | os.PathLike, mode: str = "WFM-NOAO-N",
                              standard: StandardStar = STANDARD_STAR,
                              ifus: Sequence[int] = tuple(range(1, 25))) -> dict[str, Path]:
    """Write the static calibrations the pipeline needs for simulated data.

    Parameters
    ----------
    outdir : path
        Folder (created if missing); files are named ``<PRO CATG>.fits``.
    mode : str
        ``ESO INS MODE`` the calibrations are for (response and headers).
    standard : StandardStar
        The standard star described by ``STD_FLUX_TABLE``.
    ifus : sequence of int
        The simulated IFUs, which ``ASTROMETRY_WCS`` is for (:func:`astrometry_wcs`).

    Returns
    -------
    dict
        ``{PRO CATG: path}`` for LINE_CATALOG, GEOMETRY_TABLE, EXTINCT_TABLE,
        STD_FLUX_TABLE, STD_RESPONSE, FILTER_LIST, SKY_LINES and ASTROMETRY_WCS.

    Raises
    ------
    ConfigurationError
        If the mode is not simulated.
    """
    if mode not in SUPPORTED_MODES:
        raise ConfigurationError(f"mode {mode!r} is not simulated; use one of {SUPPORTED_MODES}")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    lam = TABLE_WAVELENGTHS
    files = {}

    lc = fits.table_to_hdu(line_catalog_table())
    lc.header["EXTNAME"] = "LINE_CATALOG"
    lc.header["VERSION"] = 3
    files["LINE_CATALOG"] = _write(out / "LINE_CATALOG.fits", [lc], "LINE_CATALOG", VERSION=3)

    files["GEOMETRY_TABLE"] = _write(out / "GEOMETRY_TABLE.fits",
                                     [fits.table_to_hdu(geometry_table())], "GEOMETRY_TABLE", mode)
    # Where the pointing is relative to the data of the simulated IFUs (module docstring).
    files["ASTROMETRY_WCS"] = out / "ASTROMETRY_WCS.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        fits.PrimaryHDU(header=astrometry_wcs(ifus, mode)).writeto(files["ASTROMETRY_WCS"], overwrite=True)

    ext = Table([lam, extinction(lam)], names=("lambda", "extinction"))
    ext["lambda"].unit = "Angstrom"  # extinction: mag per airmass (no FITS unit)
    files["EXTINCT_TABLE"] = _write(out / "EXTINCT_TABLE.fits", [fits.table_to_hdu(ext)],
                                    "EXTINCT_TABLE")

    flux = standard.flux(lam)
    std = fits.table_to_hdu(Table([lam, flux, 0.01 * flux], names=("lambda", "flux", "fluxerr")))
    std.header["EXTNAME"] = standard.name
    std.header["RA"] = standard.ra
    std.header["DEC"] = standard.dec
    std.columns["lambda"].unit = "Angstrom"
    std.columns["flux"].unit = "erg/s/cm**2/Angstrom"
    std.columns["fluxerr"].unit = "erg/s/cm**2/Angstrom"
    files["STD_FLUX_TABLE"] = _write(out / "STD_FLUX_TABLE.fits", [std], "STD_FLUX_TABLE")

    # Keep the response finite where the blocking filter kills the light; the pixel
    # sampling and the slices' mean throughput take their share too (detected_fraction).
    ok = throughput(lam, mode) > 1e-3
    resp = np.where(ok, response_mag(lam, mode), response_mag(lam[ok][0], mode)) \
        + 2.5 * np.log10(detected_fraction())
    rt = Table([lam, resp, np.full_like(lam, 0.01)], names=("lambda", "response", "resperr"))
    rt["lambda"].unit = "Angstrom"
    # FFCORR: the response applies to pixel tables corrected by the flat-field spectrum (what
    # muse_scibasic writes); without it muse_scipost reverts that correction and the fluxes
    # come out 0.6-1.8x the model's (measured on the sky lines, 5577-9000 A; 0.94x with it).
    files["STD_RESPONSE"] = _write(out / "STD_RESPONSE.fits", [fits.table_to_hdu(rt)],
                                   "STD_RESPONSE", mode, **{"HIERARCH ESO DRS MUSE FLUX FFCORR": True})

    files["FILTER_LIST"] = _write(out / "FILTER_LIST.fits", filter_list(), "FILTER_LIST")

    sl = fits.table_to_hdu(sky_lines_table())
    sl.header["EXTNAME"] = "LINES"
    # The pipeline compares the unit strings literally (astropy would rewrite them).
    for k, name in enumerate(sl.columns.names, start=1):
        if name in SKY_LINES_UNITS:
            sl.header[f"TUNIT{k}"] = SKY_LINES_UNITS[name]
    files["SKY_LINES"] = _write(out / "SKY_LINES.fits", [sl], "SKY_LINES")
    return files
