"""What a reduction notebook does, as plain functions (no algorithm lives only in a notebook).

The templates in ``templates/`` call, in order:

1. :func:`show_inputs` - the set of frames and why each frame was chosen;
2. :func:`execute` - run the recipe through :mod:`musewise.recipes`, write
   ``result.json`` in the work dir (read back by the runner, which archives
   the products), re-raise on failure so the notebook shows the error;
3. :func:`show_log` - the pipeline log;
4. :func:`quicklook` - matplotlib figures of the products;
5. :func:`qc_table` - the ESO QC header keywords of the products.
"""

from __future__ import annotations

import inspect
import json
import math
import traceback
from pathlib import Path

import numpy as np

from ..products.cube import white_light

#: Name of the file in which a notebook hands its result to the runner.
RESULT_FILE = "result.json"


def show_inputs(inputs: list[dict]) -> None:
    """Print the run's inputs: tag, archive ID, file, and why it was chosen."""
    for i in inputs:
        print(f"{i['tag']:<18} #{i['dataset_id']:<6} {Path(i['path']).name}")
        print(f"{'':<26}{i.get('reason', '')}")


def execute(recipe: str, sof, workdir, params: dict | None = None, ifu: int | None = None,
            inputs=(), timeout: float | None = None, threads: int | None = None):
    """Run a recipe on a set of frames and record the outcome in ``workdir/result.json``.

    Parameters
    ----------
    recipe : str
        Registered recipe name (``muse_bias``).
    sof : list of (path, tag)
    workdir : path
        Where the recipe writes its products.
    params : dict
        Recipe parameters.
    ifu : int, optional
        IFU (1-24) to reduce, for per-IFU recipes.
    inputs : sequence of int
        Archive IDs of the inputs (quoted in errors).
    timeout : float, optional
        Time limit of the recipe (s).
    threads : int, optional
        OpenMP threads of the pipeline (``OMP_NUM_THREADS`` of esorex), for recipes
        that take it; default: the pipeline's own (all cores).

    Returns
    -------
    RecipeResult

    Raises
    ------
    RecipeError
        The recipe failed; ``result.json`` holds ``ok: false``, the error and the log.
    """
    from ..recipes import get_recipe

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rec = get_recipe(recipe)
    kw = {"timeout": timeout} if timeout and hasattr(rec, "timeout") else {}
    if threads and "threads" in inspect.signature(rec.run).parameters:
        kw["threads"] = int(threads)
    log_path = workdir / "recipe.log"
    with open(log_path, "w") as logf:
        def log(line):
            logf.write(line + "\n")

        try:
            result = rec.run([tuple(x) for x in sof], workdir, params or {}, ifu=ifu, log=log,
                             inputs=list(inputs), **kw)
        except Exception as exc:
            failed = getattr(exc, "result", None)
            _write_result(workdir, {
                "ok": False, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
                "log_text": getattr(exc, "log_text", ""),
                "result": failed.to_dict() if failed is not None else None,
            })
            raise
    qc = {o.path: qc_values(o.path) for o in result.outputs}
    _write_result(workdir, {"ok": True, "result": result.to_dict(), "qc": qc})
    return result


def _write_result(workdir: Path, data: dict) -> None:
    tmp = workdir / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(data, default=str))
    tmp.replace(workdir / RESULT_FILE)


def read_result(workdir) -> dict | None:
    """The ``result.json`` a notebook wrote, or None if it wrote none."""
    p = Path(workdir) / RESULT_FILE
    return json.loads(p.read_text()) if p.exists() else None


def show_log(result, tail: int | None = None) -> None:
    """Print the recipe's log (the last ``tail`` lines, or all)."""
    lines = result.log_text.splitlines()
    if tail:
        lines = lines[-tail:]
    print(f"$ {' '.join(result.command)}")
    print(f"{result.recipe}: {len(result.outputs)} product(s) in {result.duration:.1f} s, "
          f"{result.pipeline_version}")
    print("\n".join(lines))


