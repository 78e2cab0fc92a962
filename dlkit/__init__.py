"""dlkit: a research toolkit of JIT-compiled deep-learning kernels.

Importing dlkit does two things to the process, both documented in the README:

* it checks that the top-level ``kernels`` package is dlkit's own (another PyPI package has the
  same name) and fails with instructions if it is not;
* it pins BLAS (numpy's and scipy's OpenBLAS) to one thread.  dlkit splits big matrix products
  across Numba's thread pool itself; a multi-threaded BLAS called between parallel Numba regions
  is starved by the spinning OpenMP workers (8.5 ms instead of 0.16 ms for a dense step here).
  Call ``dlkit.blas_threads(n)`` to undo it for your own numpy work.
"""
import importlib

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


_check_kernels()
blas_threads(1)

from . import random, tree, init, layers, nn, losses, optim, metrics, data  # noqa: E402,F401
from .gradcheck import gradcheck  # noqa: E402,F401
