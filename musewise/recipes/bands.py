"""muse_scipost in wavelength bands, when one call would not fit in memory.

muse_scipost merges the pixel tables of every IFU of an exposure before it models the
sky and resamples: for 24 IFUs over the full 4750-9350 A range the pipeline (MUSE DRS
2.8.7, ``skymethod=model``) held 21.6 GB and was killed on a 24 GB machine. It cuts the
data to ``--lambdamin``/``--lambdamax`` as it loads each IFU's table, so its memory
scales with the wavelength range (measured at 24 IFUs: 4600-6975 A peaked at 11.8 GB).

:class:`BandedScipost` is ``muse_scipost`` with one parameter of musewise's own,
``wavelength_bands``. With more than one band, one run calls esorex once per band,
one after the other, each on ``--lambdamin/--lambdamax`` of its band widened by
:data:`MARGIN` on each side (so the sky lines at a band's edge are fitted whole and
the resampling kernel of its edge planes is complete), all on one wavelength grid
(``OUTPUT_WCS``: the first band's cube, or the run's own OUTPUT_WCS), and joins:

* ``DATACUBE_FINAL``: the bands' planes, one after the other (each band keeps only the
  planes of its own range); on a 1-IFU exposure the joined cube differs from a single
  call by 0.06 sigma (median; 0.3 sigma at the 99th percentile), the sky being
  modelled band by band;
* ``IMAGE_FOV``: recomputed on the joined cube with the filters of ``FILTER_LIST``,
  as the pipeline computes it (:func:`musewise.products.cube.filter_image`);
* ``SKY_SPECTRUM``, ``SKY_CONTINUUM``, ``SKY_LINES``: the rows of each band's range.

Products that cannot be joined (each band's reduced pixel table, sky mask, sky image)
are kept, one per band, named by it (``PIXTABLE_REDUCED_0001_band2.fits``).
The default, ``wavelength_bands=0``, chooses the number from the pixel tables given
and this machine's memory (:func:`bands_needed`); the number used is written in the
cube's header (``MUSEWISE BANDS``) and the run's log.
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from astropy.io import fits
from astropy.units import UnitsWarning

from ..exceptions import InvalidFrameError, RecipeError
from ..products.outputwcs import CubeGrid
from .base import LogCallback, RecipeOutput, RecipeParameter, RecipeResult, describe_product, utcnow
from .esorex import EsorexRecipe

__all__ = ["BandedScipost", "GB_PER_PIXTABLE", "MARGIN", "MEMORY_FRACTION", "band_edges", "bands_needed"]

#: Peak memory of muse_scipost per IFU pixel table over the full wavelength range (GB):
#: 21.6 GB for the 24 IFUs of one exposure (DRS 2.8.7, skymethod=model, killed there).
GB_PER_PIXTABLE = 0.9
#: Share of the machine's physical memory one run may take (the heavy runs take turns:
#: DpuConfig.heavy_concurrency).
MEMORY_FRACTION = 0.7
#: Wavelength range of the MUSE nominal mode's data (A).
MUSE_RANGE = (4600.0, 9350.0)
#: Extra range each band reads beyond its own planes, on each side (A): several LSF widths.
MARGIN = 25.0
#: Categories joined along wavelength as tables (their rows have a ``lambda`` column).
TABLE_PRODUCTS = ("SKY_SPECTRUM", "SKY_CONTINUUM", "SKY_LINES")


def physical_memory_gb() -> float:
    """Physical memory of this machine (GB)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9


def bands_needed(n_pixtables: int, lambda_range: tuple[float, float], *, memory_gb: float | None = None) -> int:
    """How many wavelength bands one muse_scipost call must be cut into to fit in memory.

    Parameters
    ----------
    n_pixtables : int
        PIXTABLE_OBJECT frames of the run (IFUs times exposures).
    lambda_range : (float, float)
        Wavelengths the run reduces (A).
    memory_gb : float, optional
        Memory the run may take (GB); default :data:`MEMORY_FRACTION` of this machine's.
    """
    memory_gb = MEMORY_FRACTION * physical_memory_gb() if memory_gb is None else float(memory_gb)
    frac = max(0.0, min(lambda_range[1], MUSE_RANGE[1]) - max(lambda_range[0], MUSE_RANGE[0])) / (
        MUSE_RANGE[1] - MUSE_RANGE[0])
    need = GB_PER_PIXTABLE * n_pixtables * frac
    return max(1, math.ceil(need / max(memory_gb, 0.1)))


