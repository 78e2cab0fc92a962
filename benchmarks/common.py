"""Shared set-up for the asv suites: threads pinned, data located, warm-up helpers.

Every suite imports this first.  Numba's pool is pinned to ``DLKIT_BENCH_THREADS`` (default 2,
this project's reference machine) and BLAS to one thread (by ``import dlkit``), so results are
comparable from commit to commit.  JIT compilation happens in ``setup`` (asv does not time it);
compile time has its own suite, bench_compile.py.
"""
import os

import numba
import numpy as np

import dlkit  # noqa: F401  (pins BLAS to one thread)

THREADS = int(os.environ.get("DLKIT_BENCH_THREADS", "2"))


def pin_threads():
    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))


def rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)
