"""A night reduced by musewise and by the same esorex commands from a plain shell script, in one run.

Issue 10's benchmark. For a simulated night of ``--ifus`` IFUs (with a standard star
and twilight flats when it has 2+ IFUs, so the whole default cascade runs: bias ->
flat -> wavecal -> lsf -> twilight -> scibasic -> standard -> scipost with the sky
model) this script, all in one invocation:

1. reduces the night through musewise, ``dpu.make(step, dry_run=False)`` for each of
   ``--steps`` (default ``scipost``: the whole cascade, what ``make demo`` runs), in a fresh
   archive, once for each of ``--workers`` (default 1 and 2 workers); like ``make demo``,
   with the lean products where the disk holds only those beside room for the shell
   replay's runs (:func:`musewise.demo.fit_disk`);
2. takes every run's recorded esorex command line(s) and set of frames from the first
   archive (so the commands are identical; a banded muse_scipost replays every band's
   call) and runs them from a bash script, each step's runs as many at a time as musewise
   runs them (``xargs -P``), each esorex with the OpenMP threads musewise gives it;
3. prints, for each worker count: the wall times, musewise / shell (goal <= 1.05), the
   time the QC notebooks added, when no reduction ran beside them (:func:`qc_span`:
   the shell script does no QC) and the ratio without it, the per-run overhead in seconds
   (musewise minus shell, over the number of runs; and each run's wall time minus its own
   esorex time, which does not depend on the load drifting between passes; goal < 1 s),
   where that time goes (mean seconds per esorex run: :func:`time_breakdown`), the OpenMP
   threads and the most runs of a step that ran at once, the speed-up of 2 workers over 1
   for both (goal >= 1.9x), each recipe's mean esorex seconds per run in musewise and in
   the shell (:func:`esorex_seconds`: whether a gap is inside esorex or around it), the
   CPU seconds of each kind of process in each pass (``bench_night.CpuAccount``: esorex,
   the Dask workers, the kernels, this driver; on a machine with one core per worker,
   what musewise adds besides esorex's own is CPU taken from the esorex beside it), the
   peak resident memory of this process and all its children (Dask workers, kernels,
   esorex), the most disk the data folder took and the least free.

The disk holds one archive at a time, so that a 24-IFU night fits beside its replay: each
pass ingests its own hard links to the simulated frames (moved into its datastore: the
frames are stored once), the shell replay reads the first archive's files and removes each
run's products once esorex succeeded, and an archive is removed once its figures are taken
(``--keep-archives`` keeps them). The first musewise pass, then the shell passes, then the
other musewise passes.

Measured here (2 IFUs, the whole cascade with the sky model, 15 esorex runs and 11 QC
notebooks; the machine shared with 2-3 other sessions' reductions and test suites, load
average 2-11, 2026-12-01), before and after warm kernels and OpenMP threads per run:

==========================  ======================  ======================
                            before (1a4f6fc)        after
==========================  ======================  ======================
1 worker: musewise / shell  776.5 / 417.1 s = 1.86  351.0 / 277.9 s = 1.26
run wall - esorex           6.72 s                  1.96 s
2 workers: musewise / shell 417.2 / 343.6 s = 1.21  294.0 / 586.5 s (*)
run wall - esorex           5.21 s                  3.47 s
speed-up musewise / shell   1.86x / 1.21x           1.19x / 0.47x (*)
peak memory, disk           3.55 GB, 20.4 GB        4.08 GB, 20.4 GB
==========================  ======================  ======================

(*) other sessions' pipeline runs started during that pass: its figures show the load.
Seconds per esorex run outside esorex, 1 worker, before -> after: kernel start/stop and
papermill 2.70 -> 0.27, imports 1.95 -> 0.01, figures 1.02 -> 0.44, archiving 0.65 -> 0.34,
recipe wrapper 0.19 -> 0.10, other cells 0.18 -> 0.07, begin 0.04 -> 0.71 (waiting for the
spare kernel when runs follow each other faster than a kernel starts), and the post-run QC
notebooks 6.29 -> 1.86 (11 QC runs, per esorex run). Before, both passes ran each esorex
with CPL's default of every core (2 runs at once: 4 threads on 2 cores).

The 24-IFU night (``--ifus 24 --workers 2``, one exposure, lean products: 147 esorex runs, 148
calls, 207 QC notebooks; the machine otherwise quiet, 2026-12-02): musewise 2452.7 s, shell
1946.9 s, ratio 1.260; the QC notebooks 328.6 s, without them 1.091; run wall - esorex 1.50 s
(begin 0.33, kernel and papermill 0.29, figures 0.26, archive 0.40, the rest 0.22); peak memory
17.30 GB, the benchmark's folder at most 48.2 GB, 27.9 GB left free; 1 h 15 min in all.
With kernels shared by musewise's own notebooks (6fd4e25, same night and machine): musewise
1966.9 s, shell 1733.7 s, ratio 1.134; run wall - esorex 0.72 s; esorex itself slower in
musewise mostly where QC ran beside it (muse_twilight 349.5 s against 278 s: docs/reduction.md).

Simulation and ingest are not timed. On a shared machine the load drifts: run the
cases more than once before drawing conclusions.

Usage::

    python benchmarks/bench_shell.py                 # 2 IFUs
    python benchmarks/bench_shell.py --ifus 1        # 1 IFU (no standard: muse_standard needs 2 IFUs)
    python benchmarks/bench_shell.py --ifus 1 --scipost skymethod=none   # quicker: no sky model
    python benchmarks/bench_shell.py --ifus 24 --workers 2 --keep /data/bench   # the full instrument (~1.5 h; ~55 GB)
    python benchmarks/bench_shell.py --ifus 24 --keep /data/bench   # and on 1 worker, for the speed-up (~3.5 h)
    python benchmarks/bench_shell.py --ifus 24 --steps bias,flat,wavecal --keep /data/bench  # within an hour
    python benchmarks/bench_shell.py --ifus 1 --scipost wavelength_bands=2   # a banded scipost, replayed band by band
    python benchmarks/bench_shell.py --archive demo   # where the time of an archive's runs went (no replay)

``--archive ROOT`` reads the runs of an existing data root (a ``make demo IFUS=24`` night, say)
and prints, step by step, the runs, their span, esorex's share and each run's time outside
esorex, then :func:`time_breakdown` over all its esorex runs: the per-run overhead measured on
a full night, where replaying it from a shell in the same invocation would take hours more.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_night import GB, CpuAccount, Sampler, tree_size  # noqa: E402

NIGHT = "2026-11-20"


def simulate(outdir: Path, ifus) -> Path:
    """The night's raw frames and static calibrations (a standard and twilight flats with 2+ IFUs)."""
    from musewise.inm import simulate_night

    full = len(ifus) >= 2
    simulate_night(outdir, night=NIGHT, ifus=tuple(ifus), n_bias=3, n_dark=0, n_flat=3, n_arc_per_lamp=1,
                   n_skyflat=3 if full else 0, n_std=1 if full else 0, n_object=1, seed=3, progress=False)
    return outdir


