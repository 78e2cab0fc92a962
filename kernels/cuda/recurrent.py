"""Recurrent layers (simple RNN, LSTM, GRU) over whole sequences on the GPU, forward and full
BPTT; mirrors kernels.cpu.recurrent (same names, arguments, cells, gate orders, validity
ranges t0/t1, reverse processing and results; see its docstring).

Cache layout: the CPU's with the whole batch as one block, i.e. step-major rows
``xs/acts/un[s*B + n]`` and ``hs/cs[s*B + n]`` (s = 0 the initial state); identical to the CPU's
whenever the CPU uses one block (B < 32).  A cache is consumed by the backward of the same
backend.

Work to threads, per sequence:

* gather: xs[s*B + n] = x[n, t(s)], one thread per element, coalesced along features;
* the input GEMM for all steps at once: xs (B*T, I) @ W with ``kernels.cuda.dense.gemm``;
* per step: one recurrent GEMM h_{s} (B, H) @ U (the step's rows of hs are contiguous), then
  one fused gate kernel, a thread per (batch row, hidden unit): it reads that unit's G gate
  pre-activations (columns j, H + j, ...; consecutive threads on consecutive j, coalesced),
  applies the nonlinearities, updates c and h, writes y and the cache, or passes the state
  through at an invalid step;
* backward per step (reverse order): a fused gate-gradient kernel per (row, unit), one
  recurrent GEMM dA_s @ U^T, and a kernel that takes the result into dL/dh (valid rows only);
* then dW = xs^T dA, dU = hprev^T dR and dx = dA W^T as three GEMMs over all steps, and the
  bias gradients as deterministic two-pass column sums.  No atomics anywhere.
"""
import math

from numba import cuda

from ._launch import empty, grid_1d
from .dense import colsum, gemm

ACT_TANH, ACT_RELU = 0, 1


@cuda.jit(device=True, inline=True)
def _sig(x, one):
    return one / (one + math.exp(-x))


@cuda.jit(device=True, inline=True)
def _valid(t0, t1, n, t):
    return t0[n] <= t and t < t1[n]


@cuda.jit
def _gather(x, xs, reverse):
    B, T, I = x.shape
    for e in range(cuda.grid(1), B * T * I, cuda.gridsize(1)):
        i = e % I
        r = e // I
        n = r % B
        s = r // B
        xs[r, i] = x[n, T - 1 - s if reverse else s, i]


@cuda.jit
def _scatter(dxs, dx, reverse):
    B, T, I = dx.shape
    for e in range(cuda.grid(1), B * T * I, cuda.gridsize(1)):
        i = e % I
        r = e // I
        n = r % B
        s = r // B
        dx[n, T - 1 - s if reverse else s, i] = dxs[r, i]


