"""Layer normalisation over the last axis on the GPU; mirrors kernels.cpu.norm (same names,
arguments, shapes and formulas; see its docstring).

Work to threads:

* Row kernels (forward; backward's dx): a block of 32x4 threads handles 4 rows at a time, 32
  lanes per row striding over its D columns (coalesced along the row); blocks stride over
  row groups.  The row sums (mean, then squared deviations: two passes, as on the CPU; in the
  backward sum g and sum g xhat together) are reduced through shared memory in a fixed tree
  order, so results are bit-identical from run to run.  Sums are in the data's dtype (two
  passes keep float32 accurate; consumer GPUs run float64 at 1/32 to 1/64 of the float32
  rate).
* dgamma / dbeta without atomics: a first kernel gives each (row chunk, column) one thread
  (consecutive threads on consecutive columns, coalesced) that sums its chunk's rows into
  (chunks, D) partials; a second sums the partials over the chunks in chunk order.  The
  number of row chunks depends on the shape alone.
"""
import functools
import math

import numpy as np
from numba import cuda, from_dtype

from ._launch import THREADS, cdiv, empty, grid_1d, max_blocks

ROW_LANES, ROWS_PER_BLOCK = 32, 4
CHUNK_ROWS = 64           # rows per dgamma/dbeta partial (more when the grid's y limit needs)
MAX_GRID_Y = 65535


