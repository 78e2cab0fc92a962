"""Direct convolution (stride 1): ``conv2d_forward_direct`` / ``conv2d_backward_direct``.

Arguments and the choice between algorithms: conv.py's docstring.  Shared helpers:
_conv_common.py (after editing that file, clear the Numba caches as its docstring says).
"""
import numpy as np
from numba import njit, prange

from ._conv_common import _FM, ACT_NONE, ACT_RELU, U, _activate, _activation_grad, _u0


# ----------------------------------------------------------------------------------- direct
#
# The direct algorithm uses "wide" planes: an input plane (zero-padded into a buffer when there
# is padding) is read with its own row length Wp, and the output is computed as one flat vector
# of length L = (OH-1)*Wp + OW over that row length (the Wp-OW entries past each output row are
# junk and never copied out).  Tap (kh, kw) then reads the input plane at the flat offset
# kh*dh*Wp + kw*dw, so every tap is one long, contiguous, vectorisable loop instead of OH short
# rows.  Taps are applied three at a time (one pass over the accumulator per three taps; a 3x3
# filter on one channel goes its own way, below).  This needs stride 1; strided convolutions go
# to im2col.


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _taps_plane(acc, src, base, stride, w, Cg, KH, KW, dh, dw, Wp):
    """acc[i] += sum_{ci,kh,kw} w[(ci*KH + kh)*KW + kw] * src[o + i] for i < len(acc), with
    o = base + ci*stride + kh*dh*Wp + kw*dw: every tap of one output plane, three taps per pass
    over acc."""
    L = U(acc.shape[0])
    ud = U(dw)
    for ci in range(Cg):
        for kh in range(KH):
            for kw in range(0, KW, 3):
                t = (ci * KH + kh) * KW + kw
                o = U(base + ci * stride + kh * dh * Wp + kw * dw)
                r = min(3, KW - kw)
                if r == 3:
                    w0, w1, w2 = w[t], w[t + 1], w[t + 2]
                    o1 = o + ud
                    o2 = o1 + ud
                    for i in range(L):
                        acc[i] += w0 * src[o + i] + w1 * src[o1 + i] + w2 * src[o2 + i]
                elif r == 2:
                    w0, w1 = w[t], w[t + 1]
                    o1 = o + ud
                    for i in range(L):
                        acc[i] += w0 * src[o + i] + w1 * src[o1 + i]
                else:
                    w0 = w[t]
                    for i in range(L):
                        acc[i] += w0 * src[o + i]


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _taps_dots(g, src, base, stride, Cg, KH, KW, dh, dw, Wp, out):
    """out[(ci*KH + kh)*KW + kw] += sum_i g[i] * src[base + ci*stride + kh*dh*Wp + kw*dw + i]
    for i < len(g): the weight gradient of every tap from one plane pair, three taps per pass.
    Each sum is a pure reduction (see _FM), added to ``out`` afterwards."""
    L = U(g.shape[0])
    ud = U(dw)
    z = g.dtype.type(0)
    for ci in range(Cg):
        for kh in range(KH):
            for kw in range(0, KW, 3):
                t = (ci * KH + kh) * KW + kw
                o = U(base + ci * stride + kh * dh * Wp + kw * dw)
                r = min(3, KW - kw)
                s0, s1, s2 = z, z, z
                if r == 3:
                    o1 = o + ud
                    o2 = o1 + ud
                    for i in range(L):
                        gi = g[i]
                        s0 += gi * src[o + i]
                        s1 += gi * src[o1 + i]
                        s2 += gi * src[o2 + i]
                    out[t + 1] += s1
                    out[t + 2] += s2
                elif r == 2:
                    o1 = o + ud
                    for i in range(L):
                        gi = g[i]
                        s0 += gi * src[o + i]
                        s1 += gi * src[o1 + i]
                    out[t + 1] += s1
                else:
                    for i in range(L):
                        s0 += g[i] * src[o + i]
                out[t] += s0


