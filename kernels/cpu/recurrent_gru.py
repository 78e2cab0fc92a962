"""GRU over whole sequences (PyTorch's formulation, gate order r, z, n): ``gru_forward`` /
``gru_backward`` (full BPTT), with its per-row gate passes.

Shapes, the work split and the cache layout: recurrent.py's docstring.  Shared step
machinery: _recurrent_common.py (after editing that file, clear the Numba caches as its
docstring says).
"""
import numpy as np
from numba import njit, prange

from ._blas import gemm_small, small_operand
from ._fpenv import ftz_enter as _ftz_enter
from ._fpenv import ftz_exit as _ftz_exit
from ._parallel import parallel_above
from ._recurrent_common import _EM, _bounds, _chunk, _chunk_grads, _copy_row, _gather_steps, \
    _grad_in, _n_blocks, _sigmoid, _sum_blocks, _tanh, _time, _u, _valid, _zero_row


@njit(cache=True, **_EM)
def _gru_row(a, u, b, bh, hp, unr, hc, yr):
    """a: x W of one row (3H) -> r z n in place; unr = u_n + bh_n; hc = yr = new state."""
    H = hp.shape[0]
    ar, az, an = a[:H], a[H:2 * H], a[2 * H:]
    ur, uz, un_ = u[:H], u[H:2 * H], u[2 * H:]
    br, bz, bn = b[:H], b[H:2 * H], b[2 * H:]
    hr, hz, hn = bh[:H], bh[H:2 * H], bh[2 * H:]
    for j in range(H):
        ar[j] = _sigmoid(ar[j] + br[j] + ur[j] + hr[j])
    for j in range(H):
        az[j] = _sigmoid(az[j] + bz[j] + uz[j] + hz[j])
    for j in range(H):
        unr[j] = un_[j] + hn[j]
    for j in range(H):
        an[j] = _tanh(an[j] + bn[j] + ar[j] * unr[j])
    for j in range(H):
        n = an[j]
        v = n + az[j] * (hp[j] - n)
        hc[j] = v
        yr[j] = v


@njit(cache=True, **_EM)
def _gru_row_back(g, a, unr, hp, da, dr, direct):
    """One row of the GRU backward at a valid step.  g = dL/dh_t (H), a = r z n (3H),
    unr = h U + bh (n part), hp = h_{t-1}; -> da = dL/d(x W + b) (3H), dr = dL/d(h U + bh)
    (3H), direct = dL/dh_{t-1} through z h_{t-1}."""
    H = hp.shape[0]
    ar, az, an = a[:H], a[H:2 * H], a[2 * H:]
    dar, daz, dan = da[:H], da[H:2 * H], da[2 * H:]
    drr, drz, drn = dr[:H], dr[H:2 * H], dr[2 * H:]
    for j in range(H):
        z, n = az[j], an[j]
        dan[j] = g[j] * (1 - z) * (1 - n * n)
        direct[j] = g[j] * z
    for j in range(H):
        z = az[j]
        v = g[j] * (hp[j] - an[j]) * z * (1 - z)
        daz[j] = v
        drz[j] = v
    for j in range(H):
        r = ar[j]
        v = dan[j] * unr[j] * r * (1 - r)
        dar[j] = v
        drr[j] = v
        drn[j] = dan[j] * r



# ------------------------------------------------------------------ GRU
@parallel_above(2, size=lambda x, *_: _n_blocks(x.shape[0]))
def gru_forward(x, W, U, b, bh, h0, t0, t1, reverse):
    """GRU over a whole sequence (PyTorch's formulation, gate order r, z, n).

    x (B, T, I), W (I, 3H), U (H, 3H), b (3H,) input bias, bh (3H,) recurrent bias,
    h0 (B, H), t0/t1 (B,) int64
    -> y (B, T, H), hT (B, H),
       xs (B*T, I), acts (B*T, 3H) [r z n; 0 at invalid steps], un (B*T, H) [h U + bh, n part],
       hs (B*(T+1), H)                                        (the cache)
    """
    B, T, I = x.shape
    H = U.shape[0]
    G = 3 * H
    dt = x.dtype
    y = np.empty((B, T, H), dtype=dt)
    hT = np.empty((B, H), dtype=dt)
    xs = np.empty((B * T, I), dtype=dt)
    acts = np.empty((B * T, G), dtype=dt)
    un = np.empty((B * T, H), dtype=dt)
    hs = np.empty((B * (T + 1), H), dtype=dt)
    nblk = _n_blocks(B)
    for k in prange(nblk):
        old = _ftz_enter()
        b0, b1 = _bounds(k, B, nblk)
        nb = b1 - b0
        Us = small_operand(U, nb)                   # U cut for the per-step h U
        xb, hb = b0 * T, b0 * (T + 1)
        _gather_steps(x, b0, b1, reverse, xs)
        tmp = np.empty((nb, G), dtype=dt)
        hs[hb:hb + nb] = h0[b0:b1]
        S = _chunk(nb, T)
        for s in range(T):
            if s % S == 0:                                          # input GEMM, S steps
                q = xb + s * nb
                e = xb + min(T, s + S) * nb
                np.dot(xs[q:e], W, acts[q:e])
            t = _time(s, T, reverse)
            cur = hb + (s + 1) * nb
            gemm_small(hs[cur - nb:cur], Us, tmp, 0.0)            # recurrent GEMM
            for r in range(nb):
                n = b0 + r
                row = xb + s * nb + r
                if _valid(t0, t1, n, t):
                    _gru_row(acts[row], tmp[r], b, bh, hs[cur - nb + r], un[row], hs[cur + r],
                             y[n, t])
                else:
                    _zero_row(acts[row])
                    _zero_row(un[row])
                    _copy_row(hs[cur - nb + r], hs[cur + r])
                    _zero_row(y[n, t])
        hT[b0:b1] = hs[hb + T * nb:hb + (T + 1) * nb]
        _ftz_exit(old)
    return y, hT, xs, acts, un, hs


