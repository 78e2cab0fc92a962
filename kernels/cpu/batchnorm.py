"""Batch normalisation over the batch and spatial axes: x viewed as (N, C, S), S = H*W for NCHW
inputs and S = 1 for (N, C) inputs (callers reshape).  Per channel c, over its M = N*S values:

    mean_c   = sum_{n,s} x[n, c, s] / M
    var_c    = sum_{n,s} (x[n, c, s] - mean_c)^2 / M           (biased, as PyTorch normalises)
    invstd_c = 1 / sqrt(var_c + eps)
    y        = act((x - mean_c) invstd_c gamma_c + beta_c)      act: NONE = 0, RELU = 1

Eval mode uses the running statistics instead: y = act((x - rm_c) / sqrt(rv_c + eps) gamma_c
+ beta_c).  Backward (train mode, through the batch statistics), with g = dy [y > 0] for RELU
(dy itself for NONE) and xhat = (x - mean_c) invstd_c:

    dbeta_c  = sum g              dgamma_c = sum g xhat
    dx       = gamma_c invstd_c (g - dbeta_c / M - xhat dgamma_c / M)

``batchnorm_backward_eval`` is the backward of the eval-mode forward (statistics constants):
dx = g gamma_c / sqrt(rv_c + eps), the same dgamma / dbeta with xhat from the running
statistics.  ``batchnorm_running_stats`` makes PyTorch's momentum update of the running
statistics from a training forward's mean / invstd (unbiased variance M / (M - 1) var_c).

Statistics: a stable two-pass (the mean, then the squared deviations from it), both summed in
float64 whatever the data's dtype; the backward's two channel sums are float64 too.  A
channel's M values (N rows of S contiguous values, 400 KB for (128, 32, 28, 28) float32) stay
in L2 cache between passes, so the second and third passes cost little.

Work split: one ``prange`` iteration per channel; each channel's sums run over n then s in a
fixed order, so every result is bit-identical across runs and thread counts (there are no
cross-iteration reductions at all).  Below ``GRAIN`` elements the kernels run serially
(``_parallel.parallel_above``; same bits).  The arithmetic lives in per-channel helpers with
the NaN-safe fastmath flags (``_FM``; reassociation lets LLVM vectorise the float64 sums).

``*_reference`` below: the same maths in plain float64 NumPy, what the kernels are tested
against.
"""
import numpy as np
from numba import njit, prange

from ._parallel import parallel_above

NONE, RELU = 0, 1
GRAIN = 32768
# fastmath only with flags that keep NaN/Inf semantics (DESIGN.md).
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}