def musewise_pass(root: Path, frames: Path, ifus, workers: int, script_dir: Path | None = None,
                  scipost: dict | None = None, steps=("scipost",), shell_workers=(1, 2), config_lines=()):
    """Seconds of ``dpu.make(step)`` for each of ``steps`` on a fresh archive, its runs, and (with
    ``script_dir``) the shell scripts replaying its esorex runs ``shell_workers`` at a time
    (``{workers: path}``). ``config_lines``: lines of the data root's config file
    (``c.DpuConfig.shared_kernels = []``; none: the site defaults)."""
    from musewise import dpu
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig

    import shutil

    from musewise.demo import fit_disk

    # Each pass ingests its own hard links to the night's frames, moved into its datastore:
    # every pass has the frames, the disk holds them once.
    links = root.parent / f"{root.name}-frames"
    subprocess.run(["cp", "-al", str(frames), str(links)], check=True)
    if config_lines:  # in the root's config file: the Dask workers read it too
        root.mkdir(parents=True, exist_ok=True)
        with open(root / "musewise_config.py", "a") as fh:
            fh.write("".join(f"{line}\n" for line in config_lines))
    arch = Archive(MusewiseConfig.load(root=str(root), user="bench", n_workers=workers), user="bench")
    try:
        rep = arch.ingest_many([links], progress=False, move=True)
        if rep.refused:
            raise SystemExit(f"ingest refused {rep.refused}")
        shutil.rmtree(links)  # its folders, emptied by the move
        # What ``make demo`` does: the lean products where only those fit (a 24-IFU night here),
        # with room for the shell replay's two runs at once writing their products beside them.
        fit_disk(arch, root, NIGHT, ifus, copies_of_largest_run=2)
        t0 = time.perf_counter()
        # The default engine, as users get it: a LocalCluster of ``workers`` processes.
        for step in steps:  # each with what it needs and is not yet made
            dpu.make(step, NIGHT, list(ifus), dry_run=False, archive=arch,
                     p=(scipost or None) if step == "scipost" else None, progress=False)
        seconds = time.perf_counter() - t0
        runs = sorted(arch.runs(), key=lambda r: r.id)
        failed = [(r.id, r.recipe, r.error) for r in runs if r.status != "succeeded"]
        if failed:
            raise SystemExit(f"musewise runs failed: {failed}")
        scripts = {w: shell_script(arch, esorex_runs(runs), script_dir / f"shell{w}", w)
                   for w in shell_workers} if script_dir else {}
        breakdown = time_breakdown(arch, runs)
    finally:
        arch.close()
        from musewise.dpu.engine import close_clients

        close_clients()  # the next pass starts its own cluster, of its own size
    return seconds, runs, scripts, breakdown


