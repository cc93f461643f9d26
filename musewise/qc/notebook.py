"""Helpers called by the QC notebooks (``qc_notebooks/qc_<type>.ipynb``): measure, tabulate, plot, save.

The notebooks hold no algorithm: they call these functions and
:mod:`musewise.qc.measures`, so a QC can be redone from plain Python.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..exceptions import QCNotApplicableError
from . import measures, measures_calib, measures_ccd, measures_field, measures_pixtable, measures_sky, measures_std
from .thresholds import Verdict, judge


def measure(qc_type: str, product: str, siblings: dict | None = None, raws=(), ifu: int | None = None):
    """Run the measurement of a QC type on a product (paths), returning a :class:`~.measures.Measurement`.

    ``siblings`` maps a role (a category, ``PREVIOUS_<category>``) to the files the product is
    compared with; ``raws`` lists the files it was made of (raw biases, the aligned IMAGE_FOVs).
    """
    siblings = siblings or {}
    if qc_type == "bias":
        return measures.measure_master_bias(product, raws, ifu=ifu or None)
    if qc_type == "dark":
        return measures.measure_master_dark(product)
    if qc_type == "flat":
        return measures.measure_master_flat(product, siblings.get("TRACE_TABLE"))
    if qc_type == "wavecal":
        return measures.measure_wavecal(product, siblings.get("WAVECAL_RESIDUALS"),
                                        siblings.get("PREVIOUS_WAVECAL_TABLE", ()),
                                        trace_path=siblings.get("TRACE_TABLE"))
    if qc_type == "cube":
        return measures.measure_datacube(product, offset_list=siblings.get("OFFSET_LIST"),
                                         star_catalogue=siblings.get("STAR_CATALOG"))
    if qc_type == "lsf":
        return measures_calib.measure_lsf(product)
    if qc_type == "twilight":
        return measures_calib.measure_twilight_cube(product)
    if qc_type == "response":
        return measures_calib.measure_std_response(product, siblings.get("PREVIOUS_STD_RESPONSE", ()))
    if qc_type == "trace":
        return measures_ccd.measure_trace_table(product, siblings.get("PREVIOUS_TRACE_TABLE", ()))
    if qc_type == "residuals":
        return measures_ccd.measure_wavecal_residuals(product)
    if qc_type == "pixtable":
        return measures_pixtable.measure_pixtable(product)
    if qc_type == "reduced":
        return measures_std.measure_reduced_image(product)
    if qc_type == "fov":
        return measures_field.measure_fov(product, siblings.get("DATACUBE_FINAL"))
    if qc_type == "sky":
        previous = next((v for k, v in siblings.items() if k.startswith("PREVIOUS_")), ())
        return measures_sky.measure_sky(product, previous, siblings.get("SKY_LINES"))
    if qc_type == "std":
        return measures_std.measure_std(product)
    if qc_type == "align":
        return measures_field.measure_alignment(product, raws)
    if qc_type == "grid":
        return measures_field.measure_grid(product, raws, siblings.get("GEOMETRY_TABLE"))
    if qc_type == "sources":
        return measures_field.measure_sources(product)
    if qc_type == "zap":
        return measures_field.measure_zap(product, siblings.get("DATACUBE_FINAL"), siblings.get("STAR_CATALOG"))
    raise QCNotApplicableError(f"unknown QC type {qc_type!r}; one of {', '.join(PLOTS)}")


def show_table(m, verdict: Verdict | None = None) -> None:
    """Print the QC numbers with units, marking those that crossed a limit."""
    failed = {c.name: c.flag for c in verdict.checks} if verdict else {}
    for name, value, unit in m.table():
        mark = failed.get(name, "")
        print(f"{name:28s} {value:14.6g} {unit:14s} {'' if mark in ('', 'good') else mark.upper()}")
    for note in m.notes:
        print("note:", note)


def check(limits: dict, m) -> Verdict:
    """Judge a measurement against the limits handed to the notebook."""
    return judge(limits, m.values)


@dataclass
class ProductQC:
    """One product of a QC run: what the run was handed, what it measured, and its verdict.

    ``product`` is the entry of the notebook's ``products`` list (``dataset_id``,
    ``category``, ``ifu``, ``night``, ``product`` (its path), ``siblings``, ``raws``);
    ``error`` says why a product could not be measured (then ``m`` and ``verdict`` are None).
    """

    product: dict
    m: object = None
    verdict: Verdict | None = None
    error: str = ""

    @property
    def label(self) -> str:
        p = self.product
        ifu = f"IFU {int(p['ifu']):02d} " if p.get("ifu") else ""
        return f"dataset {p.get('dataset_id')} {p.get('category', '')} {ifu}night {p.get('night') or '-'}"


def measure_products(qc_type: str, products, limits: dict) -> list[ProductQC]:
    """Measure and judge every product of a QC run, printing each one's numbers.

    Parameters
    ----------
    qc_type : str
    products : str or list of dict
        The notebook's ``products`` parameter (JSON): one entry per product, as
        :class:`ProductQC`.
    limits : dict
        The site's limits of ``qc_type`` (:meth:`QCThresholds.limits`).

    A product whose measurement raises is reported with its traceback and its error, and
    the others are measured all the same: one unreadable file does not leave the other
    IFUs of its step without QC.
    """
    import traceback

    products = json.loads(products) if isinstance(products, str) else list(products)
    out = []
    for p in products:
        q = ProductQC(p)
        print(f"--- {q.label}: {p.get('product', '')}")
        try:
            q.m = measure(qc_type, p["product"], p.get("siblings") or {}, p.get("raws") or (), ifu=p.get("ifu") or None)
        except Exception as exc:  # noqa: BLE001 - recorded against this product, the rest go on
            traceback.print_exc()
            q.error = f"{type(exc).__name__}: {exc}"
            print("NOT MEASURED -", q.error)
        else:
            q.verdict = check(limits, q.m)
            show_table(q.m, q.verdict)
            print(q.verdict.flag.upper(), "-", q.verdict.summary())
        out.append(q)
    return out


def _margin(verdict: Verdict) -> float:
    # How far the product's closest number is inside its warning limit, in units of the
    # warn-to-bad step (negative: crossed); +inf when nothing was judged.
    margins = []
    for c in verdict.checks:
        step = abs(c.bad - c.warn) or abs(c.warn) or 1.0
        inside = (c.warn - c.value) if c.sense.startswith("max") else (c.value - c.warn)
        margins.append(inside / step)
    return min(margins, default=math.inf)


def plot_products(qc_type: str, results: list[ProductQC], limits: dict) -> list:
    """The figures of a QC run: a product's own figure, or, for several, their numbers side by side.

    For one product: its standard figure (:func:`plot`). For several (a step's 24
    IFUs): every judged number of every product against its warning and bad limits
    (:func:`plot_limits`), then the standard figure of each product that crossed a
    limit, or, when none did, of the one closest to its limits; so the notebook shows
    what a reviewer looks at without 24 figures to scroll through.
    """
    measured = [q for q in results if q.m is not None]
    if len(results) == 1:
        return [plot(qc_type, measured[0].m)] if measured else []
    figs = [plot_limits(results, limits)]
    flagged = [q for q in measured if q.verdict.flag != "good"]
    if not flagged and measured:
        flagged = [min(measured, key=lambda q: _margin(q.verdict))]
        print(f"nothing crossed a limit; the product closest to its limits: {flagged[0].label}")
    for q in flagged:
        print(f"{q.label}: {q.verdict.flag.upper()} - {q.verdict.summary()}")
        fig = plot(qc_type, q.m)
        if fig is not None:
            fig.suptitle(q.label, fontsize=9)
        figs.append(fig)
    return figs


def plot_limits(results: list[ProductQC], limits: dict):
    """Each judged number of several products (by IFU, else in order) against its warning and bad limits."""
    import matplotlib.pyplot as plt

    names = [n for n in limits if any(q.m is not None and n in q.m.values for q in results)]
    ncol = min(4, max(1, len(names)))
    nrow = max(1, math.ceil(len(names) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.3 * nrow), squeeze=False)
    xs = [int(q.product.get("ifu") or 0) or i + 1 for i, q in enumerate(results)]
    colour = {"good": "C0", "warning": "orange", "bad": "red"}
    for ax, name in zip(axes.flat, names):
        lim = limits[name]
        for x, q in zip(xs, results):
            if q.m is None:
                ax.plot(x, 0, "kx")
                continue
            v = q.m.values.get(name)
            flag = next((c.flag for c in q.verdict.checks if c.name == name), "good")
            if v is not None and math.isfinite(v):
                ax.plot(x, v, "o", ms=3.5, color=colour.get(flag, "C0"))
        ax.axhline(lim["warn"], color="orange", lw=0.8, ls="--")
        ax.axhline(lim["bad"], color="red", lw=0.8, ls=":")
        ax.set_title(f"{name} ({lim.get('unit') or '-'})", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("IFU" if any(q.product.get("ifu") for q in results) else "product", fontsize=8)
    fig.suptitle("QC numbers against the warning (dashed) and bad (dotted) limits; x: not measured", fontsize=9)
    fig.tight_layout()
    return fig


def summarise(results: list[ProductQC]) -> None:
    """One line per product: its flag and why."""
    for q in results:
        print(f"{q.label}: " + (f"NOT MEASURED - {q.error}" if q.error else
                                f"{q.verdict.flag.upper()} - {q.verdict.summary()}"))


def save_results(path, results: list[ProductQC]) -> None:
    """Write each product's numbers and verdict (or its error) for :func:`musewise.qc.run_qc` (JSON)."""
    out = {}
    for q in results:
        key = str(q.product.get("dataset_id"))
        if q.m is None:
            out[key] = {"error": q.error or "not measured"}
            continue
        values = {k: (None if v is None or not math.isfinite(v) else v) for k, v in q.m.values.items()}
        out[key] = {"values": values, "units": q.m.units, "notes": q.m.notes, "verdict": q.verdict.as_dict()}
    Path(path).write_text(json.dumps({"products": out}, indent=1))


