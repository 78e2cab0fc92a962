"""Elementwise activations, softmax / log-softmax over rows, and dropout.

Elementwise kernels take flat 1-D arrays (the API passes ``x.reshape(-1)``): any layout maps to
one loop.  ``act`` codes:

    RELU = 1        y = max(x, 0)                     dx = dy [x > 0]
    SIGMOID = 2     y = 1 / (1 + e^-x)                dx = dy y (1 - y)
    TANH = 3        y = tanh x                        dx = dy (1 - y^2)
    LEAKY_RELU = 4  y = x if x > 0 else alpha x       dx = dy (1 if x > 0 else alpha)

GELU (Hendrycks & Gimpel, the exact form PyTorch's ``nn.GELU()`` computes) has its own pair,
``gelu_forward`` / ``gelu_backward``, with Phi the standard normal CDF and phi its density:

    y = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2           dx = dy (Phi(x) + x phi(x))

float64 takes erfc from libm (Phi(x) = erfc(-x / sqrt 2) / 2: 1 + erf(x / sqrt 2) cancels to
0 below x = -5.9); float32 takes Phi from the vectorisable erfc of ``_vecmath`` (relative
error < 3e-6 for x > -4, < 2e-5 down to x = -12; libm's scalar erf kept the loop scalar).

``dropout_mask`` draws dropout's keep mask, and ``uniform`` uniform floats, from the caller's
key: the SplitMix64 stream (the mixer dlkit.random derives keys with), one output per element,
in parallel.

Softmax kernels take x (N, C) and work on each row: softmax(x)_j = e^(x_j - m) / sum_k e^(x_k - m)
with m the row max (stable); log_softmax(x)_j = x_j - m - log sum_k e^(x_k - m).

Work is cut into a fixed number of chunks (size-dependent only); below ``GRAIN`` elements a kernel
runs serially (see ``_parallel.parallel_above``).  Constants are made in the data's dtype
(``one = x.dtype.type(1)``): a bare ``1`` would turn float32 arithmetic into float64.  Chunk
bounds are unsigned (``_span``) so Numba emits no negative-index wraparound and LLVM vectorises
the loops.
"""
import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ._parallel import parallel_above
from ._vecmath import _erfc32, _exp32

RELU, SIGMOID, TANH, LEAKY_RELU = 1, 2, 3, 4
GRAIN = 32768


