"""Batch normalisation on the GPU; mirrors kernels.cpu.batchnorm (same names, arguments, shapes
and formulas; see its docstring).  x is viewed as (N, C, S).

Work to threads:

* Statistics and gradient sums: one block of ``THREADS`` threads per channel (grid-stride over
  the channels when C exceeds the grid).  Thread k takes the channel's elements k, k + THREADS,
  ... in (n, s) order, so consecutive threads read consecutive addresses of a row of S values
  (coalesced); its float64 partial goes to shared memory and the block sums the partials in a
  fixed two-level order (``_block_sum``).  No atomics: results are bit-identical from run to
  run.  Two passes for the variance as on the CPU; the same block then writes y (or dx) for
  its channel.
* Eval forward and the running-statistics update: elementwise grid-stride kernels.
"""
import functools
import math

import numpy as np
from numba import cuda, from_dtype

from ._launch import THREADS, empty, grid_1d, max_blocks

NONE, RELU = 0, 1
LANES = 32                  # threads of the reduction's first level
GROUP = THREADS // LANES    # partials each of them adds


@functools.lru_cache(maxsize=None)
def _bn_kernels(dtype):
    nt = from_dtype(np.dtype(dtype))

    @cuda.jit(device=True, inline=True)
    def _block_sum(red, tid, a, b):
        """(sum of a, sum of b) over the block's threads, every thread of the block calls it:
        the THREADS partials of each go to shared memory, 2 x LANES threads each add GROUP
        consecutive ones in order, then two threads add the LANES group sums in order (a
        fixed order: deterministic)."""
        red[0, tid] = a
        red[1, tid] = b
        cuda.syncthreads()
        if tid < 2 * LANES:
            k, j = tid // LANES, tid % LANES
            acc = 0.0
            for i in range(j * GROUP, (j + 1) * GROUP):
                acc += red[k, i]
            red[k, THREADS + j] = acc
        cuda.syncthreads()
        if tid < 2:
            acc = 0.0
            for j in range(LANES):
                acc += red[tid, THREADS + j]
            red[tid, THREADS + LANES] = acc
        cuda.syncthreads()
        a, b = red[0, THREADS + LANES], red[1, THREADS + LANES]
        cuda.syncthreads()
        return a, b

    @cuda.jit
    def train_forward(x, gamma, beta, eps, act, y, mean, invstd):
        red = cuda.shared.array((2, THREADS + LANES + 1), np.float64)
        N, C, S = x.shape
        M = N * S
        tid = cuda.threadIdx.x
        for c in range(cuda.blockIdx.x, C, cuda.gridDim.x):
            a = 0.0
            for i in range(tid, M, THREADS):
                a += np.float64(x[i // S, c, i % S])
            m = _block_sum(red, tid, a, 0.0)[0] / M
            a = 0.0
            for i in range(tid, M, THREADS):
                d = np.float64(x[i // S, c, i % S]) - m
                a += d * d
            r = 1.0 / math.sqrt(_block_sum(red, tid, a, 0.0)[0] / M + eps)
            mt = nt(m)
            if tid == 0:
                mean[c] = mt
                invstd[c] = nt(r)
            scale = nt(np.float64(gamma[c]) * r)
            shift = beta[c]
            for i in range(tid, M, THREADS):
                n, s = i // S, i % S
                v = (x[n, c, s] - mt) * scale + shift
                if act == RELU and not v > 0:
                    v = nt(0)
                y[n, c, s] = v

    @cuda.jit
    def eval_forward(x, gamma, beta, running_mean, running_var, eps, act, y):
        N, C, S = x.shape
        for i in range(cuda.grid(1), N * C * S, cuda.gridsize(1)):
            n, rest = i // (C * S), i % (C * S)
            c, s = rest // S, rest % S
            scale = nt(np.float64(gamma[c]) / math.sqrt(np.float64(running_var[c]) + eps))
            v = (x[n, c, s] - running_mean[c]) * scale + beta[c]
            if act == RELU and not v > 0:
                v = nt(0)
            y[n, c, s] = v

    @cuda.jit
    def backward(x, y, gamma, mean, invstd, dy, act, dx, dgamma, dbeta, train, eps):
        """train: through the batch statistics (mean, invstd; eps unused).  Else the eval
        backward: the caller passes running_mean as ``mean`` and running_var as ``invstd``,
        and the kernel uses 1 / sqrt(running_var + eps) (rounded to x's dtype, as the CPU)."""
        red = cuda.shared.array((2, THREADS + LANES + 1), np.float64)
        N, C, S = x.shape
        M = N * S
        tid = cuda.threadIdx.x
        for c in range(cuda.blockIdx.x, C, cuda.gridDim.x):
            mt = mean[c]
            sg = 0.0
            sgx = 0.0
            for i in range(tid, M, THREADS):
                n, s = i // S, i % S
                g = dy[n, c, s]
                if act == RELU and not y[n, c, s] > 0:
                    g = nt(0)
                sg += np.float64(g)
                sgx += np.float64(g) * np.float64(x[n, c, s] - mt)
            sg, sgx = _block_sum(red, tid, sg, sgx)
            if train:
                r = np.float64(invstd[c])
            else:
                r = np.float64(nt(1.0 / math.sqrt(np.float64(invstd[c]) + eps)))
            if tid == 0:
                dbeta[c] = nt(sg)
                dgamma[c] = nt(sgx * r)
            k1 = np.float64(gamma[c]) * r
            k2 = nt(0)
            k3 = nt(0)
            if train:
                k2 = nt(-k1 * r * r * sgx / M)
                k3 = nt(-k1 * sg / M)
            k1t = nt(k1)
            for i in range(tid, M, THREADS):
                n, s = i // S, i % S
                g = dy[n, c, s]
                if act == RELU and not y[n, c, s] > 0:
                    g = nt(0)
                dx[n, c, s] = k1t * g + k2 * (x[n, c, s] - mt) + k3

    @cuda.jit
    def running(running_mean, running_var, mean, invstd, eps, momentum, count, new_mean,
                new_var):
        for c in range(cuda.grid(1), running_mean.shape[0], cuda.gridsize(1)):
            r = np.float64(invstd[c])
            var = max(1.0 / (r * r) - eps, 0.0) * count / (count - 1)
            new_mean[c] = nt((1.0 - momentum) * running_mean[c] + momentum * np.float64(mean[c]))
            new_var[c] = nt((1.0 - momentum) * running_var[c] + momentum * var)

    return train_forward, eval_forward, backward, running


def _channel_grid(C):
    return max(1, min(C, max_blocks())), THREADS


def batchnorm_forward_train(x, gamma, beta, eps, act):
    """Training-mode batch norm.  x (N, C, S), gamma, beta (C,) device arrays, eps > 0, act
    (0 none, 1 relu) -> y (N, C, S), mean (C,), invstd (C,) device arrays of x's dtype."""
    N, C, S = x.shape
    y, mean, invstd = empty((N, C, S), x.dtype), empty(C, x.dtype), empty(C, x.dtype)
    if C and N * S:
        _bn_kernels(x.dtype)[0][_channel_grid(C)](x, gamma, beta, float(eps), int(act), y,
                                                  mean, invstd)
    return y, mean, invstd


def batchnorm_forward_eval(x, gamma, beta, running_mean, running_var, eps, act):
    """Eval-mode batch norm with the running statistics -> y (N, C, S) device array."""
    N, C, S = x.shape
    y = empty((N, C, S), x.dtype)
    if N * C * S:
        _bn_kernels(x.dtype)[1][grid_1d(N * C * S)](x, gamma, beta, running_mean, running_var,
                                                    float(eps), int(act), y)
    return y


def _backward(x, y, gamma, mean, invstd, dy, act, train, eps):
    N, C, S = x.shape
    dx, dgamma, dbeta = empty((N, C, S), x.dtype), empty(C, x.dtype), empty(C, x.dtype)
    if C:
        _bn_kernels(x.dtype)[2][_channel_grid(C)](x, y, gamma, mean, invstd, dy, int(act), dx,
                                                  dgamma, dbeta, train, float(eps))
    return dx, dgamma, dbeta


def batchnorm_backward(x, y, gamma, mean, invstd, dy, act):
    """Train-mode gradients of batchnorm_forward_train -> dx (N, C, S), dgamma (C,),
    dbeta (C,) device arrays of x's dtype."""
    return _backward(x, y, gamma, mean, invstd, dy, act, True, 1.0)


def batchnorm_backward_eval(x, y, gamma, running_mean, running_var, eps, dy, act):
    """Gradients of batchnorm_forward_eval (statistics constants) -> dx, dgamma, dbeta."""
    return _backward(x, y, gamma, running_mean, running_var, dy, act, False, eps)


def batchnorm_running_stats(running_mean, running_var, mean, invstd, eps, momentum, count):
    """PyTorch's momentum update of the running statistics (see kernels.cpu.batchnorm) ->
    (mean', var') new device arrays."""
    C = running_mean.shape[0]
    new_mean, new_var = empty(C, running_mean.dtype), empty(C, running_mean.dtype)
    if C:
        _bn_kernels(running_mean.dtype)[3][grid_1d(C)](running_mean, running_var, mean, invstd,
                                                       float(eps), float(momentum), int(count),
                                                       new_mean, new_var)
    return new_mean, new_var