def shell_script(arch, runs, outdir: Path, workers: int) -> Path:
    """A bash script running the runs' recorded esorex command lines on their recorded inputs.

    Each run's set of frames is written again from the archive (the run's inputs, by tag,
    at their datastore paths: the files the run read); its ``--output-dir`` and
    ``--log-dir`` point to a folder of its own. A run of several esorex calls (a banded
    muse_scipost) replays each band's recorded call, one after the other, each band's
    OUTPUT_WCS made again beforehand from the run's wavelength grid. The runs of one step run
    as many at a time as musewise runs them (``xargs -P``: ``workers``, at most
    ``DpuConfig.heavy_concurrency`` for heavy recipes), each esorex with the OpenMP threads
    musewise gives it (``OMP_NUM_THREADS``: the cores shared by the runs at once), the
    steps one after the other.
    """
    import shlex

    from musewise.dpu.api import runs_at_once
    from musewise.dpu.config import DpuConfig

    dcfg = DpuConfig.from_config(arch.config)
    lines = ["#!/bin/bash", "set -e"]
    groups: list[list] = []
    for r in runs:
        if groups and groups[-1][0].details.get("step") == r.details.get("step") and groups[-1][0].recipe == r.recipe:
            groups[-1].append(r)
        else:
            groups.append([r])
    for group in groups:
        cmds = [" && ".join(replay_calls(arch, r, outdir / f"run{r.id:06d}")) for r in group]
        heavy = [r.recipe in dcfg.heavy_recipes for r in group]
        at_once = runs_at_once("dask", heavy, workers, int(dcfg.heavy_concurrency))
        threads = dcfg.threads_per_run(at_once)
        lines.append(f"# {group[0].recipe}: {len(cmds)} run(s), {at_once} at a time, {threads} OpenMP thread(s) each")
        lines.append("printf '%s\\0' " + " ".join(shlex.quote(c) for c in cmds)
                     + f" | OMP_NUM_THREADS={threads} xargs -0 -P {at_once} -I CMD bash -c CMD")
    script = outdir / "replay.sh"
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o755)
    return script