@njit(cache=True, error_model="numpy")
def _n_chunks(n, grain):
    """Chunks for n items of work: one per ``grain / 4`` items (a call big enough to run in
    parallel, n >= grain, gets at least 4), at most 16."""
    return max(1, min(16, 4 * n // grain))


@njit(cache=True, inline="always", error_model="numpy")
def _span(c, n, nc):
    """Bounds [lo, hi) of chunk c of nc over n items, unsigned."""
    return np.uint64(c * n // nc), np.uint64((c + 1) * n // nc)


@njit(cache=True, inline="always", error_model="numpy")
def _act(x, act, alpha, one):
    if act == RELU:
        return x if x > 0 else one - one
    if act == SIGMOID:
        return one / (one + np.exp(-x))
    if act == TANH:
        return np.tanh(x)
    return x if x > 0 else x * alpha


@njit(cache=True, inline="always", error_model="numpy")
def _act_grad(x, y, act, alpha, one):
    if act == RELU:
        return one if x > 0 else one - one
    if act == SIGMOID:
        return y * (one - y)
    if act == TANH:
        return one - y * y
    return one if x > 0 else alpha


@parallel_above(GRAIN, size=lambda x, *_: x.size)
def activation_forward(x, act, alpha):
    """y = act(x) elementwise.  x (n,) -> y (n,).  alpha: the leaky-ReLU slope."""
    n = x.shape[0]
    y = np.empty_like(x)
    a, one = x.dtype.type(alpha), x.dtype.type(1)
    nc = _n_chunks(n, GRAIN)
    for c in prange(nc):
        lo, hi = _span(c, n, nc)
        for i in range(lo, hi):
            y[i] = _act(x[i], act, a, one)
    return y


@parallel_above(GRAIN, size=lambda x, *_: x.size)
def activation_backward(x, y, dy, act, alpha):
    """dx = dy * act'(x).  x, y = act(x), dy: (n,) -> dx (n,)."""
    n = x.shape[0]
    dx = np.empty_like(dy)
    a, one = x.dtype.type(alpha), x.dtype.type(1)
    nc = _n_chunks(n, GRAIN)
    for c in prange(nc):
        lo, hi = _span(c, n, nc)
        for i in range(lo, hi):
            dx[i] = dy[i] * _act_grad(x[i], y[i], act, a, one)
    return dx


def _normal_cdf(v):  # pragma: no cover - replaced by the overload below inside njit code
    return 0.5 * math.erfc(-v * 0.7071067811865476)


@overload(_normal_cdf, jit_options={"error_model": "numpy"})
def _ov_normal_cdf(v):
    """Phi(v): float32 from the vectorisable erfc (1 - erfc(|v| / sqrt 2) / 2, or the half
    erfc itself for v < 0: no cancellation in the left tail); float64 from libm's erfc
    (Phi(v) = erfc(-v / sqrt 2) / 2, exact in both tails)."""
    if v == types.float32:
        def cdf32(v):
            half_tail = np.float32(0.5) * _erfc32(abs(v) * np.float32(0.7071067811865476))
            return np.float32(1.0) - half_tail if v >= 0 else half_tail
        return cdf32
    return lambda v: 0.5 * math.erfc(-v * 0.7071067811865476)


def _normal_pdf(v):  # pragma: no cover - replaced by the overload below inside njit code
    return math.exp(-0.5 * v * v) * 0.3989422804014327


@overload(_normal_pdf, jit_options={"error_model": "numpy"})
def _ov_normal_pdf(v):
    """phi(v) = e^(-v^2 / 2) / sqrt(2 pi), float32 through the vectorisable exp."""
    if v == types.float32:
        return lambda v: _exp32(max(np.float32(-0.5) * v * v, np.float32(-87.0))) \
            * np.float32(0.3989422804014327)
    return lambda v: np.exp(-0.5 * v * v) * 0.3989422804014327


@parallel_above(GRAIN, size=lambda x: x.size)
def gelu_forward(x):
    """y = x Phi(x) elementwise (exact GELU).  x (n,) -> y (n,)."""
    n = x.shape[0]
    y = np.empty_like(x)
    nc = _n_chunks(n, GRAIN)
    for c in prange(nc):
        lo, hi = _span(c, n, nc)
        for i in range(lo, hi):
            y[i] = x[i] * _normal_cdf(x[i])
    return y


@parallel_above(GRAIN, size=lambda x, dy: x.size)
def gelu_backward(x, dy):
    """dx = dy (Phi(x) + x phi(x)).  x, dy (n,) -> dx (n,)."""
    n = x.shape[0]
    dx = np.empty_like(dy)
    nc = _n_chunks(n, GRAIN)
    for c in prange(nc):
        lo, hi = _span(c, n, nc)
        for i in range(lo, hi):
            v = x[i]
            dx[i] = dy[i] * (_normal_cdf(v) + v * _normal_pdf(v))
    return dx


@parallel_above(GRAIN, size=lambda x, *_: x.size)
def softmax_forward(x, log):
    """Row-wise softmax (log=False) or log-softmax (log=True).  x (N, C) -> y (N, C)."""
    N, C = x.shape
    y = np.empty_like(x)
    nc = _n_chunks(N * C, GRAIN)
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


@parallel_above(GRAIN, size=lambda y, *_: y.size)
def softmax_backward(y, dy, log):
    """Gradient of softmax_forward given its output y (N, C) and dy (N, C) -> dx (N, C).

    softmax:     dx_j = y_j (dy_j - sum_k dy_k y_k)
    log-softmax: dx_j = dy_j - e^(y_j) sum_k dy_k
    """
    N, C = y.shape
    dx = np.empty_like(dy)
    nc = _n_chunks(N * C, GRAIN)
    for c in prange(nc):
        for n in range(c * N // nc, (c + 1) * N // nc):
            s = y.dtype.type(0)
            for j in range(C):
                s += dy[n, j] if log else dy[n, j] * y[n, j]
            for j in range(C):
                dx[n, j] = dy[n, j] - np.exp(y[n, j]) * s if log else y[n, j] * (dy[n, j] - s)
    return dx


@parallel_above(GRAIN, size=lambda x, *_: x.size)
def dropout_forward(x, keep, scale):
    """Inverted dropout: y = x * keep * scale, keep (n,) uint8 0/1 drawn on the host,
    scale = 1 / (1 - rate).  x (n,) -> y (n,).  The backward is the same map on dy."""
    n = x.shape[0]
    y = np.empty_like(x)
    s, zero = x.dtype.type(scale), x.dtype.type(0)
    nc = _n_chunks(n, GRAIN)
    for c in prange(nc):
        lo, hi = _span(c, n, nc)
        for i in range(lo, hi):
            y[i] = x[i] * (s if keep[i] else zero)
    return y


dropout_backward = dropout_forward

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S27, _S30, _S31, _S32 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(32)


@njit(cache=True, inline="always", error_model="numpy")
def _splitmix(seed, i):
    """Output i (uint64, from 0) of the SplitMix64 stream started at ``seed``: a function of
    (seed, i) alone, so a stream cut into chunks like any other loop does not depend on the
    thread count."""
    z = seed + (i + np.uint64(1)) * _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@parallel_above(GRAIN, size=lambda seed, n, threshold: n)
def dropout_mask(seed, n, threshold):
    """keep (n,) uint8: keep[i] = 1 if the top 32 bits of the i-th output of the SplitMix64
    stream started at ``seed`` (uint64) are >= ``threshold`` (uint64, round(rate * 2^32)),
    so P(keep) = 1 - rate."""
    keep = np.empty(n, np.uint8)
    nc = _n_chunks(n, GRAIN)
    for c in prange(nc):
        lo, hi = _span(c, n, nc)
        for i in range(lo, hi):
            keep[i] = (_splitmix(seed, i) >> _S32) >= threshold
    return keep


@parallel_above(GRAIN, size=lambda seed, out: out.shape[0])
def uniform(seed, out):
    """out (n,) float32 or float64 <- uniforms in [0, 1) from the SplitMix64 stream started at
    ``seed``: out[i] = (top 24 bits of output i) 2^-24, or the top 53 bits 2^-53 for float64
    (every value exactly representable, never 1)."""
    n = out.shape[0]
    nc = _n_chunks(n, GRAIN)
    f = out.dtype.type
    shift = np.uint64(40 if out.itemsize == 4 else 11)
    scale = f(2.0 ** -24 if out.itemsize == 4 else 2.0 ** -53)
    for c in prange(nc):
        lo, hi = _span(c, n, nc)
        for i in range(lo, hi):
            out[i] = f(_splitmix(seed, i) >> shift) * scale