# ------------------------------------------------------------------ readable references
def batchnorm_forward_train_reference(x, gamma, beta, eps, act=NONE):
    """Plain-NumPy float64 batch norm with batch statistics.  x (N, C, S), gamma, beta (C,)
    -> y (N, C, S), mean (C,), invstd (C,)."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=(0, 2))
    var = ((x - mean[:, None]) ** 2).mean(axis=(0, 2))
    invstd = 1.0 / np.sqrt(var + eps)
    y = (x - mean[:, None]) * invstd[:, None] * gamma[:, None] + beta[:, None]
    return (np.maximum(y, 0.0) if act == RELU else y), mean, invstd


def batchnorm_forward_eval_reference(x, gamma, beta, running_mean, running_var, eps, act=NONE):
    """Plain-NumPy float64 batch norm with given (running) statistics -> y (N, C, S)."""
    x = np.asarray(x, np.float64)
    invstd = 1.0 / np.sqrt(np.asarray(running_var, np.float64) + eps)
    y = (x - running_mean[:, None]) * invstd[:, None] * gamma[:, None] + beta[:, None]
    return np.maximum(y, 0.0) if act == RELU else y


def batchnorm_backward_reference(x, y, gamma, mean, invstd, dy, act=NONE):
    """Plain-NumPy float64 train-mode gradients -> dx (N, C, S), dgamma (C,), dbeta (C,)."""
    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    g = dy * (np.asarray(y) > 0) if act == RELU else dy
    M = x.shape[0] * x.shape[2]
    xhat = (x - mean[:, None]) * invstd[:, None]
    dbeta = g.sum(axis=(0, 2))
    dgamma = (g * xhat).sum(axis=(0, 2))
    dx = (gamma * invstd)[:, None] * (g - dbeta[:, None] / M - xhat * dgamma[:, None] / M)
    return dx, dgamma, dbeta


# ------------------------------------------------------------------ fast kernels
@njit(cache=True, error_model="numpy", fastmath=_FM, inline="always")
def _affine_channel(x, mt, scale, shift, act, y, c):
    """y[:, c] = act((x[:, c] - mt) scale + shift), the forwards' last pass."""
    N, _, S = x.shape
    zero = scale - scale
    for n in range(N):
        if act == RELU:
            for s in range(S):
                v = (x[n, c, s] - mt) * scale + shift
                y[n, c, s] = v if v > zero else zero
        else:
            for s in range(S):
                y[n, c, s] = (x[n, c, s] - mt) * scale + shift


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _train_channel(x, gamma, beta, eps, act, y, mean, invstd, c):
    """Channel c of the training forward: two float64 passes for the statistics, one for y."""
    N, _, S = x.shape
    t = x.dtype.type
    s1 = 0.0
    for n in range(N):
        for s in range(S):
            s1 += np.float64(x[n, c, s])
    m = s1 / (N * S)
    mt = t(m)
    s2 = 0.0
    for n in range(N):
        for s in range(S):
            d = np.float64(x[n, c, s]) - m
            s2 += d * d
    r = 1.0 / np.sqrt(s2 / (N * S) + eps)
    mean[c], invstd[c] = mt, t(r)
    _affine_channel(x, mt, t(np.float64(gamma[c]) * r), beta[c], act, y, c)


@parallel_above(GRAIN, size=lambda x, *_: x.size)
def batchnorm_forward_train(x, gamma, beta, eps, act):
    """Training-mode batch norm.  x (N, C, S), gamma, beta (C,), eps > 0, act (0 none, 1 relu)
    -> y (N, C, S), batch mean (C,), invstd (C,) = 1 / sqrt(biased var + eps), x's dtype."""
    N, C, S = x.shape
    y = np.empty((N, C, S), x.dtype)
    mean = np.empty(C, x.dtype)
    invstd = np.empty(C, x.dtype)
    for c in prange(C):
        _train_channel(x, gamma, beta, np.float64(eps), act, y, mean, invstd, c)
    return y, mean, invstd


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _eval_channel(x, gamma, beta, running_mean, running_var, eps, act, y, c):
    r = 1.0 / np.sqrt(np.float64(running_var[c]) + eps)
    _affine_channel(x, running_mean[c], x.dtype.type(np.float64(gamma[c]) * r), beta[c], act,
                    y, c)


