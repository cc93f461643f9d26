"""QC of what ``muse_standard`` and ``muse_scibasic`` make besides the response: the standard's cube,
the telluric correction, and the pre-reduced CCD images (``*_RED``).

* ``std`` (DATACUBE_STD, STD_TELLURIC): the star found in the standard's cube and its
  FWHM; the telluric correction's depth in the A (7600 A) and B (6870 A) bands and its
  values elsewhere, which must be physical (a transmission between 0 and 1, 1 outside
  the bands).
* ``reduced`` (OBJECT_RED, STD_RED, SKY_RED...): the bias-subtracted, flat-fielded CCD image
  of an exposure, its flagged pixels and its level.

DATACUBE_STD is in counts and keeps its sky; its spatial axes may have no celestial WCS
in arcsec, so the FWHM falls back on the MUSE spaxel (0.2 arcsec) when the header has none.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..products.cube import white_light
from .measures import Measurement, fit_psf_fwhm, robust_std

#: MUSE's WFM spaxel (arcsec), for a cube whose header gives no celestial scale.
SPAXEL_ARCSEC = 0.2
#: Telluric bands (Angstrom): O2 A band, O2 B band; and a stretch free of telluric absorption.
A_BAND, B_BAND, CLEAR = (7590.0, 7700.0), (6860.0, 6960.0), (5000.0, 6200.0)


def measure_std_cube(path) -> Measurement:
    """The star in a DATACUBE_STD: found, where, how wide.

    Returns
    -------
    Measurement
        ``n_psf`` compact sources fitted in the white light (the standard: 1 expected);
        ``star.fwhm`` FWHM of the brightest (arcsec), ``star.peak_snr`` its peak over
        the image's robust noise, ``star.x`` / ``star.y`` (spaxels, 0-based);
        ``pixscale`` (arcsec) used; ``nan_fraction`` of spaxels without data.
    """
    from astropy.io import fits

    from ..products.wcs import pixel_scale_arcsec

    m = Measurement()
    with fits.open(path, memmap=True) as h:
        ext = h["DATA"] if "DATA" in h else h[0]
        header = ext.header.copy()
        wl = white_light(ext.data)
    try:
        scale = pixel_scale_arcsec(header)
    except Exception:  # no celestial WCS: the standard's cube of a few IFUs may have none
        scale = None
    if not scale or not np.isfinite(scale) or scale > 5 * SPAXEL_ARCSEC or scale <= 0:
        m.notes.append(f"no celestial scale in arcsec in the header: FWHM with the {SPAXEL_ARCSEC} arcsec spaxel")
        scale = SPAXEL_ARCSEC
    m.add("pixscale", scale, "arcsec")
    m.add("nan_fraction", float(np.mean(~np.isfinite(wl))), "")
    psf = fit_psf_fwhm(wl, n_sources=3, box=5)
    m.add("n_psf", len(psf), "")
    if psf:
        star = max(psf, key=lambda p: p["peak"])
        noise = robust_std(wl)
        m.add("star.fwhm", star["fwhm"] * scale, "arcsec")
        m.add("star.peak_snr", star["peak"] / noise if noise else float("nan"), "")
        m.add("star.x", star["x"], "spaxel")
        m.add("star.y", star["y"], "spaxel")
    else:
        m.notes.append("no star found in the standard's cube")
    m.arrays.update(white=wl, psf=psf)
    return m


def measure_telluric(path) -> Measurement:
    """Depth of a STD_TELLURIC correction in the A and B bands, and whether it is physical.

    The table (``lambda`` Angstrom, ``ftelluric`` the transmission the spectrum is divided
    by) is 1 outside the telluric bands.

    Returns
    -------
    Measurement
        ``a_band.min`` / ``b_band.min`` the lowest transmission in the A / B band (at
        Paranal, airmass 1-2 and the MUSE resolution: ~0.2-0.5 in A, ~0.6-0.9 in B);
        ``a_band.depth`` = 1 - a_band.min; ``trans.min`` and ``trans.max`` over the table
        (a transmission is between 0 and 1); ``clear.dev`` the largest |transmission - 1|
        in 5000-6200 A, where the atmosphere absorbs no band.
    """
    from astropy.table import Table

    m = Measurement()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Table.read(path, hdu=1)
    cols = {c.lower(): c for c in t.colnames}
    name = cols.get("ftelluric") or next((cols[c] for c in cols if c != "lambda" and "err" not in c), None)
    lam = np.asarray(t[cols["lambda"]], float)
    tr = np.asarray(t[name], float)
    ok = np.isfinite(tr)
    lam, tr = lam[ok], tr[ok]
    m.add("n_points", lam.size, "")
    if not lam.size:
        m.notes.append("the telluric table holds no finite point")
        return m
    m.add("trans.min", float(tr.min()), "")
    m.add("trans.max", float(tr.max()), "")
    for key, (lo, hi) in (("a_band", A_BAND), ("b_band", B_BAND)):
        sel = (lam >= lo) & (lam <= hi)
        if sel.any():
            m.add(f"{key}.min", float(tr[sel].min()), "")
    if "a_band.min" in m.values:
        m.add("a_band.depth", 1.0 - m.values["a_band.min"], "")
    clear = (lam >= CLEAR[0]) & (lam <= CLEAR[1])
    if clear.any():
        m.add("clear.dev", float(np.max(np.abs(tr[clear] - 1.0))), "")
    m.arrays["curve"] = (lam, tr)
    return m


def measure_std_fluxes(path) -> Measurement:
    """The standard star's spectrum as ``muse_standard`` extracted it (STD_FLUXES: 1-D DATA and STAT).

    Returns
    -------
    Measurement
        ``snr.median`` median signal-to-noise per wavelength bin (DATA / sqrt(STAT));
        ``flux.median`` (BUNIT); ``flux.negative_fraction`` of bins at or below zero (the
        star not in the extraction aperture).
    """
    from astropy.io import fits

    m = Measurement()
    with fits.open(path, memmap=True) as h:
        data = np.asarray(h["DATA"].data, float).ravel()
        stat = np.asarray(h["STAT"].data, float).ravel() if "STAT" in h else None
        unit = str(h["DATA"].header.get("BUNIT", "")).strip()
    ok = np.isfinite(data)
    m.add("flux.median", float(np.median(data[ok])) if ok.any() else float("nan"), unit)
    m.add("flux.negative_fraction", float(np.mean(data[ok] <= 0)) if ok.any() else float("nan"), "")
    if stat is not None:
        good = ok & np.isfinite(stat) & (stat > 0)
        m.add("snr.median", float(np.median(data[good] / np.sqrt(stat[good]))) if good.any() else 0.0, "")
    m.arrays["spectrum"] = data
    return m


def measure_std(path) -> Measurement:
    """DATACUBE_STD, STD_TELLURIC or STD_FLUXES, by the product's ``ESO PRO CATG``."""
    from astropy.io import fits

    catg = str(fits.getheader(path, 0).get("HIERARCH ESO PRO CATG", "")).strip()
    m = {"STD_TELLURIC": measure_telluric, "STD_FLUXES": measure_std_fluxes}.get(catg, measure_std_cube)(path)
    m.arrays["category"] = catg
    return m


