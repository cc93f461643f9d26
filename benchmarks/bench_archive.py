"""Archive benchmarks on full-size data.

1. Ingest throughput (GB/s, with sha256 checksums, copy and registration) of
   full-size 24-IFU raw frames, against ``sha256sum`` of the same files in the
   same run (the cost of merely reading and hashing them).
The best-calibration lookup and planning at 10^7 dataset rows are measured by
``bench_datamodel.py`` (certified calibrations, collections, privileges).

Usage::

    .venv/bin/python benchmarks/bench_archive.py [--frames 3] [--workdir /tmp/mwbench]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path


from musewise.archive import Archive
from musewise.config import MusewiseConfig
from musewise.vocabulary import FrameType


def bench_ingest(workdir: Path, n_frames: int) -> None:
    from musewise.inm import InstrumentModel

    raw = workdir / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    model = InstrumentModel(ifus=tuple(range(1, 25)), seed=1)
    files = []
    t0 = datetime(2026, 11, 21, 2, 0, 0)
    kinds = [FrameType.BIAS, FrameType.DARK, FrameType.OBJECT]
    for i in range(n_frames):
        p = raw / f"frame{i:02d}.fits"
        model.write_frame(p, kinds[i % 3], t0 + timedelta(minutes=20 * i), 0.0 if i % 3 == 0 else 600.0)
        files.append(p)
    size = sum(p.stat().st_size for p in files)
    subprocess.run(["sha256sum", *map(str, files)], capture_output=True, check=True)  # warm the page cache alike
    t = time.perf_counter()
    subprocess.run(["sha256sum", *map(str, files)], capture_output=True, check=True)
    t_sha = time.perf_counter() - t
    arch = Archive(MusewiseConfig.load(root=str(workdir / "archive"), user="bench"), user="bench")
    t = time.perf_counter()
    report = arch.ingest_many(files, progress=False)
    t_ing = time.perf_counter() - t
    assert len(report.ingested) == n_frames, report.summary()
    print(f"ingest: {n_frames} full-size 24-IFU frames, {size / 1e9:.2f} GB")
    print(f"  musewise ingest (copy + sha256 + registry): {t_ing:6.2f} s  {size / t_ing / 1e9:5.2f} GB/s")
    print(f"  sha256sum of the same files (baseline):     {t_sha:6.2f} s  {size / t_sha / 1e9:5.2f} GB/s")
    print(f"  ratio ingest time / sha256sum time: {t_ing / t_sha:.2f}")
    t = time.perf_counter()
    report = arch.ingest_many(files, progress=False)
    t_dup = time.perf_counter() - t
    print(f"  re-ingest of the same files (all recognised as duplicates): {t_dup:.2f} s, "
          f"ratio to sha256sum {t_dup / t_sha:.2f}")
    arch.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=3, help="full-size frames to ingest (~0.86 GB each)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--skip-ingest", action="store_true")
    args = ap.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mwbench-"))
    try:
        if not args.skip_ingest:
            bench_ingest(workdir, args.frames)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
