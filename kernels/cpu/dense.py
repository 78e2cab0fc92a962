"""Dense (fully connected) layer: y = act(x @ W + b).

Shapes: x (N, I), W (I, O), b (O,), y (N, O).  ``act`` is an activation code fused into the
GEMM's epilogue (and its derivative into the backward's prologue):

    ACT_NONE = 0    y = z
    ACT_RELU = 1    y = max(z, 0)         dy/dz = [y > 0]
    ACT_SIGMOID = 2 y = 1 / (1 + e^-z)    dy/dz = y (1 - y)
    ACT_TANH = 3    y = tanh z            dy/dz = 1 - y^2

The products are BLAS GEMMs (``_blas.gemm`` on strided views: no transposed copies), cut into
a few large tasks, one per ``prange`` iteration.  BLAS packs (copies into its own layout) the
operands of every call, so tasks are cut where the least is packed twice (measured on 2 cores
at x[128, 784] @ W[784, 128]):

* forward, small batches (N <= 128): the inner dimension is split, each task multiplies
  x[:, c0:c1] @ W[c0:c1] into its own partial, and the epilogue sums the partials in order
  (10% faster than 2 row blocks, which both pack all of W); larger batches: row blocks of y;
* backward: dW = x^T g in row blocks (input features, 256 rows and more a block), and with dx
  dx = g W^T as separate tasks after them (row blocks when large), so at 128x784x128 the two
  dW blocks run on one thread and dx on the other (as fast as one dW task and one dx task,
  12% faster than row blocks of each).  With fewer than 512 inputs dW is one row block, cut
  into column blocks (64 columns and more) instead, and dx into as many row blocks: the two
  halves of the work in equal tasks (a transformer's 768x128x384 projection: dW as one task
  beside four dx quarters left one thread idle a third of the time).  dW's blocks are the same
  with or without dx: BLAS kernels may round an edge block differently (OpenBLAS's Haswell
  kernels do), and dW must not depend on whether dx was asked for.

Block counts depend only on the shapes, so results do not depend on the thread count.  Below
``GRAIN`` multiply-adds a call runs serially (``_parallel.parallel_above``).
"""
import numpy as np
from numba import njit, prange

from ._blas import gemm
from ._parallel import parallel_above

ACT_NONE, ACT_RELU, ACT_SIGMOID, ACT_TANH = 0, 1, 2, 3
GRAIN = 1 << 18     # multiply-adds below which a call runs serially


@njit(cache=True, error_model="numpy")
def _n_blocks(rows, min_rows):
    """Row blocks: the largest power of two <= rows / min_rows, between 1 and 16."""
    nb = 1
    while nb < 16 and 2 * nb * min_rows <= rows:
        nb *= 2
    return nb


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
    """y = act(x @ W + b).  x (N, I), W (I, O), b (O,) C-contiguous -> y (N, O)."""
    N, I = x.shape
    O = W.shape[1]
    y = np.empty((N, O), dtype=x.dtype)
    one = x.dtype.type(1)
    kb = _n_blocks(I, 256) if N <= 128 else 1          # inner-dimension blocks
    nb = _n_blocks(N, 64) if kb == 1 else 1             # row blocks
    parts = np.empty((kb - 1, N, O), dtype=x.dtype)     # partials 1.. (partial 0 goes to y)
    for k in prange(kb * nb):
        if kb > 1:
            c0, c1 = k * I // kb, (k + 1) * I // kb
            gemm(x[:, c0:c1], W[c0:c1], y if k == 0 else parts[k - 1], False, False, 1.0, 0.0)
        else:
            r0, r1 = k * N // nb, (k + 1) * N // nb
            gemm(x[r0:r1], W, y[r0:r1], False, False, 1.0, 0.0)
            for n in range(r0, r1):
                for j in range(O):
                    y[n, j] = _activate(y[n, j] + b[j], act, one)
    if kb > 1:                                           # partials summed in order
        for k in range(kb - 2):
            for n in range(N):
                for j in range(O):
                    y[n, j] += parts[k, n, j]
        for n in range(N):
            for j in range(O):
                y[n, j] = _activate(y[n, j] + parts[kb - 2, n, j] + b[j], act, one)
    return y


@parallel_above(GRAIN, size=lambda x, W, *_: x.shape[0] * W.size)
def dense_backward(x, W, y, dy, act, need_dx):
    """Gradients of dense_forward.

    x (N, I), W (I, O), y (N, O) the forward output, dy (N, O) = dL/dy, all C-contiguous
    -> dx (N, I) (shape (0, I) when ``need_dx`` is False), dW (I, O), db (O,).
    """
    N, I = x.shape
    O = W.shape[1]
    g = dy                                   # dL/dz, z the pre-activation (= dy if linear)
    if act != ACT_NONE:
        g = np.empty((N, O), dtype=x.dtype)
        one = x.dtype.type(1)
        nb = _n_blocks(N, 64)
        for k in prange(nb):
            for n in range(k * N // nb, (k + 1) * N // nb):
                for j in range(O):
                    g[n, j] = dy[n, j] * _activation_grad(y[n, j], act, one)
    dx = np.empty((N if need_dx else 0, I), dtype=x.dtype)
    dW = np.empty((I, O), dtype=x.dtype)
    nbw = _n_blocks(I, 256)                            # row blocks of dW, dx or not
    ncw = _n_blocks(O, 64) if nbw == 1 else 1          # or column blocks, for few inputs
    nbx = 0                                            # row blocks of dx, after dW's
    if need_dx:
        nbx = _n_blocks(N, 128) if nbw > 1 else ncw
    nw = nbw * ncw
    db = np.zeros(O, dtype=x.dtype)
    for k in prange(nw + nbx):
        if k >= nw:
            r0, r1 = (k - nw) * N // nbx, (k - nw + 1) * N // nbx
            gemm(g[r0:r1], W, dx[r0:r1], False, True, 1.0, 0.0)    # dx = g W^T
        else:
            i0, i1 = k // ncw * I // nbw, (k // ncw + 1) * I // nbw
            j0, j1 = k % ncw * O // ncw, (k % ncw + 1) * O // ncw
            gemm(x[:, i0:i1], g[:, j0:j1], dW[i0:i1, j0:j1], True, False, 1.0, 0.0)
            if i0 == 0:                                    # db = sum of g's rows, by columns
                for n in range(N):
                    for j in range(j0, j1):
                        db[j] += g[n, j]
    return dx, dW, db
