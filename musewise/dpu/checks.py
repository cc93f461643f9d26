"""What an astronomer checks after a step, as figures for its notebook.

Each function draws one check from a run's products (and inputs) and returns the
matplotlib figure, so a test (or a person) can see that it was made:

* :func:`plot_response_check` (``muse_standard``): the standard star's spectrum,
  flux-calibrated with the response found, against its reference flux table; and the
  response found against the static one;
* :func:`plot_sky_subtracted` (``muse_scipost``): the sky spectrum the pipeline
  modelled and subtracted, with the lines of the ``SKY_LINES`` table marked;
* :func:`plot_sky_residuals` (``zap``): the mean spectrum of the sky spaxels around
  the strong sky lines, before and after cleaning;
* :func:`plot_field_grid` (``field_grid``): where each exposure's IFUs fall on the
  field's grid, and the grid's edges;
* :func:`plot_detections` and :func:`plot_source_spectra` (``muselet``, step ``sources``):
  the catalogue's sources over the cube's white-light image, and each line source's
  spectrum with its line marked and its narrow-band image.

Cubes are read a block of planes at a time (never whole, never as float64).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..products.cube import white_light

#: Strong night-sky lines (air, Angstrom) where sky residuals are looked at.
STRONG_SKY_LINES = (5577.339, 6300.304, 6363.776, 7913.708, 8344.602, 8399.170, 8827.096)

#: Planes read per block when a spectrum is taken from a cube.
_PLANES = 64


def sky_spaxels(white: np.ndarray, fraction: float = 0.5) -> np.ndarray:
    """The faintest ``fraction`` of the valid spaxels of a white-light image (True = sky)."""
    finite = np.isfinite(white)
    if not finite.any():
        return finite
    return finite & (white <= np.nanpercentile(white, 100 * fraction))


def mean_spectrum(data, spaxels: np.ndarray) -> np.ndarray:
    """NaN-aware mean spectrum of the ``spaxels`` (2-D bool) of a cube, float32, a block at a time."""
    import warnings

    nl = data.shape[0]
    out = np.full(nl, np.nan, np.float32)
    for k0 in range(0, nl, _PLANES):
        block = np.asarray(data[k0:k0 + _PLANES], dtype=np.float32)[:, spaxels]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN plane gives NaN, as it should
            out[k0:k0 + block.shape[0]] = np.nanmean(block, axis=1)
    return out


def cube_sky_spectrum(path, spaxels: np.ndarray | None = None):
    """Wavelength (Angstrom), mean sky spectrum (BUNIT) and the sky spaxels of a cube.

    ``spaxels`` default: the faint half of the cube's white-light image (:func:`sky_spaxels`).
    """
    from astropy.io import fits

    from ..products.wcs import spectral_axis

    with fits.open(path, memmap=True) as hdul:
        data = hdul["DATA"].data
        wave, _ = spectral_axis(hdul["DATA"].header, data.shape[0])
        if spaxels is None:
            spaxels = sky_spaxels(white_light(data))
        return np.asarray(wave, float), mean_spectrum(data, spaxels), spaxels


def plot_sky_residuals(before, after, lines=STRONG_SKY_LINES, half_width: float = 15.0):
    """Sky residual spectrum before and after a sky-residual cleaning, at the strong sky lines.

    Parameters
    ----------
    before, after : path
        The input cube (``DATACUBE_FINAL``) and the cleaned cube (``DATACUBE_ZAP``).
    lines : sequence of float
        Sky lines (Angstrom); those inside the cube are shown, one panel each.
    half_width : float
        Half width of each panel, Angstrom.

    Returns
    -------
    matplotlib.figure.Figure or None
        None when no line falls inside the cube.
    """
    import matplotlib.pyplot as plt

    wave, sky0, spax = cube_sky_spectrum(before)
    wave1, sky1, _ = cube_sky_spectrum(after, spax)  # the same spaxels in both cubes
    inside = [ln for ln in lines if wave[0] + half_width < ln < wave[-1] - half_width]
    if not inside:
        print(f"no strong sky line inside {wave[0]:.0f}-{wave[-1]:.0f} A")
        return None
    fig, axes = plt.subplots(1, len(inside), figsize=(2.6 * len(inside) + 1, 3.2), squeeze=False)
    for ax, ln in zip(axes[0], inside):
        sel = np.abs(wave - ln) <= half_width
        ax.plot(wave[sel], sky0[sel], lw=1, label="before")
        ax.plot(wave1[sel], sky1[sel], lw=1, label="after")
        ax.axvline(ln, color="k", lw=0.4, ls=":")
        ax.set_title(f"{ln:.1f} A", fontsize=9)
        ax.set_xlabel("wavelength [Angstrom]", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel(f"mean of {int(spax.sum())} sky spaxels", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"sky residuals: {Path(before).name} -> {Path(after).name}", fontsize=9)
    fig.tight_layout()
    return fig


def sky_lines_of(sof) -> tuple[np.ndarray, np.ndarray]:
    """Wavelengths (Angstrom) and fluxes of the ``SKY_LINES`` table given in a SOF (empty if none)."""
    from astropy.table import Table

    for path, tag in sof:
        if tag == "SKY_LINES":
            t = Table.read(path, hdu=1)
            return np.asarray(t["lambda"], float), np.asarray(t["flux"], float)
    return np.zeros(0), np.zeros(0)


def plot_sky_subtracted(result, sof, n_lines: int = 30):
    """The sky spectrum ``muse_scipost`` subtracted, with the ``SKY_LINES`` it fitted marked.

    Parameters
    ----------
    result : RecipeResult
        The run (its ``SKY_SPECTRUM`` product is drawn).
    sof : list of (path, tag)
        The run's inputs (its ``SKY_LINES`` table).
    n_lines : int
        The brightest lines of the table marked.

    Returns
    -------
    matplotlib.figure.Figure or None
        None when the run saved no ``SKY_SPECTRUM`` (``skymethod=none``).
    """
    from astropy.table import Table
    import matplotlib.pyplot as plt

    skies = result.outputs_of("SKY_SPECTRUM")
    if not skies:
        print("no SKY_SPECTRUM: this run subtracted no sky model (skymethod="
              f"{result.params.get('skymethod', '?')})")
        return None
    t = Table.read(skies[0].path, hdu=1)
    lam, sky = np.asarray(t["lambda"], float), np.asarray(t["data"], float)
    fig, ax = plt.subplots(figsize=(10, 3.8))
    ax.plot(lam, sky, lw=0.6, label="sky subtracted")
    ax.set_yscale("symlog", linthresh=max(float(np.nanmedian(np.abs(sky))), 1e-30))
    wl, fl = sky_lines_of(sof)
    inside = (wl > lam.min()) & (wl < lam.max())
    wl, fl = wl[inside], fl[inside]
    top = np.argsort(fl)[::-1][:n_lines]
    for k, w in enumerate(sorted(wl[top])):
        ax.axvline(w, color="tab:red", lw=0.5, alpha=0.6, label="SKY_LINES" if k == 0 else None)
    ax.set_xlabel("wavelength [Angstrom]")
    ax.set_ylabel(f"sky [{t['data'].unit}]" if t["data"].unit else "sky")
    ax.set_title(f"{Path(skies[0].path).name}: sky of the darkest spaxels, subtracted; "
                 f"the {len(top)} brightest of {inside.sum()} SKY_LINES marked", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def static_response(archive_settings: dict):
    """Path of the archive's static ``STD_RESPONSE``, or None when it cannot be had.

    Parameters
    ----------
    archive_settings : dict
        The settings a template notebook is given (no secrets): a database that needs
        a password not found otherwise simply gives None.
    """
    try:
        from .executor import open_archive

        arch = open_archive(archive_settings)
        recs = [r for r in arch.query(category="STD_RESPONSE") if r.kind == "static" and r.is_valid]
        return arch.path(recs[-1].id) if recs else None
    except Exception as exc:  # a figure must never fail the run
        print(f"static STD_RESPONSE not available here: {type(exc).__name__}: {exc}")
        return None


def plot_response_check(result, sof, static=None):
    """The response ``muse_standard`` found, checked against the standard's table and the static response.

    Top: the standard star's spectrum as measured and flux-calibrated by the run
    (``STD_FLUXES``), over its reference flux (``STD_FLUX_TABLE``), and their ratio.
    Bottom: the response found (``STD_RESPONSE``, mag) and the static one, and their
    difference converted to a flux ratio.

    Parameters
    ----------
    result : RecipeResult
    sof : list of (path, tag)
        The run's inputs (``STD_FLUX_TABLE``).
    static : path, optional
        A static ``STD_RESPONSE`` (:func:`static_response`).

    Returns
    -------
    matplotlib.figure.Figure or None
        None when the run made no ``STD_RESPONSE``.
    """
    from astropy.table import Table
    import matplotlib.pyplot as plt

    resp = result.outputs_of("STD_RESPONSE")
    if not resp:
        print("no STD_RESPONSE made")
        return None
    r = Table.read(resp[0].path, hdu=1)
    lam, mag = np.asarray(r["lambda"], float), np.asarray(r["response"], float)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    ref_path = next((p for p, t in sof if t == "STD_FLUX_TABLE"), None)
    fluxes = result.outputs_of("STD_FLUXES")
    if ref_path is not None:
        ref = _reference_table(ref_path, fluxes[0].path if fluxes else None)
        a1.plot(ref[0], ref[1], "k-", lw=1, label=f"reference: STD_FLUX_TABLE [{ref[2]}]")
        if fluxes:
            got = _measured_standard(fluxes[0].path)
            if got is not None:
                a1.plot(got[0], got[1], lw=0.6, alpha=0.8, label="standard calibrated by this response")
                ratio = got[1] / np.interp(got[0], ref[0], ref[1])
                band = (got[0] > 5000) & (got[0] < 9000)
                if band.any():
                    a1.set_title(f"measured / reference over 5000-9000 A: median "
                                 f"{np.nanmedian(ratio[band]):.3f}", fontsize=9)
        a1.set_ylabel("flux")
        a1.legend(fontsize=8)
    a2.plot(lam, mag, lw=1, label="response found (STD_RESPONSE)")
    if static is not None:
        s = Table.read(static, hdu=1)
        slam, smag = np.asarray(s["lambda"], float), np.asarray(s["response"], float)
        a2.plot(slam, smag, lw=1, ls="--", label="static response")
        diff = mag - np.interp(lam, slam, smag)
        band = (lam > 5000) & (lam < 9000)
        if band.any():
            q = 10 ** (0.4 * diff[band])
            a2.set_title(f"found / static over 5000-9000 A: {np.nanmin(q):.3f}..{np.nanmax(q):.3f} "
                         f"(median {np.nanmedian(q):.3f})", fontsize=9)
    a2.set_xlabel("wavelength [Angstrom]")
    a2.set_ylabel("response [mag]")
    a2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _reference_table(path, fluxes_path=None):
    """(lambda, flux, unit) of the standard in a STD_FLUX_TABLE (the extension of the star observed)."""
    from astropy.io import fits
    from astropy.table import Table

    with fits.open(path) as hdul:
        names = [h.name for h in hdul[1:] if isinstance(h, fits.BinTableHDU)]
    obj = ""
    if fluxes_path is not None:
        obj = str(fits.getheader(fluxes_path, 0).get("OBJECT", "")).strip()
    ext = next((n for n in names if n.strip().upper() == obj.upper()), names[0])
    t = Table.read(path, hdu=ext)
    unit = t["flux"].unit or ""
    return np.asarray(t["lambda"], float), np.asarray(t["flux"], float), unit


def _measured_standard(path):
    """(lambda, flux) of the brightest star of a STD_FLUXES product, or None."""
    from astropy.io import fits
    from astropy.table import Table

    best = None
    with fits.open(path) as hdul:
        tabs = [h.name for h in hdul[1:] if isinstance(h, fits.BinTableHDU)]
    for ext in tabs:
        t = Table.read(path, hdu=ext)
        if "lambda" not in t.colnames or "data" not in t.colnames:
            continue
        lam, flux = np.asarray(t["lambda"], float), np.asarray(t["data"], float)
        level = float(np.nanmedian(flux))
        if best is None or level > best[2]:
            best = (lam, flux, level)
    return None if best is None else best[:2]




def plot_field_grid(result, sof):
    """The field's grid (OUTPUT_WCS) with the outline of every exposure's IFUs on it.

    Each exposure is drawn from its raw frame's pointing, position angle and IFUs, with
    the slices of the ``GEOMETRY_TABLE`` of the run (the same numbers the grid was made
    from): :func:`musewise.products.outputwcs.plot_field_grid`.
    """
    from ..products.outputwcs import plot_field_grid as plot

    (grid_path,) = [o.path for o in result.outputs_of("OUTPUT_WCS")]
    return plot(grid_path, [p for p, t in sof if t == "OBJECT"], next(p for p, t in sof if t == "GEOMETRY_TABLE"))




def plot_detections(catalog, cube):
    """The catalogue's sources over the cube's white-light image: circles for lines, crosses for continuum.

    Parameters
    ----------
    catalog : path
        A ``SOURCE_CATALOG``.
    cube : path
        The ``DATACUBE_FINAL`` it was made from.
    """
    import matplotlib.pyplot as plt

    from ..products.catalog import read_sources
    from ..products.cube import MuseCube

    table = read_sources(catalog)
    with MuseCube.open(cube, find_image_fov=False) as c:
        white = np.asarray(c.white_light().data, dtype=np.float64)
    ny, nx = white.shape
    fig, ax = plt.subplots(figsize=(10, max(2.5, 10 * ny / nx + 1)))
    finite = white[np.isfinite(white)]
    lo, hi = np.percentile(finite, [1, 99.5]) if finite.size else (0, 1)
    ax.imshow(white, origin="lower", cmap="gray", vmin=lo, vmax=hi, aspect="equal")
    for r in table:
        if r["kind"] == "line":
            ax.plot(r["x"], r["y"], "o", mfc="none", mec="tab:red", ms=12)
            ax.annotate(f"{r['id']}: {r['wavelength']:.1f} A", (r["x"], r["y"]), xytext=(6, 6),
                        textcoords="offset points", color="tab:red", fontsize=8)
        else:
            ax.plot(r["x"], r["y"], "+", color="tab:cyan", ms=10)
    n_line = sum(table["kind"] == "line")
    ax.set_title(f"{n_line} emission-line sources (red circles) and {len(table) - n_line} continuum sources "
                 "(cyan crosses) over the white light")
    ax.set_xlabel("x (spaxel)")
    ax.set_ylabel("y (spaxel)")
    fig.tight_layout()
    return fig


def plot_source_spectra(catalog, max_sources: int = 6, half_width: float = 60.0):
    """Each line source's spectrum around its line (marked), beside its narrow-band image.

    Parameters
    ----------
    catalog : path
        A ``SOURCE_CATALOG``.
    max_sources : int
        The brightest this many line sources (by S/N) are shown.
    half_width : float
        Half-width of the wavelength range shown, Angstrom.

    Returns
    -------
    matplotlib.figure.Figure or None
        None when the catalogue has no line source.
    """
    import matplotlib.pyplot as plt

    from ..products.catalog import read_sources, source_image, source_spectrum

    table = read_sources(catalog)
    lines = table[table["kind"] == "line"]
    if len(lines) == 0:
        print("no emission-line source in the catalogue")
        return None
    lines = lines[np.argsort(-np.nan_to_num(np.asarray(lines["snr"], float)))][:max_sources]
    fig, axes = plt.subplots(len(lines), 2, figsize=(11, 2.6 * len(lines)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1]})
    for (ax, axi), r in zip(axes, lines):
        spec = source_spectrum(catalog, int(r["id"]))
        near = np.abs(spec.wave - r["wavelength"]) <= half_width
        ax.step(spec.wave[near], spec.data[near], where="mid", lw=0.8, color="k")
        ax.axvline(r["wavelength"], color="tab:red", ls="--", lw=1)
        ax.set_title(f"source {r['id']}: line at {r['wavelength']:.2f} A, S/N {r['snr']:.1f}", fontsize=9)
        ax.set_xlabel("wavelength (A)")
        ax.set_ylabel(spec.unit or "flux", fontsize=7)
        img = source_image(catalog, int(r["id"]))
        axi.imshow(img.data, origin="lower", cmap="viridis")
        axi.set_title("narrow band", fontsize=9)
        axi.set_xticks([])
        axi.set_yticks([])
    fig.tight_layout()
    return fig


__all__ = ["STRONG_SKY_LINES", "cube_sky_spectrum", "mean_spectrum", "plot_detections", "plot_field_grid",
           "plot_response_check", "plot_sky_residuals", "plot_sky_subtracted", "plot_source_spectra",
           "sky_lines_of", "sky_spaxels", "static_response"]