def _imshow(ax, img, title, percentiles=(1, 99)):
    finite = img[np.isfinite(img)]
    lo, hi = np.percentile(finite, percentiles) if finite.size else (0, 1)
    im = ax.imshow(img, origin="lower", vmin=lo, vmax=hi, cmap="gray", interpolation="nearest")
    ax.set_title(title)
    return im


def plot_bias(m):
    """Master bias image with quadrant borders, and level / read noise per quadrant."""
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    img = m.arrays["image"]
    im = _imshow(a1, img, "master bias (adu, subsampled)")
    fig.colorbar(im, ax=a1)
    qs = m.arrays.get("quadrants", [])
    n = [q.number for q in qs]
    a2.bar(np.array(n) - 0.2, [m.values.get(f"level.q{i}", np.nan) for i in n], 0.4, label="master level (adu)")
    if any(f"ron.q{i}" in m.values for i in n):
        a2.bar(np.array(n) + 0.2, [m.values.get(f"ron.q{i}", np.nan) for i in n], 0.4, label="read noise (e-)")
    a2.set_xticks(n)
    a2.set_xlabel("quadrant")
    a2.legend()
    fig.tight_layout()
    return fig


def plot_dark(m):
    """Master dark image and dark current per quadrant."""
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    im = _imshow(a1, m.arrays["image"], "master dark (count/pix/h, subsampled)")
    fig.colorbar(im, ax=a1)
    n = sorted(int(k.split("q")[-1]) for k in m.values if k.startswith("dark.q"))
    a2.bar(n, [m.values[f"dark.q{i}"] for i in n])
    a2.set_xlabel("quadrant")
    a2.set_ylabel("dark current (count/pix/h)")
    a2.set_xticks(n)
    fig.tight_layout()
    return fig


