"""Shared set-up for the asv suites: threads pinned, data located, warm-up helpers.

Every suite imports this first.  Numba's pool is pinned to ``DLKIT_BENCH_THREADS`` (default 2,
this project's reference machine) and BLAS to one thread (by ``import dlkit``), so results are
comparable from commit to commit.

JIT compilation happens in ``setup``, outside the timed region, and asv.conf.json's
``default_benchmark_timeout`` (600 s) fits a cold Numba cache: the first process of a fresh
environment compiles and fills the cache, the later ones load from it.  Compile time has its
own suites (``ColdAndWarmStart`` below).

asv imports ``benchmarks`` from this checkout but ``dlkit`` and ``kernels`` from the
environment it built for the commit under test, so a suite that starts a process of its own
(``run_fresh``) runs it outside the checkout, where ``import dlkit`` finds the same install.
"""
import itertools
import os
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np

import dlkit  # noqa: F401  (pins BLAS to one thread)

THREADS = int(os.environ.get("DLKIT_BENCH_THREADS", "2"))


def pin_threads():
    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))


def rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def run_fresh(code, cache_dir):
    """Wall seconds for a fresh interpreter to run ``code`` with ``NUMBA_CACHE_DIR=cache_dir``
    (empty: everything is compiled; filled by an earlier run: only loaded)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cwd:       # not the checkout: see the docstring
        subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, check=True,
                       capture_output=True)
    return time.perf_counter() - start


class ColdAndWarmStart:
    """Base of the compile-time suites.  A subclass gives ``script(*params)``, the code of some
    first work, and, each in its own class body (asv keys a ``setup_cache`` by where it is
    defined, and takes every ``track_`` method it sees for a benchmark, a base's too)::

        def setup_cache(self):
            return self.first_runs()
        setup_cache.timeout = 1800
        track_cold_cache, track_warm_cache = ColdAndWarmStart.cold, ColdAndWarmStart.warm

    ``first_runs`` runs the script once per parameter combination in a fresh process with an
    empty Numba cache of its own (everything compiles: the cold figure); each warm run loads
    from that cache."""
    params = []
    timeout = 1800
    number = 1
    repeat = 1
    rounds = 1

    def script(self, *params):
        raise NotImplementedError

    def first_runs(self):
        firsts = {}
        for i, combo in enumerate(itertools.product(*self.params)):
            cache = os.path.abspath(f"numba-cache-{i}")    # in asv's folder for this suite
            firsts[repr(combo)] = run_fresh(self.script(*combo), cache), cache
        return firsts

    def cold(self, firsts, *params):
        return firsts[repr(params)][0]

    def warm(self, firsts, *params):
        return run_fresh(self.script(*params), firsts[repr(params)][1])

    cold.unit = warm.unit = "seconds"
