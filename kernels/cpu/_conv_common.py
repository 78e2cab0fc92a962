"""What the three convolution algorithms (conv_direct.py, conv_im2col.py, conv_winograd.py)
share: the activation codes and their fused forms, the fastmath flags, the np.uint64 loop
style and the chunk-count helper.  The arguments are described in conv.py's docstring.

These are njit helpers shared across kernel files, an exception to "a kernel and its njit
helpers live in one file" (DESIGN.md), made so that the three algorithms need no copies of
them.  Numba's on-disk cache checks only the mtime of a kernel's own source file, so the
kernels in conv_direct.py, conv_im2col.py and conv_winograd.py, which compile the helpers and
constants below into themselves, do not notice an edit here and keep running the old code
from their cache.  After editing this file, clear the caches:

    find kernels -name __pycache__ -exec rm -rf {} +

(and empty ``$NUMBA_CACHE_DIR`` if you set one).
"""
import numpy as np
from numba import njit

ACT_NONE, ACT_RELU, ACT_SIGMOID, ACT_TANH = 0, 1, 2, 3

#: elements of per-chunk weight-gradient partials the backward may hold in all
_PARTIALS_BUDGET = 1 << 23

# Flags that keep NaN/Inf semantics (DESIGN.md); "reassoc" lets LLVM vectorise the reductions.
# A vectorised reduction sums in a different order from its scalar fallback, and LLVM picks
# between them at run time when the loop also stores (memory-overlap checks on the addresses),
# which would make results depend on where buffers happen to lie.  So every reduction loop in
# the conv kernels is a pure reduction: loads and accumulators only, no stores.
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}

# Loop style (docs/kernels.md, and measured here): hot loops index flat C-contiguous views with
# np.uint64 offsets (``dst[d + i] = src[s + i]`` with d, s, i all unsigned).  A signed index
# makes Numba emit negative-index wraparound code that stops LLVM from vectorising, and taking a
# slice per row costs more than copying a short row (im2col ran 15 ms instead of 2.7 ms for a
# (128, 32, 14, 14) batch).  Never mix np.uint64 and signed ints in one expression (Numba gives
# float64): offsets are computed as ints and converted once.  Constants are typed to the data
# (``one``); every kernel uses ``error_model="numpy"``.  Calls between njit functions cost an
# atomic reference-count update per array argument, so helpers work on whole planes.
U = np.uint64
_u0, _1, _2, _3 = U(0), U(1), U(2), U(3)  # a bare literal would make an unsigned expression signed


@njit(cache=True, error_model="numpy")
def _n_blocks(items, grain, most):
    """Blocks to split ``items`` units of work into: one per ``grain`` units, 1 to ``most``."""
    return max(1, min(most, items // max(1, grain)))



@njit(cache=True, inline="always", error_model="numpy", fastmath=_FM)
def _activate(z, act, one):
    """act(z); ``one`` is 1 in z's dtype (a bare 1 would promote float32 to float64)."""
    if act == ACT_RELU:
        return z if z > 0 else one - one
    if act == ACT_SIGMOID:
        return one / (one + np.exp(-z))
    if act == ACT_TANH:
        return np.tanh(z)
    return z


@njit(cache=True, inline="always", error_model="numpy", fastmath=_FM)
def _activation_grad(y, act, one):
    """act'(z) from y = act(z)."""
    if act == ACT_RELU:
        return one if y > 0 else one - one
    if act == ACT_SIGMOID:
        return y * (one - y)
    if act == ACT_TANH:
        return one - y * y
    return one