def replay_calls(arch, run, d: Path) -> list[str]:
    """Shell commands replaying a run's esorex call(s) in folder ``d`` (frames written there now)."""
    import shlex

    from musewise.products.outputwcs import CubeGrid

    def one(cmd, frames, folder: Path) -> str:
        # The products go to ``out/``, removed once esorex succeeded: only the time is wanted, and
        # a 24-IFU night's products twice (the archive's and these) would not fit on the disk.
        folder.mkdir(parents=True, exist_ok=True)
        sof = folder / Path(cmd[-1]).name
        sof.write_text("".join(f"{path} {tag}\n" for path, tag in frames))
        out = folder / "out"
        cmd = [f"--log-dir={folder}" if c.startswith("--log-dir=") else
               f"--output-dir={out}" if c.startswith("--output-dir=") else c for c in cmd[:-1]]
        q = shlex.quote
        # ``esorex.seconds``: the call's start and end (Unix time), for the per-recipe comparison
        return (f"cd {q(str(folder))} && mkdir -p out && t0=$(date +%s.%N) && " + " ".join(map(q, cmd + [str(sof)]))
                + f' > esorex.out 2>&1 && echo "$t0 $(date +%s.%N)" > esorex.seconds && rm -rf {q(str(out))}')

    inputs = [(arch.path(i.dataset_id), i.tag) for i in run.inputs]
    calls = run.details.get("calls") or []
    if not calls:
        return [one(list(run.details["command"]), inputs, d)]
    # the bands' wavelength grid: the run's own OUTPUT_WCS, else its joined cube (the first band's grid)
    # (a listed run names no outputs: get_run's record does)
    grid = next((p for p, tag in inputs if tag == "OUTPUT_WCS"), None) or next(
        arch.path(o) for o in arch.get_run(run.id).output_ids if arch.get(o).category == "DATACUBE_FINAL")
    out = []
    for b, call in enumerate(calls, 1):
        folder = d / f"band{b}"
        frames = [(p, tag) for p, tag in inputs if tag != "OUTPUT_WCS"]
        if call.get("wcs_planes"):
            planes = tuple(call["wcs_planes"])
            frames.append((CubeGrid.from_file(grid).write(folder / "OUTPUT_WCS_band.fits", planes), "OUTPUT_WCS"))
        out.append(one(list(call["command"]), frames, folder))
    return out


def esorex_runs(runs) -> list:
    """The runs that called esorex (a Python recipe has no command line to replay)."""
    return [r for r in runs if (r.details.get("command") or [""])[0].endswith("esorex")]


def esorex_seconds(runs, shell_dir: Path | None = None) -> dict:
    """Mean esorex seconds per run of each recipe: as musewise ran them, or (``shell_dir``) as the
    shell replay in that folder did (its ``esorex.seconds`` files, the bands of a run summed).

    Beside the wall times this says where a gap is: inside esorex (the runs slowed by what
    musewise runs beside them: QC notebooks, a kernel starting) or around it.
    """
    by_recipe: dict = {}
    for r in runs:
        if shell_dir is None:
            sec = float(r.details.get("recipe_seconds") or 0)
        else:
            spans = [tuple(map(float, f.read_text().split())) for f in (shell_dir / f"run{r.id:06d}").rglob("esorex.seconds")]
            if not spans:
                continue
            sec = sum(b - a for a, b in spans)
        by_recipe.setdefault(r.recipe, []).append(sec)
    return {k: round(sum(v) / len(v), 2) for k, v in sorted(by_recipe.items())}


def shell_pass(script: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["bash", str(script)], check=True)
    return time.perf_counter() - t0


def most_at_once(runs) -> dict:
    """For each step of several runs, the most of its runs that executed at the same time."""
    by_step: dict = {}
    for r in runs:
        by_step.setdefault(r.details.get("step") or r.recipe, []).append(r)
    out = {}
    for step, rs in by_step.items():
        if len(rs) > 1:
            edges = sorted([(r.started, 1) for r in rs] + [(r.ended, -1) for r in rs], key=lambda e: (e[0], e[1]))
            now = peak = 0
            for _t, d in edges:
                now += d
                peak = max(peak, now)
            out[step] = peak
    return out


