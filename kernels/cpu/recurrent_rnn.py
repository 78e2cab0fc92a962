"""Simple RNN over whole sequences: ``rnn_forward`` / ``rnn_backward`` (full BPTT), with its
per-row gate passes.

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
from ._recurrent_common import ACT_RELU, _EM, _bounds, _chunk, _chunk_grads, _copy_row, \
    _gather_steps, _grad_in, _n_blocks, _sum_blocks, _tanh, _time, _u, _valid, _zero_row


@njit(cache=True, **_EM)
def _rnn_row(z, b, act, hc, yr):
    """hc = yr = act(z + b), z = x W + h U of one row."""
    if act == ACT_RELU:
        for j in range(hc.shape[0]):
            v = z[j] + b[j]
            v = max(v, v * 0)
            hc[j] = v
            yr[j] = v
    else:
        for j in range(hc.shape[0]):
            v = _tanh(z[j] + b[j])
            hc[j] = v
            yr[j] = v


@njit(cache=True, **_EM)
def _rnn_row_back(g, hc, act, dz):
    """dz = g * act'(.) given the output hc."""
    if act == ACT_RELU:
        for j in range(dz.shape[0]):
            dz[j] = g[j] if hc[j] > 0 else g[j] * 0
    else:
        for j in range(dz.shape[0]):
            dz[j] = g[j] * (1 - hc[j] * hc[j])



# ------------------------------------------------------------------ simple RNN
@parallel_above(2, size=lambda x, *_: _n_blocks(x.shape[0]))
def rnn_forward(x, W, U, b, h0, t0, t1, reverse, act):
    """Simple RNN over a whole sequence.

    x (B, T, I), W (I, H), U (H, H), b (H,), h0 (B, H), t0/t1 (B,) int64, reverse, act
    -> y (B, T, H), hT (B, H), xs (B*T, I), hs (B*(T+1), H)   (xs, hs: the cache)
    """
    B, T, I = x.shape
    H = U.shape[0]
    dt = x.dtype
    y = np.empty((B, T, H), dtype=dt)
    hT = np.empty((B, H), dtype=dt)
    xs = np.empty((B * T, I), dtype=dt)
    hs = np.empty((B * (T + 1), H), dtype=dt)
    nblk = _n_blocks(B)
    for k in prange(nblk):
        old = _ftz_enter()
        b0, b1 = _bounds(k, B, nblk)
        nb = b1 - b0
        Us = small_operand(U, nb)                   # U cut for the per-step h U
        xb, hb = b0 * T, b0 * (T + 1)
        _gather_steps(x, b0, b1, reverse, xs)
        S = _chunk(nb, T)
        z = np.empty((nb * S, H), dtype=dt)                 # one chunk of steps
        hs[hb:hb + nb] = h0[b0:b1]
        for s in range(T):
            q = s % S
            if q == 0:                                              # input GEMM, S steps
                m = (min(T, s + S) - s) * nb
                np.dot(xs[xb + s * nb:xb + s * nb + m], W, z[:m])
            t = _time(s, T, reverse)
            cur = hb + (s + 1) * nb
            gemm_small(hs[cur - nb:cur], Us, z[q * nb:(q + 1) * nb], 1.0)  # z_s += h U
            for r in range(nb):
                n = b0 + r
                if _valid(t0, t1, n, t):
                    _rnn_row(z[q * nb + r], b, act, hs[cur + r], y[n, t])
                else:
                    _copy_row(hs[cur - nb + r], hs[cur + r])
                    _zero_row(y[n, t])
        hT[b0:b1] = hs[hb + T * nb:hb + (T + 1) * nb]
        _ftz_exit(old)
    return y, hT, xs, hs


@parallel_above(2, size=lambda W, U, t0, *_: _n_blocks(t0.shape[0]))
def rnn_backward(W, U, t0, t1, reverse, act, xs, hs, dy, dhT, need_dx):
    """Gradients of rnn_forward (full BPTT).

    W, U, t0, t1, reverse, act as given to the forward; xs, hs its cache;
    dy (B, T, H) = dL/dy, or an array of shape (B, 0, H) when only the final state is used;
    dhT (B, H) = dL/dhT.
    -> dx (B, T, I) ((0, T, I) unless need_dx), dW (I, H), dU (H, H), db (H,), dh0 (B, H)
    """
    B, H = dhT.shape
    T = xs.shape[0] // B
    I = W.shape[0]
    dt = xs.dtype
    has_dy = dy.shape[1] > 0
    nblk = _n_blocks(B)
    dx = np.empty((B if need_dx else 0, T, I), dtype=dt)
    dh0 = np.empty((B, H), dtype=dt)
    parts = np.empty((nblk, I + 1 + H, H), dtype=dt)        # [dW; db; dU] of each block
    for k in prange(nblk):
        old = _ftz_enter()
        b0, b1 = _bounds(k, B, nblk)
        nb = b1 - b0
        Us = small_operand(U.T, nb)                 # U^T cut for the per-step dA U^T
        hb = b0 * (T + 1)
        S = _chunk(nb, T)
        dZ = np.empty((nb * S, H), dtype=dt)                # one chunk of steps
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
                    if _valid(t0, t1, n, t):
                        _grad_in(dhf, _u(r * H), dyf, _u((n * T + t) * H), has_dy, g, True)
                        _rnn_row_back(g, hs[cur + r], act, dZ[d + r])
                    else:
                        _zero_row(dZ[d + r])        # dh[r] passes through
                gemm_small(dZ[d:d + nb], Us, dh, 1.0)        # dh += dZ_s U^T
            _chunk_grads(xs, hs, b0, b1, q0, q1, T, reverse, dZ, dZ, W, False, parts[k], parts[k],
                         dxs, dx)
        dh0[b0:b1] = dh
        _ftz_exit(old)
    g = _sum_blocks(parts)
    return dx, g[:I].copy(), g[I + 1:].copy(), g[I].copy(), dh0
