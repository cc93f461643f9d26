"""Benchmark the cube viewer on a full-size MUSE cube against mpdaf and jdaviz on the same file.

Writes (once) a synthetic 320 x 320 x 3681 cube with DATA and STAT (~3 GB) with
:func:`musewise.products.testing.write_synthetic_cube`, then, in the same run
and on the same file:

1. **Viewer sessions** (``benchmarks/viewer_sessions.py``, whose docstring says
   exactly what is measured for each library): musewise ``CubeViewer``, jdaviz
   Cubeviz and mpdaf, each in a fresh process of its own interpreter (jdaviz in
   its own virtualenv, ``make bench-jdaviz-env``), time from the start of the
   session's work (imports apart) to its first image, then one spaxel
   spectrum, and the process's peak resident memory above that of an empty
   interpreter, against the cube's size on disk. Each library runs twice:
   "cold" (file evicted from the page cache, no musewise white-light sidecar
   yet) and "warm" (file read once just before; the sidecar the cold run wrote).
   All headless: no browser, so nothing is serialised to a page or drawn.
   The parent watches each session's memory and stops it when its resident
   memory passes ``--mem-cap-gb`` or the machine's available memory falls
   below ``--min-free-gb``; the figures of a stopped session are then lower
   bounds (``>``) and the ratios against it upper bounds (``<``).
2. **Operations** (musewise vs mpdaf, unless ``--sessions-only``):

   * open + white-light image: musewise ``MuseCube.open().white_light()``
     (computed, then from the sidecar cache) and the ``CubeViewer`` until its
     first image, vs mpdaf ``Cube(path).mean(axis=0)``;
   * one spaxel spectrum (DATA + variance): ``MuseCube.spectrum`` and
     ``CubeViewer.select_spaxel`` (which also builds the bokeh update), vs mpdaf
     ``Cube(path)[:, y, x]``;
   * one wavelength plane: ``MuseCube.plane`` and ``CubeViewer.set_wavelength``
     (with colour scaling and the bokeh update), vs mpdaf ``Cube(path)[k, :, :]``.

"cold" means the file was evicted from the page cache first
(``posix_fadvise(DONTNEED)``, no root needed; each library runs in its own
process so no live memory map pins pages); "warm" means it is cached. On a VM
the host may still cache the disk, so "cold" is a lower bound for a real disk.
Ratios are musewise / other (below 1: musewise faster or smaller).

Goals (issue 12): musewise's first image within 0.1x jdaviz's and 0.1x mpdaf's
time, and its peak memory within 0.1x the cube's size on disk.

Usage (``make bench`` runs it with the others; CI does not)::

    make bench-jdaviz-env          # once: jdaviz 5.0.2 in .venv-jdaviz
    python benchmarks/bench_widgets.py [--dir DIR] [--keep] [--shape 3681 320 320]

Without ``--dir`` the cube is written to a new folder under the system's
temporary directory; whatever the run wrote (cube, sidecars, that folder) is
removed at the end unless ``--keep``. A full run needs ~3 GB of disk and, for
mpdaf and jdaviz, several GB of memory: check ``free -g`` first, and develop
with a small ``--shape``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
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


# ------------------------------------------------------------------ sessions
HERE = Path(__file__).resolve().parent
SESSIONS_SCRIPT = HERE / "viewer_sessions.py"
DEFAULT_JDAVIZ_PYTHON = HERE.parent / ".venv-jdaviz" / "bin" / "python"
GB = 1e9


def _proc_rss(pid: int) -> tuple[int, int]:
    """Resident memory of a process and its anonymous part, bytes (0 once it has gone).

    The rest of the resident memory is file-backed: pages of memory-mapped files
    (the cube, shared libraries), which are the page cache's pages seen through
    the mapping and can be dropped by the kernel at any time.
    """
    rss = anon = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, anon


def _mem_available() -> int:
    """The machine's available memory (``MemAvailable``), bytes."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def run_session(python: str, library: str, job: dict, *, mem_cap: float, min_free: float,
                timeout: float) -> dict:
    """Run one viewer session in a fresh process and return what it measured.

    The session's memory is sampled every 50 ms; it is killed when its resident
    memory passes ``mem_cap`` bytes, the machine's available memory falls below
    ``min_free`` bytes, or it runs longer than ``timeout`` seconds. A killed
    session's result has ``stopped`` (why), ``elapsed_s`` (its time from the
    start of its work), ``stage`` (the last stage it finished) and
    ``peak_rss`` (the highest resident memory sampled): lower bounds.
    """
    proc = subprocess.Popen([python, str(SESSIONS_SCRIPT), library, json.dumps(job)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(HERE.parent))
    lines: list[tuple[float, str]] = []  # (when read, line): the start line dates the work
    err: list[str] = []

    def read_stdout():
        for line in iter(proc.stdout.readline, ""):
            lines.append((time.perf_counter(), line))

    readers = [threading.Thread(target=read_stdout, daemon=True),
               threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")),
                                daemon=True)]
    for r in readers:
        r.start()
    t0 = time.perf_counter()
    peak = peak_anon = 0
    stopped = ""
    while proc.poll() is None:
        rss, anon = _proc_rss(proc.pid)
        peak, peak_anon = max(peak, rss), max(peak_anon, anon)
        if rss > mem_cap:
            stopped = f"resident memory passed the cap of {mem_cap / GB:.1f} GB"
        elif _mem_available() < min_free:
            stopped = f"the machine's available memory fell below {min_free / GB:.1f} GB"
        elif time.perf_counter() - t0 > timeout:
            stopped = f"ran longer than {timeout:.0f} s"
        if stopped:
            proc.kill()
            break
        time.sleep(0.05)
    t_end = time.perf_counter()
    proc.wait()
    for r in readers:
        r.join(timeout=5)
    result = next((json.loads(ln[len("RESULT "):]) for _, ln in lines
                   if ln.startswith("RESULT ")), None)
    if result is not None:
        result["peak_anon_sampled"] = peak_anon
        return result
    if not stopped:
        raise RuntimeError(f"{library} session failed (exit {proc.returncode}):\n"
                           + "".join(err[-30:]))
    stages = [(t, ln.split()) for t, ln in lines if ln.startswith("STAGE ")]
    # Its work started when it printed its start line (imports done); a few ms of
    # pipe latency make the elapsed time a lower bound, as is the sampled peak.
    return {"stopped": stopped, "peak_rss": peak, "peak_anon_sampled": peak_anon,
            "stage": stages[-1][1][1] if stages else "import",
            "stages": {words[1]: float(words[2]) for _, words in stages},
            "elapsed_s": t_end - stages[0][0] if stages else 0.0}


