"""A night reduced by musewise and by the same esorex commands from a plain shell script, in one run.

Issue 10's benchmark. For a simulated night of ``--ifus`` IFUs (with a standard star
and twilight flats when it has 2+ IFUs, so the whole default cascade runs: bias ->
flat -> wavecal -> lsf -> twilight -> scibasic -> standard -> scipost with the sky
model) this script, all in one invocation:

1. reduces the night through musewise, ``dpu.make('scipost', dry_run=False)`` (what
   ``make demo`` runs), in a fresh archive, with 1 worker and again with 2 workers;
2. takes every run's recorded esorex command line and set of frames from the first
   archive (so the commands are identical) and runs them from a bash script, each
   step's runs 1 and then 2 at a time (``xargs -P``);
3. prints, for 1 and 2 workers: the wall times, musewise / shell (goal <= 1.05), the
   per-run overhead in seconds (musewise minus shell, over the number of runs; and each
   run's wall time minus its own esorex time, which does not depend on the load
   drifting between passes; goal < 1 s), the speed-up of 2 workers over 1 for both
   (goal >= 1.9x), the peak resident memory of this process and all its children
   (Dask workers, kernels, esorex) and the most disk the data folder took.

Measured here (1 IFU, ``--scipost skymethod=none``, machine shared with a 24-IFU reduction
and other jobs, 2026-12-01): musewise 155.5 s / shell 114.0 s = 1.36 on 1 worker, 6.9 s per
run (run wall - esorex 3.7 s); 2 workers 179.8 / 93.7 s; peak memory 1.66 GB, disk 7.0 GB.
With one IFU every step has one run, so the 2-worker "speed-up" (0.86x, shell 1.22x) only
shows the load drifting: measure it with 2+ IFUs.

Simulation and ingest are not timed. On a shared machine the load drifts: run the
cases more than once before drawing conclusions.

Usage::

    python benchmarks/bench_shell.py                 # 2 IFUs
    python benchmarks/bench_shell.py --ifus 1        # 1 IFU (no standard: muse_standard needs 2 IFUs)
    python benchmarks/bench_shell.py --ifus 1 --scipost skymethod=none   # quicker: no sky model
    python benchmarks/bench_shell.py --ifus 24 --keep /data/bench   # the full instrument (hours; ~70 GB)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_night import GB, Sampler, tree_size  # noqa: E402

NIGHT = "2026-11-20"


def simulate(outdir: Path, ifus) -> Path:
    """The night's raw frames and static calibrations (a standard and twilight flats with 2+ IFUs)."""
    from musewise.inm import simulate_night

    full = len(ifus) >= 2
    simulate_night(outdir, night=NIGHT, ifus=tuple(ifus), n_bias=3, n_dark=0, n_flat=3, n_arc_per_lamp=1,
                   n_skyflat=3 if full else 0, n_std=1 if full else 0, n_object=1, seed=3, progress=False)
    return outdir


def musewise_pass(root: Path, frames: Path, ifus, workers: int, script_dir: Path | None = None,
                  scipost: dict | None = None):
    """Seconds of ``dpu.make('scipost')`` on a fresh archive, its runs, and (with ``script_dir``)
    the shell scripts replaying its esorex runs 1 and 2 at a time (``{workers: path}``)."""
    from musewise import dpu
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig

    arch = Archive(MusewiseConfig.load(root=str(root), user="bench", n_workers=workers), user="bench")
    try:
        rep = arch.ingest_many([frames], progress=False)
        if rep.refused:
            raise SystemExit(f"ingest refused {rep.refused}")
        t0 = time.perf_counter()
        # The default engine, as users get it: a LocalCluster of ``workers`` processes.
        dpu.make("scipost", NIGHT, list(ifus), dry_run=False, archive=arch, p=scipost or None, progress=False)
        seconds = time.perf_counter() - t0
        runs = sorted(arch.runs(), key=lambda r: r.id)
        failed = [(r.id, r.recipe, r.error) for r in runs if r.status != "succeeded"]
        if failed:
            raise SystemExit(f"musewise runs failed: {failed}")
        scripts = {w: shell_script(arch, esorex_runs(runs), script_dir / f"shell{w}", w)
                   for w in (1, 2)} if script_dir else {}
    finally:
        arch.close()
        from musewise.dpu.engine import close_clients

        close_clients()  # the next pass starts its own cluster, of its own size
    return seconds, runs, scripts