def band_edges(lo: float, hi: float, n: int) -> list[float]:
    """``n + 1`` wavelengths cutting ``[lo, hi]`` into ``n`` bands of equal range (A)."""
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


class BandedScipost(EsorexRecipe):
    """``muse_scipost`` run in wavelength bands when one call would not fit in memory (module docstring)."""

    own_parameters = (RecipeParameter(
        "wavelength_bands", int, 0,
        "(musewise) Cut the reduction into this many wavelength bands, one esorex call each, joined "
        "into one cube; 0: as many as this machine's memory needs (24 IFUs of one exposure: 2 on 24 GB)."),)

    def run(self, sof: Sequence[tuple], workdir, params: dict | None = None, ifu: int | None = None,
            log: LogCallback | None = None, timeout: float | None = None, inputs: Sequence[int] = (),
            threads: int | None = None) -> RecipeResult:
        """Run muse_scipost, in bands if ``wavelength_bands`` (or this machine's memory) says so.

        Parameters and return value as :meth:`EsorexRecipe.run`. The result lists the
        joined products and the per-band ones; its ``command`` is the first band's and its
        ``calls`` every band's command and frames, in order.
        """
        eff = self.effective_params(params)
        lo = max(float(eff["lambdamin"]), MUSE_RANGE[0])
        hi = min(float(eff["lambdamax"]), MUSE_RANGE[1])
        n_pix = sum(1 for _p, tag in sof if tag == "PIXTABLE_OBJECT")
        n = int(eff["wavelength_bands"]) or bands_needed(n_pix, (lo, hi))
        text: list[str] = []  # the run's log: musewise's own lines between the bands' esorex logs

        def say(line: str) -> None:
            text.append(line + "\n")
            if log is not None:
                log(line)

        if n <= 1:
            return super().run(sof, workdir, params, ifu=ifu, log=log, timeout=timeout, inputs=inputs,
                               threads=threads)
        workdir = Path(workdir).absolute()
        workdir.mkdir(parents=True, exist_ok=True)
        edges = band_edges(lo, hi, n)
        say(f"musewise: muse_scipost in {n} wavelength bands "
            + ", ".join(f"{a:.0f}-{b:.0f}" for a, b in zip(edges, edges[1:]))
            + f" A ({n_pix} pixel tables; each band reads {MARGIN:g} A more on each side)")
        given_wcs = [p for p, tag in sof if tag == "OUTPUT_WCS"]
        base_sof = [(p, tag) for p, tag in sof if tag != "OUTPUT_WCS"]
        started = utcnow()
        grid = CubeGrid.from_file(given_wcs[0]) if given_wcs else None
        results: list[RecipeResult] = []
        calls: list[dict] = []
        for b in range(n):
            band_dir = workdir / f"band{b + 1}"
            band_params = {**(params or {}), "lambdamin": edges[b] - MARGIN if b else float(eff["lambdamin"]),
                           "lambdamax": edges[b + 1] + MARGIN if b < n - 1 else float(eff["lambdamax"])}
            band_params.pop("wavelength_bands", None)
            band_sof, call = list(base_sof), {}
            if grid is not None:
                planes = grid.planes(edges, b, n)
                band_sof.append((str(grid.write(band_dir / "OUTPUT_WCS_band.fits", planes)), "OUTPUT_WCS"))
                call["wcs_planes"] = list(planes)
            say(f"musewise: band {b + 1}/{n}: {band_params['lambdamin']:.0f}-{band_params['lambdamax']:.0f} A")
            res = super().run(band_sof, band_dir, band_params, ifu=ifu, log=log, timeout=timeout, inputs=inputs,
                              threads=threads)
            results.append(res)
            calls.append({"command": res.command, "sof": [[str(p), t] for p, t in res.inputs], **call})
            text.append(res.log_text)
            if grid is None:  # the first band's cube fixes the grid of the others
                grid = CubeGrid.from_file(_one(res, "DATACUBE_FINAL").path, last=hi)
        outputs = _join(results, grid, edges, workdir, sof, say)
        first = results[0]
        return RecipeResult(
            recipe=self.name, returncode=0, outputs=outputs, log_text="".join(text),
            command=first.command, params=eff, pipeline_version=first.pipeline_version, started=started,
            ended=utcnow(), ifu=ifu, inputs=[(str(Path(p).absolute()), t) for p, t in sof], workdir=str(workdir),
            calls=calls)