@functools.lru_cache(maxsize=None)
def _norm_kernels(dtype):
    nt = from_dtype(np.dtype(dtype))

    @cuda.jit(device=True, inline=True)
    def _block_sums(red, ty, tx, a, b):
        """(sum of a, sum of b) over the 32 lanes of row group ty: a tree through shared
        memory in a fixed order (deterministic); every thread of the block calls it."""
        red[0, ty, tx] = a
        red[1, ty, tx] = b
        cuda.syncthreads()
        s = ROW_LANES // 2
        while s > 0:
            if tx < s:
                red[0, ty, tx] += red[0, ty, tx + s]
                red[1, ty, tx] += red[1, ty, tx + s]
            cuda.syncthreads()
            s //= 2
        a, b = red[0, ty, 0], red[1, ty, 0]
        cuda.syncthreads()
        return a, b

    @cuda.jit(device=True, inline=True)
    def _lane_moment(x, n, tx, m, centred):
        """This lane's share of sum_j x[n, j] (centred False) or sum_j (x[n, j] - m)^2."""
        s = nt(0)
        for j in range(tx, x.shape[1], ROW_LANES):
            d = x[n, j] - m
            s += d * d if centred else x[n, j]
        return s

    @cuda.jit(device=True, inline=True)
    def _forward_row(x, gamma, beta, mean, rstd, y, eps, red, n, ok, tx, ty, fD):
        m = _block_sums(red, ty, tx, _lane_moment(x, n, tx, nt(0), False) if ok else nt(0),
                        nt(0))[0] / fD
        v = _block_sums(red, ty, tx, _lane_moment(x, n, tx, m, True) if ok else nt(0),
                        nt(0))[0] / fD
        rs = nt(1) / math.sqrt(v + eps)
        if ok:
            if tx == 0:
                mean[n] = m
                rstd[n] = rs
            for j in range(tx, x.shape[1], ROW_LANES):
                y[n, j] = (x[n, j] - m) * rs * gamma[j] + beta[j]

    @cuda.jit(device=True, inline=True)
    def _dx_row(x, gamma, dy, mean, rstd, dx, eps, red, n, ok, tx, ty, fD):
        a = nt(0)                           # this lane's share of sum g, g = dy gamma
        b = nt(0)                           # ... and of sum g xhat
        m = mean[n] if ok else nt(0)
        rs = rstd[n] if ok else nt(0)
        if ok:
            for j in range(tx, x.shape[1], ROW_LANES):
                g = dy[n, j] * gamma[j]
                a += g
                b += g * ((x[n, j] - m) * rs)
        a, b = _block_sums(red, ty, tx, a, b)
        a /= fD
        b /= fD
        if ok:
            for j in range(tx, x.shape[1], ROW_LANES):
                dx[n, j] = rs * (dy[n, j] * gamma[j] - a - (x[n, j] - m) * rs * b)

    def _row_kernel(row):
        """The kernel running ``row`` on every row: the forward (v = beta, out = y; writes
        mean and rstd) or the backward's dx (v = dy, out = dx; reads them)."""
        @cuda.jit
        def kernel(x, gamma, v, mean, rstd, out, eps):
            red = cuda.shared.array((2, ROWS_PER_BLOCK, ROW_LANES), nt)
            fD = nt(x.shape[1])
            tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
            groups = (x.shape[0] + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK
            for grp in range(cuda.blockIdx.x, groups, cuda.gridDim.x):
                n = grp * ROWS_PER_BLOCK + ty
                row(x, gamma, v, mean, rstd, out, eps, red, n, n < x.shape[0], tx, ty, fD)
        return kernel

    @cuda.jit
    def param_partials(x, mean, rstd, dy, dgp, dbp, chunk):
        """dgp[c, j], dbp[c, j]: sums over the rows of chunk c (``chunk`` rows) of dy xhat
        and of dy."""
        N, D = x.shape
        j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        c = cuda.blockIdx.y
        if j < D:
            sg = nt(0)
            sb = nt(0)
            for n in range(c * chunk, min(N, (c + 1) * chunk)):
                d = dy[n, j]
                sg += d * ((x[n, j] - mean[n]) * rstd[n])
                sb += d
            dgp[c, j] = sg
            dbp[c, j] = sb

    @cuda.jit
    def sum_partials(dgp, dbp, dgamma, dbeta):
        C, D = dgp.shape
        for j in range(cuda.grid(1), D, cuda.gridsize(1)):
            sg = nt(0)
            sb = nt(0)
            for c in range(C):
                sg += dgp[c, j]
                sb += dbp[c, j]
            dgamma[j] = sg
            dbeta[j] = sb

    return _row_kernel(_forward_row), _row_kernel(_dx_row), param_partials, sum_partials


def _row_grid(N):
    return (max(1, min(cdiv(N, ROWS_PER_BLOCK), max_blocks())), (ROW_LANES, ROWS_PER_BLOCK))


def layernorm_forward(x, gamma, beta, eps):
    """Layer norm of each row.  x (rows, D), gamma, beta (D,) device arrays, eps > 0 (a float)
    -> y (rows, D), mean (rows,), rstd (rows,) device arrays of x's dtype."""
    rows, D = x.shape
    y, mean, rstd = empty((rows, D), x.dtype), empty(rows, x.dtype), empty(rows, x.dtype)
    if rows and D:
        _norm_kernels(x.dtype)[0][_row_grid(rows)](x, gamma, beta, mean, rstd, y,
                                                    x.dtype.type(eps))
    return y, mean, rstd


def layernorm_backward(x, gamma, mean, rstd, dy):
    """Gradients of layernorm_forward.  x, dy (rows, D), gamma (D,), mean, rstd (rows,) device
    arrays -> dx (rows, D), dgamma (D,), dbeta (D,) device arrays of x's dtype."""
    rows, D = x.shape
    _, dx_kernel, partials, total = _norm_kernels(x.dtype)
    dx, dgamma, dbeta = empty((rows, D), x.dtype), empty(D, x.dtype), empty(D, x.dtype)
    if not D:
        return dx, dgamma, dbeta
    if rows:
        dx_kernel[_row_grid(rows)](x, gamma, dy, mean, rstd, dx, x.dtype.type(0))
    chunk = max(CHUNK_ROWS, cdiv(rows, MAX_GRID_Y))
    chunks = max(1, cdiv(rows, chunk))
    dgp, dbp = empty((chunks, D), x.dtype), empty((chunks, D), x.dtype)
    partials[(cdiv(D, THREADS), chunks), THREADS](x, mean, rstd, dy, dgp, dbp, chunk)
    total[grid_1d(D)](dgp, dbp, dgamma, dbeta)
    return dx, dgamma, dbeta
