"""Dense (fully connected) layer on the GPU: y = act(x @ W + b); mirrors kernels.cpu.dense.

Shapes: x (N, I), W (I, O), b (O,), y (N, O); activation codes as in kernels.cpu.dense.

Work to threads:

* ``gemm``: the shared-memory tiled GEMM every matrix product here (and in conv) goes through.
  C (M, N) = act(alpha op(A) @ op(B) + bias), op = identity or transpose per operand, read in place
  (no transposed copies).  A block of 16x16 threads owns a 64x64 tile of C; the K axis is
  walked in 16-deep slices staged through shared memory (A slice 16x64, B slice 16x64).  Global
  loads are coalesced whichever way an operand is stored: consecutive threads read
  consecutive addresses along that operand's contiguous axis, and the slice is written to
  shared memory k-major (rows padded by 2 to avoid bank conflicts).  Each thread accumulates a
  4x4 register micro-tile, rows ty + 16 i and columns tx + 16 j, so its shared reads are
  broadcasts / conflict-free and its stores in the epilogue (bias add + activation) are
  coalesced along rows of C.  The sum over K runs in a fixed order: deterministic.
* ``dense_backward``: one pass computes g = dy * act'(y) and per-chunk column partial sums
  (block 32x8: 32 consecutive columns by 8 rows, grid (columns / 32, row chunks)); a second
  pass adds the chunks in order to give db.  The row-chunk count depends on N only, never on
  the device, so db is bit-identical across runs and GPUs.  Then dx = g @ W^T and dW = x^T @ g
  through ``gemm`` with the transposes read in place.  No atomics.
"""
import functools
import math

import numpy as np
from numba import cuda, from_dtype

from ._launch import cdiv, empty

ACT_NONE, ACT_RELU, ACT_SIGMOID, ACT_TANH = 0, 1, 2, 3

BM, BN, BK = 64, 64, 16        # block tile of C (BM x BN) and K slice depth
TY, TX = 16, 16                # threads per block (rows, columns)
RM, RN = BM // TY, BN // TX    # register micro-tile per thread
_PAD = 2                       # shared-memory row padding (bank conflicts on k-major stores)
AS_W, BS_W = BM + _PAD, BN + _PAD   # shared tile row lengths (module constants: shapes of
                                    # cuda.shared.array must be compile-time constants)
_NT = TY * TX

CB_X, CB_Y = 32, 8             # column-reduction block: 32 columns x 8 rows
_ROWS_PER_CHUNK = 256          # rows of one column-sum chunk (chunk count depends on N only)
_MAX_CHUNKS = 64


@cuda.jit(device=True, inline=True)
def _activate(z, act, one):
    """act(z); ``one`` is 1 in z's dtype."""
    if act == ACT_RELU:
        return z if z > 0 else one - one
    if act == ACT_SIGMOID:
        return one / (one + math.exp(-z))
    if act == ACT_TANH:
        return math.tanh(z)
    return z


@cuda.jit(device=True, inline=True)
def _activation_grad(y, act, one):
    """act'(z) from y = act(z)."""
    if act == ACT_RELU:
        return one if y > 0 else one - one
    if act == ACT_SIGMOID:
        return y * (one - y)
    if act == ACT_TANH:
        return one - y * y
    return one