def plot_flat(m):
    """Master flat with the traced slice centres, and the flat level of each slice."""
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    img = m.arrays["image"]
    _imshow(a1, img, "master flat (subsampled) and slice traces")
    centres, rows = m.arrays.get("trace_centres", {}), m.arrays.get("trace_rows")
    if centres and rows is not None:
        step = 1
        full_ny = rows.max() / 0.9 if rows.max() else 1
        step = max(1.0, full_ny / img.shape[0])
        for xs in centres.values():
            a1.plot(xs / step, rows / step, "r-", lw=0.5)
    levels = m.arrays.get("slice_levels", {})
    if levels:
        a2.plot(list(levels), list(levels.values()), "o-")
        a2.set_xlabel("slice")
        a2.set_ylabel("median flat level")
    lamp = m.values.get("lamp.median")
    a2.set_title(f"{int(m.values.get('n_slices', 0))} slices traced"
                 + (f", lamp level {lamp:.0f} adu" if lamp is not None else ""))
    fig.tight_layout()
    return fig


def plot_wavecal(m):
    """Residual RMS and lines used per slice; residuals against wavelength."""
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    rms, nl = m.arrays.get("rms", {}), m.arrays.get("nlines", {})
    if rms:
        a1.plot(list(rms), list(rms.values()), "o-", label="RMS (Angstrom)")
        a1.set_xlabel("slice")
        a1.set_ylabel("residual RMS (Angstrom)")
        b = a1.twinx()
        b.plot(list(nl), list(nl.values()), "s", color="C1", label="lines used")
        b.set_ylabel("lines used")
    if "residuals" in m.arrays:
        lam, res, _sl = m.arrays["residuals"]
        a2.plot(lam, res, ",", alpha=0.5)
        a2.set_xlabel("wavelength (Angstrom)")
        a2.set_ylabel("residual (Angstrom)")
    fig.tight_layout()
    return fig