def shell_script(arch, runs, outdir: Path, workers: int) -> Path:
    """A bash script running the runs' recorded esorex command lines on their recorded inputs.

    Each run's set of frames is written again from the archive (the run's inputs, by tag,
    at their datastore paths: the files the run read); its ``--output-dir`` and
    ``--log-dir`` point to a folder of its own. The runs of one step run ``workers`` at a
    time (``xargs -P``), the steps one after the other, as musewise runs them.
    """
    import shlex

    lines = ["#!/bin/bash", "set -e"]
    groups: list[list] = []
    for r in runs:
        if groups and groups[-1][0].details.get("step") == r.details.get("step") and groups[-1][0].recipe == r.recipe:
            groups[-1].append(r)
        else:
            groups.append([r])
    for group in groups:
        cmds = []
        for r in group:
            d = outdir / f"run{r.id:06d}"
            d.mkdir(parents=True, exist_ok=True)
            cmd = list(r.details["command"])
            sof = d / Path(cmd[-1]).name
            sof.write_text("".join(f"{arch.path(i.dataset_id)} {i.tag}\n" for i in r.inputs))
            cmd = [f"--log-dir={d}" if c.startswith("--log-dir=") else
                   f"--output-dir={d}" if c.startswith("--output-dir=") else c for c in cmd[:-1]]
            cmds.append(f"cd {shlex.quote(str(d))} && " + " ".join(map(shlex.quote, cmd + [str(sof)]))
                        + " > esorex.out 2>&1")
        lines.append(f"# {group[0].recipe}: {len(cmds)} run(s)")
        lines.append("printf '%s\\0' " + " ".join(shlex.quote(c) for c in cmds)
                     + f" | xargs -0 -P {workers} -I CMD bash -c CMD")
    script = outdir / "replay.sh"
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o755)
    return script


def esorex_runs(runs) -> list:
    """The runs that called esorex (a Python recipe has no command line to replay)."""
    return [r for r in runs if (r.details.get("command") or [""])[0].endswith("esorex")]


def shell_pass(script: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["bash", str(script)], check=True)
    return time.perf_counter() - t0


def overhead_per_run(runs) -> float:
    """Mean over runs of the run's wall time minus its esorex time (s)."""
    extra = [(r.ended - r.started).total_seconds() - float(r.details.get("recipe_seconds") or 0) for r in runs]
    return sum(extra) / max(len(extra), 1)


def bench(ifus, base: Path, every: float, scipost: dict | None = None) -> dict:
    frames = simulate(base / "night", ifus)
    sampler = Sampler(os.getpid(), base, every)
    sampler.start()
    try:
        mw, runs, scripts = {}, {}, {}
        for w in (1, 2):
            mw[w], runs[w], made = musewise_pass(base / f"mw{w}", frames, ifus, w,
                                                 script_dir=base if w == 1 else None, scipost=scipost)
            scripts.update(made)
        replay = esorex_runs(runs[1])
        sh = {w: shell_pass(scripts[w]) for w in (1, 2)}
    finally:
        sampler.stop.set()
        sampler.join()
    n = len(replay)
    out = {"ifus": len(ifus), "runs": n, "peak_memory_gb": round(sampler.peak_rss / GB, 2),
           "peak_disk_gb": round(max(sampler.peak_root, tree_size(base)) / GB, 2)}
    for w in (1, 2):
        out[f"workers{w}"] = {
            "musewise_s": round(mw[w], 1), "shell_s": round(sh[w], 1), "ratio": round(mw[w] / sh[w], 3),
            "overhead_per_run_s": round((mw[w] - sh[w]) / n, 2),
            "run_wall_minus_esorex_s": round(overhead_per_run(esorex_runs(runs[w])), 2),
        }
    out["speedup_2_over_1"] = {"musewise": round(mw[1] / mw[2], 2), "shell": round(sh[1] / sh[2], 2)}
    out["recipes"] = sorted({r.recipe for r in replay})
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ifus", type=int, default=2, help="number of IFUs of the night (1-24)")
    ap.add_argument("--keep", help="folder for the data (default: a temporary folder, removed)")
    ap.add_argument("--every", type=float, default=2.0, help="memory and disk sampling interval (s)")
    ap.add_argument("--scipost", action="append", default=[], metavar="NAME=VALUE",
                    help="a muse_scipost parameter (repeatable), e.g. skymethod=none for a quicker pass")
    args = ap.parse_args(argv)
    scipost = dict(kv.split("=", 1) for kv in args.scipost)
    with tempfile.TemporaryDirectory(prefix="bench-shell-", dir=args.keep) as tmp:
        res = bench(list(range(1, args.ifus + 1)), Path(tmp), args.every, scipost)
    res["scipost_parameters"] = scipost
    print(f"\n{res['ifus']}-IFU night, {res['runs']} esorex runs ({', '.join(res['recipes'])}):")
    for w in (1, 2):
        r = res[f"workers{w}"]
        print(f"  {w} worker(s): musewise {r['musewise_s']:.1f} s, shell {r['shell_s']:.1f} s, "
              f"ratio {r['ratio']:.3f} (goal <= 1.05); overhead {r['overhead_per_run_s']:.2f} s per run "
              f"(run wall - esorex: {r['run_wall_minus_esorex_s']:.2f} s; goal < 1 s)")
    s = res["speedup_2_over_1"]
    print(f"  speed-up of 2 workers over 1: musewise {s['musewise']:.2f}x, shell {s['shell']:.2f}x (goal >= 1.9x)")
    print(f"  peak memory {res['peak_memory_gb']:.2f} GB (this process and its children), "
          f"peak disk {res['peak_disk_gb']:.2f} GB")
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
