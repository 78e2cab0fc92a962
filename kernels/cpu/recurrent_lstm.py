"""LSTM over whole sequences (gate order i, f, g, o): ``lstm_forward`` / ``lstm_backward``
(full BPTT), with its inlined per-row cell.

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

# gate offsets (in units of H) of g and o in a row of i f g o, unsigned like every flat offset
_u2, _u3 = _u(2), _u(3)


@njit(cache=True, inline="always", **_EM)
def _lstm_cell(A, a, b, C, cp, cc, Hs, hc, Y, y, H):
    """One row at a valid step, on flat arrays at offsets: A[a:a + 4H] = x W + h U of the row
    -> i f g o in place; C[cc:] = c_t = f c_{t-1} + i g (c_{t-1} at C[cp:]);
    Hs[hc:] = Y[y:] = h_t = o tanh(c_t)."""
    n = _u(H)
    for j in range(n + n):                          # i, f
        A[a + j] = _sigmoid(A[a + j] + b[j])
    for j in range(n):                              # g
        A[a + _u2 * n + j] = _tanh(A[a + _u2 * n + j] + b[_u2 * n + j])
    for j in range(n):                              # o
        A[a + _u3 * n + j] = _sigmoid(A[a + _u3 * n + j] + b[_u3 * n + j])
    for j in range(n):
        C[cc + j] = A[a + n + j] * C[cp + j] + A[a + j] * A[a + _u2 * n + j]
    for j in range(n):
        v = A[a + _u3 * n + j] * _tanh(C[cc + j])
        Hs[hc + j] = v
        Y[y + j] = v


@njit(cache=True, inline="always", **_EM)
def _lstm_cell_back(g, A, a, C, cp, cc, DC, dc, D, d, H):
    """One row of the LSTM backward at a valid step, on flat arrays at offsets: g (H) =
    dL/dh_t, A[a:a + 4H] = i f g o, C[cp:], C[cc:] = c_{t-1}, c_t, DC[dc:] = dL/dc_t from later
    steps (updated in place to dL/dc_{t-1}), D[d:d + 4H] <- dL/d(pre-activations)."""
    n = _u(H)
    for j in range(n):                              # o, and dc += dL/dh_t o tanh'(c_t)
        tc = _tanh(C[cc + j])
        o = A[a + _u3 * n + j]
        DC[dc + j] = DC[dc + j] + g[j] * o * (1 - tc * tc)
        D[d + _u3 * n + j] = g[j] * tc * o * (1 - o)
    for j in range(n):                              # i
        i = A[a + j]
        D[d + j] = DC[dc + j] * A[a + _u2 * n + j] * i * (1 - i)
    for j in range(n):                              # g
        gg = A[a + _u2 * n + j]
        D[d + _u2 * n + j] = DC[dc + j] * A[a + j] * (1 - gg * gg)
    for j in range(n):                              # f, and dc *= f
        f = A[a + n + j]
        D[d + n + j] = DC[dc + j] * C[cp + j] * f * (1 - f)
        DC[dc + j] = DC[dc + j] * f



# ------------------------------------------------------------------ LSTM
@parallel_above(2, size=lambda x, *_: _n_blocks(x.shape[0]))
def lstm_forward(x, W, U, b, h0, c0, t0, t1, reverse):
    """LSTM over a whole sequence (gate order i, f, g, o).

    x (B, T, I), W (I, 4H), U (H, 4H), b (4H,), h0 (B, H), c0 (B, H), t0/t1 (B,) int64
    -> y (B, T, H), hT (B, H), cT (B, H),
       xs (B*T, I), acts (B*T, 4H) [i f g o after their nonlinearities; 0 at invalid steps],
       hs (B*(T+1), H), cs (B*(T+1), H)                       (the cache)
    """
    B, T, I = x.shape
    H = U.shape[0]
    G = 4 * H
    dt = x.dtype
    y = np.empty((B, T, H), dtype=dt)
    hT = np.empty((B, H), dtype=dt)
    cT = np.empty((B, H), dtype=dt)
    xs = np.empty((B * T, I), dtype=dt)
    acts = np.empty((B * T, G), dtype=dt)
    hs = np.empty((B * (T + 1), H), dtype=dt)
    cs = np.empty((B * (T + 1), H), dtype=dt)
    nblk = _n_blocks(B)
    for k in prange(nblk):
        old = _ftz_enter()
        b0, b1 = _bounds(k, B, nblk)
        nb = b1 - b0
        Us = small_operand(U, nb)                   # U cut for the per-step h U
        xb, hb = b0 * T, b0 * (T + 1)
        _gather_steps(x, b0, b1, reverse, xs)
        hs[hb:hb + nb] = h0[b0:b1]
        cs[hb:hb + nb] = c0[b0:b1]
        af, cf, hf, yf = acts.reshape(-1), cs.reshape(-1), hs.reshape(-1), y.reshape(-1)
        S = _chunk(nb, T)
        for s in range(T):
            if s % S == 0:                                          # input GEMM, S steps
                q = xb + s * nb
                e = xb + min(T, s + S) * nb
                np.dot(xs[q:e], W, acts[q:e])
            t = _time(s, T, reverse)
            cur = hb + (s + 1) * nb
            gemm_small(hs[cur - nb:cur], Us, acts[xb + s * nb:xb + (s + 1) * nb], 1.0)
            for r in range(nb):                                     # ^ acts_s += h U
                n = b0 + r
                if _valid(t0, t1, n, t):
                    _lstm_cell(af, _u((xb + s * nb + r) * G), b, cf, _u((cur - nb + r) * H),
                               _u((cur + r) * H), hf, _u((cur + r) * H), yf, _u((n * T + t) * H), H)
                else:
                    _zero_row(acts[xb + s * nb + r])
                    _copy_row(cs[cur - nb + r], cs[cur + r])
                    _copy_row(hs[cur - nb + r], hs[cur + r])
                    _zero_row(y[n, t])
        hT[b0:b1] = hs[hb + T * nb:hb + (T + 1) * nb]
        cT[b0:b1] = cs[hb + T * nb:hb + (T + 1) * nb]
        _ftz_exit(old)
    return y, hT, cT, xs, acts, hs, cs


@parallel_above(2, size=lambda W, U, t0, *_: _n_blocks(t0.shape[0]))
def lstm_backward(W, U, t0, t1, reverse, xs, acts, hs, cs, dy, dhT, dcT, need_dx):
    """Gradients of lstm_forward (full BPTT).

    W, U, t0, t1, reverse as given to the forward; xs, acts, hs, cs its cache;
    dy (B, T, H) = dL/dy, or shape (B, 0, H) when only the final state is used;
    dhT, dcT (B, H) = dL/dhT, dL/dcT.
    -> dx (B, T, I) ((0, T, I) unless need_dx), dW (I, 4H), dU (H, 4H), db (4H,),
       dh0 (B, H), dc0 (B, H)
    """
    B, H = dhT.shape
    T = xs.shape[0] // B
    I = W.shape[0]
    G = 4 * H
    dt = xs.dtype
    has_dy = dy.shape[1] > 0
    nblk = _n_blocks(B)
    dx = np.empty((B if need_dx else 0, T, I), dtype=dt)
    dh0 = np.empty((B, H), dtype=dt)
    dc0 = np.empty((B, H), dtype=dt)
    parts = np.empty((nblk, I + 1 + H, G), dtype=dt)        # [dW; db; dU] of each block
    for k in prange(nblk):
        old = _ftz_enter()
        b0, b1 = _bounds(k, B, nblk)
        nb = b1 - b0
        Us = small_operand(U.T, nb)                 # U^T cut for the per-step dA U^T
        xb, hb = b0 * T, b0 * (T + 1)
        S = _chunk(nb, T)
        dA = np.empty((nb * S, G), dtype=dt)                # one chunk of steps
        dxs = np.empty((nb * S if need_dx else 0, I), dtype=dt)
        dh = dhT[b0:b1].copy()
        dc = dcT[b0:b1].copy()
        g = np.empty(H, dtype=dt)
        af, cf, dcf, dAf = acts.reshape(-1), cs.reshape(-1), dc.reshape(-1), dA.reshape(-1)
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
                        _lstm_cell_back(g, af, _u((xb + s * nb + r) * G), cf,
                                        _u((cur - nb + r) * H), _u((cur + r) * H), dcf, _u(r * H),
                                        dAf, _u((d + r) * G), H)
                    else:
                        _zero_row(dA[d + r])        # dh[r], dc[r] pass through
                gemm_small(dA[d:d + nb], Us, dh, 1.0)        # dh += dA_s U^T
            _chunk_grads(xs, hs, b0, b1, q0, q1, T, reverse, dA, dA, W, False, parts[k], parts[k],
                         dxs, dx)
        dh0[b0:b1] = dh
        dc0[b0:b1] = dc
        _ftz_exit(old)
    g = _sum_blocks(parts)
    return dx, g[:I].copy(), g[I + 1:].copy(), g[I].copy(), dh0, dc0
