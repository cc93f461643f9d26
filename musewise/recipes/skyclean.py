"""Sky-residual cleaning of reduced MUSE cubes (a non-pipeline reduction step).

After ``muse_scipost`` subtracts its sky model, faint line residuals remain
that are the same in every spaxel up to a few spectral patterns. They are
removed here in the manner of ZAP (Soto et al. 2016, MNRAS 458, 3210):

1. the continuum of each spaxel is removed with a running median along the
   wavelength axis, leaving line residuals and noise;
2. the darkest ``sky_fraction`` of the spaxels (in the white-light image) are
   taken as sky;
3. ``method="median"``: the median residual spectrum of the sky spaxels is
   subtracted from every spaxel; ``method="pca"``: the first ``ncomp``
   eigen-spectra of the sky spaxels' residuals are fitted to and subtracted
   from every spaxel's residual spectrum.

The variance (STAT) is passed through unchanged: the sky model is averaged
over many spaxels, so its own noise is negligible against each spaxel's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from ..exceptions import InvalidArgumentError

from .python import register_python_recipe


def clean_sky_residuals(
    data: np.ndarray,
    method: str = "pca",
    ncomp: int = 5,
    sky_fraction: float = 0.2,
    filter_width: int = 31,
) -> tuple[np.ndarray, np.ndarray]:
    """Subtract the residual sky from a cube.

    Parameters
    ----------
    data : ndarray, shape (n_wave, ny, nx)
        Flux cube (any flux unit); NaN marks spaxels or voxels without data.
    method : {"pca", "median"}
        How the residual sky is modelled (see the module docstring).
    ncomp : int
        Number of eigen-spectra fitted with ``method="pca"``.
    sky_fraction : float
        Fraction (0-1) of the valid spaxels, faintest first, taken as sky.
    filter_width : int
        Width (spectral pixels) of the running median that estimates the continuum.

    Returns
    -------
    cleaned : ndarray
        ``data`` minus the residual-sky model (NaN where ``data`` is NaN), float32.
    model : ndarray
        The residual-sky model that was subtracted, same shape.

    Raises
    ------
    InvalidArgumentError
        For a non-3D cube, an unknown method, or too few sky spaxels.
    """
    from scipy.ndimage import median_filter

    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 3:
        raise InvalidArgumentError(f"expected a 3D cube (n_wave, ny, nx), got shape {data.shape}")
    if method not in ("pca", "median"):
        raise InvalidArgumentError(f"unknown method {method!r}; use 'pca' or 'median'")
    if not 0 < sky_fraction <= 1:
        raise InvalidArgumentError(f"sky_fraction must be in (0, 1], got {sky_fraction}")
    nl, ny, nx = data.shape
    bad = ~np.isfinite(data)
    spectra = data.reshape(nl, -1)
    valid = np.isfinite(spectra).mean(axis=0) > 0.5
    if not valid.any():
        raise InvalidArgumentError("the cube has no valid spaxel")
    # Fill gaps with each spaxel's median so that filters and fits see no NaN.
    fill = np.where(valid, np.nanmedian(np.where(valid, spectra, 0), axis=0), 0)
    filled = np.where(np.isfinite(spectra), spectra, fill[None, :]).astype(np.float32)
    width = max(3, int(filter_width) | 1)  # odd, so the median is centred
    continuum = median_filter(filled, size=(width, 1), mode="nearest")
    residual = filled - continuum

    white = np.where(valid, np.median(filled, axis=0), np.inf)
    nsky = max(1, int(round(sky_fraction * valid.sum())))
    sky = np.argsort(white)[:nsky]
    if method == "median":
        model = np.broadcast_to(np.median(residual[:, sky], axis=1)[:, None], residual.shape)
    else:
        if nsky < ncomp:
            raise InvalidArgumentError(f"{nsky} sky spaxels are too few for {ncomp} components")
        # Eigen-spectra of the sky residuals; not mean-centred, so that the common
        # residual pattern is the first component.
        _, _, vt = np.linalg.svd(residual[:, sky].T.astype(np.float64), full_matrices=False)
        eig = vt[: int(ncomp)]
        model = _project(eig, residual)
    model = np.where(valid[None, :], model, 0).reshape(nl, ny, nx)
    cleaned = data - model
    cleaned[bad] = np.nan
    return cleaned.astype(np.float32), model.astype(np.float32)


def _project(eig: np.ndarray, residual: np.ndarray, block_bytes: int = 16 * 2**20) -> np.ndarray:
    """``eig.T @ (eig @ residual)`` as float32, a block of spaxels (``block_bytes`` as float64) at a time.

    Each block is projected in float64 (the sums over ~3700 planes need it), but the
    whole residual never is: a 300x300x3700 cube as float64 would be 2.7 GB more.
    """
    model = np.empty(residual.shape, dtype=np.float32)
    block = max(1, int(block_bytes) // (8 * residual.shape[0]))
    for j in range(0, residual.shape[1], block):
        part = residual[:, j:j + block].astype(np.float64)
        model[:, j:j + block] = eig.T @ (eig @ part)
    return model


def sky_residual_clean_file(
    cube_path: str | Path,
    out_path: str | Path,
    method: str = "pca",
    ncomp: int = 5,
    sky_fraction: float = 0.2,
    filter_width: int = 31,
) -> Path:
    """Clean a MUSE ``DATACUBE_FINAL`` file and write the result as a new cube.

    Parameters
    ----------
    cube_path : path
        Input cube with DATA and (optionally) STAT extensions.
    out_path : path
        Output file: primary header of the input plus DATA and STAT extensions;
        ``ESO PRO CATG`` stays ``DATACUBE_FINAL`` and ``MUSEWISE SKYCLEAN *``
        keywords record the settings.
    method, ncomp, sky_fraction, filter_width
        See :func:`clean_sky_residuals`.

    Returns
    -------
    Path
        ``out_path``.
    """
    from astropy.io import fits

    with fits.open(cube_path) as hdul:
        primary = hdul[0].header.copy()
        data_hdu = hdul["DATA"]
        cleaned, _ = clean_sky_residuals(data_hdu.data, method, ncomp, sky_fraction,
                                         filter_width)
        data_header = data_hdu.header.copy()
        stat = None
        if "STAT" in hdul:
            stat = (hdul["STAT"].data.astype(np.float32), hdul["STAT"].header.copy())
    primary["HIERARCH ESO PRO CATG"] = "DATACUBE_FINAL"
    primary["HIERARCH MUSEWISE SKYCLEAN METHOD"] = (method, "sky residual model")
    primary["HIERARCH MUSEWISE SKYCLEAN NCOMP"] = (int(ncomp), "eigen-spectra (pca)")
    primary["HIERARCH MUSEWISE SKYCLEAN SKYFRAC"] = (float(sky_fraction), "sky spaxel fraction")
    primary["HIERARCH MUSEWISE SKYCLEAN FWIDTH"] = (int(filter_width), "[pix] continuum filter")
    primary.add_history(f"musewise sky_residual_clean of {Path(cube_path).name}")
    hdus = [fits.PrimaryHDU(header=primary), fits.ImageHDU(cleaned, data_header, name="DATA")]
    if stat is not None:
        hdus.append(fits.ImageHDU(stat[0], stat[1], name="STAT"))
    else:
        hdus.append(fits.ImageHDU(np.full_like(cleaned, np.nan), name="STAT"))
    out_path = Path(out_path)
    fits.HDUList(hdus).writeto(out_path, overwrite=True)
    return out_path


@register_python_recipe(
    "sky_residual_clean", inputs={"DATACUBE_FINAL": True}, outputs=["DATACUBE_FINAL"]
)
def sky_residual_clean(
    frames: dict,
    workdir: Path,
    method: Literal["pca", "median"] = "pca",
    ncomp: int = 5,
    sky_fraction: float = 0.2,
    filter_width: int = 31,
    log=None,
):
    """Remove residual sky lines from reduced cubes (ZAP-like PCA or median sky).

    Parameters
    ----------
    frames : dict
        ``{"DATACUBE_FINAL": [paths]}``.
    workdir : Path
        Folder for the cleaned cubes (``<name>_SKYCLEAN.fits``).
    method : {"pca", "median"}
        Residual-sky model: PCA eigen-spectra of the sky spaxels, or their median spectrum.
    ncomp : int
        Number of eigen-spectra subtracted with method "pca".
    sky_fraction : float
        Fraction (0-1) of spaxels, faintest first, used as sky.
    filter_width : int
        Width of the running median continuum filter (spectral pixels).
    """
    out = []
    for cube in frames["DATACUBE_FINAL"]:
        target = Path(workdir) / f"{Path(cube).stem}_SKYCLEAN.fits"
        if log:
            log(f"sky_residual_clean: {cube} -> {target} (method={method}, ncomp={ncomp})")
        out.append((sky_residual_clean_file(cube, target, method, ncomp, sky_fraction,
                                            filter_width), "DATACUBE_FINAL"))
    return out
