"""Combining exposures' cubes on one grid (a non-pipeline reduction step, ``combine_cubes``).

For a field with more exposures than memory allows ``muse_exp_combine`` (a 24-IFU
exposure's reduced pixel tables are ~9 GB; ten exposures need ~256 GB), each exposure
is resampled by ``muse_scipost`` onto one common ``OUTPUT_WCS`` and the cubes are
combined voxel by voxel, as the MUSE deep fields were (Bacon et al. 2017, A&A 608, A1,
with mpdaf's ``CubeList.combine``):

1. every input must be on the same grid (shape and WCS of the DATA extension);
2. for each voxel the values of the exposures are sigma-clipped about their median
   (``nclip`` sigma, at most ``nmax`` iterations, never below ``nstop`` values left),
   sigma being each value's own noise from the pipeline's variance (STAT): with a few
   exposures their scatter says little about the noise (the scaled median absolute
   deviation of 4 values clips ~9 % of pure noise at 5 sigma), the variance does.
   Without STAT the scaled median absolute deviation is used;
3. the combined value is the mean of the values kept, its variance the sum of their
   variances (STAT) divided by the square of their number; EXPMAP holds that number.

``engine="planes"`` (the default) reads a block of ``block`` wavelength planes of every
cube at a time (memory-mapped float32) and writes the output plane block by plane
block, so memory stays ~``nexp x block x ny x nx x 4`` bytes whatever the cube size.
``engine="mpdaf"`` calls mpdaf's ``CubeList.combine`` (C code; it clips about the mean
with the values' standard deviation, which with a few exposures rejects nothing) and
holds the whole output in memory as float64: for small fields and for comparison.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from ..exceptions import InvalidArgumentError
from .python import register_python_recipe

#: DATA header keywords that must agree between the cubes combined (the grid).
GRID_KEYS = ("NAXIS1", "NAXIS2", "NAXIS3", "CRPIX1", "CRPIX2", "CRPIX3", "CRVAL1", "CRVAL2",
             "CRVAL3", "CD1_1", "CD1_2", "CD2_1", "CD2_2", "CD3_3", "CTYPE1", "CTYPE2", "CTYPE3")


def check_same_grid(headers: Sequence) -> None:
    """Refuse cubes that are not on one grid (shape and WCS of their DATA extension).

    Raises
    ------
    InvalidArgumentError
        Naming the first keyword that differs and its values.
    """
    ref = headers[0]
    for k, h in enumerate(headers[1:], start=2):
        for key in GRID_KEYS:
            a, b = ref.get(key), h.get(key)
            same = a == b if isinstance(a, str) or a is None or b is None else np.isclose(a, b, rtol=1e-9, atol=1e-12)
            if not same:
                raise InvalidArgumentError(
                    f"cube {k} is not on the grid of cube 1: {key} = {b!r}, not {a!r}; resample every "
                    f"exposure onto one OUTPUT_WCS in scipost first")


def clip_mean(values: np.ndarray, variances: np.ndarray | None, nclip: float = 5.0, nmax: int = 2,
              nstop: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sigma-clipped mean along axis 0 (the exposures) of a block of voxels.

    Parameters
    ----------
    values : ndarray, shape (nexp, ...)
        Fluxes of each exposure (NaN: no data).
    variances : ndarray or None
        Their variances, same shape.
    nclip : float
        Clipping threshold (in sigma: each value's noise, the square root of its variance;
        without variances 1.4826 x the median absolute deviation).
    nmax : int
        Most clipping iterations.
    nstop : int
        Stop clipping a voxel when fewer than ``nstop`` values would be left.

    Returns
    -------
    mean, variance, count : ndarray
        float32 mean and variance of the values kept, and how many were kept (int16).
    """
    x = values.astype(np.float32, copy=False)
    keep = np.isfinite(x)
    if variances is not None:
        keep &= np.isfinite(variances)
    noise = np.sqrt(np.where(keep, variances, np.nan)) if variances is not None else None
    for _ in range(int(nmax)):
        xm = np.where(keep, x, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN voxels stay NaN
            med = np.nanmedian(xm, axis=0)
            sigma = noise if noise is not None else 1.4826 * np.nanmedian(np.abs(xm - med), axis=0)
        new = keep & ~(np.abs(x - med) > nclip * sigma)
        n_new = new.sum(axis=0)
        new = np.where(n_new >= nstop, new, keep)  # too few left: keep what there was
        if (new == keep).all():
            break
        keep = new
    n = keep.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(keep, x, 0).sum(axis=0, dtype=np.float32) / n
        var = (np.where(keep, variances, 0).sum(axis=0, dtype=np.float32) / n.astype(np.float32) ** 2
               if variances is not None else np.full(mean.shape, np.nan, np.float32))
    mean[n == 0] = np.nan
    var[n == 0] = np.nan
    return mean.astype(np.float32), var.astype(np.float32), n.astype(np.int16)


def _combined_primary(primaries, files, settings: dict):
    h = primaries[0].copy()
    # The pipeline's QC numbers of the first exposure do not describe the combination, and its
    # seeing is one exposure's: the combination's is the mean of the exposures' DIMM seeings.
    for key in [k for k in h if k.startswith("ESO QC ")]:
        del h[key]
    for end in ("START", "END"):
        values = [float(p[f"ESO TEL AMBI FWHM {end}"]) for p in primaries
                  if float(p.get(f"ESO TEL AMBI FWHM {end}", -1.0) or -1.0) > 0]  # DIMM writes -1 without one
        if values:
            h[f"HIERARCH ESO TEL AMBI FWHM {end}"] = (float(np.mean(values)),
                                                     f"[arcsec] mean of the {len(values)} exposures")
    h["HIERARCH ESO PRO CATG"] = "DATACUBE_FINAL"
    h["EXPTIME"] = (float(sum(p.get("EXPTIME", 0.0) for p in primaries)), "[s] total of the exposures")
    h["HIERARCH MUSEWISE COMBINE NEXP"] = (len(files), "cubes combined")
    for key, (value, comment) in settings.items():
        h[f"HIERARCH MUSEWISE COMBINE {key}"] = (value, comment)
    for k, f in enumerate(files, start=1):
        h[f"HIERARCH MUSEWISE COMBINE IN{k} NAME"] = Path(f).name[:40]
        h[f"HIERARCH MUSEWISE COMBINE IN{k} DATE"] = str(primaries[k - 1].get("DATE-OBS", ""))
    h.add_history("musewise combine_cubes: sigma-clipped mean of cubes on one grid")
    return h


def combine_cube_files(files: Sequence[str | Path], out_path: str | Path, *, nclip: float = 5.0,
                       nmax: int = 2, nstop: int = 2, block: int = 32,
                       engine: str = "planes") -> Path:
    """Combine cubes on one grid into ``out_path`` (see the module docstring).

    Parameters
    ----------
    files : sequence of path
        MUSE cubes (DATA, optional STAT extensions), all on one grid.
    out_path : path
        Output: primary header of the first cube (``ESO PRO CATG = DATACUBE_FINAL``,
        ``EXPTIME`` the total, ``MUSEWISE COMBINE *`` the settings and inputs), then
        DATA and STAT (float32, the unit of the inputs) and EXPMAP (exposures kept per voxel).
    nclip, nmax, nstop
        Sigma clipping, as :func:`clip_mean`.
    block : int
        Wavelength planes read at a time (``engine="planes"``).
    engine : {"planes", "mpdaf"}
        Plane blocks here, or mpdaf's ``CubeList.combine``.

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    InvalidArgumentError
        Fewer than two cubes, cubes on different grids, or an unknown engine.
    """
    from astropy.io import fits

    files = [Path(f) for f in files]
    if len(files) < 2:
        raise InvalidArgumentError(f"combine_cubes needs at least 2 cubes, got {len(files)}")
    if engine not in ("planes", "mpdaf"):
        raise InvalidArgumentError(f"unknown engine {engine!r}; use 'planes' or 'mpdaf'")
    primaries = [fits.getheader(f, 0) for f in files]
    data_headers = [fits.getheader(f, "DATA") for f in files]
    check_same_grid(data_headers)
    settings = {"NCLIP": (float(nclip), "sigma clipping threshold"), "NMAX": (int(nmax), "clipping iterations"),
                "NSTOP": (int(nstop), "fewest values kept"), "ENGINE": (engine, "combination code")}
    primary = _combined_primary(primaries, files, settings)
    out_path = Path(out_path)
    dh = data_headers[0].copy()
    if engine == "mpdaf":
        return _combine_mpdaf(files, out_path, primary, dh, nclip, nmax, nstop)
    nl, ny, nx = (int(dh[f"NAXIS{i}"]) for i in (3, 2, 1))
    # Counted as the planes go and set at the end, in place (the cards exist from the start).
    primary["HIERARCH MUSEWISE COMBINE NVALID"] = (0, "input values with data")
    primary["HIERARCH MUSEWISE COMBINE NREJECT"] = (0, "of those, rejected by the clipping")
    fits.HDUList([fits.PrimaryHDU(header=primary)]).writeto(out_path, overwrite=True)
    n_valid = n_kept = 0
    hduls = [fits.open(f, memmap=True) for f in files]
    try:
        has_stat = all("STAT" in h for h in hduls)
        with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
            # STAT and EXPMAP go to memory-mapped scratch files while DATA streams out plane by plane.
            var_mm = np.lib.format.open_memmap(Path(tmp) / "stat.npy", "w+", np.float32, (nl, ny, nx))
            n_mm = np.lib.format.open_memmap(Path(tmp) / "expmap.npy", "w+", np.int16, (nl, ny, nx))
            dh_out = _image_header(dh, "DATA", -32)
            stream = fits.StreamingHDU(str(out_path), dh_out)
            try:
                for i0 in range(0, nl, int(block)):
                    i1 = min(nl, i0 + int(block))
                    vals = np.stack([np.asarray(h["DATA"].data[i0:i1], np.float32) for h in hduls])
                    var = (np.stack([np.asarray(h["STAT"].data[i0:i1], np.float32) for h in hduls])
                           if has_stat else None)
                    mean, v, n = clip_mean(vals, var, nclip, nmax, nstop)
                    n_valid += int((np.isfinite(vals) & (np.isfinite(var) if var is not None else True)).sum())
                    n_kept += int(n.sum(dtype=np.int64))
                    stream.write(mean)
                    var_mm[i0:i1], n_mm[i0:i1] = v, n
            finally:
                stream.close()
            sh = fits.getheader(files[0], "STAT") if has_stat else dh
            for name, mm, bitpix, src in (("STAT", var_mm, -32, sh), ("EXPMAP", n_mm, 16, dh)):
                eh = _image_header(src, name, bitpix)
                if name == "EXPMAP":
                    eh["BUNIT"] = ("", "exposures kept per voxel")
                stream = fits.StreamingHDU(str(out_path), eh)
                try:
                    for i0 in range(0, nl, int(block)):
                        stream.write(np.asarray(mm[i0:i0 + int(block)]))
                finally:
                    stream.close()
            del var_mm, n_mm
    finally:
        for h in hduls:
            h.close()
    with fits.open(out_path, mode="update", memmap=True) as out:  # same cards: the header is rewritten in place
        out[0].header["HIERARCH MUSEWISE COMBINE NVALID"] = n_valid
        out[0].header["HIERARCH MUSEWISE COMBINE NREJECT"] = n_valid - n_kept
    return out_path


def _image_header(src, name: str, bitpix: int):
    from astropy.io import fits

    h = fits.Header()
    h["XTENSION"] = "IMAGE"
    h["BITPIX"] = bitpix
    h["NAXIS"] = 3
    for i in (1, 2, 3):
        h[f"NAXIS{i}"] = src[f"NAXIS{i}"]
    h["PCOUNT"], h["GCOUNT"] = 0, 1
    h["EXTNAME"] = name
    skip = {"XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "PCOUNT", "GCOUNT", "EXTNAME",
            "BSCALE", "BZERO", "CHECKSUM", "DATASUM"}
    for card in src.cards:
        if card.keyword not in skip and card.keyword not in ("", "COMMENT", "HISTORY"):
            h.append(card)
    return h


def _combine_mpdaf(files, out_path: Path, primary, dh, nclip, nmax, nstop) -> Path:
    from astropy.io import fits

    from ..optional import require

    require("mpdaf", "mpdaf")
    from mpdaf.obj import CubeList

    cube, expmap, _ = CubeList([str(f) for f in files]).combine(nmax=int(nmax), nclip=float(nclip),
                                                                 nstop=int(nstop), var="propagate")
    data = np.asarray(cube.data.filled(np.nan), np.float32)
    var = np.asarray(cube.var.filled(np.nan), np.float32) if cube.var is not None else np.full_like(data, np.nan)
    with fits.open(files[0]) as first:
        sh = first["STAT"].header if "STAT" in first else dh
        hdus = [fits.PrimaryHDU(header=primary),
                fits.ImageHDU(data, _image_header(dh, "DATA", -32), name="DATA"),
                fits.ImageHDU(var, _image_header(sh, "STAT", -32), name="STAT"),
                fits.ImageHDU(np.asarray(expmap.data.filled(0), np.int16), name="EXPMAP")]
        fits.HDUList(hdus).writeto(out_path, overwrite=True)
    return out_path


def combination_summary(path: str | Path, block: int = 64) -> dict:
    """What a combined cube's EXPMAP says: exposures combined and the share of data rejected.

    Returns
    -------
    dict
        ``nexp`` (cubes combined), ``voxels`` (with data in any exposure),
        ``mean_kept`` (exposures kept per such voxel), ``short_fraction`` (share of those
        voxels where fewer than ``nexp`` values were kept: clipped, or outside an exposure's
        field) and ``rejected_fraction`` (share of the input values with data that the
        clipping rejected; for a cube without that count, ``short_fraction``).
    """
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:
        nexp = int(hdul[0].header.get("HIERARCH MUSEWISE COMBINE NEXP", 0))
        n_valid = int(hdul[0].header.get("HIERARCH MUSEWISE COMBINE NVALID", 0))
        n_reject = int(hdul[0].header.get("HIERARCH MUSEWISE COMBINE NREJECT", 0))
        em = hdul["EXPMAP"].data
        total = kept = short = 0
        for i0 in range(0, em.shape[0], block):
            n = np.asarray(em[i0:i0 + block])
            has = n > 0
            total += int(has.sum())
            kept += int(n[has].sum())
            short += int((has & (n < nexp)).sum())
    short_fraction = short / total if total else 0.0
    return {"nexp": nexp, "voxels": total, "mean_kept": kept / total if total else 0.0,
            "short_fraction": short_fraction,
            "rejected_fraction": n_reject / n_valid if n_valid else short_fraction}


@register_python_recipe("combine_cubes", inputs={"DATACUBE_FINAL": True}, outputs=["DATACUBE_FINAL"])
def combine_cubes(frames: dict, workdir: Path, nclip: float = 5.0, nmax: int = 2, nstop: int = 2,
                  block: int = 32, engine: Literal["planes", "mpdaf"] = "planes", log=None):
    """Combine the exposures' cubes of a field, resampled onto one OUTPUT_WCS (sigma-clipped mean).

    Parameters
    ----------
    frames : dict
        ``{"DATACUBE_FINAL": [paths]}``: one cube per exposure, all on one grid.
    workdir : Path
        Folder of the combined cube (``DATACUBE_COMBINED.fits``).
    nclip : float
        Sigma-clipping threshold (sigma, from the median absolute deviation).
    nmax : int
        Most clipping iterations.
    nstop : int
        Fewest exposures kept in a voxel.
    block : int
        Wavelength planes combined at a time (bounds the memory used).
    engine : {"planes", "mpdaf"}
        "planes": plane blocks, bounded memory; "mpdaf": mpdaf CubeList.combine (whole output in memory).
    """
    cubes = sorted(frames["DATACUBE_FINAL"], key=lambda p: str(p))
    target = Path(workdir) / "DATACUBE_COMBINED.fits"
    if log:
        log(f"combine_cubes: {len(cubes)} cubes -> {target.name} (nclip={nclip}, nmax={nmax}, "
            f"engine={engine}, block={block} planes)")
        for c in cubes:
            log(f"  input {c}")
    combine_cube_files(cubes, target, nclip=nclip, nmax=nmax, nstop=nstop, block=block, engine=engine)
    if log:
        log(f"Created product {target.name} (DATACUBE_FINAL)")
    return [(target, "DATACUBE_FINAL")]


__all__ = ["GRID_KEYS", "check_same_grid", "clip_mean", "combination_summary", "combine_cube_files",
           "combine_cubes"]