#: The parts of a reduction run's wall time outside esorex, in :func:`time_breakdown`.
PARTS = ("begin", "kernel_papermill", "imports", "recipe_wrapper", "figures", "other_cells", "archive", "qc_hook")


def time_breakdown(arch, runs) -> dict:
    """Mean seconds per esorex run of each part of the run outside esorex, from the run records
    and the archived executed notebooks (papermill's per-cell times).

    ``begin``: run recorded to notebook started (work dir, parameters, taking a kernel);
    ``kernel_papermill``: the notebook's time outside its cells (starting, stopping the
    kernel, papermill reading, parameterising and writing the notebook); ``imports``: the
    first code cell after the parameters (imports, ``%matplotlib inline``); ``recipe_wrapper``:
    the recipe cell minus esorex (frames written, products described, QC keywords read);
    ``figures``: the quick-look cell; ``other_cells``: the rest (inputs, log, QC table, checks);
    ``archive``: notebook ended to run closed (products inspected, moved, checksummed, the
    transaction); ``qc_hook``: the post-run QC notebooks' runs, per esorex run; and
    ``esorex``, ``wall``, for reference.
    """
    import datetime as dt

    import nbformat

    def when(text):
        t = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
        return t.replace(tzinfo=None) if t.tzinfo is None else t.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def naive(t):
        return t.astimezone(dt.timezone.utc).replace(tzinfo=None) if t.tzinfo else t

    ereduce = esorex_runs(runs)
    tot = dict.fromkeys(PARTS + ("esorex", "wall"), 0.0)
    for r in ereduce:
        esorex = float(r.details.get("recipe_seconds") or 0)
        wall = (r.ended - r.started).total_seconds()
        tot["esorex"] += esorex
        tot["wall"] += wall
        if r.notebook_id is None:
            continue
        nb = nbformat.read(arch.path(r.notebook_id), as_version=4)
        pm = nb.metadata.get("papermill", {})
        t0, t1 = when(pm["start_time"]), when(pm["end_time"])
        code = [c for c in nb.cells if c.cell_type == "code"]
        dur = [float(c.metadata.get("papermill", {}).get("duration") or 0) for c in code]
        tot["begin"] += (t0 - naive(r.started)).total_seconds()
        tot["archive"] += (naive(r.ended) - t1).total_seconds()
        tot["kernel_papermill"] += (t1 - t0).total_seconds() - sum(dur)
        for c, d in zip(code, dur):
            src = c.source
            if "parameters" in c.metadata.get("tags", []) or "injected-parameters" in c.metadata.get("tags", []):
                tot["other_cells"] += d
            elif src.startswith("import json"):
                tot["imports"] += d
            elif "nb.execute(" in src:
                tot["recipe_wrapper"] += d - esorex
            elif "quicklook" in src or "plot_" in src:
                tot["figures"] += d
            else:
                tot["other_cells"] += d
    qc = [r for r in runs if r.recipe.startswith("qc_")]
    tot["qc_hook"] = sum((r.ended - r.started).total_seconds() for r in qc)
    n = max(len(ereduce), 1)
    out = {k: round(v / n, 2) for k, v in tot.items()}
    out["qc_runs"] = len(qc)
    return out


def overhead_per_run(runs) -> float:
    """Mean over runs of the run's wall time minus its esorex time (s)."""
    extra = [(r.ended - r.started).total_seconds() - float(r.details.get("recipe_seconds") or 0) for r in runs]
    return sum(extra) / max(len(extra), 1)


def qc_span(runs) -> float:
    """Seconds during which a QC notebook ran and no reduction did: what QC added to the wall time.

    On Dask the QC of one step runs beside the next step's runs
    (:class:`musewise.dpu.hooks.PostRunHooks`); only its time outside every reduction run
    (between batches, after the last) counts here.
    """
    qc = _union((r.started, r.ended) for r in runs if r.recipe.startswith("qc_"))
    reductions = _union((r.started, r.ended) for r in runs if not r.recipe.startswith("qc_"))
    total = 0.0
    for a, b in qc:
        total += (b - a).total_seconds()
        for c, d in reductions:  # minus the overlaps (disjoint intervals on both sides)
            lo, hi = max(a, c), min(b, d)
            if hi > lo:
                total -= (hi - lo).total_seconds()
    return total


