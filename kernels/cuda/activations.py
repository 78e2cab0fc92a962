"""Elementwise activations, row softmax / log-softmax and dropout on the GPU; mirrors
kernels.cpu.activations (same names, arguments, codes and formulas; see its docstring).

Work to threads:

* Elementwise kernels (activation_*, dropout_*): a grid-stride loop, one element per thread per
  iteration, consecutive threads on consecutive elements (coalesced); 256-thread blocks, as many
  blocks as fill the device (``_launch.grid_1d``).
* Softmax kernels: a block of 32x4 threads handles 4 rows at a time, 32 lanes per row striding
  over its columns (coalesced along the row); the row max and row sum are reduced through
  shared memory in a fixed tree order (deterministic); blocks stride over row groups.
"""
import functools
import math

import numpy as np
from numba import cuda, from_dtype

from ._launch import cdiv, empty, grid_1d, max_blocks

RELU, SIGMOID, TANH, LEAKY_RELU = 1, 2, 3, 4
ROW_LANES, ROWS_PER_BLOCK = 32, 4


@cuda.jit(device=True, inline=True)
def _act(x, act, alpha, one):
    if act == RELU:
        return x if x > 0 else one - one
    if act == SIGMOID:
        return one / (one + math.exp(-x))
    if act == TANH:
        return math.tanh(x)
    return x if x > 0 else x * alpha


@cuda.jit(device=True, inline=True)
def _act_grad(x, y, act, alpha, one):
    if act == RELU:
        return one if x > 0 else one - one
    if act == SIGMOID:
        return y * (one - y)
    if act == TANH:
        return one - y * y
    return one if x > 0 else alpha


@cuda.jit
def _activation_forward(x, y, act, alpha, one):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        y[i] = _act(x[i], act, alpha, one)


@cuda.jit
def _activation_backward(x, y, dy, dx, act, alpha, one):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        dx[i] = dy[i] * _act_grad(x[i], y[i], act, alpha, one)


def activation_forward(x, act, alpha):
    """y = act(x) elementwise.  x (n,) -> y (n,).  alpha: the leaky-ReLU slope."""
    t = x.dtype.type
    y = empty(x.shape, x.dtype)
    if x.shape[0]:
        _activation_forward[grid_1d(x.shape[0])](x, y, act, t(alpha), t(1))
    return y


def activation_backward(x, y, dy, act, alpha):
    """dx = dy * act'(x).  x, y = act(x), dy: (n,) -> dx (n,)."""
    t = x.dtype.type
    dx = empty(dy.shape, dy.dtype)
    if x.shape[0]:
        _activation_backward[grid_1d(x.shape[0])](x, y, dy, dx, act, t(alpha), t(1))
    return dx


@cuda.jit
def _gelu_forward(x, y, half, rsqrt2):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        y[i] = half * x[i] * math.erfc(-x[i] * rsqrt2)


@cuda.jit
def _gelu_backward(x, dy, dx, half, rsqrt2, rsqrt2pi):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        v = x[i]
        cdf = half * math.erfc(-v * rsqrt2)
        dx[i] = dy[i] * (cdf + v * rsqrt2pi * math.exp(-half * v * v))


def gelu_forward(x):
    """y = x Phi(x) elementwise (exact GELU, Phi(x) = erfc(-x / sqrt 2) / 2).  x (n,) -> y (n,)."""
    t = x.dtype.type
    y = empty(x.shape, x.dtype)
    if x.shape[0]:
        _gelu_forward[grid_1d(x.shape[0])](x, y, t(0.5), t(0.7071067811865476))
    return y


def gelu_backward(x, dy):
    """dx = dy (Phi(x) + x phi(x)).  x, dy (n,) -> dx (n,)."""
    t = x.dtype.type
    dx = empty(dy.shape, dy.dtype)
    if x.shape[0]:
        _gelu_backward[grid_1d(x.shape[0])](x, dy, dx, t(0.5), t(0.7071067811865476),
                                            t(0.3989422804014327))
    return dx