# A 3x3 filter on one channel (a first layer) goes further: three column-shifted copies of the
# input plane with the output's row length, X_kw[r*OW + ow] = plane[r, ow + kw*dw], made once
# per plane and shared by every output channel, turn tap (kh, kw) into the flat slice of X_kw
# at kh*dh*OW of the output plane's length.  The nine taps then write the output plane in
# place and read the gradient plane in place (no wide buffer, no copy-out; with the wide
# buffer, conv 1->32 on (128, 1, 28, 28) took 0.35 + 0.45 ms forward + weight gradient).


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _shifts3(src, base, Wp, Hp, OW, dw, X):
    """X[(kw*Hp + r)*OW + ow] = src[base + r*Wp + ow + kw*dw] for kw < 3, r < Hp, ow < OW."""
    uOW = U(OW)
    for kw in range(3):
        for r in range(Hp):
            d = U((kw * Hp + r) * OW)
            q = U(base + r * Wp + kw * dw)
            for ow in range(uOW):
                X[d + ow] = src[q + ow]


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _taps9_plane(yf, q, X, Hp, w, bv, dh, OH, OW, act):
    """yf[q + i] = act(bv + sum_{kh,kw} w[kh*3 + kw] X[(kw*Hp + kh*dh)*OW + i]) for i < OH*OW:
    one output plane of a 3x3 single-channel filter from _shifts3's X, in one pass."""
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8]
    one = bv * 0 + 1
    M = U(Hp * OW)
    r1 = U(dh * OW)
    r2 = r1 + r1
    c1 = M
    c2 = M + M
    n = U(OH * OW)
    if act == ACT_RELU:
        z = bv * 0
        for i in range(n):
            yf[q + i] = max(z, bv + w0 * X[i] + w1 * X[c1 + i] + w2 * X[c2 + i]
                            + w3 * X[r1 + i] + w4 * X[c1 + r1 + i] + w5 * X[c2 + r1 + i]
                            + w6 * X[r2 + i] + w7 * X[c1 + r2 + i] + w8 * X[c2 + r2 + i])
        return
    for i in range(n):
        yf[q + i] = (bv + w0 * X[i] + w1 * X[c1 + i] + w2 * X[c2 + i]
                     + w3 * X[r1 + i] + w4 * X[c1 + r1 + i] + w5 * X[c2 + r1 + i]
                     + w6 * X[r2 + i] + w7 * X[c1 + r2 + i] + w8 * X[c2 + r2 + i])
    if act != ACT_NONE:         # a separate pass: _activate's branches keep a loop scalar
        for i in range(n):
            yf[q + i] = _activate(yf[q + i], act, one)


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _taps9_dots(g, go, X, Hp, dh, OH, OW, out):
    """out[kh*3 + kw] += sum_i g[go + i] X[(kw*Hp + kh*dh)*OW + i] for i < OH*OW: the nine
    weight-gradient sums of one gradient plane (read in place) against _shifts3's X, in one
    pass.  Returns sum_i g[go + i], the plane's share of db.  Pure reductions (see _FM), added
    to ``out`` afterwards."""
    M = U(Hp * OW)
    r1 = U(dh * OW)
    r2 = r1 + r1
    c1 = M
    c2 = M + M
    z = g.dtype.type(0)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = sb = z
    for i in range(U(OH * OW)):
        gi = g[go + i]
        sb += gi
        s0 += gi * X[i]
        s1 += gi * X[c1 + i]
        s2 += gi * X[c2 + i]
        s3 += gi * X[r1 + i]
        s4 += gi * X[c1 + r1 + i]
        s5 += gi * X[c2 + r1 + i]
        s6 += gi * X[r2 + i]
        s7 += gi * X[c1 + r2 + i]
        s8 += gi * X[c2 + r2 + i]
    out[0] += s0
    out[1] += s1
    out[2] += s2
    out[3] += s3
    out[4] += s4
    out[5] += s5
    out[6] += s6
    out[7] += s7
    out[8] += s8
    return sb


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _pad_planes(x, n, c0, Cg, pt, pl, Hn, Wn, buf):
    """Copy the planes x[n, c0:c0+Cg] into buf as (Cg, Hn, Wn) with the padding applied
    (zeros outside the input)."""
    C, H, Wd = x.shape[1], x.shape[2], x.shape[3]
    xf = x.reshape(-1)
    z = x.dtype.type(0)
    q0, q1 = min(pl, Wn), max(min(pl, Wn), min(Wn, pl + Wd))   # columns that hold input
    head, cnt, tail, uW = U(q0), U(q1 - q0), U(Wn - q1), U(Wn)
    for ci in range(Cg):
        for r in range(Hn):
            d = U((ci * Hn + r) * Wn)
            ih = r - pt
            if ih < 0 or ih >= H:
                for q in range(uW):
                    buf[d + q] = z
                continue
            for q in range(head):
                buf[d + q] = z
            dm = d + head
            sm = U(((n * C + c0 + ci) * H + ih) * Wd + q0 - pl)
            for q in range(cnt):
                buf[dm + q] = xf[sm + q]
            de = dm + cnt
            for q in range(tail):
                buf[de + q] = z


