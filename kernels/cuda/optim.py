"""Optimizer updates on the GPU over flat 1-D device arrays; mirrors kernels.cpu.optim (same
names, arguments and formulas; see its docstring).  Each returns the update u (p + u with
``apply=True``) and the new state arrays as new device arrays; nothing is modified in place.

These helpers have no CPU twin because device arrays have no arithmetic of their own (on the CPU
numpy does these):

    apply_update(p, u) -> p + u          (dlkit.optim.apply_updates)
    penalise(g, p, l2, l1) -> g + l2 p + l1 sign(p), the penalty of the updates above on its
                                         own (dlkit.rbm.weight_decay: W only, not the biases)
    zeros(shape, dtype) -> device zeros  (opt.init's zero moments, made on the device)
    nonfinite_flag(arrays) -> (1,) uint8 (dlkit.train's NaN/inf check of the gradients)

Work to threads: grid-stride loops, one element per thread per iteration, consecutive threads
on consecutive elements (every load and store coalesced), 256-thread blocks, as many blocks as
fill the device.  The scalar hyperparameters are cast to the data's dtype on the host, as the
CPU kernels do, so float32 arithmetic stays float32.
"""
import math

import numpy as np
from numba import cuda

from ._launch import empty, grid_1d


@cuda.jit(device=True, inline=True)
def _penalised(g, p, l2, l1, one):
    if l2 == 0 and l1 == 0:
        return g
    sign = one if p > 0 else (-one if p < 0 else p - p)     # np.sign, NaN-preserving
    return g + l2 * p + l1 * sign


@cuda.jit
def _sgd(g, p, v, u, v2, lr, mu, nesterov, l2, l1, one, apply):
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        gi = _penalised(g[i], p[i], l2, l1, one)
        vi = mu * v[i] + gi
        v2[i] = vi
        ui = -lr * (gi + mu * vi) if nesterov else -lr * vi
        u[i] = p[i] + ui if apply else ui


def sgd_update(g, p, v, lr, momentum, nesterov, l2, l1, apply=False):
    """g, p, v (n,) -> u (n,) (p + u if apply), v' (n,)."""
    t = g.dtype.type
    u, v2 = empty(g.shape, g.dtype), empty(v.shape, v.dtype)
    if g.shape[0]:
        _sgd[grid_1d(g.shape[0])](g, p, v, u, v2, t(lr), t(momentum), bool(nesterov), t(l2),
                                  t(l1), t(1), bool(apply))
    return u, v2


@cuda.jit
def _adam(g, p, m, v, u, m2, v2, lr, b1, b2, omb1, omb2, c1, c2, eps, wd, l2, l1, one, apply):
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        gi = _penalised(g[i], p[i], l2, l1, one)
        mi = b1 * m[i] + omb1 * gi
        vi = b2 * v[i] + omb2 * gi * gi
        m2[i] = mi
        v2[i] = vi
        ui = -lr * (mi * c1 / (math.sqrt(vi * c2) + eps) + wd * p[i])
        u[i] = p[i] + ui if apply else ui


def adam_update(g, p, m, v, lr, b1, b2, eps, step, wd, l2, l1, apply=False):
    """g, p, m, v (n,), step >= 1 -> u (n,) (p + u if apply), m' (n,), v' (n,)."""
    t = g.dtype.type
    u, m2, v2 = empty(g.shape, g.dtype), empty(m.shape, m.dtype), empty(v.shape, v.dtype)
    if g.shape[0]:
        _adam[grid_1d(g.shape[0])](
            g, p, m, v, u, m2, v2, t(lr), t(b1), t(b2), t(1.0 - b1), t(1.0 - b2),
            t(1.0 / (1.0 - b1 ** step)), t(1.0 / (1.0 - b2 ** step)), t(eps), t(wd), t(l2), t(l1),
            t(1), bool(apply))
    return u, m2, v2


@cuda.jit
def _rmsprop(g, p, s, b, u, s2, b2, lr, rho, omr, eps, mu, l2, l1, one, apply):
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        gi = _penalised(g[i], p[i], l2, l1, one)
        si = rho * s[i] + omr * gi * gi
        bi = mu * b[i] + gi / (math.sqrt(si) + eps)
        s2[i] = si
        b2[i] = bi
        ui = -lr * bi
        u[i] = p[i] + ui if apply else ui


def rmsprop_update(g, p, s, b, lr, rho, eps, momentum, l2, l1, apply=False):
    """g, p, s, b (n,) -> u (n,) (p + u if apply), s' (n,), b' (n,)."""
    t = g.dtype.type
    u, s2, b2 = empty(g.shape, g.dtype), empty(s.shape, s.dtype), empty(b.shape, b.dtype)
    if g.shape[0]:
        _rmsprop[grid_1d(g.shape[0])](g, p, s, b, u, s2, b2, t(lr), t(rho), t(1.0 - rho),
                                      t(eps), t(momentum), t(l2), t(l1), t(1),
                                      bool(apply))
    return u, s2, b2


@cuda.jit
def _add(p, u, out):
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        out[i] = p[i] + u[i]


def apply_update(p, u):
    """p + u for flat (n,) device arrays, as a new array."""
    out = empty(p.shape, p.dtype)
    if p.shape[0]:
        _add[grid_1d(p.shape[0])](p, u, out)
    return out


@cuda.jit
def _penalise(g, p, out, l2, l1, one):
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        out[i] = _penalised(g[i], p[i], l2, l1, one)


def penalise(g, p, l2, l1):
    """g + l2 p + l1 sign(p) for flat (n,) device arrays, as a new array: the same arithmetic
    as the updates' penalty (and as numpy's ``g + l2 * p + l1 * np.sign(p)``)."""
    out = empty(g.shape, g.dtype)
    if g.shape[0]:
        t = g.dtype.type
        _penalise[grid_1d(g.shape[0])](g, p, out, t(l2), t(l1), t(1))
    return out


@cuda.jit
def _fill(a, value):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = value


def zeros(shape, dtype):
    """A device array of zeros, filled on the device (no host copy)."""
    a = empty(shape, dtype)
    n = int(np.prod(shape, dtype=np.int64))
    if n:
        _fill[grid_1d(n)](a.reshape(n), np.dtype(dtype).type(0))
    return a


@cuda.jit
def _flag_nonfinite(a, flag):
    """flag[0] = 1 if any element of a is NaN or +-inf.  Every writer writes the same value,
    so the unsynchronised stores need no atomics and the result is deterministic."""
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        v = a[i]
        if math.isnan(v) or math.isinf(v):
            flag[0] = 1


def nonfinite_flag(arrays):
    """A (1,) uint8 device array: 1 if any of the device ``arrays`` holds a NaN or an inf.
    One launch per array (flat views), no host copy; the caller reads the one byte back."""
    flag = zeros(1, np.uint8)
    for a in arrays:
        n = int(np.prod(a.shape, dtype=np.int64))
        if n:
            _flag_nonfinite[grid_1d(n)](a.reshape(n), flag)
    return flag
