"""Benchmark: write one full 24-IFU raw MUSE frame and compare with copying it.

Prints the write speed (MB/s) of :meth:`musewise.inm.InstrumentModel.write_frame`
for a BIAS and a FLAT, and the ratio of their wall times to copying the same
file with ``shutil.copyfile`` measured in the same run (ratio 1 = disk speed).

Usage: ``python benchmarks/bench_inm.py [workdir]`` (needs ~2.6 GB free).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from musewise.inm import InstrumentModel
from musewise.vocabulary import FrameType


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(workdir: str | None = None) -> dict:
    """Run the benchmark; return the measured figures."""
    tmp = Path(tempfile.mkdtemp(prefix="bench_inm_", dir=workdir))
    try:
        model = InstrumentModel(ifus=range(1, 25), seed=1)
        model.digitiser  # the noise bank is built once per model; not part of a frame
        t0 = datetime(2026, 11, 20, 18, 0, 0)
        bias, flat = tmp / "bias.fits", tmp / "flat.fits"
        t_bias = _timed(lambda: model.write_frame(bias, FrameType.BIAS, t0, 0.0))
        t_flat = _timed(lambda: model.write_frame(flat, FrameType.FLAT,
                                                  t0.replace(hour=19), 10.0))
        size = bias.stat().st_size / 1e6
        # Baseline: copy the file just written (cache-warm read, same disk write).
        t_copy = _timed(lambda: (shutil.copyfile(bias, tmp / "copy.fits"),
                                 os.sync()))
        t_bias_sync = _timed(lambda: (model.write_frame(bias, FrameType.BIAS,
                                                        t0.replace(minute=1), 0.0), os.sync()))
        res = dict(size_mb=size, bias_s=t_bias, flat_s=t_flat, copy_s=t_copy,
                   bias_sync_s=t_bias_sync)
        print(f"24-IFU frame: {size:.0f} MB")
        print(f"BIAS write : {t_bias:6.2f} s  {size / t_bias:7.0f} MB/s")
        print(f"BIAS+sync  : {t_bias_sync:6.2f} s  {size / t_bias_sync:7.0f} MB/s")
        print(f"FLAT write : {t_flat:6.2f} s  {size / t_flat:7.0f} MB/s")
        print(f"copy+sync  : {t_copy:6.2f} s  {size / t_copy:7.0f} MB/s (shutil.copyfile baseline)")
        print(f"ratio BIAS+sync / copy+sync = {t_bias_sync / t_copy:.2f}")
        print(f"ratio FLAT / copy+sync      = {t_flat / t_copy:.2f}")
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
