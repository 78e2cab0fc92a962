"""Losses fused with their gradient: each returns (loss, dL/dinput), the loss a mean.

    softmax_cross_entropy(logits (N, C), labels (N,) int64) -> (loss, dlogits (N, C))
        loss = mean_n [ lse(logits_n) - logits_n[label_n] ],  lse the stable log-sum-exp
        dlogits = (softmax(logits) - onehot(labels)) / N
    sigmoid_binary_cross_entropy(logits (n,), targets (n,)) -> (loss, dlogits (n,))
        loss = mean [ max(z, 0) - z t + log(1 + e^-|z|) ],  dlogits = (sigmoid(z) - t) / n
    mean_squared_error(pred (n,), target (n,)) -> (loss, dpred (n,))
        loss = mean (pred - target)^2,  dpred = 2 (pred - target) / n

The batch sum is cut into a fixed number of chunks (size-dependent only) whose partial sums are
added in order, so the loss is bit-identical across runs and thread counts.  Below ``GRAIN``
elements a kernel runs serially (``_parallel.parallel_above``).  Labels are trusted:
dlkit checks them on the host.
"""
import numpy as np
from numba import njit, prange

from ._parallel import parallel_above

GRAIN = 32768


@njit(cache=True, error_model="numpy")
def _n_chunks(n, grain):
    return max(1, min(16, n // grain))


@parallel_above(GRAIN, size=lambda z, *_: z.size)
def softmax_cross_entropy(logits, labels):
    N, C = logits.shape
    d = np.empty_like(logits)
    nc = _n_chunks(N * C, 16384)
    part = np.zeros(nc, dtype=np.float64)
    inv_n = logits.dtype.type(1.0 / N)
    for c in prange(nc):
        acc = 0.0
        for n in range(c * N // nc, (c + 1) * N // nc):
            m = logits[n, 0]
            for j in range(1, C):
                m = max(m, logits[n, j])
            s = logits.dtype.type(0)
            for j in range(C):
                e = np.exp(logits[n, j] - m)
                d[n, j] = e
                s += e
            acc += np.log(s) + m - logits[n, labels[n]]
            r = inv_n / s
            for j in range(C):
                d[n, j] *= r
            d[n, labels[n]] -= inv_n
        part[c] = acc
    return part.sum() / N, d


@parallel_above(GRAIN, size=lambda z, *_: z.size)
def sigmoid_binary_cross_entropy(logits, targets):
    n = logits.shape[0]
    d = np.empty_like(logits)
    nc = _n_chunks(n, 32768)
    part = np.zeros(nc, dtype=np.float64)
    inv_n, zero, one = logits.dtype.type(1.0 / n), logits.dtype.type(0), logits.dtype.type(1)
    for c in prange(nc):
        acc = 0.0
        for i in range(c * n // nc, (c + 1) * n // nc):
            z, t = logits[i], targets[i]
            e = np.exp(-abs(z))
            acc += max(z, zero) - z * t + np.log1p(e)
            p = one / (one + e) if z >= 0 else e / (one + e)    # sigmoid(z), stable both ways
            d[i] = (p - t) * inv_n
        part[c] = acc
    return part.sum() / n, d


@parallel_above(GRAIN, size=lambda z, *_: z.size)
def mean_squared_error(pred, target):
    n = pred.shape[0]
    d = np.empty_like(pred)
    nc = _n_chunks(n, 32768)
    part = np.zeros(nc, dtype=np.float64)
    two_n = pred.dtype.type(2.0 / n)
    for c in prange(nc):
        acc = 0.0
        for i in range(c * n // nc, (c + 1) * n // nc):
            r = pred[i] - target[i]
            acc += r * r
            d[i] = two_n * r
        part[c] = acc
    return part.sum() / n, d