def _union(spans) -> list:
    # The intervals' union as disjoint (start, end) pairs, in order.
    out: list = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def bench(ifus, base: Path, every: float, scipost: dict | None = None, steps=("scipost",),
          workers=(1, 2), keep_archives: bool = False, config_lines=()) -> dict:
    """Musewise passes on ``workers`` worker counts and the shell replays of the first pass's runs.

    The order keeps one archive on disk at a time: the first musewise pass, the shell passes
    (which read that archive's inputs), then the other musewise passes, each archive removed
    once its figures are taken (unless ``keep_archives``).
    """
    import shutil

    frames = simulate(base / "night", ifus)
    sampler = Sampler(os.getpid(), base, every)
    sampler.start()
    cpu = CpuAccount(os.getpid())
    cpu.start()
    mw, runs, parts, sh, qc, extra, shell_recipe = {}, {}, {}, {}, {}, {}, {}
    cpu_mw, cpu_sh = {}, {}
    try:
        for i, w in enumerate(workers):
            root = base / f"mw{w}"
            before = cpu.snapshot()
            mw[w], runs[w], scripts, parts[w] = musewise_pass(
                root, frames, ifus, w, script_dir=base if i == 0 else None, scipost=scipost, steps=steps,
                shell_workers=workers, config_lines=config_lines)
            cpu_mw[w] = cpu.between(before, cpu.snapshot())
            qc[w], extra[w] = qc_span(runs[w]), overhead_per_run(esorex_runs(runs[w]))
            print(f"musewise, {w} worker(s): {mw[w]:.1f} s, of which QC notebooks {qc[w]:.1f} s; "
                  f"run wall - esorex {extra[w]:.2f} s; per esorex run: "
                  + json.dumps(parts[w]), flush=True)  # kept in the log should a later pass fail
            if i == 0:
                for v in workers:
                    print(f"shell replay, {v} worker(s)...", flush=True)
                    before = cpu.snapshot()
                    sh[v] = shell_pass(scripts[v])
                    cpu_sh[v] = cpu.between(before, cpu.snapshot())
                    shell_recipe[v] = esorex_seconds(esorex_runs(runs[w]), scripts[v].parent)
            if not keep_archives:
                shutil.rmtree(root)
    finally:
        sampler.stop.set()
        cpu.stop.set()
        sampler.join()
        cpu.join()
    replay = esorex_runs(runs[workers[0]])
    n = len(replay)
    out = {"ifus": len(ifus), "runs": n, "peak_memory_gb": round(sampler.peak_rss / GB, 2),
           "peak_disk_gb": round(max(sampler.peak_root, tree_size(base)) / GB, 2),
           "least_free_disk_gb": round(sampler.min_free / GB, 2)}
    for w in workers:
        out[f"workers{w}"] = {
            "musewise_s": round(mw[w], 1), "shell_s": round(sh[w], 1), "ratio": round(mw[w] / sh[w], 3),
            "qc_s": round(qc[w], 1), "ratio_without_qc": round((mw[w] - qc[w]) / sh[w], 3),
            "overhead_per_run_s": round((mw[w] - sh[w]) / n, 2),
            "run_wall_minus_esorex_s": round(extra[w], 2),
            "omp_threads": sorted({r.details.get("omp_threads") or 0 for r in esorex_runs(runs[w])}),
            "most_runs_at_once": most_at_once(esorex_runs(runs[w])),
            "seconds_per_run": parts[w],
            "cpu_s": {"musewise": cpu_mw[w], "shell": cpu_sh[w]},
            "esorex_s_per_recipe": {k: {"musewise": v, "shell": shell_recipe[w].get(k)}
                                    for k, v in esorex_seconds(esorex_runs(runs[w])).items()},
        }
    if 1 in workers and 2 in workers:
        out["speedup_2_over_1"] = {"musewise": round(mw[1] / mw[2], 2), "shell": round(sh[1] / sh[2], 2)}
    out["recipes"] = sorted({r.recipe for r in replay})
    out["esorex_calls"] = sum(len(r.details.get("calls") or [None]) for r in replay)
    return out


