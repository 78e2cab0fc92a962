"""dlkit: a research toolkit of JIT-compiled deep-learning kernels.

Importing dlkit does three things to the process, all documented in the README:

* it checks that the top-level ``kernels`` package is dlkit's own (another PyPI package has the
  same name) and fails with instructions if it is not;
* it pins BLAS (numpy's and scipy's OpenBLAS) to one thread.  dlkit splits big matrix products
  across Numba's thread pool itself; a multi-threaded BLAS called between parallel Numba regions
  is starved by the spinning OpenMP workers (8.5 ms instead of 0.16 ms for a dense step here).
  Call ``dlkit.blas_threads(n)`` to undo it for your own numpy work;
* with glibc, it tunes malloc (``malloc_tuning``) so that the arrays a training step allocates
  reuse freed heap memory instead of fresh mmaps whose every page faults on first touch (the
  Adam update of a 100k-weight layer: 254 us with glibc's defaults, 77 us tuned).  Set
  ``DLKIT_MALLOC_TUNING=0`` to leave malloc alone.
"""
import ctypes
import importlib
import os
import sys

__version__ = "0.1.0"


def _check_kernels():
    try:
        mod = importlib.import_module("kernels")
    except ImportError as e:  # pragma: no cover - only on a broken install
        raise ImportError("dlkit: cannot import its kernel package 'kernels' "
                          f"({e}); reinstall dlkit with `pip install -e .`") from e
    if not getattr(mod, "DLKIT_KERNELS", False):
        raise ImportError(
            "dlkit: the 'kernels' package imported from "
            f"{getattr(mod, '__file__', '?')} is not dlkit's own; another package of that name "
            "shadows it. Run `pip uninstall kernels` (the unrelated PyPI package) and reinstall "
            "dlkit with `pip install -e .` from its source folder.")


def blas_threads(n):
    """Set the number of BLAS threads (numpy's and scipy's OpenBLAS); dlkit sets 1 at import."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads scipy's OpenBLAS, the one Numba uses)
    from threadpoolctl import threadpool_limits
    threadpool_limits(int(n), user_api="blas")


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3     # glibc's mallopt parameters


def malloc_tuning(mmap_threshold=32 << 20, trim_threshold=1 << 30):
    """glibc only: allocations below ``mmap_threshold`` bytes come from the heap, and up to
    ``trim_threshold`` bytes of free heap are kept instead of returned to the system.
    Returns True if applied.  The same as PyTorch users get from MALLOC_MMAP_THRESHOLD_ /
    MALLOC_TRIM_THRESHOLD_; skipped when either variable is set, or DLKIT_MALLOC_TUNING=0."""
    if not sys.platform.startswith("linux") or os.environ.get("DLKIT_MALLOC_TUNING") == "0" \
            or "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):       # not glibc (musl, macOS): nothing to tune
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and \
        bool(mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))


_check_kernels()
blas_threads(1)
malloc_tuning()

from . import random, tree, init, layers, nn, losses, optim, metrics, data  # noqa: E402,F401
from .gradcheck import gradcheck  # noqa: E402,F401