@njit(parallel=True, cache=True, error_model="numpy", fastmath=_FM)
def conv2d_forward_direct(x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act):
    """Direct convolution, stride 1 only (sh = sw = 1): y (N, C_out, OH, OW); see the module
    docstring for the arguments."""
    N, C, H, Wd = x.shape
    Cout, Cg, KH, KW = W.shape
    cout_g = Cout // groups
    y = np.empty((N, Cout, OH, OW), dtype=x.dtype)
    yf = y.reshape(-1)
    one = x.dtype.type(1)
    Hn, Wn = (OH - 1) * sh + (KH - 1) * dh + 1, (OW - 1) * sw + (KW - 1) * dw + 1
    Wf = W.reshape(Cout, Cg * KH * KW)
    view = pt == 0 and pl == 0 and Hn <= H and Wn <= Wd     # read x in place, no padding copy
    Hp, Wp = (H, Wd) if view else (Hn, Wn)
    L = (OH - 1) * Wp + OW
    xflat = x.reshape(-1)
    uOW = U(OW)
    nine = KH == 3 and KW == 3 and Cg == 1          # one pass for all nine taps
    # work items: (sample, group, block of the group's output channels)
    cb = max(1, min(cout_g, 64 // max(1, N * groups)))
    items = N * groups * cb
    for it in prange(items):
        n = it // (groups * cb)
        grp = (it // cb) % groups
        q = it % cb
        co0 = grp * cout_g + q * cout_g // cb
        co1 = grp * cout_g + (q + 1) * cout_g // cb
        pad = np.empty(0 if view else Cg * Hn * Wn, dtype=x.dtype)
        X = np.empty(3 * Hp * OW if nine else 0, dtype=x.dtype)
        if view:
            src, base = xflat, (n * C + grp * Cg) * H * Wd
        else:
            _pad_planes(x, n, grp * Cg, Cg, pt, pl, Hn, Wn, pad)
            src, base = pad, 0
        if nine:
            _shifts3(src, base, Wp, Hp, OW, dw, X)
            for co in range(co0, co1):
                _taps9_plane(yf, U((n * Cout + co) * OH * OW), X, Hp, Wf[co], b[co], dh, OH, OW,
                             act)
            continue
        acc = np.empty(L, dtype=x.dtype)
        for co in range(co0, co1):
            bv = b[co]
            for i in range(L):
                acc[i] = bv
            _taps_plane(acc, src, base, Hp * Wp, Wf[co], Cg, KH, KW, dh, dw, Wp)
            for oh in range(OH):
                s = U(oh * Wp)
                d = U(((n * Cout + co) * OH + oh) * OW)
                for ow in range(uOW):
                    yf[d + ow] = _activate(acc[s + ow], act, one)
    return y


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _wide_grad(dy, y, n, co, act, Wp, M, gw):
    """gw[M + oh*Wp + ow] = dy[n, co, oh, ow] * act'(y[n, co, oh, ow]) (y is not read without
    an activation); the rest of gw is left as it is: the caller zeroes gw once and every call
    rewrites the same entries.  Returns the sum of the gradient over the plane (the sample's
    share of db[co])."""
    Cout, OH, OW = dy.shape[1], dy.shape[2], dy.shape[3]
    dyf, yf = dy.reshape(-1), y.reshape(-1)
    z = dy.dtype.type(0)
    one = dy.dtype.type(1)
    uOW = U(OW)
    for oh in range(OH):
        d = U(M + oh * Wp)
        s = U(((n * Cout + co) * OH + oh) * OW)
        if act == ACT_NONE:
            for ow in range(uOW):
                gw[d + ow] = dyf[s + ow]
        else:
            for ow in range(uOW):
                gw[d + ow] = dyf[s + ow] * _activation_grad(yf[s + ow], act, one)
    t = z
    g0 = U(M)
    for i in range(U((OH - 1) * Wp + OW)):        # a pure reduction: see _FM
        t += gw[g0 + i]
    return t


@njit(parallel=True, cache=True, error_model="numpy", fastmath=_FM)
def _direct_dw_db(x, y, dy, KH, KW, sh, sw, pt, pl, dh, dw, groups, act):
    """dW (C_out, Cg, KH, KW) and db (C_out,), parallel over a fixed number of sample chunks
    (each reads its samples' gradient planes once, in memory order, and pads each input plane
    once for all output channels); each chunk sums its samples in order into its own partial,
    the partials are summed in chunk order."""
    N, C, H, Wd = x.shape
    Cout, OH, OW = dy.shape[1], dy.shape[2], dy.shape[3]
    Cg = C // groups
    cout_g = Cout // groups
    K = Cg * KH * KW
    Hn, Wn = (OH - 1) * sh + (KH - 1) * dh + 1, (OW - 1) * sw + (KW - 1) * dw + 1
    view = pt == 0 and pl == 0 and Hn <= H and Wn <= Wd     # read x in place, no padding copy
    Hp, Wp = (H, Wd) if view else (Hn, Wn)
    L = (OH - 1) * Wp + OW
    xflat = x.reshape(-1)
    nine = KH == 3 and KW == 3 and Cg == 1          # one pass for all nine taps
    nc = min(N, 16)
    pw = np.zeros((nc, Cout, K), dtype=x.dtype)
    pb = np.zeros((nc, Cout), dtype=x.dtype)
    dyf = dy.reshape(-1)
    for k in prange(nc):
        pad = np.empty(0 if view else Cg * Hn * Wn, dtype=x.dtype)
        gw = np.zeros(0 if nine else L, dtype=x.dtype)
        X = np.empty(3 * Hp * OW if nine else 0, dtype=x.dtype)
        gp = np.empty(OH * OW if nine and act != ACT_NONE else 0, dtype=x.dtype)
        for n in range(k * N // nc, (k + 1) * N // nc):
            for grp in range(groups):
                c0 = grp * Cg
                if view:
                    src, base = xflat, (n * C + c0) * H * Wd
                else:
                    _pad_planes(x, n, c0, Cg, pt, pl, Hn, Wn, pad)
                    src, base = pad, 0
                if nine:
                    _shifts3(src, base, Wp, Hp, OW, dw, X)
                for co in range(grp * cout_g, (grp + 1) * cout_g):
                    if not nine:
                        pb[k, co] += _wide_grad(dy, y, n, co, act, Wp, 0, gw)
                        _taps_dots(gw, src, base, Hp * Wp, Cg, KH, KW, dh, dw, Wp, pw[k, co])
                    elif act == ACT_NONE:
                        pb[k, co] += _taps9_dots(dyf, U((n * Cout + co) * OH * OW), X, Hp, dh,
                                                 OH, OW, pw[k, co])
                    else:
                        _wide_grad(dy, y, n, co, act, OW, 0, gp)
                        pb[k, co] += _taps9_dots(gp, _u0, X, Hp, dh, OH, OW, pw[k, co])
    dWf = pw[0].copy()
    db = pb[0].copy()
    for k in range(1, nc):
        for co in range(Cout):
            db[co] += pb[k, co]
            for t in range(K):
                dWf[co, t] += pw[k, co, t]
    return dWf.reshape(Cout, Cg, KH, KW), db


@njit(parallel=True, cache=True, error_model="numpy", fastmath=_FM)
def _direct_dx(y, dy, W, H, Wd, sh, sw, pt, pl, dh, dw, groups, act):
    """dx (N, C, H, W), parallel over input planes; each plane gathers from the gradient
    planes of its group's output channels (wide planes with a leading zero margin, read with
    the taps flipped)."""
    N, Cout, OH, OW = dy.shape
    _, Cg, KH, KW = W.shape
    C = Cg * groups
    cout_g = Cout // groups
    dx = np.empty((N, C, H, Wd), dtype=dy.dtype)
    dxf = dx.reshape(-1)
    z = dy.dtype.type(0)
    items = N * C
    Wp = Wd + pl + max(0, (OW - 1) + (KW - 1) * dw + 1 - Wd - pl)
    Hp = H + pt + max(0, (OH - 1) + (KH - 1) * dh + 1 - H - pt)
    M = (KH - 1) * dh * Wp + (KW - 1) * dw
    Lx = Hp * Wp
    uWd = U(Wd)
    wflip = np.empty((Cout, Cg, KH * KW), dtype=dy.dtype)   # taps in reverse order
    for co in range(Cout):
        for ci in range(Cg):
            for t in range(KH * KW):
                wflip[co, ci, t] = W[co, ci, KH - 1 - t // KW, KW - 1 - t % KW]
    for it in prange(items):
        n = it // C
        c = it % C
        grp = c // Cg
        ci = c % Cg
        acc = np.empty(Lx, dtype=dy.dtype)
        for i in range(Lx):
            acc[i] = z
        gw = np.zeros(M + Lx, dtype=dy.dtype)
        for co in range(grp * cout_g, (grp + 1) * cout_g):
            _wide_grad(dy, y, n, co, act, Wp, M, gw)
            # acc[j] += sum_t W[co,ci,kh,kw] * gw[M + j - kh*dh*Wp - kw*dw]; with flipped
            # taps (kh', kw') = (KH-1-kh, KW-1-kw) the read offset is kh'*dh*Wp + kw'*dw.
            _taps_plane(acc, gw, 0, 0, wflip[co, ci], 1, KH, KW, dh, dw, Wp)
        for ih in range(H):
            s = U((ih + pt) * Wp + pl)
            d = U(((n * C + c) * H + ih) * Wd)
            for iw in range(uWd):
                dxf[d + iw] = acc[s + iw]
    return dx


def conv2d_backward_direct(x, W, y, dy, sh, sw, pt, pl, dh, dw, groups, act, need_dx):
    """Gradients of conv2d_forward_direct (stride 1 only): (dx, dW, db); dx is (0, C, H, W)
    when ``need_dx`` is False.  y is the forward output (used for the activation's
    derivative)."""
    KH, KW = W.shape[2], W.shape[3]
    dW, db = _direct_dw_db(x, y, dy, KH, KW, sh, sw, pt, pl, dh, dw, groups, act)
    N, C, H, Wd = x.shape
    if need_dx:
        dx = _direct_dx(y, dy, W, H, Wd, sh, sw, pt, pl, dh, dw, groups, act)
    else:
        dx = np.empty((0, C, H, Wd), dtype=x.dtype)
    return dx, dW, db