def archive_report(root: str, user: str = "admin") -> dict:
    """Where the time of an archive's succeeded runs went, step by step (seconds)."""
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig

    arch = Archive(MusewiseConfig.load(root=str(root), user=user), user=user)
    try:
        runs = sorted((r for r in arch.runs() if r.status == "succeeded"), key=lambda r: r.started)
        by_step: dict = {}
        for r in runs:
            by_step.setdefault(r.details.get("step") or r.recipe, []).append(r)
        steps = {}
        for step, rs in by_step.items():
            steps[step] = {
                "runs": len(rs),
                "span_s": round((max(r.ended for r in rs) - min(r.started for r in rs)).total_seconds(), 1),
                "esorex_s": round(sum(float(r.details.get("recipe_seconds") or 0) for r in rs), 1),
                "outside_esorex_per_run_s": round(overhead_per_run(rs), 2),
            }
        reduce = [r for r in runs if not r.recipe.startswith("qc_")]
        out = {"root": str(root), "runs": len(runs),
               "wall_s": round((max(r.ended for r in runs) - min(r.started for r in runs)).total_seconds(), 1),
               "steps": steps, "seconds_per_run": time_breakdown(arch, runs),
               "run_wall_minus_esorex_s": round(overhead_per_run(esorex_runs(reduce)), 2),
               "most_runs_at_once": most_at_once(reduce)}
    finally:
        arch.close()
    print(f"{out['runs']} runs of {root}, first start to last end {out['wall_s']:.0f} s:")
    print(f"  {'step':<14} {'runs':>5} {'span s':>8} {'esorex s':>9} {'outside esorex s/run':>21}")
    for step, v in steps.items():
        print(f"  {step:<14} {v['runs']:>5} {v['span_s']:>8.0f} {v['esorex_s']:>9.0f} {v['outside_esorex_per_run_s']:>21.2f}")
    print(f"  run wall - esorex over the esorex runs: {out['run_wall_minus_esorex_s']:.2f} s (goal < 1 s)")
    print("  mean seconds per esorex run: " + ", ".join(f"{k} {v}" for k, v in out["seconds_per_run"].items()))
    print(json.dumps(out, default=str))
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archive", metavar="ROOT", help="report where an existing data root's run time went, and stop")
    ap.add_argument("--user", default="admin", help="with --archive: the user reading it")
    ap.add_argument("--ifus", type=int, default=2, help="number of IFUs of the night (1-24)")
    ap.add_argument("--keep", help="folder for the data (default: a temporary folder, removed)")
    ap.add_argument("--every", type=float, default=2.0, help="memory and disk sampling interval (s)")
    ap.add_argument("--scipost", action="append", default=[], metavar="NAME=VALUE",
                    help="a muse_scipost parameter (repeatable), e.g. skymethod=none for a quicker pass")
    ap.add_argument("--steps", default="scipost",
                    help="comma-separated steps to make, in order, each with what it needs (default: "
                         "scipost, the whole cascade), e.g. bias,flat,wavecal for the full instrument within an hour")
    ap.add_argument("--workers", default="1,2",
                    help="comma-separated worker counts, one musewise and one shell pass each (default 1,2; "
                         "the speed-up needs both)")
    ap.add_argument("--shared-kernels", metavar="KINDS",
                    help="comma-separated DpuConfig.shared_kernels of the musewise passes (qc, reduction; "
                         "'' for none; default: the site default)")
    ap.add_argument("--no-qc", action="store_true",
                    help="the musewise passes run no QC notebooks (DpuConfig.post_run_hooks = []): the "
                         "reduction alone against the shell script, which runs no QC either")
    ap.add_argument("--keep-archives", action="store_true",
                    help="keep each pass's archive and the simulated night after the run, in the folder "
                         "printed at the end (by default each archive is removed once measured, one at a "
                         "time on the disk, and the folder at the end)")
    args = ap.parse_args(argv)
    if args.archive:
        return archive_report(args.archive, args.user)
    scipost = dict(kv.split("=", 1) for kv in args.scipost)
    steps = tuple(s.strip() for s in args.steps.split(",") if s.strip())
    workers = tuple(int(w) for w in args.workers.split(",") if w.strip())
    if not workers or min(workers) < 1:
        ap.error(f"--workers {args.workers!r}: give worker counts of 1 or more, e.g. 1,2")
    config_lines = []
    if args.shared_kernels is not None:
        config_lines.append(f"c.DpuConfig.shared_kernels = {[k for k in args.shared_kernels.split(',') if k]!r}")
    if args.no_qc:
        config_lines.append("c.DpuConfig.post_run_hooks = []")
    if args.keep and not Path(args.keep).is_dir():
        ap.error(f"--keep {args.keep!r}: no such folder (make it first; the data goes in a new folder inside it)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-shell-", dir=args.keep))
    try:
        res = bench(list(range(1, args.ifus + 1)), tmp, args.every, scipost, steps, workers,
                    args.keep_archives, config_lines)
    finally:
        if args.keep_archives:  # for looking into: the archives, with their products and notebooks
            print(f"kept: the simulated night in {tmp / 'night'}, the archives in "
                  + ", ".join(str(tmp / f"mw{w}") for w in workers), flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    res["scipost_parameters"], res["steps"] = scipost, list(steps)
    res["config"] = config_lines
    print(f"\n{res['ifus']}-IFU night, steps {','.join(steps)}: {res['runs']} esorex runs, "
          f"{res['esorex_calls']} esorex calls ({', '.join(res['recipes'])}):")
    for w in workers:
        r = res[f"workers{w}"]
        print(f"  {w} worker(s): musewise {r['musewise_s']:.1f} s, shell {r['shell_s']:.1f} s, "
              f"ratio {r['ratio']:.3f} (goal <= 1.05); overhead {r['overhead_per_run_s']:.2f} s per run "
              f"(run wall - esorex: {r['run_wall_minus_esorex_s']:.2f} s; goal < 1 s); OpenMP threads "
              f"{r['omp_threads']}, most runs at once per step {r['most_runs_at_once']}")
        print(f"    of which QC notebooks {r['qc_s']:.1f} s: without them musewise / shell "
              f"{r['ratio_without_qc']:.3f}")
        if r["esorex_s_per_recipe"]:
            print("    esorex seconds per run, musewise / shell: " + ", ".join(
                f"{k} {v['musewise']:.1f} / {v['shell'] or float('nan'):.1f}" for k, v in r["esorex_s_per_recipe"].items()))
    for w in workers:
        c = res[f"workers{w}"]["cpu_s"]
        print(f"  CPU seconds, {w} worker(s), by process (per esorex run): " + "; ".join(
            f"{who} " + ", ".join(f"{k} {v:.1f} ({v / res['runs']:.2f})" for k, v in c[who].items())
            for who in ("musewise", "shell")))
    print("  mean seconds per esorex run: " + "; ".join(
        f"{w} worker(s): " + ", ".join(f"{k} {v}" for k, v in res[f"workers{w}"]["seconds_per_run"].items())
        for w in workers))
    if "speedup_2_over_1" in res:
        s = res["speedup_2_over_1"]
        print(f"  speed-up of 2 workers over 1: musewise {s['musewise']:.2f}x, shell {s['shell']:.2f}x (goal >= 1.9x)")
    print(f"  peak memory {res['peak_memory_gb']:.2f} GB (this process and its children), "
          f"peak disk {res['peak_disk_gb']:.2f} GB, least free {res['least_free_disk_gb']:.1f} GB")
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
