"""Losses fused with their gradient on the GPU; mirrors kernels.cpu.losses (same names,
arguments and formulas; see its docstring), with one difference in what comes back:

    softmax_cross_entropy(logits (N, C), labels (N,) ints)          -> (stats, dlogits (N, C))
    sigmoid_binary_cross_entropy(logits (n,), targets (n,))         -> (stats, dlogits (n,))
    mean_squared_error(pred (n,), target (n,))                      -> (stats, dpred (n,))

``stats`` is a float64 device array of shape (2,): stats[0] the mean loss, stats[1] the index
of the first invalid label (outside [0, C)) or target (outside [0, 1] or not finite), -1 if
none.  The API reads it back with one 16-byte copy per step, the only host copy of a step,
and raises on a bad label there: the labels live on the device, so they are checked where they
are, and a bad one is never used as an index (its row's gradient is left zero).

Work to threads: softmax cross-entropy uses 32x4-thread blocks, 32 lanes per row and 4 rows
per block, with shared-memory tree reductions for the row max and sum (as the softmax
kernels); the elementwise losses use grid-stride loops.  Each row's (element's) loss is written
to a float64 array and one 256-thread block then sums it, each thread over a fixed strided
subset in order and then a shared-memory tree: the loss is bit-identical from run to run.
"""
import functools
import math

import numpy as np
from numba import cuda, float64, from_dtype, int64

from ._launch import cdiv, empty, grid_1d, max_blocks

ROW_LANES, ROWS_PER_BLOCK = 32, 4
_RT = 256       # threads of the final reduction block


@cuda.jit
def _finish(part, bad, stats):
    """stats[0] = sum(part) / n, stats[1] = first i with bad[i] != 0 (or -1); one block."""
    acc = cuda.shared.array(_RT, float64)
    first = cuda.shared.array(_RT, int64)
    t = cuda.threadIdx.x
    n = part.shape[0]
    s = 0.0
    f = n
    for i in range(t, n, _RT):
        s += part[i]
        if bad[i] != 0 and i < f:
            f = i
    acc[t] = s
    first[t] = f
    cuda.syncthreads()
    h = _RT // 2
    while h > 0:
        if t < h:
            acc[t] += acc[t + h]
            first[t] = min(first[t], first[t + h])
        cuda.syncthreads()
        h //= 2
    if t == 0:
        stats[0] = acc[0] / n if n > 0 else 0.0
        stats[1] = first[0] if first[0] < n else -1


def _stats(part, bad):
    stats = empty(2, np.float64)
    _finish[1, _RT](part, bad, stats)
    return stats


@functools.lru_cache(maxsize=None)
def _sce_kernel(dtype):
    nt = from_dtype(np.dtype(dtype))

    @cuda.jit(device=True, inline=True)
    def _row_reduce(red, ty, tx, is_max):
        s = ROW_LANES // 2
        while s > 0:
            if tx < s:
                if is_max:
                    red[ty, tx] = max(red[ty, tx], red[ty, tx + s])
                else:
                    red[ty, tx] += red[ty, tx + s]
            cuda.syncthreads()
            s //= 2

    @cuda.jit
    def sce(logits, labels, d, part, bad):
        red = cuda.shared.array((ROWS_PER_BLOCK, ROW_LANES), nt)
        N, C = logits.shape
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        inv_n = nt(1.0) / nt(N)
        for base in range(cuda.blockIdx.x * ROWS_PER_BLOCK, N, cuda.gridDim.x * ROWS_PER_BLOCK):
            n = base + ty
            ok = n < N
            m = logits[n, 0] if ok else nt(0)
            if ok:
                for j in range(tx, C, ROW_LANES):
                    m = max(m, logits[n, j])
            red[ty, tx] = m
            cuda.syncthreads()
            _row_reduce(red, ty, tx, True)
            m = red[ty, 0]
            cuda.syncthreads()
            s = nt(0)
            if ok:
                for j in range(tx, C, ROW_LANES):
                    e = math.exp(logits[n, j] - m)
                    d[n, j] = e
                    s += e
            red[ty, tx] = s
            cuda.syncthreads()
            _row_reduce(red, ty, tx, False)
            s = red[ty, 0]
            cuda.syncthreads()
            if ok:
                lab = labels[n]
                valid = lab >= 0 and lab < C
                r = inv_n / s
                for j in range(tx, C, ROW_LANES):
                    if valid:
                        d[n, j] = d[n, j] * r - (inv_n if j == lab else nt(0))
                    else:
                        d[n, j] = nt(0)
                if tx == 0:
                    if valid:
                        part[n] = float64(math.log(s) + m - logits[n, lab])
                        bad[n] = 0
                    else:
                        part[n] = 0.0
                        bad[n] = 1

    return sce


def softmax_cross_entropy(logits, labels):
    """(stats, dlogits): mean cross-entropy of softmax(logits) (N, C) against labels (N,)."""
    N, C = logits.shape
    d = empty((N, C), logits.dtype)
    part = empty(N, np.float64)
    bad = empty(N, np.uint8)
    if N and C:
        grid = max(1, min(cdiv(N, ROWS_PER_BLOCK), max_blocks()))
        _sce_kernel(logits.dtype)[grid, (ROW_LANES, ROWS_PER_BLOCK)](logits, labels, d, part,
                                                                     bad)
    return _stats(part, bad), d


@cuda.jit
def _bce(logits, targets, d, part, bad, inv_n, zero, one):
    for i in range(cuda.grid(1), logits.shape[0], cuda.gridsize(1)):
        z, t = logits[i], targets[i]
        e = math.exp(-abs(z))
        part[i] = float64(max(z, zero) - z * t + math.log1p(e))
        p = one / (one + e) if z >= 0 else e / (one + e)
        d[i] = (p - t) * inv_n
        bad[i] = 0 if t >= zero and t <= one else 1     # NaN compares false: bad


def sigmoid_binary_cross_entropy(logits, targets):
    """(stats, dlogits): mean binary cross-entropy of sigmoid(logits) (n,) against targets."""
    n = logits.shape[0]
    t = logits.dtype.type
    d = empty(n, logits.dtype)
    part = empty(n, np.float64)
    bad = empty(n, np.uint8)
    if n:
        _bce[grid_1d(n)](logits, targets, d, part, bad, t(1.0 / n), t(0), t(1))
    return _stats(part, bad), d


@cuda.jit
def _mse(pred, target, d, part, bad, two_n):
    for i in range(cuda.grid(1), pred.shape[0], cuda.gridsize(1)):
        r = pred[i] - target[i]
        part[i] = float64(r * r)
        d[i] = two_n * r
        bad[i] = 0


def mean_squared_error(pred, target):
    """(stats, dpred): mean of (pred - target)^2 over n elements."""
    n = pred.shape[0]
    d = empty(n, pred.dtype)
    part = empty(n, np.float64)
    bad = empty(n, np.uint8)
    if n:
        _mse[grid_1d(n)](pred, target, d, part, bad, pred.dtype.type(2.0 / n))
    return _stats(part, bad), d
