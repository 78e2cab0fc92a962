"""Dense (fully connected) layer: y = act(x @ W + b).

Shapes: x (N, I), W (I, O), b (O,), y (N, O).  ``act`` is an activation code fused into the
GEMM's epilogue (and its derivative into the backward's prologue):

    ACT_NONE = 0    y = z
    ACT_RELU = 1    y = max(z, 0)         dy/dz = [y > 0]
    ACT_SIGMOID = 2 y = 1 / (1 + e^-z)    dy/dz = y (1 - y)
    ACT_TANH = 3    y = tanh z            dy/dz = 1 - y^2

The products are BLAS GEMMs on contiguous row blocks, one block per ``prange`` iteration; the
block count depends only on the problem size, so results do not depend on the thread count.
Below ``GRAIN`` multiply-adds a call runs serially (``_parallel.parallel_above``).
"""
import numpy as np
from numba import njit, prange

from ._parallel import parallel_above

ACT_NONE, ACT_RELU, ACT_SIGMOID, ACT_TANH = 0, 1, 2, 3
GRAIN = 1 << 18     # multiply-adds below which a call runs serially


@njit(cache=True, error_model="numpy")
def _n_blocks(n):
    """Blocks to split n rows into: at least 32 rows a block, at most 16 blocks."""
    return max(1, min(16, n // 32))


@njit(cache=True, inline="always", error_model="numpy")
def _activate(z, act, one):
    """act(z); ``one`` is 1 in z's dtype (a bare 1 would promote float32 to float64)."""
    if act == ACT_RELU:
        return z if z > 0 else one - one
    if act == ACT_SIGMOID:
        return one / (one + np.exp(-z))
    if act == ACT_TANH:
        return np.tanh(z)
    return z


@njit(cache=True, inline="always", error_model="numpy")
def _activation_grad(y, act, one):
    """act'(z) from y = act(z)."""
    if act == ACT_RELU:
        return one if y > 0 else one - one
    if act == ACT_SIGMOID:
        return y * (one - y)
    if act == ACT_TANH:
        return one - y * y
    return one


@parallel_above(GRAIN, size=lambda x, W, *_: x.shape[0] * W.size)
def dense_forward(x, W, b, act):
    """y = act(x @ W + b).  x (N, I), W (I, O), b (O,) -> y (N, O)."""
    N, O = x.shape[0], W.shape[1]
    y = np.empty((N, O), dtype=x.dtype)
    one = x.dtype.type(1)
    nb = _n_blocks(N)
    for k in prange(nb):
        r0, r1 = k * N // nb, (k + 1) * N // nb
        np.dot(x[r0:r1], W, y[r0:r1])
        for n in range(r0, r1):
            for j in range(O):
                y[n, j] = _activate(y[n, j] + b[j], act, one)
    return y


@parallel_above(GRAIN, size=lambda x, W, *_: x.shape[0] * W.size)
def dense_backward(x, W, y, dy, act, need_dx):
    """Gradients of dense_forward.

    x (N, I), W (I, O), y (N, O) the forward output, dy (N, O) = dL/dy
    -> dx (N, I) (shape (0, I) when ``need_dx`` is False), dW (I, O), db (O,).
    """
    N, I = x.shape
    O = W.shape[1]
    g = np.empty((N, O), dtype=x.dtype)      # dL/dz, z the pre-activation
    dx = np.empty((N if need_dx else 0, I), dtype=x.dtype)
    one = x.dtype.type(1)
    nb = _n_blocks(N)
    for k in prange(nb):
        r0, r1 = k * N // nb, (k + 1) * N // nb
        for n in range(r0, r1):
            for j in range(O):
                g[n, j] = dy[n, j] * _activation_grad(y[n, j], act, one)
        if need_dx:
            np.dot(g[r0:r1], W.T, dx[r0:r1])
    dW = np.empty((I, O), dtype=x.dtype)
    nbi = _n_blocks(I)
    for k in prange(nbi):
        c0, c1 = k * I // nbi, (k + 1) * I // nbi
        xt = np.empty((c1 - c0, N), dtype=x.dtype)   # x[:, c0:c1].T, contiguous for BLAS
        for n in range(N):
            for i in range(c0, c1):
                xt[i - c0, n] = x[n, i]
        np.dot(xt, g, dW[c0:c1])
    db = np.zeros(O, dtype=x.dtype)
    for n in range(N):
        for j in range(O):
            db[j] += g[n, j]
    return dx, dW, db
