"""Run every benchmark in turn (``make bench``); each prints its ratios against a same-run baseline."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

for script in sorted(HERE.glob("bench_*.py")):
    print(f"\n##### {script.name}", flush=True)
    rc = subprocess.call([sys.executable, str(script)])
    if rc:
        print(f"{script.name} exited with {rc}", flush=True)