# ---------------------------------------------------------------------------------- QC
def qc_values(path) -> dict[str, float]:
    """Numeric ``ESO QC ...`` keywords of all HDUs of a product (name without ``ESO QC``)."""
    from astropy.io import fits

    out: dict[str, float] = {}
    try:
        with fits.open(path, memmap=True) as hdul:
            for hdu in hdul:
                for card in hdu.header.cards:
                    key = card.keyword
                    if key.startswith("ESO QC ") and isinstance(card.value, (int, float)) \
                            and not isinstance(card.value, bool):
                        v = float(card.value)
                        if math.isfinite(v):
                            out[key[len("ESO QC "):]] = v
    except OSError:
        pass
    return out


def qc_table(result, max_rows: int = 40):
    """The QC numbers of a run's products, as a table printed (and returned as rows)."""
    rows = []
    for o in result.outputs:
        for k, v in qc_values(o.path).items():
            rows.append((o.category, o.ifu, k, v))
    for cat, ifu, k, v in rows[:max_rows]:
        print(f"{cat:<20} {ifu or '':>3} {k:<40} {v:.6g}")
    if len(rows) > max_rows:
        print(f"... {len(rows) - max_rows} more QC parameters (all are stored in the archive)")
    return rows


# ---------------------------------------------------------------------------------- plots
def _first_image(path):
    """Name and float32 image of a product's first image HDU; a cube gives its white light."""
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:
        for hdu in hdul:
            if hdu.is_image and hdu.data is not None and hdu.data.ndim >= 2:
                if hdu.data.ndim == 3:  # read a block of planes at a time, never the whole cube
                    return hdu.name, white_light(hdu.data)
                return hdu.name, np.asarray(hdu.data, dtype=np.float32)
    return None, None


