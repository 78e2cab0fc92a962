"""Layer normalisation over the last axis: x (rows, D) -> y (rows, D); callers reshape (..., D).

    mean_r = sum_j x[r, j] / D
    var_r  = sum_j (x[r, j] - mean_r)^2 / D                      (biased, as in PyTorch)
    rstd_r = 1 / sqrt(var_r + eps)
    xhat   = (x - mean_r) rstd_r
    y      = xhat gamma + beta                                   gamma, beta: (D,)

Backward, with g = dy gamma (per row):

    dx     = rstd_r (g - mean_j(g) - xhat mean_j(g xhat))
    dgamma = sum_r dy xhat          dbeta = sum_r dy

Statistics: two passes over the row (the mean, then the squared deviations from it), both
summed in float64 whatever the data's dtype.  Two passes avoid the cancellation of
E[x^2] - E[x]^2 when |mean| >> std (a one-pass float32 variance of a row with mean 1e4 and
std 1 is noise); float64 sums make the rounding of the sums themselves negligible, so float32
mean/rstd are the correctly rounded values of the exact statistics in practice.  The second
pass reads the row from L1 cache.  The backward's row sums mean_j(g), mean_j(g xhat) are
float64 too.

Work split: rows are cut into ``_n_chunks(rows, D)`` contiguous row blocks, one ``prange``
iteration each; the count depends only on (rows, D), never on the thread count.  Each block
writes its own rows of y / dx and its own row of the dgamma / dbeta partials (float64,
(chunks, D)); the partials are then summed over the blocks in block order.  So every result
is bit-identical across runs and across thread counts.  Below ``GRAIN`` elements the kernels
run serially (``_parallel.parallel_above``; same bits).  The arithmetic lives in the per-block
helpers ``_forward_rows`` / ``_backward_rows``, compiled with the NaN-safe fastmath flags
(``_FM``: reassociation lets LLVM vectorise the row sums; NaN/Inf still propagate), the
backward without ``contract`` (see ``_FM_BACKWARD``).

``layernorm_forward_reference`` / ``layernorm_backward_reference`` below are the same maths in
plain NumPy (float64), the textbook version the fast kernels are tested against.
"""
import numpy as np
from numba import njit, prange

from ._parallel import parallel_above

GRAIN = 32768
# fastmath only with flags that keep NaN/Inf semantics (DESIGN.md).
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}
# The backward's dx = rstd (g - mean(g) - ...) cancels (exactly, at D = 1): contracting
# g - mean(g) into an FMA would leave g's float32 rounding error there, times rstd.
_FM_BACKWARD = _FM - {"contract"}


