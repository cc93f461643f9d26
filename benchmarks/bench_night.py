"""A whole simulated night through ``make demo``: wall time, memory and disk against what the night holds.

Runs ``python -m musewise.demo --no-hub`` (simulate, ingest, reduce with the real
ESO pipeline, provenance) in a fresh data root and samples, every ``--every``
seconds, the size of the data root, the free space of its filesystem and the
resident memory of the demo with all its children (Dask workers, kernels,
esorex). At the end it reads the archive and prints:

* the night's raw frames and its products (distinct stored files, by kind), the
  baseline measured in this same run;
* what the data root holds at the end and at its largest during the run, and the
  ratio of each to raw + products (issue goal: at most 1.1: nothing stored twice,
  workdirs of successful runs removed, simulated frames moved, not copied);
* the most disk the filesystem lost during the run (scratch outside the root,
  temporary files) and the least free space seen;
* the peak resident memory of the process tree, and the wall time.

Usage::

    python benchmarks/bench_night.py                 # 2 IFUs (~10 min on 2 cores)
    python benchmarks/bench_night.py --ifus 24 --keep /data/night24   # the full instrument
    python benchmarks/bench_night.py --ifus 24 --exposures 1 --no-pixtables   # where disk is short
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil

GB = 1e9


def tree_size(root: Path) -> int:
    """Bytes of the regular files below ``root`` (hard links counted once)."""
    seen, total = set(), 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue  # a run's file removed while we walk
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (empty if it has ended)."""
    try:
        proc = psutil.Process(pid)
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    total = 0
    for p in process_tree(pid):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


class Sampler(threading.Thread):
    """Peak data-root size, least free disk and peak memory of a running process tree."""

    def __init__(self, pid: int, root: Path, every: float):
        super().__init__(daemon=True)
        self.pid, self.root, self.every = pid, root, every
        self.peak_root = self.peak_rss = 0
        self.min_free = shutil.disk_usage(root).free
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak_rss = max(self.peak_rss, tree_rss(self.pid))
            self.peak_root = max(self.peak_root, tree_size(self.root))
            self.min_free = min(self.min_free, shutil.disk_usage(self.root).free)
            self.stop.wait(self.every)


def process_kind(proc: psutil.Process) -> str:
    """What a process of a reduction's tree is: esorex, kernel, dask worker, shell or other."""
    try:
        cmd = proc.cmdline()
    except psutil.Error:
        return "other"
    name = Path(cmd[0]).name if cmd else ""
    line = " ".join(cmd)
    if name == "esorex":
        return "esorex"
    if "ipykernel" in line:
        return "kernel"
    if "spawn_main" in line or "distributed" in line:
        return "dask_worker"  # LocalCluster's worker processes are multiprocessing children
    if name in ("bash", "sh", "xargs", "time"):
        return "shell"
    return "other"