@functools.lru_cache(maxsize=None)
def _gemm_kernel(dtype):
    nt = from_dtype(np.dtype(dtype))

    @cuda.jit
    def gemm_kernel(A, B, C, bias, ta, tb, act, alpha):
        """C = act(alpha op(A) @ op(B) + bias); op(A) is (M, K), op(B) is (K, N)."""
        As = cuda.shared.array((BK, AS_W), nt)
        Bs = cuda.shared.array((BK, BS_W), nt)
        acc = cuda.local.array((RM, RN), nt)
        a = cuda.local.array(RM, nt)
        b = cuda.local.array(RN, nt)
        M, N = C.shape
        K = A.shape[0] if ta else A.shape[1]
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * TX + tx
        row0 = cuda.blockIdx.y * BM
        col0 = cuda.blockIdx.x * BN
        one = nt(1)
        zero = nt(0)
        for i in range(RM):
            for j in range(RN):
                acc[i, j] = zero
        for k0 in range(0, K, BK):
            # A slice: op(A)[row0:row0+BM, k0:k0+BK] -> As[k, m]
            for l in range(tid, BM * BK, _NT):
                if ta:          # A stored (K, M): consecutive threads along m
                    m, k = l % BM, l // BM
                    gk, gm = k0 + k, row0 + m
                    As[k, m] = A[gk, gm] if gk < K and gm < M else zero
                else:           # A stored (M, K): consecutive threads along k
                    k, m = l % BK, l // BK
                    gk, gm = k0 + k, row0 + m
                    As[k, m] = A[gm, gk] if gk < K and gm < M else zero
            # B slice: op(B)[k0:k0+BK, col0:col0+BN] -> Bs[k, n]
            for l in range(tid, BN * BK, _NT):
                if tb:          # B stored (N, K): consecutive threads along k
                    k, n = l % BK, l // BK
                    gk, gn = k0 + k, col0 + n
                    Bs[k, n] = B[gn, gk] if gk < K and gn < N else zero
                else:           # B stored (K, N): consecutive threads along n
                    n, k = l % BN, l // BN
                    gk, gn = k0 + k, col0 + n
                    Bs[k, n] = B[gk, gn] if gk < K and gn < N else zero
            cuda.syncthreads()
            for kk in range(BK):
                for i in range(RM):
                    a[i] = As[kk, ty + TY * i]
                for j in range(RN):
                    b[j] = Bs[kk, tx + TX * j]
                for i in range(RM):
                    for j in range(RN):
                        acc[i, j] += a[i] * b[j]
            cuda.syncthreads()
        has_bias = bias.shape[0] > 0
        for i in range(RM):
            m = row0 + ty + TY * i
            if m < M:
                for j in range(RN):
                    n = col0 + tx + TX * j
                    if n < N:
                        v = acc[i, j] * alpha
                        if has_bias:
                            v += bias[n]
                        C[m, n] = _activate(v, act, one)

    return gemm_kernel


@functools.lru_cache(maxsize=None)
def _no_bias(dtype):
    return empty(0, dtype)


def gemm(A, B, ta=False, tb=False, bias=None, act=ACT_NONE, out=None, alpha=1.0):
    """act(alpha op(A) @ op(B) + bias) as a new (M, N) device array (or into ``out``, a
    C-contiguous (M, N) device array or row block of one).

    A (M, K) or, with ``ta``, (K, M); B (K, N) or, with ``tb``, (N, K); bias (N,) or None.
    """
    M = A.shape[1] if ta else A.shape[0]
    N = B.shape[0] if tb else B.shape[1]
    C = empty((M, N), A.dtype) if out is None else out
    if M == 0 or N == 0:
        return C
    bias = _no_bias(A.dtype) if bias is None else bias
    grid = (cdiv(N, BN), cdiv(M, BM))
    _gemm_kernel(A.dtype)[grid, (TX, TY)](A, B, C, bias, bool(ta), bool(tb), act,
                                          A.dtype.type(alpha))
    return C


def dense_forward(x, W, b, act):
    """y = act(x @ W + b).  x (N, I), W (I, O), b (O,) -> y (N, O)."""
    return gemm(x, W, bias=b, act=act)


# ------------------------------------------------------------------ column sums (bias grads)
def n_chunks(n):
    """Row chunks of a column sum over n rows: depends on n only (determinism)."""
    return max(1, min(_MAX_CHUNKS, cdiv(n, _ROWS_PER_CHUNK)))