def _one(res: RecipeResult, category: str) -> RecipeOutput:
    found = res.outputs_of(category)
    if len(found) != 1:
        raise RecipeError(res.recipe, f"a wavelength band made {len(found)} {category} products, expected 1 "
                          f"(in {res.workdir})")
    return found[0]


def _join(results: list[RecipeResult], grid: CubeGrid, edges: list[float], workdir: Path, sof, say) -> list[RecipeOutput]:
    n = len(results)
    ranges = [grid.planes(edges, b, n) for b in range(n)]
    label = [f"{grid.wavelength(k0):.0f}-{grid.wavelength(k1 - 1):.0f}" for k0, k1 in ranges]
    cube = workdir / "DATACUBE_FINAL.fits"
    _join_cubes([_one(r, "DATACUBE_FINAL").path for r in results], grid, ranges, cube, label)
    outputs = [describe_product(cube)]
    say(f"musewise: joined {n} bands into {cube.name} ({grid.n_planes} planes)")
    filters = [p for p, tag in sof if tag == "FILTER_LIST"]
    for img in results[0].outputs_of("IMAGE_FOV"):
        made = _filter_image(cube, img.path, filters[0] if filters else None, workdir)
        if made is not None:
            outputs.append(describe_product(made))
    joined = {"DATACUBE_FINAL", "IMAGE_FOV", *TABLE_PRODUCTS}
    for cat in TABLE_PRODUCTS:
        parts = [r.outputs_of(cat) for r in results]
        if all(len(p) == 1 for p in parts):
            outputs.append(describe_product(_join_tables([p[0].path for p in parts], grid, ranges, workdir)))
    for b, r in enumerate(results):
        for o in r.outputs:
            if o.category in joined:
                continue
            # named by band, header untouched: a card added to a 5 GB pixel table rewrites it whole
            stem, suffix = Path(o.path).name.split(".", 1)
            kept = workdir / f"{stem}_band{b + 1}.{suffix}"
            shutil.move(o.path, kept)
            outputs.append(RecipeOutput(str(kept), o.category, o.ifu))
    for r in results:  # the band cubes and images are in the joined ones: half the disk
        for o in r.outputs:
            if o.category in joined and Path(o.path).exists():
                Path(o.path).unlink()
    return outputs