def measure_reduced_image(path) -> Measurement:
    """A pre-reduced CCD image of ``muse_scibasic`` (OBJECT_RED, STD_RED, SKY_RED...).

    Returns
    -------
    Measurement
        ``dq_fraction`` of pixels with a non-zero DQ; ``level.median`` and ``level.p99``
        of the good pixels (count: sky and sources, flat-fielded); ``noise`` robust
        scatter (count).
    """
    from astropy.io import fits

    m = Measurement()
    with fits.open(path, memmap=True) as h:
        data = np.asarray(h["DATA"].data, np.float32)
        dq = np.asarray(h["DQ"].data) if "DQ" in h else np.zeros(data.shape, np.uint8)
    good = (dq == 0) & np.isfinite(data)
    m.add("dq_fraction", float(np.mean(~good)), "")
    if good.any():
        v = data[good][:: max(1, int(good.sum()) // 2_000_000)]
        m.add("level.median", float(np.median(v)), "count")
        m.add("level.p99", float(np.percentile(v, 99)), "count")
        m.add("noise", robust_std(v), "count")
    m.arrays["image"] = data[:: max(1, data.shape[0] // 512), :: max(1, data.shape[1] // 512)]
    return m


__all__ = ["measure_reduced_image", "measure_std", "measure_std_cube", "measure_std_fluxes", "measure_telluric"]