@functools.lru_cache(maxsize=None)
def _grad_colsum_kernel(dtype):
    nt = from_dtype(np.dtype(dtype))

    @cuda.jit
    def grad_colsum(y, dy, act, g, part):
        """g = dy * act'(y) (N, O) and part[c, j] = sum of g[n, j] over row chunk c."""
        red = cuda.shared.array((CB_Y, CB_X), nt)
        N, O = dy.shape
        R = part.shape[0]
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        j = cuda.blockIdx.x * CB_X + tx
        c = cuda.blockIdx.y
        r0, r1 = c * N // R, (c + 1) * N // R
        one = nt(1)
        s = nt(0)
        if j < O:
            for n in range(r0 + ty, r1, CB_Y):
                v = dy[n, j] * _activation_grad(y[n, j], act, one)
                g[n, j] = v
                s += v
        red[ty, tx] = s
        cuda.syncthreads()
        if ty == 0 and j < O:
            t = red[0, tx]
            for r in range(1, CB_Y):
                t += red[r, tx]
            part[c, j] = t

    return grad_colsum


@cuda.jit
def _sum_chunks(part, out):
    """out[j] = sum over c of part[c, j], in order; one thread per column."""
    j = cuda.grid(1)
    if j < out.shape[0]:
        t = part[0, j]
        for c in range(1, part.shape[0]):
            t += part[c, j]
        out[j] = t


def grad_colsum(y, dy, act):
    """(g, db): g = dy * act'(y) (N, O) and db = column sums of g (O,), deterministic."""
    N, O = dy.shape
    g = empty((N, O), dy.dtype)
    db = empty(O, dy.dtype)
    if O == 0:
        return g, db
    R = n_chunks(N)
    part = empty((R, O), dy.dtype)
    _grad_colsum_kernel(dy.dtype)[(cdiv(O, CB_X), R), (CB_X, CB_Y)](y, dy, act, g, part)
    _sum_chunks[cdiv(O, 128), 128](part, db)
    return g, db


def dense_backward(x, W, y, dy, act, need_dx):
    """Gradients of dense_forward.

    x (N, I), W (I, O), y (N, O) the forward output, dy (N, O) = dL/dy
    -> dx (N, I) (shape (0, I) when ``need_dx`` is False), dW (I, O), db (O,).
    """
    N, I = x.shape
    g, db = grad_colsum(y, dy, act)
    dx = gemm(g, W, tb=True) if need_dx else empty((0, I), x.dtype)
    dW = gemm(x, g, ta=True)
    return dx, dW, db


@functools.lru_cache(maxsize=None)
def _colsum_kernel(dtype):
    nt = from_dtype(np.dtype(dtype))

    @cuda.jit
    def colsum_part(a, part):
        """part[c, j] = sum of a[n, j] over row chunk c (block: 32 columns x 8 rows)."""
        red = cuda.shared.array((CB_Y, CB_X), nt)
        N, O = a.shape
        R = part.shape[0]
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        j = cuda.blockIdx.x * CB_X + tx
        c = cuda.blockIdx.y
        s = nt(0)
        if j < O:
            for n in range(c * N // R + ty, (c + 1) * N // R, CB_Y):
                s += a[n, j]
        red[ty, tx] = s
        cuda.syncthreads()
        if ty == 0 and j < O:
            t = red[0, tx]
            for r in range(1, CB_Y):
                t += red[r, tx]
            part[c, j] = t

    return colsum_part


def colsum(a):
    """Column sums of a (N, O) -> (O,), two-pass and deterministic (as ``grad_colsum``)."""
    N, O = a.shape
    out = empty(O, a.dtype)
    if O == 0:
        return out
    R = n_chunks(N)
    part = empty((R, O), a.dtype)
    _colsum_kernel(a.dtype)[(cdiv(O, CB_X), R), (CB_X, CB_Y)](a, part)
    _sum_chunks[cdiv(O, 128), 128](part, out)
    return out