def plot_cube(m):
    """White-light image with fitted point sources, and the sky-line residual maps."""
    import matplotlib.pyplot as plt

    sky = m.arrays.get("sky", {})
    n = 1 + len(sky)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 4), squeeze=False)
    _imshow(axes[0, 0], m.arrays["white"], "white light")
    for p in m.arrays.get("psf", []):
        axes[0, 0].plot(p["x"], p["y"], "r+")
    for ax, (line, e) in zip(axes[0, 1:], sky.items()):
        im = ax.imshow(e["map"], origin="lower", cmap="RdBu_r")
        ax.set_title(f"residual {line:.0f} A (snr {e['snr']:.1f})")
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def plot_lsf(m):
    """LSF FWHM of each slice."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    fw = m.arrays.get("fwhm_per_slice", {})
    ax.plot(list(fw), list(fw.values()), "o-")
    ax.set_xlabel("slice")
    ax.set_ylabel("median LSF FWHM (Angstrom)")
    fig.tight_layout()
    return fig


def plot_twilight(m):
    """White-light illumination correction of the twilight cube."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    im = _imshow(ax, m.arrays["image"], "twilight correction (median over wavelength)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def plot_response(m):
    """The response curve over the previous nights' ones."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for lam, resp in m.arrays.get("previous", []):
        ax.plot(lam, resp, color="0.7", lw=0.8)
    lam, resp = m.arrays["curve"]
    ax.plot(lam, resp, "C0", lw=1.2, label="this night")
    ax.set_xlabel("wavelength (Angstrom)")
    ax.set_ylabel("response (mag)")
    ax.invert_yaxis()
    ax.legend(title=f"{int(m.values.get('n_previous', 0))} previous night(s) in grey")
    fig.tight_layout()
    return fig


def plot_trace(m):
    """Slice centres and edges along the CCD, and each slice's width and shift against earlier nights."""
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    rows = m.arrays.get("rows")
    for key, style in (("left", "C1-"), ("centre", "C0-"), ("right", "C2-")):
        for xs in m.arrays.get(key if key != "centre" else "centres", {}).values():
            a1.plot(xs, rows, style, lw=0.5)
    a1.set_xlabel("CCD x (pix)")
    a1.set_ylabel("CCD y (pix)")
    a1.set_title(f"{int(m.values.get('n_slices', 0))} slices traced (centre blue, edges)")
    widths = m.arrays.get("widths", {})
    a2.plot(list(widths), list(widths.values()), "o-", label="width (pix)")
    a2.set_xlabel("slice")
    a2.set_ylabel("width (pix)")
    shifts = m.arrays.get("shifts", {})
    if shifts:
        b = a2.twinx()
        b.plot(list(shifts), list(shifts.values()), "s", color="C3", ms=3)
        b.set_ylabel("shift against earlier nights (pix)", color="C3")
    fig.tight_layout()
    return fig


