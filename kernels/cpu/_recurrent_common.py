"""What the three recurrent cells (recurrent_rnn.py, recurrent_lstm.py, recurrent_gru.py) share:
the vectorisable float32 sigmoid/tanh, the block and time-chunk plumbing (row blocks, gathering
a block's steps, the per-chunk weight and input gradient GEMMs, summing block partials) and
the per-row helpers every cell uses.  Shapes, the work
split and the cache layout are described in recurrent.py's docstring.

These are njit helpers shared across kernel files, an exception to "a kernel and its njit
helpers live in one file" (DESIGN.md), made so that the cells need no copies of the step
machinery.  Numba's on-disk cache checks only the mtime of a kernel's own source file, so
the kernels in recurrent_rnn.py, recurrent_lstm.py and recurrent_gru.py, which
compile the helpers and constants below into themselves, do not notice an edit here and keep running the
old code from their cache.  After editing this file, clear the caches:

    find kernels -name __pycache__ -exec rm -rf {} +

(and empty ``$NUMBA_CACHE_DIR`` if you set one).
"""
import numpy as np
from numba import njit, types
from numba.extending import overload

from ._blas import gemm
from ._vecmath import _EM, _exp32

ACT_TANH, ACT_RELU = 0, 1

# Flat-array offsets are np.uint64 (a signed index makes Numba emit negative-index wraparound
# code that stops LLVM from vectorising); never mix them with signed ints in one expression.
_u = np.uint64

#: rows (batch rows x time steps) of a block's time chunk: its gate pre-activations stay in
#: cache from the input GEMM through the recurrence, its gradients through the weight GEMMs
_CHUNK_ROWS = 512


# ------------------------------------------------------------------ vectorisable float32 math
# (_EM, _exp32: _vecmath.py)


@njit(cache=True, **_EM)
def _sigmoid32(x):
    z = min(max(x, np.float32(-80.0)), np.float32(80.0))
    return np.float32(1.0) / (np.float32(1.0) + _exp32(-z))


@njit(cache=True, **_EM)
def _tanh32(x):
    """Cephes tanhf: an odd polynomial below |x| = 0.625, 1 - 2 / (e^2|x| + 1) above."""
    a = abs(x)
    e = _exp32(min(a + a, np.float32(40.0)))
    big = np.float32(1.0) - np.float32(2.0) / (e + np.float32(1.0))
    z = x * x
    p = np.float32(-5.70498872745e-3)
    p = p * z + np.float32(2.06390887954e-2)
    p = p * z - np.float32(5.37397155531e-2)
    p = p * z + np.float32(1.33314422036e-1)
    p = p * z - np.float32(3.33332819422e-1)
    small = p * z * a + a
    t = small if a < np.float32(0.625) else big
    return t if x >= 0 else -t


def _sigmoid(x):  # pragma: no cover - replaced by the overload below inside njit code
    return 1 / (1 + np.exp(-x))


def _tanh(x):  # pragma: no cover
    return np.tanh(x)


@overload(_sigmoid, jit_options=_EM)
def _ov_sigmoid(x):
    if x == types.float32:
        return lambda x: _sigmoid32(x)
    return lambda x: 1 / (1 + np.exp(-x))


@overload(_tanh, jit_options=_EM)
def _ov_tanh(x):
    if x == types.float32:
        return lambda x: _tanh32(x)
    return lambda x: np.tanh(x)


@njit(cache=True)
def sigmoid(x):
    """The kernels' sigmoid over a 1-D array (for tests of the float32 approximation)."""
    y = np.empty_like(x)
    for i in range(x.shape[0]):
        y[i] = _sigmoid(x[i])
    return y


@njit(cache=True)
def tanh(x):
    """The kernels' tanh over a 1-D array (for tests of the float32 approximation)."""
    y = np.empty_like(x)
    for i in range(x.shape[0]):
        y[i] = _tanh(x[i])
    return y