def plot_image(path, ax=None, title: str | None = None, percentiles=(1, 99)):
    """Show the first image HDU of a product (a cube: its white light), scaled between two percentiles."""
    import matplotlib.pyplot as plt

    name, data = _first_image(path)
    if data is None:
        return None
    # A 4k x 4k CCD image is shown (and stored in the notebook) at <= ~512 pixels a side: the
    # figure's axes are ~460 pixels wide, so more is resampled away while drawing, which took
    # 0.4 s more per figure (1024 pixels) on this 2-core machine.
    step = max(1, max(data.shape) // 512)
    data = data[::step, ::step]
    ax = ax or plt.figure(figsize=(6, 6)).gca()
    finite = data[np.isfinite(data)]
    lo, hi = np.percentile(finite, percentiles) if finite.size else (0, 1)
    im = ax.imshow(data, origin="lower", cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_title(title or f"{Path(path).name} [{name}] {percentiles[0]}-{percentiles[1]}%: "
                 f"{lo:.4g}..{hi:.4g}", fontsize=9)
    plt.colorbar(im, ax=ax, fraction=0.046)
    return ax


def plot_white_light(path, ax=None):
    """White-light image of a cube (NaN-aware mean over wavelength of the DATA extension)."""
    from astropy.io import fits
    import matplotlib.pyplot as plt

    with fits.open(path, memmap=True) as hdul:
        ext = "DATA" if "DATA" in hdul else 0
        data = hdul[ext].data
        shape = data.shape
        white = white_light(data) if data.ndim == 3 else np.asarray(data, dtype=np.float32)
    ax = ax or plt.figure(figsize=(6, 6)).gca()
    finite = white[np.isfinite(white)]
    lo, hi = np.percentile(finite, (1, 99.5)) if finite.size else (0, 1)
    # One IFU is a narrow strip of the field: stretch it so it can be seen.
    aspect = "auto" if max(white.shape) > 5 * min(white.shape) else "equal"
    im = ax.imshow(white, origin="lower", cmap="magma", vmin=lo, vmax=hi, aspect=aspect)
    ax.set_title(f"white-light image of {Path(path).name} {shape}", fontsize=9)
    plt.colorbar(im, ax=ax, fraction=0.046)
    return ax


def plot_wavecal_residuals(path, ax=None):
    """Residuals of the wavelength solution (WAVECAL_RESIDUALS table) against wavelength."""
    from astropy.table import Table
    import matplotlib.pyplot as plt

    t = Table.read(path, hdu=1)
    cols = {c.lower(): c for c in t.colnames}
    if "iteration" in cols:  # the table holds every fit iteration; show the final one of each slice
        it = np.asarray(t[cols["iteration"]])
        sl = np.asarray(t[cols["slice"]]) if "slice" in cols else np.zeros(len(t), int)
        _, inv = np.unique(sl, return_inverse=True)
        last = np.full(inv.max() + 1, it.min())
        np.maximum.at(last, inv, it)
        t = t[it == last[inv]]
    lam = cols.get("lambda") or cols.get("wavelength") or t.colnames[0]
    res = cols.get("residual") or cols.get("resid") or t.colnames[-1]
    ax = ax or plt.figure(figsize=(8, 4)).gca()
    ax.plot(t[lam], t[res], ",", alpha=0.5)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel(f"{lam} [Angstrom]")
    ax.set_ylabel(f"{res} [Angstrom]")
    r = np.asarray(t[res], dtype=float)
    ax.set_title(f"wavelength residuals: rms {np.sqrt(np.nanmean(r ** 2)):.4f} A, {len(t)} points",
                 fontsize=9)
    return ax


def plot_table(path, ax=None):
    """A first look at a table product: its first two numeric columns."""
    from astropy.table import Table
    import matplotlib.pyplot as plt

    t = Table.read(path, hdu=1)
    num = [c for c in t.colnames if np.issubdtype(t[c].dtype, np.number) and t[c].ndim == 1]
    if len(num) < 2:
        print(t[:5])
        return None
    ax = ax or plt.figure(figsize=(8, 4)).gca()
    ax.plot(t[num[0]], t[num[1]], ".", ms=2)
    ax.set_xlabel(num[0])
    ax.set_ylabel(num[1])
    ax.set_title(Path(path).name, fontsize=9)
    return ax


def plot_lsf(path, ax=None, slice_no: int = 24):
    """Line-spread function of one slice (``LSF_PROFILE`` image) at three wavelengths, with its FWHM.

    The product holds, per slice, the profile (flux per Angstrom of offset) sampled
    at offsets along axis 1 and wavelengths along axis 2 (both in Angstrom).
    """
    from astropy.io import fits
    import matplotlib.pyplot as plt

    with fits.open(path) as hdul:
        hdu = hdul["LSF_PROFILE"]
        cube = np.asarray(hdu.data, dtype=float)
        h = hdu.header
    k = min(max(slice_no, 1), cube.shape[0]) - 1
    off = h["CRVAL1"] + (np.arange(cube.shape[2]) + 1 - h["CRPIX1"]) * h["CD1_1"]
    lam = h["CRVAL2"] + (np.arange(cube.shape[1]) + 1 - h["CRPIX2"]) * h["CD2_2"]
    ax = ax or plt.figure(figsize=(8, 3.5)).gca()
    for j in (2, cube.shape[1] // 2, cube.shape[1] - 3):
        prof = cube[k, j]
        above = off[prof >= 0.5 * np.nanmax(prof)]
        fwhm = above.max() - above.min() if above.size else float("nan")
        ax.plot(off, prof, lw=1, label=f"{lam[j]:.0f} A: FWHM {fwhm:.2f} A")
    ax.set_xlim(-6, 6)
    ax.set_xlabel("offset from line centre [Angstrom]")
    ax.set_ylabel("LSF")
    ax.legend(fontsize=8)
    ax.set_title(f"{Path(path).name}: slice {k + 1}", fontsize=9)
    return ax


def plot_sky_spectrum(path, ax=None):
    """The sky spectrum muse_scipost modelled and subtracted (``SKY_SPECTRUM``, flux per Angstrom)."""
    from astropy.table import Table
    import matplotlib.pyplot as plt

    t = Table.read(path, hdu=1)
    ax = ax or plt.figure(figsize=(8, 3.5)).gca()
    ax.plot(np.asarray(t["lambda"], float), np.asarray(t["data"], float), lw=0.6)
    ax.set_xlabel("wavelength [Angstrom]")
    ax.set_ylabel(f"sky [{t['data'].unit}]" if t["data"].unit else "sky")
    ax.set_yscale("symlog", linthresh=max(float(np.nanmedian(np.abs(t["data"]))), 1e-30))
    ax.set_title(f"{Path(path).name}: sky spectrum of the darkest spaxels (subtracted)", fontsize=9)
    return ax


def plot_pixtable_spectrum(path, ax=None, nbins: int = 400, stride: int = 7):
    """Median spectrum of a pixel table (every ``stride``-th pixel, ``nbins`` wavelength bins)."""
    from astropy.io import fits
    import matplotlib.pyplot as plt

    with fits.open(path, memmap=True) as hdul:
        # Sample the memory-mapped columns first, convert after: a 24-IFU pixel table's
        # column as float64 would be several GB.
        lam = np.asarray(hdul["lambda"].data.ravel()[::stride], dtype=np.float64)
        data = np.asarray(hdul["data"].data.ravel()[::stride], dtype=np.float64)
        dq = np.asarray(hdul["dq"].data).ravel()[::stride] if "dq" in hdul else np.zeros(lam.size, int)
    good = (dq == 0) & np.isfinite(data) & np.isfinite(lam)
    lam, data = lam[good], data[good]
    edges = np.linspace(lam.min(), lam.max(), nbins + 1)
    idx = np.clip(np.digitize(lam, edges) - 1, 0, nbins - 1)
    order = np.argsort(idx, kind="stable")
    splits = np.searchsorted(idx[order], np.arange(1, nbins))
    med = np.array([np.median(chunk) if chunk.size else np.nan for chunk in np.split(data[order], splits)])
    ax = ax or plt.figure(figsize=(8, 3.5)).gca()
    ax.plot(0.5 * (edges[1:] + edges[:-1]), med, lw=0.8)
    ax.set_xlabel("wavelength [Angstrom]")
    ax.set_ylabel("median pixel value")
    ax.set_title(f"{Path(path).name}: median spectrum of {good.sum()} sampled pixels", fontsize=9)
    return ax


def quicklook(result, kinds=("image",)):
    """Figures of a run's products, chosen by product category.

    Parameters
    ----------
    result : RecipeResult
    kinds : sequence of str
        Hints from the step (``image``, ``residuals``, ``cube``, ``table``, ``pixtable``).
    """
    import matplotlib.pyplot as plt

    shown = 0
    for o in result.outputs:
        cat = o.category
        try:
            if cat == "WAVECAL_RESIDUALS":
                plot_wavecal_residuals(o.path)
            elif cat.startswith("DATACUBE") or cat == "TWILIGHT_CUBE":
                plot_white_light(o.path)
            elif cat.startswith("MASTER_") or cat.startswith("IMAGE_") or cat.endswith("_RED"):
                plot_image(o.path)
            elif cat == "LSF_PROFILE":
                plot_lsf(o.path)
            elif cat == "SKY_SPECTRUM":
                plot_sky_spectrum(o.path)
            elif cat.startswith("PIXTABLE_"):
                plot_pixtable_spectrum(o.path)
            elif "table" in kinds and cat.endswith(("_PROFILE", "_TABLE", "_RESPONSE")):
                plot_table(o.path)
            else:
                continue
        except Exception as exc:  # a figure must never fail the reduction
            print(f"no quick-look for {Path(o.path).name}: {exc}")
            continue
        shown += 1
        plt.show()
    if not shown:
        print("no quick-look figure for " + ", ".join(sorted({o.category for o in result.outputs})))


__all__ = ["execute", "plot_image", "plot_lsf", "plot_sky_spectrum", "plot_table", "plot_wavecal_residuals",
           "plot_pixtable_spectrum", "plot_white_light", "qc_table", "qc_values", "quicklook", "read_result", "show_inputs",
           "show_log"]
