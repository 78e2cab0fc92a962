"""Optimizer updates as elementwise kernels over flat 1-D arrays (the API passes reshape(-1)).

Each returns the *update* u (to be added to the params, optax-style) and the new state arrays;
with ``apply=True`` it returns p + u, the new params, in place of u (one pass instead of two,
bit-identical to adding u afterwards).  Nothing is modified in place.  Subnormal numbers are
flushed to zero inside the kernels (``_fpenv``): Adam's first moment of a weight whose gradient
stays 0 decays into subnormals within ~800 steps, which made the update 10x slower.
g is dL/dp.  Penalties are folded into the gradient first:

    g' = g + l2 * p + l1 * sign(p)            (classic L2 weight decay and L1 penalty)

    sgd_update:     v' = momentum v + g'
                    u  = -lr (g' + momentum v')  if nesterov  else  -lr v'
    adam_update:    m' = b1 m + (1 - b1) g',  v' = b2 v + (1 - b2) g'^2
                    u  = -lr [ (m' / (1 - b1^t)) / (sqrt(v' / (1 - b2^t)) + eps) + wd p ]
                    (wd > 0 is AdamW's decoupled weight decay; t counts from 1)
    rmsprop_update: s' = rho s + (1 - rho) g'^2,  b' = momentum b + g' / (sqrt(s') + eps)
                    u  = -lr b'                (PyTorch's RMSprop, centered=False)
"""
import numpy as np
from numba import njit, prange

from ._fpenv import ftz_enter, ftz_exit
from ._parallel import parallel_above

GRAIN = 65536       # below this many elements an update runs serially
_CHUNK = 8192       # elements a parallel iteration updates (at least)


@njit(cache=True, error_model="numpy")
def _n_chunks(n):
    return max(1, min(16, n // _CHUNK))


@njit(cache=True, inline="always", error_model="numpy")
def _span(c, n, nc):
    """Bounds [lo, hi) of chunk c of nc over n items, unsigned (no wraparound code)."""
    return np.uint64(c * n // nc), np.uint64((c + 1) * n // nc)


@njit(cache=True, inline="always", error_model="numpy")
def _penalised(g, p, l2, l1):
    if l2 == 0 and l1 == 0:        # loop-invariant: LLVM hoists it out of the loop
        return g
    return g + l2 * p + l1 * np.sign(p)


@parallel_above(GRAIN, size=lambda g, *_: g.size)
def sgd_update(g, p, v, lr, momentum, nesterov, l2, l1, apply=False):
    """g, p, v (n,) -> u (n,) (p + u if apply), v' (n,)."""
    n = g.shape[0]
    t = g.dtype.type
    lr_, mu, l2_, l1_ = t(lr), t(momentum), t(l2), t(l1)
    u, v2 = np.empty_like(g), np.empty_like(v)
    nc = _n_chunks(n)
    for c in prange(nc):
        old = ftz_enter()           # subnormal moments read and written as 0 (_fpenv)
        lo, hi = _span(c, n, nc)
        for i in range(lo, hi):
            gi = _penalised(g[i], p[i], l2_, l1_)
            vi = mu * v[i] + gi
            v2[i] = vi
            ui = -lr_ * (gi + mu * vi) if nesterov else -lr_ * vi
            u[i] = p[i] + ui if apply else ui
        ftz_exit(old)
    return u, v2


@parallel_above(GRAIN, size=lambda g, *_: g.size)
def adam_update(g, p, m, v, lr, b1, b2, eps, step, wd, l2, l1, apply=False):
    """g, p, m, v (n,), step >= 1 -> u (n,) (p + u if apply), m' (n,), v' (n,)."""
    n = g.shape[0]
    t = g.dtype.type
    lr_, b1_, b2_, eps_, wd_, l2_, l1_ = t(lr), t(b1), t(b2), t(eps), t(wd), t(l2), t(l1)
    omb1, omb2 = t(1.0 - b1), t(1.0 - b2)
    c1 = t(1.0 / (1.0 - b1 ** step))
    c2 = t(1.0 / (1.0 - b2 ** step))
    u, m2, v2 = np.empty_like(g), np.empty_like(m), np.empty_like(v)
    nc = _n_chunks(n)
    for c in prange(nc):
        old = ftz_enter()           # subnormal moments read and written as 0 (_fpenv)
        lo, hi = _span(c, n, nc)
        for i in range(lo, hi):
            gi = _penalised(g[i], p[i], l2_, l1_)
            mi = b1_ * m[i] + omb1 * gi
            vi = b2_ * v[i] + omb2 * gi * gi
            m2[i], v2[i] = mi, vi
            ui = -lr_ * (mi * c1 / (np.sqrt(vi * c2) + eps_) + wd_ * p[i])
            u[i] = p[i] + ui if apply else ui
        ftz_exit(old)
    return u, m2, v2


@parallel_above(GRAIN, size=lambda g, *_: g.size)
def rmsprop_update(g, p, s, b, lr, rho, eps, momentum, l2, l1, apply=False):
    """g, p, s, b (n,) -> u (n,) (p + u if apply), s' (n,), b' (n,)."""
    n = g.shape[0]
    t = g.dtype.type
    lr_, rho_, eps_, mu, l2_, l1_ = t(lr), t(rho), t(eps), t(momentum), t(l2), t(l1)
    omr = t(1.0 - rho)
    u, s2, b2 = np.empty_like(g), np.empty_like(s), np.empty_like(b)
    nc = _n_chunks(n)
    for c in prange(nc):
        old = ftz_enter()           # subnormal moments read and written as 0 (_fpenv)
        lo, hi = _span(c, n, nc)
        for i in range(lo, hi):
            gi = _penalised(g[i], p[i], l2_, l1_)
            si = rho_ * s[i] + omr * gi * gi
            bi = mu * b[i] + gi / (np.sqrt(si) + eps_)
            s2[i], b2[i] = si, bi
            ui = -lr_ * bi
            u[i] = p[i] + ui if apply else ui
        ftz_exit(old)
    return u, s2, b2