# ------------------------------------------------------------------ shared plumbing
@njit(cache=True)
def _n_blocks(B):
    """Batch row blocks: 64 rows a block, at least two blocks from 32 rows on, at most 16."""
    return max(1, min(16, max(min(2, B // 16), B // 64)))


@njit(cache=True)
def _bounds(k, B, nblk):
    return k * B // nblk, (k + 1) * B // nblk


@njit(cache=True)
def _time(s, T, reverse):
    return T - 1 - s if reverse else s


@njit(cache=True)
def _gather_steps(x, b0, b1, reverse, xs):
    """xs[b0*T + s*nb + r] = x[b0 + r, t(s)]: a block's inputs in processing order (flat
    offsets: a row view per row costs atomic reference counts)."""
    T, I, nb = x.shape[1], x.shape[2], b1 - b0
    xf, xsf = x.reshape(-1), xs.reshape(-1)
    n = _u(I)
    for s in range(T):
        t = _time(s, T, reverse)
        for r in range(nb):
            d, q = _u((b0 * T + s * nb + r) * I), _u(((b0 + r) * T + t) * I)
            for j in range(n):
                xsf[d + j] = xf[q + j]


@njit(cache=True)
def _scatter_steps(d, b0, b1, T, reverse, dx, q0, q1):
    """Inverse of _gather_steps for a block's steps q0 .. q1 - 1:
    dx[b0 + r, t(s)] = d[(s - q0)*nb + r] (d local to the block and the chunk)."""
    nb, I = b1 - b0, dx.shape[2]
    df, dxf = d.reshape(-1), dx.reshape(-1)
    n = _u(I)
    for s in range(q0, q1):
        t = _time(s, T, reverse)
        for r in range(nb):
            q, e = _u(((s - q0) * nb + r) * I), _u(((b0 + r) * T + t) * I)
            for j in range(n):
                dxf[e + j] = df[q + j]


@njit(cache=True)
def _chunk(nb, T):
    """Time steps a block processes at once (see the module docstring): _CHUNK_ROWS rows."""
    return max(1, min(T, _CHUNK_ROWS // nb))


@njit(cache=True, error_model="numpy")
def _sum_blocks(parts):
    """parts (nblk, R, C) -> (R, C), summed over blocks in order (small work: serial)."""
    out = parts[0].copy()
    for k in range(1, parts.shape[0]):
        p = parts[k]
        for i in range(out.shape[0]):
            o = out[i]
            q = p[i]
            for j in range(o.shape[0]):
                o[j] += q[j]
    return out


@njit(cache=True)
def _chunk_grads(xs, hs, b0, b1, q0, q1, T, reverse, dA, dR, W, separate, px, ph, dxs, dx):
    """The weight, bias and input gradients of block [b0, b1) over its steps q0 .. q1 - 1, from
    the chunk's dA, dR (rows (s - q0)*nb + r), each weight gradient one GEMM over the chunk's
    rows.  Chunks run last first: the one ending at T writes px, ph, the others add to them.

    With Z = [xs | 1 | h_prev] (chunk rows, I + 1 + H) built here:
      separate=False (RNN, LSTM: dR is dA):  px (I + 1 + H, G) += Z^T dA = [dW; db; dU]
      separate=True (GRU):  px (I + 1, G) += [xs | 1]^T dA = [dW; db],
                            ph (1 + H, G) += [1 | h_prev]^T dR = [dbh; dU]
    and, unless dx has no rows, dx's rows of those steps = dA W^T (through dxs, scratch of the
    chunk's rows)."""
    nb, I, H = b1 - b0, xs.shape[1], hs.shape[1]
    n = (q1 - q0) * nb
    x0, h0 = b0 * T + q0 * nb, b0 * (T + 1) + q0 * nb
    beta = 0.0 if q1 == T else 1.0
    Z = np.empty((n, I + 1 + H), dtype=xs.dtype)
    Zf, xf, hf = Z.reshape(-1), xs[x0:x0 + n].reshape(-1), hs[h0:h0 + n].reshape(-1)
    one = xs.dtype.type(1)
    uI, uH = _u(I), _u(H)
    for i in range(n):
        z, q, e = _u(i * (I + 1 + H)), _u(i * I), _u(i * H)
        for j in range(uI):
            Zf[z + j] = xf[q + j]
        Zf[z + uI] = one
        for j in range(uH):
            Zf[z + uI + _u(1) + j] = hf[e + j]
    if separate:
        gemm(Z[:, :I + 1], dA[:n], px, True, False, 1.0, beta)
        gemm(Z[:, I:], dR[:n], ph, True, False, 1.0, beta)
    else:
        gemm(Z, dA[:n], px, True, False, 1.0, beta)
    if dx.shape[0] > 0:
        np.dot(dA[:n], W.T, dxs[:n])
        _scatter_steps(dxs, b0, b1, T, reverse, dx, q0, q1)


# ------------------------------------------------------------------ per-row gate passes
# Each helper works on one batch row, every loop a simple one over j that LLVM vectorises:
# the RNN and GRU on the row's 1-D views, the LSTM cell on flat arrays at np.uint64 offsets
# and inlined (a row view, or a call with array arguments, costs atomic reference-count
# updates: per row that was half the LSTM gate pass).  A loop stores to one array at one
# offset: two stores into one array at an unknown distance stop LLVM from vectorising (the
# i and g gradients in one loop ran 4x slower than in two).


@njit(cache=True, **_EM)
def _copy_row(src, dst):
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@njit(cache=True, **_EM)
def _zero_row(dst):
    for j in range(dst.shape[0]):
        dst[j] = 0


@njit(cache=True, inline="always", **_EM)
def _grad_in(DH, dh, DY, dy, has_dy, g, zero):
    """g = dL/dh_t of one row: DH[dh:dh + H] (from later steps) + DY[dy:dy + H] (the output's
    gradient; ignored unless has_dy), on flat arrays at offsets, H = len(g).  With ``zero``
    DH's row is zeroed (the caller adds the step's recurrent GEMM into it)."""
    n = _u(g.shape[0])
    if has_dy:
        for j in range(n):
            g[j] = DH[dh + j] + DY[dy + j]
    else:
        for j in range(n):
            g[j] = DH[dh + j]
    if zero:
        for j in range(n):
            DH[dh + j] = 0



@njit(cache=True)
def _valid(t0, t1, n, t):
    return t0[n] <= t and t < t1[n]