@parallel_above(2, size=lambda W, U, t0, *_: _n_blocks(t0.shape[0]))
def gru_backward(W, U, t0, t1, reverse, xs, acts, un, hs, dy, dhT, need_dx):
    """Gradients of gru_forward (full BPTT).

    W, U, t0, t1, reverse as given to the forward; xs, acts, un, hs its cache;
    dy (B, T, H) = dL/dy, or shape (B, 0, H); dhT (B, H) = dL/dhT.
    -> dx (B, T, I) ((0, T, I) unless need_dx), dW (I, 3H), dU (H, 3H), db (3H,), dbh (3H,),
       dh0 (B, H)
    """
    B, H = dhT.shape
    T = xs.shape[0] // B
    I = W.shape[0]
    G = 3 * H
    dt = xs.dtype
    has_dy = dy.shape[1] > 0
    nblk = _n_blocks(B)
    dx = np.empty((B if need_dx else 0, T, I), dtype=dt)
    dh0 = np.empty((B, H), dtype=dt)
    px = np.empty((nblk, I + 1, G), dtype=dt)               # [dW; db] of each block
    ph = np.empty((nblk, 1 + H, G), dtype=dt)               # [dbh; dU] of each block
    for k in prange(nblk):
        old = _ftz_enter()
        b0, b1 = _bounds(k, B, nblk)
        nb = b1 - b0
        Us = small_operand(U.T, nb)                 # U^T cut for the per-step dA U^T
        xb, hb = b0 * T, b0 * (T + 1)
        S = _chunk(nb, T)
        dA = np.empty((nb * S, G), dtype=dt)     # dL/d(x W + b)   [r z n], one chunk of steps
        dR = np.empty((nb * S, G), dtype=dt)     # dL/d(h U + bh)  [r z n]
        dxs = np.empty((nb * S if need_dx else 0, I), dtype=dt)
        dh = dhT[b0:b1].copy()
        g = np.empty(H, dtype=dt)
        dhf, dyf = dh.reshape(-1), dy.reshape(-1)
        for q1 in range(T, 0, -S):                          # chunks of steps, last first
            q0 = max(0, q1 - S)
            for s in range(q1 - 1, q0 - 1, -1):
                t = _time(s, T, reverse)
                cur = hb + (s + 1) * nb
                d = (s - q0) * nb
                for r in range(nb):
                    n = b0 + r
                    row = xb + s * nb + r
                    if _valid(t0, t1, n, t):
                        _grad_in(dhf, _u(r * H), dyf, _u((n * T + t) * H), has_dy, g, False)
                        _gru_row_back(g, acts[row], un[row], hs[cur - nb + r], dA[d + r],
                                      dR[d + r], dh[r])     # dh[r] <- the z h_{t-1} path
                    else:
                        _zero_row(dA[d + r])
                        _zero_row(dR[d + r])
                gemm_small(dR[d:d + nb], Us, dh, 1.0)        # dh += dR_s U^T
            _chunk_grads(xs, hs, b0, b1, q0, q1, T, reverse, dA, dR, W, True, px[k], ph[k],
                         dxs, dx)
        dh0[b0:b1] = dh
        _ftz_exit(old)
    gx, gh = _sum_blocks(px), _sum_blocks(ph)
    return dx, gx[:I].copy(), gh[1:].copy(), gx[I].copy(), gh[0].copy(), dh0
