"""dlkit: a research toolkit of JIT-compiled deep-learning kernels.

The functional API, module by module (each module's docstring is its interface spec):

* ``dlkit.layers``: layer constructors (Dense, Conv2D, pooling, activations, Dropout,
  Embedding, SimpleRNN, LSTM, GRU, ...), each a ``Layer(init, forward, backward)``;
* ``dlkit.nn``: ``serial`` to build a model from layers, ``value_and_grad``;
* ``dlkit.losses``, ``dlkit.optim`` (optax-style optimizers and schedules), ``dlkit.init``,
  ``dlkit.clip``, ``dlkit.metrics``;
* ``dlkit.train``: ``fit`` and ``evaluate``; ``dlkit.checkpoint``: verified checkpoints;
* ``dlkit.data``: data sets found locally or downloaded, and seeded batching;
* ``dlkit.random``: explicit keys; ``dlkit.tree``: helpers over parameter dicts;
* ``dlkit.rbm``, ``dlkit.dbn``: restricted Boltzmann machines and deep belief nets;
* ``dlkit.device``: run the same code on a GPU by moving the arrays there;
  ``dlkit.distributed``: data-parallel training under MPI;
* ``dlkit.gradcheck``: check a layer's backward against finite differences;
  ``dlkit.zoo``: the example scripts' models; ``dlkit.plot``: figures of a run.

Arrays are numpy arrays (float32 for training, float64 for gradient checks) or, for the same
functions on the GPU, numba CUDA device arrays.  In the docstrings' shapes N (or B) is the batch
axis; images are NCHW, sequences (batch, time, features), dense weights (in, out).

Example:
    >>> import numpy as np
    >>> from dlkit import layers as L, losses, nn, optim, random
    >>> model = nn.serial(("fc1", L.Dense(32, activation="relu")), ("fc2", L.Dense(3)))
    >>> _, params = model.init(random.key(0), (4,))
    >>> opt = optim.adam(1e-2)
    >>> state = opt.init(params)
    >>> x, y = np.ones((8, 4), np.float32), np.zeros(8, np.int64)
    >>> for step in range(20):
    ...     logits, cache = model.forward(params, x, train=True)
    ...     loss, dlogits = losses.softmax_cross_entropy(logits, y)
    ...     if step == 0:
    ...         print(f"first loss {loss:.2f}")
    ...     _, grads = model.backward(params, cache, dlogits)
    ...     params, state = opt.step(grads, state, params)
    first loss 1.26
    >>> loss < 0.05
    True

Importing dlkit does four things to the process, all documented in the README:

* it checks that the top-level ``kernels`` package is dlkit's own (another PyPI package has the
  same name) and fails with instructions if it is not;
* it pins BLAS (numpy's and scipy's OpenBLAS) to one thread.  dlkit splits big matrix products
  across Numba's thread pool itself; a multi-threaded BLAS called between parallel Numba regions
  is starved by the spinning OpenMP workers (8.5 ms instead of 0.16 ms for a dense step here).
  Call ``dlkit.blas_threads(n)`` to undo it for your own numpy work;
* it chooses Numba's threading layer (TBB where installed) and, for OpenMP, passive waiting,
  unless you chose them (``dlkit.threads``; ``python -m dlkit info`` prints the choice): with
  OpenMP's default spinning, competing processes made a training step up to 44x slower;
* with glibc, it tunes malloc (``malloc_tuning``) so that the arrays a training step allocates
  reuse freed heap memory instead of fresh mmaps whose every page faults on first touch (the
  Adam update of a 100k-weight layer: 254 us with glibc's defaults, 77 us tuned).  Set
  ``DLKIT_MALLOC_TUNING=0`` to leave malloc alone.
"""
from __future__ import annotations

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


def blas_threads(n: int) -> None:
    """Set the number of BLAS threads (numpy's and scipy's OpenBLAS); dlkit sets 1 at import.

    dlkit's kernels split big matrix products across Numba's threads themselves; raise this
    for your own numpy linear algebra between dlkit calls, and set it back to 1 before
    training (see the module docstring for why).

    Example:
        >>> import dlkit
        >>> dlkit.blas_threads(4)      # numpy's own @ and linalg may use 4 threads
        >>> dlkit.blas_threads(1)      # dlkit's setting
    """
    import scipy.linalg.cython_blas  # noqa: F401  (loads scipy's OpenBLAS, the one Numba uses)
    from threadpoolctl import threadpool_limits
    threadpool_limits(int(n), user_api="blas")


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3     # glibc's mallopt parameters


def malloc_tuning(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """glibc only: allocations below ``mmap_threshold`` bytes come from the heap, and up to
    ``trim_threshold`` bytes of free heap are kept instead of returned to the system.
    Returns True if applied.  The same as PyTorch users get from MALLOC_MMAP_THRESHOLD_ /
    MALLOC_TRIM_THRESHOLD_; skipped when either variable is set, or DLKIT_MALLOC_TUNING=0.

    dlkit calls it at import with the defaults; call it again only to change the thresholds.

    Example:
        >>> import dlkit
        >>> dlkit.malloc_tuning() in (True, False)   # False off glibc or when switched off
        True
    """
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
from . import threads  # noqa: E402
threads.configure()
blas_threads(1)
malloc_tuning()

from . import random, tree, init, layers, nn, losses, optim, metrics, data  # noqa: E402,F401
from .gradcheck import gradcheck  # noqa: E402,F401
