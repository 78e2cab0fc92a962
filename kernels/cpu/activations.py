"""Elementwise activations, softmax / log-softmax over rows, and dropout.

Elementwise kernels take flat 1-D arrays (the API passes ``x.reshape(-1)``): any layout maps to
one loop.  ``act`` codes:

    RELU = 1        y = max(x, 0)                     dx = dy [x > 0]
    SIGMOID = 2     y = 1 / (1 + e^-x)                dx = dy y (1 - y)
    TANH = 3        y = tanh x                        dx = dy (1 - y^2)
    LEAKY_RELU = 4  y = x if x > 0 else alpha x       dx = dy (1 if x > 0 else alpha)

Softmax kernels take x (N, C) and work on each row: softmax(x)_j = e^(x_j - m) / sum_k e^(x_k - m)
with m the row max (stable); log_softmax(x)_j = x_j - m - log sum_k e^(x_k - m).

Work is cut into a fixed number of chunks (size-dependent only); small arrays use one chunk.
"""
import numpy as np
from numba import njit, prange

RELU, SIGMOID, TANH, LEAKY_RELU = 1, 2, 3, 4


@njit(cache=True)
def _n_chunks(n, grain):
    """Chunks for n items of work: one per ``grain`` items, at most 16."""
    return max(1, min(16, n // grain))


@njit(cache=True, inline="always")
def _act(x, act, alpha):
    if act == RELU:
        return x if x > 0 else x * 0
    if act == SIGMOID:
        return 1 / (1 + np.exp(-x))
    if act == TANH:
        return np.tanh(x)
    return x if x > 0 else x * alpha


@njit(cache=True, inline="always")
def _act_grad(x, y, act, alpha):
    one = y * 0 + 1
    if act == RELU:
        return one if x > 0 else one * 0
    if act == SIGMOID:
        return y * (1 - y)
    if act == TANH:
        return 1 - y * y
    return one if x > 0 else one * alpha


@njit(parallel=True, cache=True)
def activation_forward(x, act, alpha):
    """y = act(x) elementwise.  x (n,) -> y (n,).  alpha: the leaky-ReLU slope."""
    n = x.shape[0]
    y = np.empty_like(x)
    a = x.dtype.type(alpha)
    nc = _n_chunks(n, 32768)
    for c in prange(nc):
        for i in range(c * n // nc, (c + 1) * n // nc):
            y[i] = _act(x[i], act, a)
    return y


@njit(parallel=True, cache=True)
def activation_backward(x, y, dy, act, alpha):
    """dx = dy * act'(x).  x, y = act(x), dy: (n,) -> dx (n,)."""
    n = x.shape[0]
    dx = np.empty_like(dy)
    a = x.dtype.type(alpha)
    nc = _n_chunks(n, 32768)
    for c in prange(nc):
        for i in range(c * n // nc, (c + 1) * n // nc):
            dx[i] = dy[i] * _act_grad(x[i], y[i], act, a)
    return dx


@njit(parallel=True, cache=True)
def softmax_forward(x, log):
    """Row-wise softmax (log=False) or log-softmax (log=True).  x (N, C) -> y (N, C)."""
    N, C = x.shape
    y = np.empty_like(x)
    nc = _n_chunks(N * C, 16384)
    for c in prange(nc):
        for n in range(c * N // nc, (c + 1) * N // nc):
            m = x[n, 0]
            for j in range(1, C):
                m = max(m, x[n, j])
            s = x.dtype.type(0)
            for j in range(C):
                s += np.exp(x[n, j] - m)
            lse = m + np.log(s)
            for j in range(C):
                y[n, j] = x[n, j] - lse if log else np.exp(x[n, j] - lse)
    return y


@njit(parallel=True, cache=True)
def softmax_backward(y, dy, log):
    """Gradient of softmax_forward given its output y (N, C) and dy (N, C) -> dx (N, C).

    softmax:     dx_j = y_j (dy_j - sum_k dy_k y_k)
    log-softmax: dx_j = dy_j - e^(y_j) sum_k dy_k
    """
    N, C = y.shape
    dx = np.empty_like(dy)
    nc = _n_chunks(N * C, 16384)
    for c in prange(nc):
        for n in range(c * N // nc, (c + 1) * N // nc):
            s = y.dtype.type(0)
            for j in range(C):
                s += dy[n, j] if log else dy[n, j] * y[n, j]
            for j in range(C):
                dx[n, j] = dy[n, j] - np.exp(y[n, j]) * s if log else y[n, j] * (dy[n, j] - s)
    return dx


@njit(parallel=True, cache=True)
def dropout_forward(x, keep, scale):
    """Inverted dropout: y = x * keep * scale, keep (n,) uint8 0/1 drawn on the host,
    scale = 1 / (1 - rate).  x (n,) -> y (n,).  The backward is the same map on dy."""
    n = x.shape[0]
    y = np.empty_like(x)
    s = x.dtype.type(scale)
    nc = _n_chunks(n, 32768)
    for c in prange(nc):
        for i in range(c * n // nc, (c + 1) * n // nc):
            y[i] = x[i] * s if keep[i] else x[i] * 0
    return y


dropout_backward = dropout_forward