def first_image_time(res: dict) -> tuple[float, str]:
    """A session's time to its first image and "" or ">" (a stopped session's lower bound)."""
    if "first_image_s" in res:
        return res["first_image_s"], ""
    if "first_image" in res.get("stages", {}):
        return res["stages"]["first_image"], ""
    return res["elapsed_s"], ">"


def sessions(path: Path, folder: Path, args) -> dict:
    """Empty, musewise, mpdaf and jdaviz sessions, cold then warm, on one cube."""
    nl, ny, nx = args.shape
    # An off-centre spaxel of the bright source (the middle one is shown on open).
    x, y = int(0.3 * nx), int(0.6 * ny)
    cache = folder / "session-white-light"
    shutil.rmtree(cache, ignore_errors=True)
    job = dict(path=str(path), x=x, y=y, cache_dir=str(cache))
    libs = [("musewise", sys.executable), ("mpdaf", sys.executable)]
    if args.no_mpdaf:
        libs.pop()
    jdaviz_python = Path(args.jdaviz_python)
    if args.no_jdaviz:
        pass
    elif jdaviz_python.exists():
        libs.append(("jdaviz", str(jdaviz_python)))
    else:
        print(f"no jdaviz interpreter at {jdaviz_python}: no jdaviz baseline "
              "(make bench-jdaviz-env)")
    kw = dict(mem_cap=args.mem_cap_gb * GB, min_free=args.min_free_gb * GB,
              timeout=args.session_timeout)
    out = {"spaxel": (x, y), "baseline": {}}
    for python in sorted({p for _, p in libs}):
        out["baseline"][python] = run_session(python, "empty", {}, **kw)["peak_rss"]
    for lib, python in libs:
        for state in ("cold", "warm"):
            if state == "cold":
                evict(path)
            else:
                warm_file(path)
            print(f"session {lib} {state} ...", flush=True)
            res = run_session(python, lib, job, **kw)
            res["python"] = python
            out[(lib, state)] = res
            if "stopped" in res:
                print(f"  stopped after {res['elapsed_s']:.1f} s, after finishing stage "
                      f"{res['stage']!r}: {res['stopped']}", flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    return out


def _fmt_time(res, key):
    if key == "first_image_s":
        value, bound = first_image_time(res)
        return f"{bound}{value:.3f} s"
    return "not reached" if "stopped" in res else f"{res[key]:.3f} s"


def _above(res, baseline):
    return res["peak_rss"] - baseline


def report_sessions(out: dict, size: float) -> dict:
    """Print the sessions table, the ratios and the goals; return the goal verdicts."""
    libs = [lib for lib in ("musewise", "mpdaf", "jdaviz") if (lib, "cold") in out]
    print(f"\nviewer sessions (one process each; spaxel {out['spaxel']}; peak memory is the "
          "process's peak resident memory above an empty interpreter's)")
    for python, b in out["baseline"].items():
        print(f"  empty interpreter {python}: {b / 1e6:.0f} MB")
    head = f"{'':40s}" + "".join(f"{lib:>16s}" for lib in libs)
    print(head)
    for state in ("cold", "warm"):
        for key, label in (("first_image_s", "first image"), ("spectrum_s", "then one spectrum"),
                           ("peak", "peak memory above empty"),
                           ("anon", "  of it anonymous (sampled)")):
            row = f"{label + ', ' + state:40s}"
            for lib in libs:
                res = out.get((lib, state))
                if key == "peak":
                    gb = _above(res, out["baseline"][res["python"]]) / GB
                    cell = (">" if "stopped" in res else "") + f"{gb:.2f} GB"
                elif key == "anon":
                    cell = f"{res['peak_anon_sampled'] / GB:.2f} GB"
                else:
                    cell = _fmt_time(res, key)
                row += f"{cell:>16s}"
            print(row)
    for lib in libs:
        res = out[(lib, "cold")]
        what = res.get("first_image_what",
                       f"not reached: stopped after finishing stage {res.get('stage')!r}")
        extra = (f"; import {res['import_s']:.1f} s (not counted)" if "import_s" in res else "")
        print(f"  {lib}: first image = {what}{extra}")
    print("  (peak memory: VmHWM, file-backed pages of memory-mapped files included; the "
          "anonymous part, private memory, is the highest of the parent's 50 ms samples)")
    mw = out[("musewise", "cold")]
    if "white_light_s" in mw:
        print(f"  musewise cold: white light shown {mw['white_light_s']:.2f} s after opening "
              f"({mw['white_light_source']})")

    goals = {}
    print("\nratios musewise / other (below 1: musewise faster or smaller; '<' where the other "
          "session had to be stopped, so its time or memory is a lower bound)")
    for other in libs[1:]:
        for state in ("cold", "warm"):
            a, b = out[("musewise", state)], out[(other, state)]
            t_b, lower = first_image_time(b)
            bound = "<" if lower else ""
            r_img = a["first_image_s"] / t_b
            spec = ("spectrum not reached" if "stopped" in b else
                    f"spectrum {a['spectrum_s'] / b['spectrum_s']:.4f}")
            m_a = _above(a, out["baseline"][a["python"]])
            m_b = _above(b, out["baseline"][b["python"]])
            mem_bound = "<" if "stopped" in b else ""
            print(f"  musewise/{other:7s} {state}: first image {bound}{r_img:.4f}, {spec}, "
                  f"peak memory {mem_bound}{m_a / m_b:.4f}")
            goals[f"first image <= 0.1x {other}'s ({state})"] = (r_img, 0.1, bound)
    for state in ("cold", "warm"):
        a = out[("musewise", state)]
        goals[f"peak memory <= 0.1x cube size ({state})"] = (
            _above(a, out["baseline"][a["python"]]) / (size * GB), 0.1, "")
    print(f"\ngoals (issue 12), cube {size:.2f} GB on disk:")
    for label, (value, limit, bound) in goals.items():
        print(f"  goal {label:40s} {bound}{value:8.4f}  {'MET' if value <= limit else 'MISSED'}")
    for state in ("cold", "warm"):
        a = out[("musewise", state)]
        print(f"  (musewise {state}: its anonymous, private memory peaked at "
              f"{a['peak_anon_sampled'] / (size * GB):.4f}x the cube; the rest of its peak is "
              "pages of the cube's memory map, which the page cache holds anyway)")
    return goals


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=os.environ.get("MUSEWISE_BENCH_DIR"),
                    help="folder of the cube (default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the cube and caches this run wrote (default: remove them)")
    ap.add_argument("--shape", nargs=3, type=int, default=(3681, 320, 320),
                    metavar=("NL", "NY", "NX"))
    ap.add_argument("--n", type=int, default=15, help="spectra/planes per warm measurement")
    ap.add_argument("--no-mpdaf", action="store_true", help="skip the mpdaf baseline")
    ap.add_argument("--no-jdaviz", action="store_true", help="skip the jdaviz baseline")
    ap.add_argument("--jdaviz-python", default=str(DEFAULT_JDAVIZ_PYTHON),
                    help="interpreter of the jdaviz virtualenv (make bench-jdaviz-env)")
    ap.add_argument("--sessions-only", action="store_true",
                    help="only the viewer sessions, not the per-operation table")
    ap.add_argument("--mem-cap-gb", type=float, default=12.0,
                    help="stop a session whose resident memory passes this, GB")
    ap.add_argument("--min-free-gb", type=float, default=4.0,
                    help="stop a session when the machine's available memory falls below, GB")
    ap.add_argument("--session-timeout", type=float, default=900.0,
                    help="stop a session running longer than this, s")
    args = ap.parse_args(argv)

    made_folder = args.dir is None
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="musewise-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    shape = tuple(args.shape)
    args.shape = shape
    path = folder / f"cube_{'x'.join(map(str, shape))}.fits"
    wrote_cube = not path.exists()
    try:
        if wrote_cube:
            t, _ = timed(write_synthetic_cube, path, shape=shape, seed=0)
            print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {t:.1f} s")
        return _run(path, folder, args)
    finally:
        if not args.keep:
            shutil.rmtree(folder / "white-light-cache", ignore_errors=True)
            shutil.rmtree(folder / "empty-cache", ignore_errors=True)
            shutil.rmtree(folder / "session-white-light", ignore_errors=True)
            if wrote_cube:
                path.unlink(missing_ok=True)
                path.with_name(path.name + ".part").unlink(missing_ok=True)
            if made_folder:
                shutil.rmtree(folder, ignore_errors=True)


