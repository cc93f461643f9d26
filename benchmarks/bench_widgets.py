"""Benchmark the cube viewer on a full-size MUSE cube against mpdaf on the same file.

Writes (once) a synthetic 320 x 320 x 3681 cube with DATA and STAT (~3 GB) with
:func:`musewise.products.testing.write_synthetic_cube`, then times, in the same
run and on the same file:

* open + white-light image: musewise ``MuseCube.open().white_light()`` (computed,
  then from the sidecar cache) and the ``CubeViewer`` until its first image, vs
  mpdaf ``Cube(path).mean(axis=0)``;
* one spaxel spectrum (DATA + variance): ``MuseCube.spectrum`` and
  ``CubeViewer.select_spaxel`` (which also builds the bokeh update), vs mpdaf
  ``Cube(path)[:, y, x]``;
* one wavelength plane: ``MuseCube.plane`` and ``CubeViewer.set_wavelength``
  (with colour scaling and the bokeh update), vs mpdaf ``Cube(path)[k, :, :]``.

"cold" means the file was evicted from the page cache first
(``posix_fadvise(DONTNEED)``, no root needed; each library runs in its own
process so no live memory map pins pages); "warm" means it is cached. On a VM
the host may still cache the disk, so "cold" is a lower bound for a real disk.
Ratios are musewise / mpdaf (below 1: musewise faster).

Usage::

    python benchmarks/bench_widgets.py [--dir /tmp/musewise-bench] [--shape 3681 320 320]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import resource
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.simplefilter("ignore")

from musewise.widgets import CubeViewer, MuseCube  # noqa: E402
from musewise.products.testing import write_synthetic_cube  # noqa: E402


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache (a cold read follows)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def median_time(fn, items):
    """Median time of ``fn(*item)`` over the items (file in the page cache)."""
    return statistics.median(timed(fn, *item)[0] for item in items)


def warm_file(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.read(64 * 2**20):
            pass


def _cold(path, fn, items):
    """Median time of ``fn(*item)`` with the file evicted before each call."""
    times = []
    for item in items:
        evict(path)
        times.append(timed(fn, *item)[0])
    return statistics.median(times)


def run_musewise(job) -> dict:
    """All musewise measurements, in a fresh process."""
    warnings.simplefilter("ignore")
    path, folder = Path(job["path"]), Path(job["folder"])
    spaxels, planes = [tuple(s) for s in job["spaxels"]], job["planes"]
    cache = folder / "white-light-cache"
    shutil.rmtree(cache, ignore_errors=True)
    res = {}

    def fresh():
        return MuseCube.open(path, cache_dir=cache, find_image_fov=False)

    def cold_op(op):  # a new mapping each time: nothing of the file is resident
        def run(*item):
            with fresh() as cube:
                return op(cube, *item)
        return run

    res["mw_spectrum_cold"] = _cold(path, cold_op(lambda c, x, y: c.spectrum(x, y)), spaxels[:5])
    res["mw_plane_cold"] = _cold(path, cold_op(lambda c, k: c.plane(index=k)),
                                 [(k,) for k in planes[:5]])
    evict(path)
    res["mw_open_white_cold"] = timed(lambda: fresh().white_light())[0]
    res["mw_open_white_cached"] = timed(lambda: fresh().white_light())[0]
    res["viewer_first_image_cached"] = timed(lambda: CubeViewer(path, cache_dir=cache,
                                                                prefetch=False))[0]

    async def viewer_background():
        t0 = time.perf_counter()
        v = CubeViewer(path, cache_dir=folder / "empty-cache", prefetch=False)
        first = time.perf_counter() - t0
        await v.white_light_future
        await asyncio.sleep(0)
        return first, time.perf_counter() - t0

    shutil.rmtree(folder / "empty-cache", ignore_errors=True)
    evict(path)
    res["viewer_first_image_uncached"], res["viewer_white_done_uncached"] = asyncio.run(
        viewer_background())
    shutil.rmtree(folder / "empty-cache", ignore_errors=True)

    cube = fresh()
    nl = cube.shape[0]
    evict(path)
    res["mw_prefetch"] = timed(cube.prefetch, background=False)[0]
    res["mw_spectrum_warm"] = median_time(cube.spectrum, spaxels)
    res["mw_plane_warm"] = median_time(lambda k: cube.plane(index=k), [(k,) for k in planes])
    res["mw_aperture_r5_warm"] = median_time(lambda x, y: cube.aperture_spectrum(x, y, 5),
                                             spaxels)
    res["mw_narrow_band_warm"] = median_time(
        lambda k: cube.narrow_band(float(cube.wave[k]), 10.0),
        [(max(40, min(nl - 40, k)),) for k in planes])
    viewer = CubeViewer(cube, prefetch=False)
    res["viewer_click_spectrum_warm"] = median_time(viewer.select_spaxel, spaxels)
    res["viewer_plane_warm"] = median_time(viewer.set_wavelength,
                                           [(float(cube.wave[k]),) for k in planes])
    res["mw_max_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return res


def run_mpdaf(job) -> dict:
    """The same operations with mpdaf, in a fresh process."""
    warnings.simplefilter("ignore")
    from mpdaf.obj import Cube

    path = Path(job["path"])
    spaxels, planes = [tuple(s) for s in job["spaxels"]], job["planes"]
    res = {}

    def spec(x, y):
        return Cube(str(path))[:, y, x]

    def plane(k):
        return Cube(str(path))[k, :, :]

    res["mp_spectrum_cold"] = _cold(path, spec, spaxels[:5])
    res["mp_plane_cold"] = _cold(path, plane, [(k,) for k in planes[:5]])
    evict(path)
    t0 = time.perf_counter()
    loaded = Cube(str(path))
    loaded.mean(axis=0)
    res["mp_open_white_cold"] = time.perf_counter() - t0
    res["mp_spectrum_in_memory"] = median_time(lambda x, y: loaded[:, y, x], spaxels)
    del loaded
    gc.collect()
    warm_file(path)
    res["mp_open_white_warm"] = timed(lambda: Cube(str(path)).mean(axis=0))[0]
    gc.collect()
    res["mp_spectrum_warm"] = median_time(spec, spaxels)
    res["mp_plane_warm"] = median_time(plane, [(k,) for k in planes])
    res["mp_max_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=os.environ.get("MUSEWISE_BENCH_DIR", "/tmp/musewise-bench"))
    ap.add_argument("--shape", nargs=3, type=int, default=(3681, 320, 320))
    ap.add_argument("--n", type=int, default=15, help="spectra/planes per warm measurement")
    ap.add_argument("--no-mpdaf", action="store_true", help="skip the mpdaf baseline")
    args = ap.parse_args(argv)

    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    shape = tuple(args.shape)
    path = folder / f"cube_{'x'.join(map(str, shape))}.fits"
    if not path.exists():
        t, _ = timed(write_synthetic_cube, path, shape=shape, seed=0)
        print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {t:.1f} s")
    cache = folder / "white-light-cache"
    shutil.rmtree(cache, ignore_errors=True)
    nl, ny, nx = shape
    rng = np.random.default_rng(1)
    spaxels = [(int(x), int(y)) for x, y in zip(rng.integers(1, nx, args.n),
                                                 rng.integers(0, ny, args.n))]
    planes = [int(k) for k in rng.integers(0, nl, args.n)]
    job = dict(path=str(path), folder=str(folder), spaxels=spaxels, planes=planes)
    # Each library runs in its own process: pages still mapped by a live memmap
    # cannot be evicted, so "cold" needs a process that never mapped them.
    ctx = multiprocessing.get_context("spawn")
    res: dict[str, float] = {}
    with ctx.Pool(1) as pool:
        res.update(pool.apply(run_musewise, (job,)))
    if not args.no_mpdaf:
        try:
            import mpdaf  # noqa: F401
        except ImportError:
            print("mpdaf not installed: no baseline (pip install 'musewise[bench]')")
        else:
            with ctx.Pool(1) as pool:
                res.update(pool.apply(run_mpdaf, (job,)))

    # -------------------------------------------------------------- report
    size = path.stat().st_size / 1e9
    print(f"\nmusewise widgets benchmark: {path.name}, {nx} x {ny} x {nl}, {size:.2f} GB "
          f"(DATA+STAT), {os.cpu_count()} cores")
    ms = lambda s: f"{1e3 * s:9.2f} ms"  # noqa: E731
    rows = [
        ("open + white light, cold, computed", "mw_open_white_cold", "mp_open_white_cold"),
        ("open + white light, cached sidecar", "mw_open_white_cached", "mp_open_white_warm"),
        ("viewer: open to first image (cached)", "viewer_first_image_cached",
         "mp_open_white_warm"),
        ("viewer: open to first image (uncached)", "viewer_first_image_uncached",
         "mp_open_white_cold"),
        ("viewer: ... white light shown after", "viewer_white_done_uncached",
         "mp_open_white_cold"),
        ("one spectrum, cold", "mw_spectrum_cold", "mp_spectrum_cold"),
        ("one spectrum, warm", "mw_spectrum_warm", "mp_spectrum_warm"),
        ("viewer: click -> spectrum, warm", "viewer_click_spectrum_warm", "mp_spectrum_warm"),
        ("one plane, cold", "mw_plane_cold", "mp_plane_cold"),
        ("one plane, warm", "mw_plane_warm", "mp_plane_warm"),
        ("viewer: slider -> plane, warm", "viewer_plane_warm", "mp_plane_warm"),
        ("aperture spectrum r=5, warm", "mw_aperture_r5_warm", None),
        ("narrow band 10 A, warm", "mw_narrow_band_warm", None),
        ("prefetch whole file (page cache)", "mw_prefetch", None),
        ("mpdaf spectrum from loaded cube", None, "mp_spectrum_in_memory"),
    ]
    print(f"{'operation':42s} {'musewise':>12s} {'mpdaf':>12s} {'ratio mw/mpdaf':>15s}")
    for label, mw, mp in rows:
        a = res.get(mw) if mw else None
        b = res.get(mp) if mp else None
        ratio = f"{a / b:15.3f}" if a is not None and b else f"{'':15s}"
        print(f"{label:42s} {ms(a) if a is not None else '':>12s} "
              f"{ms(b) if b is not None else '':>12s} {ratio}")
    print(f"peak RSS: musewise process {res['mw_max_rss_gb']:.2f} GB (file pages of the memory "
          "map, shared with the page cache: not extra memory)"
          + (f", mpdaf process {res['mp_max_rss_gb']:.2f} GB" if "mp_max_rss_gb" in res else ""))
    targets = [("viewer open to first image < 1 s", max(res["viewer_first_image_cached"],
                                                        res["viewer_first_image_uncached"]), 1.0),
               ("spectrum after click < 100 ms (warm)", res["viewer_click_spectrum_warm"], 0.1),
               ("wavelength plane < 50 ms (warm)", res["viewer_plane_warm"], 0.05)]
    for label, value, limit in targets:
        print(f"target {label:40s} {ms(value)}  {'OK' if value < limit else 'MISSED'}")
    return res


if __name__ == "__main__":
    main()