# ------------------------------------------------------------------ row-wise softmax
@functools.lru_cache(maxsize=None)
def _softmax_kernels(dtype):
    nt = from_dtype(np.dtype(dtype))

    @cuda.jit(device=True, inline=True)
    def _row_reduce(red, ty, tx, is_max):
        """Tree-reduce red[ty, 0:32] (max or sum) into red[ty, 0]; all threads call it."""
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
    def forward(x, y, log):
        red = cuda.shared.array((ROWS_PER_BLOCK, ROW_LANES), nt)
        N, C = x.shape
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        for base in range(cuda.blockIdx.x * ROWS_PER_BLOCK, N, cuda.gridDim.x * ROWS_PER_BLOCK):
            n = base + ty
            ok = n < N
            m = x[n, 0] if ok else nt(0)
            if ok:
                for j in range(tx, C, ROW_LANES):
                    m = max(m, x[n, j])
            red[ty, tx] = m
            cuda.syncthreads()
            _row_reduce(red, ty, tx, True)
            m = red[ty, 0]
            cuda.syncthreads()
            s = nt(0)
            if ok:
                for j in range(tx, C, ROW_LANES):
                    s += math.exp(x[n, j] - m)
            red[ty, tx] = s
            cuda.syncthreads()
            _row_reduce(red, ty, tx, False)
            s = red[ty, 0]
            cuda.syncthreads()
            if ok:
                lse = m + math.log(s)
                for j in range(tx, C, ROW_LANES):
                    y[n, j] = x[n, j] - lse if log else math.exp(x[n, j] - lse)

    @cuda.jit
    def backward(y, dy, dx, log):
        red = cuda.shared.array((ROWS_PER_BLOCK, ROW_LANES), nt)
        N, C = y.shape
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        for base in range(cuda.blockIdx.x * ROWS_PER_BLOCK, N, cuda.gridDim.x * ROWS_PER_BLOCK):
            n = base + ty
            ok = n < N
            s = nt(0)
            if ok:
                for j in range(tx, C, ROW_LANES):
                    s += dy[n, j] if log else dy[n, j] * y[n, j]
            red[ty, tx] = s
            cuda.syncthreads()
            _row_reduce(red, ty, tx, False)
            s = red[ty, 0]
            cuda.syncthreads()
            if ok:
                for j in range(tx, C, ROW_LANES):
                    dx[n, j] = (dy[n, j] - math.exp(y[n, j]) * s if log
                                else y[n, j] * (dy[n, j] - s))

    return forward, backward


def _row_grid(N):
    return (max(1, min(cdiv(N, ROWS_PER_BLOCK), max_blocks())), (ROW_LANES, ROWS_PER_BLOCK))


def softmax_forward(x, log):
    """Row-wise softmax (log=False) or log-softmax (log=True).  x (N, C) -> y (N, C)."""
    y = empty(x.shape, x.dtype)
    if x.shape[0] and x.shape[1]:
        _softmax_kernels(x.dtype)[0][_row_grid(x.shape[0])](x, y, bool(log))
    return y


def softmax_backward(y, dy, log):
    """Gradient of softmax_forward given its output y (N, C) and dy (N, C) -> dx (N, C)."""
    dx = empty(dy.shape, dy.dtype)
    if y.shape[0] and y.shape[1]:
        _softmax_kernels(y.dtype)[1][_row_grid(y.shape[0])](y, dy, dx, bool(log))
    return dx


# ------------------------------------------------------------------ dropout
@cuda.jit
def _dropout(x, keep, y, scale, zero):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        y[i] = x[i] * (scale if keep[i] else zero)


def dropout_forward(x, keep, scale):
    """Inverted dropout: y = x * keep * scale, keep (n,) uint8 0/1 (drawn on the host and
    copied to the device by the caller), scale = 1 / (1 - rate).  x (n,) -> y (n,)."""
    t = x.dtype.type
    y = empty(x.shape, x.dtype)
    if x.shape[0]:
        _dropout[grid_1d(x.shape[0])](x, keep, y, t(scale), t(0))
    return y


dropout_backward = dropout_forward
