"""asv: JIT compile time, tracked on purpose.  Each number is the wall time from launching a
fresh Python process to the end of its first MLP training step.

  track_first_step_cold_cache    empty Numba cache: everything the MLP needs is compiled
  track_first_step_warm_cache    cache filled by a previous process: only loading
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    start = time.time()
    out = subprocess.run([sys.executable, "-m", "benchmarks.startup", repr(start)], cwd=ROOT,
                         env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


class Compile:
    timeout = 300
    number = 1
    repeat = 1
    unit = "seconds"

    def setup(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.warm = os.path.join(self.tmp.name, "warm")
        _run(self.warm)

    def teardown(self):
        self.tmp.cleanup()

    def track_first_step_cold_cache(self):
        return _run(os.path.join(self.tmp.name, "cold"))

    def track_first_step_warm_cache(self):
        return _run(self.warm)

    track_first_step_cold_cache.unit = "seconds"
    track_first_step_warm_cache.unit = "seconds"