class CpuAccount(threading.Thread):
    """CPU seconds (user + system) of a process tree by kind of process (:func:`process_kind`).

    Samples the tree every ``every`` seconds and keeps each process's last reading, so a
    process that ended still counts up to its last sample (what it ran after that, at most
    ``every`` seconds, is missed: the same for esorex in a musewise pass and in the shell's).
    The root process itself is ``driver``. :meth:`between` gives the seconds of each kind
    between two :meth:`snapshot` calls.
    """

    def __init__(self, pid: int, every: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._last: dict = {}  # (pid, create time) -> (kind, cpu seconds)

    def _sample(self) -> None:
        for p in process_tree(self.pid):
            try:
                with p.oneshot():
                    key = (p.pid, p.create_time())
                    t = p.cpu_times()
                    cpu = t.user + t.system
            except psutil.Error:
                continue
            with self._lock:
                seen = self._last.get(key)
            kind = seen[0] if seen else "driver" if p.pid == self.pid else process_kind(p)
            with self._lock:
                self._last[key] = (kind, cpu)

    def run(self):
        while not self.stop.is_set():
            self._sample()
            self.stop.wait(self.every)

    def snapshot(self) -> dict:
        """Each process's last CPU reading (a new sample is taken first)."""
        self._sample()
        with self._lock:
            return dict(self._last)

    @staticmethod
    def between(a: dict, b: dict) -> dict[str, float]:
        """CPU seconds of each kind of process from snapshot ``a`` to snapshot ``b``."""
        out: dict[str, float] = defaultdict(float)
        for key, (kind, cpu) in b.items():
            out[kind] += cpu - (a[key][1] if key in a else 0.0)
        return {k: round(v, 1) for k, v in sorted(out.items()) if round(v, 1)}


def stored_files(root: Path) -> dict[str, int]:
    """Bytes of the distinct stored files of the archive under ``root``, by dataset kind."""
    from musewise.archive import Archive
    from musewise.config import MusewiseConfig

    arch = Archive(MusewiseConfig.load(root=str(root)), user="admin")
    by_kind: dict[str, int] = defaultdict(int)
    seen = set()
    for rec in arch.query(order_by="id"):
        if rec.storage_path not in seen:
            seen.add(rec.storage_path)
            by_kind[rec.kind] += rec.size
    return dict(by_kind)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ifus", default="2", help="number of IFUs (1-24)")
    ap.add_argument("--keep", help="data root to use and keep (default: a temporary folder, removed)")
    ap.add_argument("--exposures", type=int, default=2, help="science exposures of the night")
    ap.add_argument("--no-pixtables", action="store_true",
                    help="muse_scipost saves the cube and sky model, not the reduced pixel tables (~9 GB a 24-IFU exposure)")
    ap.add_argument("--every", type=float, default=5.0, help="sampling interval (s)")
    args = ap.parse_args(argv)

    tmp = None if args.keep else tempfile.mkdtemp(prefix="musewise-night-")
    root = Path(args.keep or tmp).resolve()
    root.mkdir(parents=True, exist_ok=True)
    free0 = shutil.disk_usage(root).free
    if args.no_pixtables:  # the demo keeps a config file it finds in its data root
        (root / "musewise_config.py").write_text(
            "from musewise.dpu.config import DEFAULT_PARAMETERS\n"
            "c.MusewiseConfig.user = 'admin'\n"
            "c.DpuConfig.default_parameters = {**DEFAULT_PARAMETERS, 'muse_scipost': "
            "{**DEFAULT_PARAMETERS['muse_scipost'], 'save': 'cube,skymodel'}}\n")
    cmd = [sys.executable, "-m", "musewise.demo", "--root", str(root), "--ifus", str(args.ifus),
           "--exposures", str(args.exposures), "--no-hub"]
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    sampler = Sampler(proc.pid, root, args.every)
    sampler.start()
    rc = proc.wait()
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    try:
        if rc:  # what it reached is still worth knowing: a failed run's disk and memory
            print(f"the demo exited with status {rc}; figures up to there:", flush=True)
        kinds = stored_files(root)
        final = tree_size(root)
        raw = kinds.get("raw", 0) + kinds.get("static", 0)
        products = sum(v for k, v in kinds.items() if k not in ("raw", "static"))
        base = raw + products
        print(f"\n{args.ifus}-IFU night: wall {wall / 60:.1f} min, peak memory {sampler.peak_rss / GB:.1f} GB "
              f"(demo and all its children)")
        print("stored files by kind: " + ", ".join(f"{k} {v / GB:.2f} GB" for k, v in sorted(kinds.items())))
        print(f"raw + static frames {raw / GB:.2f} GB, products {products / GB:.2f} GB: "
              f"baseline {base / GB:.2f} GB")
        print(f"data root at the end {final / GB:.2f} GB  ratio {final / base:.3f}  (goal <= 1.1)")
        print(f"data root at its peak {max(sampler.peak_root, final) / GB:.2f} GB  "
              f"ratio {max(sampler.peak_root, final) / base:.3f}")
        print(f"filesystem: {(free0 - sampler.min_free) / GB:.2f} GB used at most during the run, "
              f"{sampler.min_free / GB:.1f} GB free at the least")
        return rc
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
