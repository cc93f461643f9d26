"""Archive benchmarks on full-size data.

1. Ingest throughput (GB/s, with sha256 checksums, copy and registration) of
   full-size 24-IFU raw frames, against ``sha256sum`` of the same files in the
   same run (the cost of merely reading and hashing them).
2. Time to choose the best calibration for a science frame with 10^6 product
   rows, in SQLite and PostgreSQL, against the same query on 10^4 rows.

Usage::

    .venv/bin/python benchmarks/bench_archive.py [--frames 3] [--rows 1000000] [--workdir /tmp/mwbench]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from musewise.archive import Archive
from musewise.archive.schema import Dataset, DatasetIfu, StoredFile
from musewise.config import MusewiseConfig
from musewise.exceptions import CalibrationNotFoundError
from musewise.testing import TemporaryPostgres
from musewise.vocabulary import FrameType

CATEGORIES = ("MASTER_BIAS", "MASTER_DARK", "MASTER_FLAT", "TRACE_TABLE", "WAVECAL_TABLE", "LSF_PROFILE",
              "TWILIGHT_CUBE", "PIXTABLE_OBJECT")


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


def fill(arch: Archive, n_rows: int, seed: int = 0) -> float:
    """Insert ``n_rows`` per-IFU calibration products spread over ~8 years; return the MJD range start."""
    rng = random.Random(seed)
    owner = arch.user.id
    mjd0 = 60000.0
    batch = 20000
    with arch.engine.begin() as conn:
        next_id = 1
        while next_id <= n_rows:
            ids = range(next_id, min(n_rows, next_id + batch - 1) + 1)
            files, dsets, ifus = [], [], []
            for i in ids:
                mjd = mjd0 + rng.random() * 3000.0
                ifu = rng.randint(1, 24)
                files.append({"id": i, "sha256": f"{i:064x}", "size": 1000, "path": f"bench/{i}.fits",
                              "original_name": f"{i}.fits"})
                dsets.append({"id": i, "kind": "calibration", "category": rng.choice(CATEGORIES), "file_id": i,
                              "night": "2026-01-01", "mjd_obs": mjd, "mode": "WFM-NOAO-N", "ifu": ifu,
                              "owner_id": owner, "privilege": rng.choice((1, 2, 3)), "project_id": 1})
                ifus.append({"dataset_id": i, "ifu": ifu, "is_valid": rng.random() > 0.05, "flag": "unchecked",
                             "comment": ""})
            conn.execute(insert(StoredFile), files)
            conn.execute(insert(Dataset), dsets)
            conn.execute(insert(DatasetIfu), ifus)
            next_id = ids[-1] + 1
    if arch.engine.dialect.name == "postgresql":
        with arch.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("SELECT setval('files_id_seq', (SELECT max(id) FROM files))")
            conn.exec_driver_sql("SELECT setval('datasets_id_seq', (SELECT max(id) FROM datasets))")
    else:
        with arch.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return mjd0


def time_selection(arch: Archive, mjd0: float, n: int = 200) -> float:
    """Median time (s) of one best-calibration lookup for a random frame, as a non-admin member."""
    rng = random.Random(1)
    user = arch.as_user("member")
    times, found = [], 0
    for _ in range(n):
        mjd = mjd0 + 100 + rng.random() * 2800
        t = time.perf_counter()
        try:
            user.best_calibration(rng.choice(CATEGORIES), ifu=rng.randint(1, 24), mjd=mjd, mode="WFM-NOAO-N")
            found += 1
        except CalibrationNotFoundError:
            pass  # sparse small archives: the search (and its explanation) is still timed
        times.append(time.perf_counter() - t)
    return statistics.median(times), found / n


def bench_selection(workdir: Path, rows: int) -> None:
    print(f"best-calibration lookup (median of 200, non-admin user, privileges applied):")
    with TemporaryPostgres() as pg:
        for backend in ("sqlite", "postgresql"):
            result = {}
            for n in (10_000, rows):
                root = workdir / f"sel-{backend}-{n}"
                url = f"sqlite:///{root / 'a.sqlite'}" if backend == "sqlite" else pg.create_database()
                arch = Archive(MusewiseConfig.load(root=str(root), db_url=url, user="admin"), user="admin")
                arch.add_user("member")
                t = time.perf_counter()
                mjd0 = fill(arch, n)
                t_fill = time.perf_counter() - t
                result[n], frac = time_selection(arch, mjd0)
                print(f"  {backend:10s} {n:>9,d} product rows: {result[n] * 1e3:7.2f} ms per lookup"
                      f" ({frac:.0%} found a calibration; filled in {t_fill:.0f} s)")
                arch.close()
                shutil.rmtree(root, ignore_errors=True)
            print(f"  {backend:10s} ratio {rows:,d} rows / 10,000 rows: {result[rows] / result[10_000]:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=3, help="full-size frames to ingest (~0.86 GB each)")
    ap.add_argument("--rows", type=int, default=1_000_000, help="product rows for the selection benchmark")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--skip-selection", action="store_true")
    args = ap.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mwbench-"))
    try:
        if not args.skip_ingest:
            bench_ingest(workdir, args.frames)
        if not args.skip_selection:
            bench_selection(workdir, args.rows)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
