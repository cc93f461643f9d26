"""ZAP, the MUSE consortium's sky-residual cleaner, as a reduction step on a cube.

ZAP (the Zurich Atmosphere Purge; Soto et al. 2016, MNRAS 458, 3210; package
``zap``) removes what is left of the sky lines after ``muse_scipost``'s sky
subtraction: it filters the continuum out of every spaxel, finds the
eigen-spectra of the residuals of the sky spaxels by PCA, and subtracts from
every spaxel its projection on the first few of them. It runs here as the
registered recipe ``zap`` (step ``zap``): a ``DATACUBE_FINAL`` in, a
``DATACUBE_ZAP`` out, archived with its provenance like any pipeline product.

Sources are kept out of the eigen-spectra by a mask made from the cube's own
white-light image (:func:`source_mask`): a bright star's spectrum would otherwise
enter the basis and be partly subtracted from itself.

Memory
------
ZAP reads the whole DATA extension (float32) and holds several copies of it
while it works: the NaN-cleaned cube, the 2-D stack of spaxels, the continuum,
the normalised stack, the reconstructed residuals and the cleaned cube, plus the
PCA of the stack; with a source mask the eigen-spectra are computed in a first
pass that holds its own copies. Measured on a real 1-IFU cube of 3681 x 12 x 300
voxels (13.3 million; ``muse_scipost`` of the simulated night), ZAP with the source
mask peaked at 0.94 GB resident (71 bytes per voxel, the interpreter included) and
took 239 s on one process of the loaded 2-core machine. :data:`BYTES_PER_VOXEL` rounds
that up; a full 24-IFU MUSE cube of 300 x 300 x 3700 voxels (1.3 GB of float32 data)
then needs about ``300 * 300 * 3700 * BYTES_PER_VOXEL`` bytes (:func:`memory_needed`),
roughly 27 GB: run it on a machine (or Dask worker) with that much memory, or on
sub-cubes. Time scales with the number of voxels (the continuum filter dominates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from ..exceptions import InvalidArgumentError
from .python import library_log, register_python_recipe

#: Category of the cleaned cube (the input's ``DATACUBE_FINAL`` keeps its own).
ZAP_CATEGORY = "DATACUBE_ZAP"

#: Peak memory of :func:`zap_cube` per voxel of the input cube, bytes (with the source
#: mask: 71 resident bytes per voxel measured on a 1-IFU cube, rounded up).
BYTES_PER_VOXEL = 80

#: Voxels of a full MUSE WFM cube (300 x 300 spaxels, 3700 wavelength planes).
FULL_CUBE_VOXELS = 300 * 300 * 3700


def memory_needed(n_voxels: int = FULL_CUBE_VOXELS) -> float:
    """Peak memory ZAP needs for a cube of ``n_voxels`` voxels, in bytes.

    Parameters
    ----------
    n_voxels : int
        ``n_wave * ny * nx`` of the DATA extension (default: a full WFM cube).

    Returns
    -------
    float
        Bytes (``BYTES_PER_VOXEL * n_voxels``).
    """
    return float(BYTES_PER_VOXEL) * float(n_voxels)


def source_mask(white: np.ndarray, nsigma: float = 3.0, grow: int = 1) -> np.ndarray:
    """Spaxels holding sources, from a white-light image (1 = source, 0 = sky).

    A spaxel is a source when it is ``nsigma`` robust standard deviations (from
    the median absolute deviation) above the median, grown by ``grow`` spaxels so
    that the wings of a point source are kept out of the sky too.

    Parameters
    ----------
    white : ndarray, shape (ny, nx)
        White-light image (any flux unit); NaN where the cube has no data.
    nsigma : float
        Detection threshold, in robust standard deviations.
    grow : int
        Dilation of the mask, spaxels.

    Returns
    -------
    ndarray of uint8, shape (ny, nx)
    """
    from scipy.ndimage import binary_dilation

    white = np.asarray(white, dtype=np.float64)
    finite = np.isfinite(white)
    if not finite.any():
        return np.zeros(white.shape, np.uint8)
    med = np.median(white[finite])
    sigma = 1.4826 * np.median(np.abs(white[finite] - med))
    mask = finite & (white > med + nsigma * sigma)
    if grow > 0 and mask.any():
        mask = binary_dilation(mask, iterations=int(grow))
    return mask.astype(np.uint8)


def zap_cube(cube_path: str | Path, out_path: str | Path, *, cfwidth: int = 300,
             zlevel: str = "median", nevals: int = 0, mask_sources: bool = True,
             mask_nsigma: float = 3.0, ncpu: int = 1, log=None) -> Path:
    """Clean a MUSE cube of its sky residuals with ZAP and write a ``DATACUBE_ZAP``.

    Parameters
    ----------
    cube_path : path
        A ``DATACUBE_FINAL`` (primary header, DATA and STAT extensions).
    out_path : path
        The cleaned cube: the input file with DATA replaced, ``ESO PRO CATG`` set to
        :data:`ZAP_CATEGORY` and ``MUSEWISE ZAP *`` keywords recording the settings
        (ZAP's own ``ZAP*`` keywords are in the DATA header). STAT is copied.
    cfwidth : int
        Width of ZAP's continuum median filter, spectral pixels (1.25 Angstrom each).
    zlevel : {"median", "sigclip", "none"}
        ZAP's zero-level (per plane) sky removal.
    nevals : int
        Eigen-spectra subtracted; 0 lets ZAP choose (from its explained-variance curve).
    mask_sources : bool
        Keep the spaxels of sources (:func:`source_mask`) out of the eigen-spectra.
    mask_nsigma : float
        Threshold of the source mask, robust standard deviations of the white light.
    ncpu : int
        Processes ZAP may fork for its filters.
    log : callable, optional
        Receives ZAP's log lines.

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    InvalidArgumentError
        For a ``zlevel`` ZAP does not know or a cube without a DATA extension.
    """
    from astropy.io import fits

    from ..products.cube import white_light

    if zlevel not in ("median", "sigclip", "none"):
        raise InvalidArgumentError(f"zlevel must be 'median', 'sigclip' or 'none', got {zlevel!r}")
    import zap  # imported here: it pulls scikit-learn, which `import musewise` need not pay for

    cube_path, out_path = Path(cube_path), Path(out_path)
    with fits.open(cube_path, memmap=True) as hdul:
        if "DATA" not in hdul:
            raise InvalidArgumentError(f"{cube_path.name} has no DATA extension")
        white = white_light(hdul["DATA"].data)
    mask_file = None
    if mask_sources:
        mask = source_mask(white, nsigma=mask_nsigma)
        mask_file = out_path.with_name(out_path.stem + "_mask.fits")
        fits.PrimaryHDU(mask).writeto(mask_file, overwrite=True)
        if log:
            log(f"zap: source mask {mask_file.name}: {int(mask.sum())} of {mask.size} spaxels masked")
    try:
        with library_log(log, "zap.zap", "zap"):
            zap.process(str(cube_path), outcubefits=str(out_path), cfwidthSVD=int(cfwidth),
                        cfwidthSP=int(cfwidth), zlevel=zlevel, nevals=[int(nevals)] if nevals else (),
                        mask=str(mask_file) if mask_file else None, ncpu=max(1, int(ncpu)), overwrite=True)
    finally:
        if mask_file is not None:
            mask_file.unlink(missing_ok=True)
    with fits.open(out_path, mode="update") as hdul:
        h = hdul[0].header
        h["HIERARCH ESO PRO CATG"] = ZAP_CATEGORY
        h["HIERARCH MUSEWISE ZAP VERSION"] = (zap.__version__, "ZAP (Soto et al. 2016)")
        h["HIERARCH MUSEWISE ZAP CFWIDTH"] = (int(cfwidth), "[pix] continuum filter width")
        h["HIERARCH MUSEWISE ZAP ZLEVEL"] = (zlevel, "zero-level sky removal")
        h["HIERARCH MUSEWISE ZAP NEVALS"] = (int(nevals), "eigen-spectra (0: chosen by ZAP)")
        h["HIERARCH MUSEWISE ZAP MASK"] = (bool(mask_sources), "sources masked for the eigen-spectra")
        h.add_history(f"musewise zap of {cube_path.name}")
    return out_path


def measure_memory(cube_path: str | Path, workdir: str | Path, **kw) -> dict:
    """Run :func:`zap_cube` in this process and report its peak memory.

    Parameters
    ----------
    cube_path : path
        Input cube.
    workdir : path
        Folder for the output (removed afterwards).
    **kw
        Passed to :func:`zap_cube` (``ncpu`` is forced to 1: memory of forked
        workers is not seen by :mod:`tracemalloc`).

    Returns
    -------
    dict
        ``peak_bytes`` (numpy allocations traced), ``voxels``, ``bytes_per_voxel``.
    """
    import tracemalloc

    from astropy.io import fits

    with fits.open(cube_path, memmap=True) as hdul:
        voxels = int(np.prod(hdul["DATA"].shape))
    out = Path(workdir) / "memory_probe_ZAP.fits"
    tracemalloc.start()
    try:
        zap_cube(cube_path, out, **{**kw, "ncpu": 1})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        out.unlink(missing_ok=True)
    return {"peak_bytes": int(peak), "voxels": voxels, "bytes_per_voxel": peak / voxels}


@register_python_recipe("zap", inputs={"DATACUBE_FINAL": True}, outputs=[ZAP_CATEGORY])
def zap_recipe(frames: dict, workdir: Path, cfwidth: int = 300,
               zlevel: Literal["median", "sigclip", "none"] = "median",
               nevals: int = 0, mask_sources: bool = True, mask_nsigma: float = 3.0,
               ncpu: int = 1, log=None):
    """Remove sky-line residuals from reduced cubes with ZAP (Soto et al. 2016).

    Parameters
    ----------
    frames : dict
        ``{"DATACUBE_FINAL": [paths]}``.
    workdir : Path
        Folder for the cleaned cubes (``<name>_ZAP.fits``).
    cfwidth : int
        Width of the continuum median filter, spectral pixels.
    zlevel : str
        Zero-level sky removal per wavelength plane: median, sigclip or none.
    nevals : int
        Number of eigen-spectra subtracted; 0 lets ZAP choose.
    mask_sources : bool
        Keep the sources of the white-light image out of the eigen-spectra.
    mask_nsigma : float
        Source-mask threshold, robust standard deviations above the median white light.
    ncpu : int
        Processes ZAP may use.
    """
    out = []
    for cube in frames["DATACUBE_FINAL"]:
        target = Path(workdir) / f"{Path(cube).stem}_ZAP.fits"
        if log:
            log(f"zap: {cube} -> {target} (cfwidth={cfwidth}, zlevel={zlevel}, nevals={nevals or 'auto'})")
        out.append((zap_cube(cube, target, cfwidth=cfwidth, zlevel=zlevel, nevals=nevals,
                             mask_sources=mask_sources, mask_nsigma=mask_nsigma, ncpu=ncpu, log=log),
                    ZAP_CATEGORY, None))
    return out


__all__ = ["BYTES_PER_VOXEL", "FULL_CUBE_VOXELS", "ZAP_CATEGORY", "measure_memory", "memory_needed",
           "source_mask", "zap_cube", "zap_recipe"]
