"""Speed-up of a night's reduction on Slurm with 4 batch jobs at once over 1 (issue 16).

A simulated 4-IFU night is reduced to its pixel tables (``bias -> flat -> wavecal ->
scibasic``: every step one run per IFU, 16 runs) by ``dpu.make`` through dask-jobqueue's
SLURMCluster, on a one-node Slurm cluster started here (``musewise.testing.TemporarySlurm``,
the machine's cores and memory). Each batch job is one Dask worker of one core; the
only difference between the passes is how many jobs may run at once
(``DpuConfig.cluster_jobs``): 1 (the baseline, measured in this same invocation) and 4.
Each pass reduces into a fresh archive from the same ingested frames.

Printed: each pass's wall time, the speed-up (1-job time / 4-job time), and the jobs
Slurm ran. The speed-up cannot exceed the node's cores (2 on the project's CI machine):
beyond them the jobs wait in Slurm's queue, as they would on a full cluster.

Usage::

    python benchmarks/bench_slurm.py                 # 4 IFUs, jobs 1 then 4 (~15 min on 2 cores)
    python benchmarks/bench_slurm.py --ifus 2 --jobs 1 2
    python benchmarks/bench_slurm.py --keep /data/bench
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

NIGHT = "2026-11-20"
STEP = "scibasic"


def simulate(outdir: Path, ifus) -> Path:
    from musewise.inm import simulate_night

    simulate_night(outdir, night=NIGHT, ifus=tuple(ifus), n_bias=3, n_dark=0, n_flat=3, n_arc_per_lamp=1,
                   n_skyflat=0, n_std=0, n_object=1, seed=3, progress=False)
    return outdir


def reduce_on_slurm(root: Path, frames: Path, ifus, slurm, jobs: int) -> dict:
    """One pass: a fresh archive, the frames ingested (not timed), ``dpu.make(STEP)`` on ``jobs`` batch jobs."""
    from musewise import dpu
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig
    from musewise.dpu.engine import close_clients

    from traitlets.config import Config

    settings = slurm.dpu_settings(root / "jobs", memory="3GB", heavy_memory="3GB", heavy_cpus=1, jobs=jobs)
    cfg = MusewiseConfig.load(root=str(root), user="bench", dask_scheduler="jobqueue:slurm")
    cfg.config = Config({"DpuConfig": settings})
    arch = Archive(cfg, user="bench")
    arch.ingest_many([frames], progress=False)
    seen_before = {j["JobId"] for j in slurm.jobs()}
    t0 = time.perf_counter()
    dpu.make(STEP, NIGHT, list(ifus), dry_run=False, archive=arch, engine="dask", progress=False)
    seconds = time.perf_counter() - t0
    close_clients()  # the pass's cluster ends with it: the next starts its own jobs
    runs = arch.runs()
    failed = [(r.id, r.recipe, r.error) for r in runs if r.status != "succeeded"]
    if failed:
        raise SystemExit(f"runs failed: {failed}")
    batch = {r.details.get("batch_job") for r in runs} - {None}
    jobs_seen = [j for j in slurm.jobs() if j["JobId"] not in seen_before]
    arch.close()
    return {"jobs": jobs, "seconds": round(seconds, 1), "runs": len(runs),
            "recipes": dict(sorted(Counter(r.recipe for r in runs).items())), "batch_jobs_of_runs": len(batch),
            "slurm_jobs": len(jobs_seen),
            "recipe_s": round(sum(float(r.details.get("recipe_seconds") or 0) for r in runs), 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ifus", type=int, default=4, help="IFUs of the night (default 4)")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 4],
                    help="batch jobs at once of each pass; the first is the baseline (default: 1 4)")
    ap.add_argument("--keep", help="folder for the data (default: a temporary folder, removed)")
    args = ap.parse_args(argv)
    from musewise.testing import TemporarySlurm

    if not TemporarySlurm.installed():
        raise SystemExit("Slurm is not installed (apt-get install slurm-wlm munge; make setup does it)")
    ifus = list(range(1, args.ifus + 1))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-slurm-", dir=args.keep) as tmp:
        base = Path(tmp)
        t0 = time.perf_counter()
        frames = simulate(base / "night", ifus)
        print(f"{len(ifus)}-IFU night simulated in {time.perf_counter() - t0:.0f} s", flush=True)
        with TemporarySlurm(dir=base / "slurm") as slurm:
            print(f"Slurm node: {slurm.cpus} cores, {slurm.memory_mb} MB", flush=True)
            for n, jobs in enumerate(args.jobs):
                res = reduce_on_slurm(base / f"pass{n}-jobs{jobs}", frames, ifus, slurm, jobs)
                results.append(res)
                print(f"  {jobs} job(s) at once: {res['seconds']:.1f} s for {res['runs']} runs "
                      f"({res['slurm_jobs']} Slurm jobs, runs in {res['batch_jobs_of_runs']} of them; "
                      f"esorex {res['recipe_s']:.0f} s in all)", flush=True)
                shutil.rmtree(base / f"pass{n}-jobs{jobs}", ignore_errors=True)
    baseline = results[0]
    for res in results[1:]:
        print(f"speed-up of {res['jobs']} jobs over {baseline['jobs']}: "
              f"{baseline['seconds'] / res['seconds']:.2f} (node of {slurm.cpus} cores)", flush=True)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