def _join_cubes(paths: list[str], grid: CubeGrid, ranges, out: Path, label: list[str]) -> None:
    """Write the bands' planes one after the other, an extension at a time (float32, one copy)."""
    with fits.open(paths[0], memmap=True) as first:
        primary = first[0].header.copy()
        names = [h.name for h in first[1:] if h.is_image and h.header.get("NAXIS") == 3]
        headers = {name: first[name].header.copy() for name in names}
    primary["HIERARCH MUSEWISE BANDS"] = (len(paths), "muse_scipost calls joined along wavelength")
    primary.add_history("musewise: muse_scipost in wavelength bands " + ", ".join(label) + " A, joined")
    fits.PrimaryHDU(header=primary).writeto(out, overwrite=True)
    ny, nx = grid.shape
    for name in names:
        dtype = None
        block = None
        for path, (k0, k1) in zip(paths, ranges):
            with fits.open(path, memmap=True) as h:
                src = h[name]
                # a band made without a given grid starts at the grid's first plane
                offset = int(round((float(src.header["CRVAL3"]) - grid.wavelength(0)) / grid.cdelt))
                if (int(src.header["NAXIS2"]), int(src.header["NAXIS1"])) != (ny, nx):
                    raise InvalidFrameError(path, f"a band's cube is {src.header['NAXIS1']}x{src.header['NAXIS2']} "
                                            f"spaxels, the grid {nx}x{ny}")
                data = src.data
                if block is None:
                    dtype = data.dtype.newbyteorder("=")
                    block = np.full((grid.n_planes, ny, nx), np.nan if dtype.kind == "f" else 0, dtype=dtype)
                a, b = k0 - offset, k1 - offset
                if a < 0 or b > data.shape[0]:
                    raise InvalidFrameError(path, f"a band's cube holds planes {offset}-{offset + data.shape[0]} "
                                            f"of the grid, not {k0}-{k1}")
                block[k0:k1] = data[a:b]
                del data
        hdr = headers[name]
        hdr["CRVAL3"], hdr["CRPIX3"] = float(grid.wavelength(0)), 1.0
        fits.append(out, block, hdr)
        del block


def _filter_image(cube: Path, band_image: str, filter_list: str | None, workdir: Path) -> Path | None:
    """The IMAGE_FOV of the joined cube for the filter of the first band's image."""
    from ..products.cube import filter_image

    with fits.open(band_image) as h:
        primary, dh = h[0].header.copy(), h["DATA"].header.copy()
    name = str(primary.get("ESO DRS MUSE FILTER NAME", ""))
    if not (filter_list and name):
        return None
    with fits.open(filter_list) as fl:
        ext = next((x for x in fl[1:] if x.name.lower() == name.lower()), None)
        if ext is None:
            return None
        lam_f, thr = np.array(ext.data["lambda"], float), np.array(ext.data["throughput"], float)
    with fits.open(cube, memmap=True) as h:
        data = h["DATA"]
        n = int(data.header["NAXIS3"])
        lam = float(data.header["CRVAL3"]) + float(data.header["CD3_3"]) * (np.arange(n) + 1 - float(data.header["CRPIX3"]))
        w = np.interp(lam, lam_f, thr, left=0.0, right=0.0)
        image = filter_image(data.data, w)
    primary["HIERARCH ESO DRS MUSE FILTER FRACTION"] = (
        float(100.0 * w.sum() * abs(lam[1] - lam[0]) / max(np.trapezoid(thr, lam_f), 1e-30)),
        "[%] filter covered by the cube")
    out = workdir / Path(band_image).name
    fits.HDUList([fits.PrimaryHDU(header=primary), fits.ImageHDU(image, dh, name="DATA")]).writeto(out, overwrite=True)
    return out


def _join_tables(paths: list[str], grid: CubeGrid, ranges, workdir: Path) -> Path:
    """One table of the bands' rows, each band's within its own planes' wavelengths."""
    from astropy.table import Table, vstack

    parts = []
    for path, (k0, k1) in zip(paths, ranges):
        with warnings.catch_warnings():  # the pipeline's variance unit, (10**(-20)*erg/s/cm**2/Angstrom)**2
            warnings.simplefilter("ignore", UnitsWarning)
            t = Table.read(path, hdu=1)
        lo, hi = grid.wavelength(k0) - grid.cdelt / 2, grid.wavelength(k1 - 1) + grid.cdelt / 2
        parts.append(t[(t["lambda"] >= lo) & (t["lambda"] < hi)])
    with fits.open(paths[0]) as h:
        primary, ext_name = h[0].header.copy(), h[1].name
    table = fits.table_to_hdu(vstack(parts, metadata_conflicts="silent"))
    table.name = ext_name
    out = workdir / Path(paths[0]).name
    fits.HDUList([fits.PrimaryHDU(header=primary), table]).writeto(out, overwrite=True)
    return out
