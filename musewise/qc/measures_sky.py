"""QC of the sky that ``muse_scipost`` modelled and subtracted (``skymethod=model``, ``--save skymodel``).

One exposure's sky model is several products, measured as one QC type ``sky``:

* ``SKY_SPECTRUM``: the mean spectrum of the darkest spaxels (the sky mask), a table
  ``lambda`` (Angstrom), ``data`` (flux per spaxel, the pixel table's unit);
* ``SKY_LINES``: the fitted sky-line fluxes, a table ``lambda`` (Angstrom), ``flux``
  (10**(-20) erg/(s cm2 arcsec2)), per line of the list the fit started from (the run's
  input ``SKY_LINES``);
* ``SKY_CONTINUUM``: what is left of the sky spectrum once the lines are fitted, a table
  ``lambda``, ``flux`` (10**(-20) erg/(s cm2 Angstrom arcsec2));
* ``SKY_MASK`` and ``SKY_IMAGE``: the image the darkest spaxels were picked from and the
  mask of those spaxels.

The strong lines are those the cube QC checks (:data:`musewise.products.lines.QC_SKY_LINES`).
They are compared with the same product of the previous nights and, for SKY_LINES, with
the line list the fit started from.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..products.lines import QC_SKY_LINES
from .measures import Measurement, robust_std

#: Half-width (Angstrom) of the window a line's flux is taken in: the 8345 and 8827 A
#: OH features are blends of lines a few Angstrom apart.
LINE_WINDOW = 3.0
#: Wavelength range (Angstrom) where the continuum level is taken.
CONTINUUM_BAND = (5000.0, 9000.0)


def _read_table(path):
    from astropy.io import fits
    from astropy.table import Table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Table.read(path, hdu=1)
        catg = str(fits.getheader(path, 0).get("HIERARCH ESO PRO CATG", "")).strip()
    cols = {c.lower(): c for c in t.colnames}
    value = cols.get("flux") or cols.get("data")
    if "lambda" not in cols or value is None:
        return catg, None, None, ""
    unit = str(t[value].unit or "")
    return catg, np.asarray(t[cols["lambda"]], float), np.asarray(t[value], float), unit


def line_fluxes(lam, flux, *, spectrum: bool, lines=QC_SKY_LINES, window: float = LINE_WINDOW) -> dict[float, float]:
    """Flux of each strong sky line: summed over the listed lines within ``window`` (a line table)
    or integrated over the window minus the continuum of side bands (a spectrum, flux x Angstrom)."""
    out = {}
    for line in lines:
        near = np.abs(lam - line) <= window
        if not near.any():
            continue
        if not spectrum:
            out[float(line)] = float(np.nansum(flux[near]))
            continue
        side = (np.abs(lam - line) > window + 2.0) & (np.abs(lam - line) <= window + 12.0)
        if not side.any():
            continue
        dl = float(np.median(np.diff(lam))) if lam.size > 1 else 1.0
        out[float(line)] = float(np.nansum(flux[near] - np.nanmedian(flux[side])) * dl)
    return out


def _dex(a: dict, b: dict) -> dict[float, float]:
    # log10 of a / b per line where both are positive.
    return {k: float(np.log10(a[k] / b[k])) for k in a if k in b and a[k] > 0 and b[k] > 0}


def measure_sky(path, previous=(), model_lines=None) -> Measurement:
    """A sky-model product of ``muse_scipost`` against the previous nights' and the line list it started from.

    Parameters
    ----------
    path : path-like
        SKY_SPECTRUM, SKY_LINES, SKY_CONTINUUM, SKY_MASK or SKY_IMAGE (``ESO PRO CATG``
        says which).
    previous : sequence of path-like
        The same product of earlier nights (the newest first).
    model_lines : path-like, optional
        The SKY_LINES table the fit started from (an input of the run): for simulated
        data the instrument model's sky.

    Returns
    -------
    Measurement
        For a line table or a spectrum: ``line.<wave>`` flux of each strong line
        (SKY_LINES: its unit; SKY_SPECTRUM: data unit x Angstrom); ``night_dex.<wave>``
        log10 of it over the median of the previous nights', ``night_dex.absmax`` the
        worst line, ``n_previous``. SKY_LINES also: ``n_lines`` lines fitted with a
        positive flux, ``n_listed`` lines in the table, ``model_scale`` the median over the strong
        lines of log10 of the fitted over the starting flux (a common unit or scale),
        ``model_dex.<wave>`` each line's log10 ratio less that median and ``model_dex.absmax``
        the worst (one line fitted off the others). SKY_SPECTRUM and
        SKY_CONTINUUM: ``continuum.median`` level in 5000-9000 A (unit of the table) and
        ``continuum.negative_fraction`` of that band below zero (an over-subtracted
        continuum). SKY_MASK: ``mask.fraction`` of the spaxels with data taken as sky.
        SKY_IMAGE: ``image.median``, ``image.noise`` (robust).
    """
    from astropy.io import fits

    m = Measurement()
    catg, lam, flux, unit = _read_table(path) if _is_table(path) else (_catg(path), None, None, "")
    m.arrays["category"] = catg
    if catg in ("SKY_MASK", "SKY_IMAGE"):
        with fits.open(path, memmap=True) as h:
            ext = h["DATA"] if "DATA" in h else next(x for x in h if x.data is not None and x.data.ndim == 2)
            img = np.asarray(ext.data, np.float32)
        m.arrays["image"] = img
        finite = np.isfinite(img)
        if catg == "SKY_MASK":
            m.add("mask.fraction", float(np.count_nonzero(img[finite] > 0)) / max(1, int(finite.sum())), "")
        else:
            m.add("image.median", float(np.nanmedian(img)), str(ext.header.get("BUNIT", "")).strip())
            m.add("image.noise", robust_std(img), str(ext.header.get("BUNIT", "")).strip())
        return m
    if lam is None:
        m.notes.append(f"{catg or 'the product'} has no lambda / flux columns: not measured")
        return m
    m.arrays["spectrum"] = (lam, flux)
    spectrum = catg != "SKY_LINES"
    if catg in ("SKY_SPECTRUM", "SKY_CONTINUUM"):
        band = (lam >= CONTINUUM_BAND[0]) & (lam <= CONTINUUM_BAND[1]) & np.isfinite(flux)
        if catg == "SKY_SPECTRUM":  # the continuum of the spectrum: away from its lines
            band &= flux <= np.nanpercentile(flux[band], 50) if band.any() else band
        if band.any():
            m.add("continuum.median", float(np.median(flux[band])), unit)
            m.add("continuum.negative_fraction", float(np.mean(flux[band] < 0)), "")
    if catg == "SKY_CONTINUUM":
        mine = {}
    else:
        mine = line_fluxes(lam, flux, spectrum=spectrum)
        line_unit = unit if not spectrum else (unit[: -len("/Angstrom")] if unit.endswith("/Angstrom")
                                               else f"{unit}*Angstrom")
        for k, v in mine.items():
            m.add(f"line.{k:.0f}", v, line_unit)
    if catg == "SKY_LINES":
        m.add("n_listed", int(lam.size), "")
        m.add("n_lines", int(np.count_nonzero(np.isfinite(flux) & (flux > 0))), "")
        if model_lines is not None:
            _c, ml, mf, _u = _read_table(model_lines)
            if ml is not None:
                dex = _dex(mine, line_fluxes(ml, mf, spectrum=False))
                # The fitted table's flux scale differs from the input list's by one factor for
                # every line (measured on the real pipeline: -1.33 dex, a unit of area); the
                # lines' ratios to each other are what a failed fit of one line changes.
                scale = float(np.median(list(dex.values()))) if dex else float("nan")
                for k, v in dex.items():
                    m.add(f"model_dex.{k:.0f}", v - scale, "dex")
                if dex:
                    m.add("model_scale", scale, "dex")
                    m.add("model_dex.absmax", max(abs(v - scale) for v in dex.values()), "dex")
                m.arrays["model"] = (ml, mf)
    prev = []
    for p in previous:
        try:
            _c, pl, pf, _u = _read_table(p)
        except Exception as exc:  # an unreadable old product only loses that comparison
            m.notes.append(f"previous {catg} {p} unreadable: {exc}")
            continue
        if pl is not None:
            prev.append((pl, pf))
    m.add("n_previous", len(prev), "")
    m.arrays["previous"] = prev
    if prev and mine:
        ref = {}
        for k in mine:
            vals = [line_fluxes(pl, pf, spectrum=spectrum).get(k, np.nan) for pl, pf in prev]
            vals = [v for v in vals if np.isfinite(v)]
            if vals:
                ref[k] = float(np.median(vals))
        dex = _dex(mine, ref)
        for k, v in dex.items():
            m.add(f"night_dex.{k:.0f}", v, "dex")
        if dex:
            m.add("night_dex.absmax", max(abs(v) for v in dex.values()), "dex")
    elif not prev:
        m.notes.append(f"no {catg} of an earlier night to compare with")
    return m


def _is_table(path) -> bool:
    from astropy.io import fits

    with fits.open(path, memmap=True) as h:
        return len(h) > 1 and isinstance(h[1], fits.BinTableHDU)


def _catg(path) -> str:
    from astropy.io import fits

    return str(fits.getheader(path, 0).get("HIERARCH ESO PRO CATG", "")).strip()


__all__ = ["CONTINUUM_BAND", "LINE_WINDOW", "line_fluxes", "measure_sky"]