# ------------------------------------------------------------------ readable references
def layernorm_forward_reference(x, gamma, beta, eps):
    """Plain-NumPy float64 layer norm.  x (rows, D), gamma, beta (D,) -> y (rows, D),
    mean (rows,), rstd (rows,)."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=1)
    var = ((x - mean[:, None]) ** 2).mean(axis=1)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean[:, None]) * rstd[:, None]
    return xhat * gamma + beta, mean, rstd


def layernorm_backward_reference(x, gamma, mean, rstd, dy):
    """Plain-NumPy float64 gradients of ``layernorm_forward_reference``.
    x, dy (rows, D), gamma (D,), mean, rstd (rows,) -> dx (rows, D), dgamma (D,), dbeta (D,)."""
    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    xhat = (x - mean[:, None]) * rstd[:, None]
    g = dy * gamma
    dx = rstd[:, None] * (g - g.mean(axis=1, keepdims=True)
                          - xhat * (g * xhat).mean(axis=1, keepdims=True))
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


# ------------------------------------------------------------------ fast kernels
@njit(cache=True, error_model="numpy")
def _n_chunks(rows, D):
    """Row blocks for (rows, D): one per GRAIN / 4 elements (at least 4 once the kernel runs
    in parallel), at most 16 and at most one per row; a function of the shape alone."""
    return max(1, min(16, rows, 4 * rows * D // GRAIN))


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _forward_rows(x, gamma, beta, eps, y, mean, rstd, lo, hi):
    """Rows [lo, hi) of the forward (see the module docstring)."""
    D = x.shape[1]
    t = x.dtype.type
    for r in range(lo, hi):
        s = 0.0
        for j in range(D):
            s += np.float64(x[r, j])
        m = s / D
        v = 0.0
        for j in range(D):
            d = np.float64(x[r, j]) - m
            v += d * d
        rs = 1.0 / np.sqrt(v / D + eps)
        mean[r], rstd[r] = t(m), t(rs)
        mt, rt = t(m), t(rs)
        for j in range(D):
            y[r, j] = (x[r, j] - mt) * rt * gamma[j] + beta[j]


@parallel_above(GRAIN, size=lambda x, *_: x.size)
def layernorm_forward(x, gamma, beta, eps):
    """Layer norm of each row.  x (rows, D), gamma, beta (D,), eps > 0 (a float) ->
    y (rows, D), mean (rows,), rstd (rows,), all of x's dtype."""
    rows, D = x.shape
    y = np.empty((rows, D), x.dtype)
    mean = np.empty(rows, x.dtype)
    rstd = np.empty(rows, x.dtype)
    nc = _n_chunks(rows, D)
    for c in prange(nc):
        _forward_rows(x, gamma, beta, np.float64(eps), y, mean, rstd,
                      c * rows // nc, (c + 1) * rows // nc)
    return y, mean, rstd


@njit(cache=True, error_model="numpy", fastmath=_FM_BACKWARD)
def _backward_rows(x, gamma, mean, rstd, dy, dx, dg, db, lo, hi):
    """Rows [lo, hi) of the backward: dx rows, and this block's dgamma / dbeta partials
    dg, db (D,) float64 (zeroed here)."""
    D = x.shape[1]
    t = x.dtype.type
    for j in range(D):
        dg[j] = 0.0
        db[j] = 0.0
    for r in range(lo, hi):
        m, rs = mean[r], rstd[r]
        a = 0.0                                 # sum g
        b = 0.0                                 # sum g xhat
        for j in range(D):
            g = np.float64(dy[r, j] * gamma[j])
            a += g
            b += g * np.float64((x[r, j] - m) * rs)
        at, bt = t(a / D), t(b / D)
        for j in range(D):
            xh = (x[r, j] - m) * rs
            dx[r, j] = rs * (dy[r, j] * gamma[j] - at - xh * bt)
        for j in range(D):
            dg[j] += np.float64(dy[r, j] * ((x[r, j] - m) * rs))
        for j in range(D):
            db[j] += np.float64(dy[r, j])


@parallel_above(GRAIN, size=lambda x, *_: x.size)
def layernorm_backward(x, gamma, mean, rstd, dy):
    """Gradients of layernorm_forward.  x, dy (rows, D), gamma (D,), mean, rstd (rows,) (the
    forward's) -> dx (rows, D), dgamma (D,), dbeta (D,), all of x's dtype."""
    rows, D = x.shape
    dx = np.empty((rows, D), x.dtype)
    nc = _n_chunks(rows, D)
    dgp = np.empty((nc, D))
    dbp = np.empty((nc, D))
    for c in prange(nc):
        _backward_rows(x, gamma, mean, rstd, dy, dx, dgp[c], dbp[c],
                       c * rows // nc, (c + 1) * rows // nc)
    dgamma = np.empty(D, x.dtype)
    dbeta = np.empty(D, x.dtype)
    for j in range(D):                           # block partials summed in block order
        sg = 0.0
        sb = 0.0
        for c in range(nc):
            sg += dgp[c, j]
            sb += dbp[c, j]
        dgamma[j], dbeta[j] = sg, sb
    return dx, dgamma, dbeta