def plot_residuals(m):
    """Residual RMS per slice and the median residual along the wavelength."""
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    rms = m.arrays.get("rms", {})
    a1.plot(list(rms), list(rms.values()), "o-")
    a1.set_xlabel("slice")
    a1.set_ylabel("residual RMS (Angstrom)")
    lam, res = m.arrays.get("residuals", ((), ()))
    a2.plot(lam, res, ",", alpha=0.4)
    trend = m.arrays.get("trend", [])
    if trend:
        a2.plot(*zip(*trend), "r-o", ms=3, label="binned median")
        a2.legend()
    a2.set_xlabel("wavelength (Angstrom)")
    a2.set_ylabel("residual (Angstrom)")
    fig.tight_layout()
    return fig


def plot_pixtable(m):
    """Slices with data per IFU, and the distribution of the good pixels' values."""
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for ifu, sl in m.arrays.get("slices", {}).items():
        a1.plot(sl, [ifu] * len(sl), "s", ms=3)
    a1.set_xlim(0, 49)
    a1.set_xlabel("CCD slice")
    a1.set_ylabel("IFU")
    a1.set_title(f"{int(m.values.get('n_slices', 0))} slices with data, "
                 f"{100 * m.values.get('dq_fraction', float('nan')):.1f} % flagged")
    flux = m.arrays.get("flux_sample", np.zeros(0))
    if flux.size:
        lo, hi = np.percentile(flux, (0.5, 99.5))
        a2.hist(flux, bins=100, range=(lo, hi))
    a2.set_xlabel("pixel value (sample of good pixels)")
    fig.tight_layout()
    return fig


def plot_image(m):
    """The image (with its cube's white light beside it when compared)."""
    import matplotlib.pyplot as plt

    extra = "white" in m.arrays
    fig, axes = plt.subplots(1, 2 if extra else 1, figsize=(10 if extra else 5.5, 4.5), squeeze=False)
    _imshow(axes[0, 0], m.arrays["image"], m.arrays.get("category") or "image")
    for p in m.arrays.get("psf", []):
        axes[0, 0].plot(p["x"], p["y"], "r+")
    if extra:
        _imshow(axes[0, 1], m.arrays["white"], f"cube white light (corr {m.values.get('cube_corr', float('nan')):.3f})")
    fig.tight_layout()
    return fig


def plot_sky(m):
    """The sky product (spectrum or line fluxes) over the previous nights' and the starting line list."""
    import matplotlib.pyplot as plt

    if "image" in m.arrays:
        return plot_image(m)
    fig, ax = plt.subplots(figsize=(10, 4))
    for lam, flux in m.arrays.get("previous", []):
        ax.plot(lam, flux, color="0.7", lw=0.6)
    if "model" in m.arrays:
        ax.plot(*m.arrays["model"], "x", color="C1", ms=4, label="line list the fit started from")
    if "spectrum" in m.arrays:
        lam, flux = m.arrays["spectrum"]
        style = "C0." if m.arrays.get("category") == "SKY_LINES" else "C0-"
        ax.plot(lam, flux, style, lw=0.8, ms=3, label=f"{m.arrays.get('category', '')} of this exposure")
        if m.arrays.get("category") == "SKY_LINES":
            ax.set_yscale("log")
    ax.set_xlabel("wavelength (Angstrom)")
    ax.legend(title=f"{int(m.values.get('n_previous', 0))} previous night(s) in grey", fontsize=8)
    fig.tight_layout()
    return fig