@parallel_above(GRAIN, size=lambda x, *_: x.size)
def batchnorm_forward_eval(x, gamma, beta, running_mean, running_var, eps, act):
    """Eval-mode batch norm with the running statistics.  x (N, C, S), gamma, beta,
    running_mean, running_var (C,), eps > 0, act -> y (N, C, S) of x's dtype."""
    N, C, S = x.shape
    y = np.empty((N, C, S), x.dtype)
    for c in prange(C):
        _eval_channel(x, gamma, beta, running_mean, running_var, np.float64(eps), act, y, c)
    return y


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _backward_channel(x, y, gamma, mean, invstd, dy, act, dx, dgamma, dbeta, c, train):
    """Channel c of the backward: the float64 sums of g and g (x - mean), then dx.  train:
    through the batch statistics; else (eval) with mean / invstd constants."""
    N, _, S = x.shape
    t = x.dtype.type
    zero = t(0)
    mt = mean[c]
    sg = 0.0                                    # sum g
    sgx = 0.0                                   # sum g (x - mean)
    for n in range(N):
        if act == RELU:
            for s in range(S):
                g = dy[n, c, s] if y[n, c, s] > zero else zero
                sg += np.float64(g)
                sgx += np.float64(g) * np.float64(x[n, c, s] - mt)
        else:
            for s in range(S):
                g = dy[n, c, s]
                sg += np.float64(g)
                sgx += np.float64(g) * np.float64(x[n, c, s] - mt)
    r = np.float64(invstd[c])
    dbeta[c] = t(sg)
    dgamma[c] = t(sgx * r)
    k1 = np.float64(gamma[c]) * r              # dx = k1 g + k2 (x - mean) + k3
    if train:
        M = N * S
        k2 = t(-k1 * r * r * sgx / M)
        k3 = t(-k1 * sg / M)
    else:
        k2 = zero
        k3 = zero
    k1t = t(k1)
    for n in range(N):
        if act == RELU:
            for s in range(S):
                g = dy[n, c, s] if y[n, c, s] > zero else zero
                dx[n, c, s] = k1t * g + k2 * (x[n, c, s] - mt) + k3
        elif train:
            for s in range(S):
                dx[n, c, s] = k1t * dy[n, c, s] + k2 * (x[n, c, s] - mt) + k3
        else:
            for s in range(S):
                dx[n, c, s] = k1t * dy[n, c, s]


@parallel_above(GRAIN, size=lambda x, *_: x.size)
def batchnorm_backward(x, y, gamma, mean, invstd, dy, act):
    """Train-mode gradients of batchnorm_forward_train.  x, y, dy (N, C, S), gamma, mean,
    invstd (C,) (the forward's), act (as in the forward; RELU masks dy by y > 0) ->
    dx (N, C, S), dgamma (C,), dbeta (C,), x's dtype."""
    N, C, S = x.shape
    dx = np.empty((N, C, S), x.dtype)
    dgamma = np.empty(C, x.dtype)
    dbeta = np.empty(C, x.dtype)
    for c in prange(C):
        _backward_channel(x, y, gamma, mean, invstd, dy, act, dx, dgamma, dbeta, c, True)
    return dx, dgamma, dbeta


@parallel_above(GRAIN, size=lambda x, *_: x.size)
def batchnorm_backward_eval(x, y, gamma, running_mean, running_var, eps, dy, act):
    """Gradients of batchnorm_forward_eval (running statistics constants).  Same shapes as
    batchnorm_backward -> dx (N, C, S), dgamma (C,), dbeta (C,), x's dtype."""
    N, C, S = x.shape
    t = x.dtype.type
    dx = np.empty((N, C, S), x.dtype)
    dgamma = np.empty(C, x.dtype)
    dbeta = np.empty(C, x.dtype)
    invstd = np.empty(C, x.dtype)
    for c in range(C):
        invstd[c] = t(1.0 / np.sqrt(np.float64(running_var[c]) + np.float64(eps)))
    for c in prange(C):
        _backward_channel(x, y, gamma, running_mean, invstd, dy, act, dx, dgamma, dbeta, c,
                          False)
    return dx, dgamma, dbeta


@njit(cache=True, error_model="numpy")
def batchnorm_running_stats(running_mean, running_var, mean, invstd, eps, momentum, count):
    """New running statistics (PyTorch's convention): mean' = (1 - momentum) running_mean +
    momentum mean, var' = (1 - momentum) running_var + momentum var_unbiased, with
    var_unbiased = (1 / invstd^2 - eps) count / (count - 1) (count = N*S >= 2), computed in
    float64 -> (mean', var') new arrays of running_mean's dtype."""
    C = running_mean.shape[0]
    t = running_mean.dtype.type
    new_mean = np.empty(C, running_mean.dtype)
    new_var = np.empty(C, running_mean.dtype)
    m = np.float64(momentum)
    for c in range(C):
        r = np.float64(invstd[c])
        var = max(1.0 / (r * r) - eps, 0.0) * count / (count - 1)
        new_mean[c] = t((1.0 - m) * running_mean[c] + m * np.float64(mean[c]))
        new_var[c] = t((1.0 - m) * running_var[c] + m * var)
    return new_mean, new_var