@cuda.jit
def _copy2(src, dst):
    M = src.shape[1]
    for e in range(cuda.grid(1), src.shape[0] * M, cuda.gridsize(1)):
        dst[e // M, e % M] = src[e // M, e % M]


def _ew(kernel, n, *args):
    if n:
        kernel[grid_1d(n)](*args)


def _copy(src, dst):
    _ew(_copy2, src.shape[0] * src.shape[1], src, dst)


# ------------------------------------------------------------------ simple RNN
@cuda.jit
def _rnn_step(z, u, b, hs, y, t0, t1, s, t, act, zero):
    B, H = u.shape
    for e in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        n = e // H
        j = e - n * H
        cur = (s + 1) * B + n
        if _valid(t0, t1, n, t):
            v = z[s * B + n, j] + u[n, j] + b[j]
            v = max(v, zero) if act == ACT_RELU else math.tanh(v)
            hs[cur, j] = v
            y[n, t, j] = v
        else:
            hs[cur, j] = hs[cur - B, j]
            y[n, t, j] = zero


@cuda.jit
def _rnn_step_back(dh, dy, has_dy, hs, dZ, t0, t1, s, t, act, one, zero):
    B, H = dh.shape
    for e in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        n = e // H
        j = e - n * H
        row = s * B + n
        if _valid(t0, t1, n, t):
            g = dh[n, j] + dy[n, t, j] if has_dy else dh[n, j]
            h = hs[(s + 1) * B + n, j]
            if act == ACT_RELU:
                dZ[row, j] = g if h > zero else zero
            else:
                dZ[row, j] = g * (one - h * h)
        else:
            dZ[row, j] = zero


@cuda.jit
def _take_dh(tmp, direct, has_direct, dh, t0, t1, t):
    """dh[n] = tmp[n] (+ direct[n]) for the rows valid at step t; others keep their dh."""
    B, H = dh.shape
    for e in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        n = e // H
        j = e - n * H
        if _valid(t0, t1, n, t):
            dh[n, j] = tmp[n, j] + direct[n, j] if has_direct else tmp[n, j]


def _time(s, T, reverse):
    return T - 1 - s if reverse else s


def _gather_all(x, reverse):
    B, T, I = x.shape
    xs = empty((B * T, I), x.dtype)
    _ew(_gather, B * T * I, x, xs, bool(reverse))
    return xs


def _scatter_all(dxs, B, T, I, reverse, dt):
    dx = empty((B, T, I), dt)
    _ew(_scatter, B * T * I, dxs, dx, bool(reverse))
    return dx


def rnn_forward(x, W, U, b, h0, t0, t1, reverse, act):
    """Simple RNN: -> y (B, T, H), hT (B, H), xs (B*T, I), hs (B*(T+1), H)."""
    B, T, I = x.shape
    H = U.shape[0]
    dt = x.dtype
    zero = dt.type(0)
    y = empty((B, T, H), dt)
    hs = empty((B * (T + 1), H), dt)
    xs = _gather_all(x, reverse)
    z = gemm(xs, W)                                     # input GEMM, all steps
    _copy(h0, hs[:B])
    tmp = empty((B, H), dt)
    for s in range(T):
        t = _time(s, T, reverse)
        gemm(hs[s * B:(s + 1) * B], U, out=tmp)         # recurrent GEMM
        _ew(_rnn_step, B * H, z, tmp, b, hs, y, t0, t1, s, t, act, zero)
    hT = empty((B, H), dt)
    _copy(hs[T * B:], hT)
    return y, hT, xs, hs


def _param_grads(xs, hs, dA, dR, W, B, T, reverse, need_dx, with_dbh):
    I = W.shape[0]
    dW = gemm(xs, dA, ta=True)
    dU = gemm(hs[:B * T], dR, ta=True)
    db = colsum(dA)
    dbh = colsum(dR) if with_dbh else None
    if need_dx:
        dx = _scatter_all(gemm(dA, W, tb=True), B, T, I, reverse, xs.dtype)
    else:
        dx = empty((0, T, I), xs.dtype)
    return dx, dW, dU, db, dbh


def rnn_backward(W, U, t0, t1, reverse, act, xs, hs, dy, dhT, need_dx):
    """Gradients of rnn_forward: dx, dW, dU, db, dh0 (see kernels.cpu.recurrent)."""
    B, H = dhT.shape
    T = xs.shape[0] // B if B else 0
    dt = xs.dtype
    one, zero = dt.type(1), dt.type(0)
    has_dy = dy.shape[1] > 0
    dZ = empty((B * T, H), dt)
    dh = empty((B, H), dt)
    _copy(dhT, dh)
    tmp = empty((B, H), dt)
    for s in range(T - 1, -1, -1):
        t = _time(s, T, reverse)
        _ew(_rnn_step_back, B * H, dh, dy, has_dy, hs, dZ, t0, t1, s, t, act, one, zero)
        gemm(dZ[s * B:(s + 1) * B], U, tb=True, out=tmp)
        _ew(_take_dh, B * H, tmp, tmp, False, dh, t0, t1, t)
    dx, dW, dU, db, _ = _param_grads(xs, hs, dZ, dZ, W, B, T, reverse, need_dx, False)
    return dx, dW, dU, db, dh


# ------------------------------------------------------------------ LSTM
@cuda.jit
def _lstm_step(acts, u, b, hs, cs, y, t0, t1, s, t, one, zero):
    B, H = u.shape[0], u.shape[1] // 4
    for e in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        n = e // H
        j = e - n * H
        row = s * B + n
        cur = (s + 1) * B + n
        if _valid(t0, t1, n, t):
            ai = _sig(acts[row, j] + u[n, j] + b[j], one)
            af = _sig(acts[row, H + j] + u[n, H + j] + b[H + j], one)
            ag = math.tanh(acts[row, 2 * H + j] + u[n, 2 * H + j] + b[2 * H + j])
            ao = _sig(acts[row, 3 * H + j] + u[n, 3 * H + j] + b[3 * H + j], one)
            acts[row, j] = ai
            acts[row, H + j] = af
            acts[row, 2 * H + j] = ag
            acts[row, 3 * H + j] = ao
            c = af * cs[cur - B, j] + ai * ag
            h = ao * math.tanh(c)
            cs[cur, j] = c
            hs[cur, j] = h
            y[n, t, j] = h
        else:
            for q in range(4):
                acts[row, q * H + j] = zero
            cs[cur, j] = cs[cur - B, j]
            hs[cur, j] = hs[cur - B, j]
            y[n, t, j] = zero


@cuda.jit
def _lstm_step_back(dh, dy, has_dy, acts, cs, dc, dA, t0, t1, s, t, one, zero):
    B, H = dh.shape
    for e in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        n = e // H
        j = e - n * H
        row = s * B + n
        if _valid(t0, t1, n, t):
            g = dh[n, j] + dy[n, t, j] if has_dy else dh[n, j]
            i, f = acts[row, j], acts[row, H + j]
            gg, o = acts[row, 2 * H + j], acts[row, 3 * H + j]
            cc, cp = cs[(s + 1) * B + n, j], cs[s * B + n, j]
            tc = math.tanh(cc)
            d = dc[n, j] + g * o * (one - tc * tc)
            dA[row, 3 * H + j] = g * tc * o * (one - o)
            dA[row, j] = d * gg * i * (one - i)
            dA[row, 2 * H + j] = d * i * (one - gg * gg)
            dA[row, H + j] = d * cp * f * (one - f)
            dc[n, j] = d * f
        else:
            for q in range(4):
                dA[row, q * H + j] = zero


def lstm_forward(x, W, U, b, h0, c0, t0, t1, reverse):
    """LSTM: -> y, hT, cT, xs, acts, hs, cs (see kernels.cpu.recurrent.lstm_forward)."""
    B, T, I = x.shape
    H = U.shape[0]
    dt = x.dtype
    one, zero = dt.type(1), dt.type(0)
    y = empty((B, T, H), dt)
    hs = empty((B * (T + 1), H), dt)
    cs = empty((B * (T + 1), H), dt)
    xs = _gather_all(x, reverse)
    acts = gemm(xs, W)                                  # input GEMM, all steps
    _copy(h0, hs[:B])
    _copy(c0, cs[:B])
    tmp = empty((B, 4 * H), dt)
    for s in range(T):
        t = _time(s, T, reverse)
        gemm(hs[s * B:(s + 1) * B], U, out=tmp)         # recurrent GEMM
        _ew(_lstm_step, B * H, acts, tmp, b, hs, cs, y, t0, t1, s, t, one, zero)
    hT, cT = empty((B, H), dt), empty((B, H), dt)
    _copy(hs[T * B:], hT)
    _copy(cs[T * B:], cT)
    return y, hT, cT, xs, acts, hs, cs


def lstm_backward(W, U, t0, t1, reverse, xs, acts, hs, cs, dy, dhT, dcT, need_dx):
    """Gradients of lstm_forward: dx, dW, dU, db, dh0, dc0."""
    B, H = dhT.shape
    T = xs.shape[0] // B if B else 0
    dt = xs.dtype
    one, zero = dt.type(1), dt.type(0)
    has_dy = dy.shape[1] > 0
    dA = empty((B * T, 4 * H), dt)
    dh, dc = empty((B, H), dt), empty((B, H), dt)
    _copy(dhT, dh)
    _copy(dcT, dc)
    tmp = empty((B, H), dt)
    for s in range(T - 1, -1, -1):
        t = _time(s, T, reverse)
        _ew(_lstm_step_back, B * H, dh, dy, has_dy, acts, cs, dc, dA, t0, t1, s, t, one, zero)
        gemm(dA[s * B:(s + 1) * B], U, tb=True, out=tmp)
        _ew(_take_dh, B * H, tmp, tmp, False, dh, t0, t1, t)
    dx, dW, dU, db, _ = _param_grads(xs, hs, dA, dA, W, B, T, reverse, need_dx, False)
    return dx, dW, dU, db, dh, dc


# ------------------------------------------------------------------ GRU
@cuda.jit
def _gru_step(acts, u, b, bh, un, hs, y, t0, t1, s, t, one, zero):
    B, H = u.shape[0], u.shape[1] // 3
    for e in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        n = e // H
        j = e - n * H
        row = s * B + n
        cur = (s + 1) * B + n
        if _valid(t0, t1, n, t):
            r = _sig(acts[row, j] + b[j] + u[n, j] + bh[j], one)
            z = _sig(acts[row, H + j] + b[H + j] + u[n, H + j] + bh[H + j], one)
            unr = u[n, 2 * H + j] + bh[2 * H + j]
            nn = math.tanh(acts[row, 2 * H + j] + b[2 * H + j] + r * unr)
            acts[row, j] = r
            acts[row, H + j] = z
            acts[row, 2 * H + j] = nn
            un[row, j] = unr
            h = nn + z * (hs[cur - B, j] - nn)
            hs[cur, j] = h
            y[n, t, j] = h
        else:
            for q in range(3):
                acts[row, q * H + j] = zero
            un[row, j] = zero
            hs[cur, j] = hs[cur - B, j]
            y[n, t, j] = zero


@cuda.jit
def _gru_step_back(dh, dy, has_dy, acts, un, hs, dA, dR, direct, t0, t1, s, t, one, zero):
    B, H = dh.shape
    for e in range(cuda.grid(1), B * H, cuda.gridsize(1)):
        n = e // H
        j = e - n * H
        row = s * B + n
        if _valid(t0, t1, n, t):
            g = dh[n, j] + dy[n, t, j] if has_dy else dh[n, j]
            r, z, nn = acts[row, j], acts[row, H + j], acts[row, 2 * H + j]
            dan = g * (one - z) * (one - nn * nn)
            direct[n, j] = g * z
            vz = g * (hs[s * B + n, j] - nn) * z * (one - z)
            vr = dan * un[row, j] * r * (one - r)
            dA[row, j] = vr
            dA[row, H + j] = vz
            dA[row, 2 * H + j] = dan
            dR[row, j] = vr
            dR[row, H + j] = vz
            dR[row, 2 * H + j] = dan * r
        else:
            for q in range(3):
                dA[row, q * H + j] = zero
                dR[row, q * H + j] = zero


def gru_forward(x, W, U, b, bh, h0, t0, t1, reverse):
    """GRU: -> y, hT, xs, acts, un, hs (see kernels.cpu.recurrent.gru_forward)."""
    B, T, I = x.shape
    H = U.shape[0]
    dt = x.dtype
    one, zero = dt.type(1), dt.type(0)
    y = empty((B, T, H), dt)
    hs = empty((B * (T + 1), H), dt)
    un = empty((B * T, H), dt)
    xs = _gather_all(x, reverse)
    acts = gemm(xs, W)                                  # input GEMM, all steps
    _copy(h0, hs[:B])
    tmp = empty((B, 3 * H), dt)
    for s in range(T):
        t = _time(s, T, reverse)
        gemm(hs[s * B:(s + 1) * B], U, out=tmp)         # recurrent GEMM
        _ew(_gru_step, B * H, acts, tmp, b, bh, un, hs, y, t0, t1, s, t, one, zero)
    hT = empty((B, H), dt)
    _copy(hs[T * B:], hT)
    return y, hT, xs, acts, un, hs


def gru_backward(W, U, t0, t1, reverse, xs, acts, un, hs, dy, dhT, need_dx):
    """Gradients of gru_forward: dx, dW, dU, db, dbh, dh0."""
    B, H = dhT.shape
    T = xs.shape[0] // B if B else 0
    dt = xs.dtype
    one, zero = dt.type(1), dt.type(0)
    has_dy = dy.shape[1] > 0
    dA = empty((B * T, 3 * H), dt)
    dR = empty((B * T, 3 * H), dt)
    direct = empty((B, H), dt)
    dh = empty((B, H), dt)
    _copy(dhT, dh)
    tmp = empty((B, H), dt)
    for s in range(T - 1, -1, -1):
        t = _time(s, T, reverse)
        _ew(_gru_step_back, B * H, dh, dy, has_dy, acts, un, hs, dA, dR, direct, t0, t1, s, t,
            one, zero)
        gemm(dR[s * B:(s + 1) * B], U, tb=True, out=tmp)
        _ew(_take_dh, B * H, tmp, direct, True, dh, t0, t1, t)
    dx, dW, dU, db, dbh = _param_grads(xs, hs, dA, dR, W, B, T, reverse, need_dx, True)
    return dx, dW, dU, db, dbh, dh


# ------------------------------------------------------------------ the cells' functions
@cuda.jit
def _map(x, y, which, one):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        y[i] = _sig(x[i], one) if which == 0 else math.tanh(x[i])


def sigmoid(x):
    """The kernels' sigmoid over a 1-D device array."""
    y = empty(x.shape, x.dtype)
    _ew(_map, x.shape[0], x, y, 0, x.dtype.type(1))
    return y


def tanh(x):
    """The kernels' tanh over a 1-D device array."""
    y = empty(x.shape, x.dtype)
    _ew(_map, x.shape[0], x, y, 1, x.dtype.type(1))
    return y