def _run(path: Path, folder: Path, args) -> dict:
    shape = args.shape
    cache = folder / "white-light-cache"
    shutil.rmtree(cache, ignore_errors=True)
    nl, ny, nx = shape
    size = path.stat().st_size / 1e9
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"machine: {os.cpu_count()} cores, load average {load}, "
          f"{_mem_available() / GB:.1f} GB available")
    out = sessions(path, folder, args)
    res: dict = {"sessions": out}
    if not args.sessions_only:
        res.update(operations(path, folder, args))
    print(f"\nmusewise widgets benchmark: {path.name}, {nx} x {ny} x {nl}, {size:.2f} GB "
          f"(DATA+STAT), {os.cpu_count()} cores")
    res["goals"] = report_sessions(out, size)
    if not args.sessions_only:
        report_operations(res)
    with open("/proc/loadavg") as f:
        print(f"load average at the end: {' '.join(f.read().split()[:3])}")
    return res


def operations(path: Path, folder: Path, args) -> dict:
    """musewise and mpdaf per-operation timings (each library in a spawned process)."""
    nl, ny, nx = args.shape
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
    return res


def report_operations(res: dict) -> None:
    print("\noperations, musewise vs mpdaf")
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
          "maps, several of which are open at once in that process, shared with the page cache: "
          "not extra memory; the viewer sessions above measure one viewer's memory)"
          + (f", mpdaf process {res['mp_max_rss_gb']:.2f} GB" if "mp_max_rss_gb" in res else ""))
    targets = [("viewer open to first image < 1 s", max(res["viewer_first_image_cached"],
                                                        res["viewer_first_image_uncached"]), 1.0),
               ("spectrum after click < 100 ms (warm)", res["viewer_click_spectrum_warm"], 0.1),
               ("wavelength plane < 50 ms (warm)", res["viewer_plane_warm"], 0.05)]
    for label, value, limit in targets:
        print(f"target {label:40s} {ms(value)}  {'OK' if value < limit else 'MISSED'}")


if __name__ == "__main__":
    main()