def plot_std(m):
    """The standard's white light with the star found, or the telluric transmission with its bands."""
    import matplotlib.pyplot as plt

    if "spectrum" in m.arrays:
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.plot(m.arrays["spectrum"], lw=0.8)
        ax.set_xlabel("wavelength bin")
        ax.set_ylabel("standard star flux")
        fig.tight_layout()
        return fig
    if "curve" not in m.arrays:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        _imshow(ax, m.arrays["white"], "standard star cube, white light")
        for p in m.arrays.get("psf", []):
            ax.plot(p["x"], p["y"], "r+")
        fig.tight_layout()
        return fig
    from .measures_std import A_BAND, B_BAND

    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(*m.arrays["curve"], lw=0.8)
    for lo, hi in (A_BAND, B_BAND):
        ax.axvspan(lo, hi, color="0.85")
    ax.axhline(1.0, color="k", lw=0.4, ls=":")
    ax.set_xlabel("wavelength (Angstrom)")
    ax.set_ylabel("telluric transmission")
    fig.tight_layout()
    return fig


def plot_align(m):
    """Header dithers and corrections found, one point per exposure (arcsec)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    side = m.arrays.get("against_headers")
    if side is not None:
        ax.plot(-np.asarray(side["offs_dra"]), side["offs_ddec"], "o", mfc="none", label="header dither (E, N)")
    tab = m.arrays.get("offsets")
    if tab is not None:
        ax.plot(tab["dra_arcsec"], tab["ddec_arcsec"], "r+", ms=10, label="correction found (E, N)")
    ax.axhline(0, color="k", lw=0.3)
    ax.axvline(0, color="k", lw=0.3)
    ax.set_xlabel("East (arcsec)")
    ax.set_ylabel("North (arcsec)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_zap(m):
    """The cube's figure, with the sky-line residuals before ZAP beside those after."""
    import matplotlib.pyplot as plt

    fig = plot_cube(m)
    before = m.arrays.get("sky_before", {})
    if before:
        fig2, ax = plt.subplots(figsize=(6, 3.5))
        lines = sorted(before)
        ax.bar(np.arange(len(lines)) - 0.2, [before[k]["snr"] for k in lines], 0.4, label="before ZAP")
        ax.bar(np.arange(len(lines)) + 0.2, [m.values.get(f"sky_snr.{k:.0f}", np.nan) for k in lines], 0.4,
               label="after ZAP")
        ax.set_xticks(np.arange(len(lines)), [f"{k:.0f}" for k in lines])
        ax.set_ylabel("sky residual (sigma)")
        ax.legend()
        fig2.tight_layout()
    return fig


def plot_grid(m):
    """Each exposure's IFUs on the grid (:func:`musewise.products.outputwcs.plot_field_grid`)."""
    from ..products.outputwcs import plot_field_grid

    if not m.arrays.get("raws") or not m.arrays.get("geometry"):
        return None
    return plot_field_grid(m.arrays["grid"], m.arrays["raws"], m.arrays["geometry"])


def plot_sources(m):
    """The wavelengths of a catalogue's line sources against their S/N, with the sky lines marked."""
    import matplotlib.pyplot as plt

    wave, snr = m.arrays.get("wavelength", ()), m.arrays.get("snr", ())
    if len(wave) == 0:
        return None
    fig, ax = plt.subplots(figsize=(10, 3.2))
    for w in m.arrays.get("sky", ()):
        ax.axvline(w, color="0.8", lw=0.8)
    ax.plot(wave, snr, "o", color="tab:red")
    ax.set_xlabel("line wavelength (A)")
    ax.set_ylabel("S/N")
    ax.set_title("emission-line sources (grey: night-sky lines)")
    fig.tight_layout()
    return fig


PLOTS = {"bias": plot_bias, "dark": plot_dark, "flat": plot_flat, "wavecal": plot_wavecal, "cube": plot_cube,
         "lsf": plot_lsf, "twilight": plot_twilight, "response": plot_response, "trace": plot_trace,
         "residuals": plot_residuals, "pixtable": plot_pixtable, "reduced": plot_image, "fov": plot_image,
         "sky": plot_sky, "std": plot_std, "align": plot_align, "zap": plot_zap,
         "grid": plot_grid, "sources": plot_sources}


def plot(qc_type: str, m):
    """The standard QC figure of a type."""
    return PLOTS[qc_type](m)


__all__ = ["ProductQC", "check", "measure", "measure_products", "plot", "plot_limits", "plot_products",
           "save_results", "show_table", "summarise"]
