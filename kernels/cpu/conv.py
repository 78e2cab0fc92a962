"""2-D convolution (cross-correlation, as in PyTorch), forward and backward, NCHW.

Shapes and arguments shared by every function here:

    x  (N, C, H, W)                  input
    Wt (C_out, C_in/groups, KH, KW)  weights (``W`` in the signatures); C-contiguous
    b  (C_out,)                      bias
    y  (N, C_out, OH, OW)            output, y = act(conv(x, W) + b)
    sh, sw                           stride (>= 1)
    pt, pl                           zero padding on the top and on the left; the bottom and
                                     right padding are implied by OH and OW, so asymmetric
                                     padding ("same" with an even kernel) needs no extra argument
    dh, dw                           dilation (>= 1)
    groups                           channel groups: input channels g*C_in/groups ...
                                     (g+1)*C_in/groups - 1 feed output channels g*C_out/groups ...;
                                     groups = C_in = C_out is a depthwise convolution
    OH, OW                           output size; the host computes
                                     OH = (H + pt + pb - dh*(KH-1) - 1) // sh + 1
    act                              activation fused into the forward's epilogue and its
                                     derivative into the backward's prologue (codes below)

    y[n, co, oh, ow] = act(b[co] + sum_{ci, kh, kw} W[co, ci, kh, kw]
                           * x[n, g*Cg + ci, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw])

with out-of-range input positions read as zero (g = co // (C_out/groups), Cg = C_in/groups).

Three algorithms, each a forward/backward pair; ``conv2d_forward`` / ``conv2d_backward`` pick
one per shape (``conv2d_algorithm``), and each can be called directly:

* ``direct`` (stride 1 only): loops over the taps on "wide" planes (below), each tap one long
  vectorised multiply-add (a 3x3 filter on one channel: all nine taps in one pass over three
  column-shifted copies of the input plane, writing the output plane and reading the gradient
  plane in place, and its nine weight-gradient sums in one pass).  Used when one group's
  receptive field is small (``C_in/groups * KH * KW <= DIRECT_MAX_K``, e.g. a first layer on
  one input channel or a depthwise convolution), where a GEMM would have a tiny inner
  dimension.  Forward and dx are parallel over (sample, channel) planes, dW and db over 16
  sample chunks (each reads its samples' gradient planes once, in memory order; the chunks'
  partials are summed in chunk order).
* ``winograd`` (3x3, stride 1, dilation 1, one group): F(2x2, 3x3), 16 BLAS GEMMs per batch
  chunk on transformed tiles, 2.25x fewer multiplies than im2col; the backward transforms the
  gradient tiles once for both dW and dx, each the transpose of the forward (see the section
  below).  Used for
  3x3 stride-1 layers with at least 8 input and output channels.
* ``im2col`` (everything else: strides, dilation, groups, any kernel): per (sample, group),
  unfold the receptive fields into a column matrix (C_in/groups*KH*KW, OH*OW) and do one BLAS
  GEMM with the group's (C_out/groups, K) weights.  Forward is parallel over blocks of
  (sample, group) pairs, writing y[n] directly; the backward is parallel over a fixed number of
  batch chunks: each chunk does dW's GEMM over its samples at once (columns of several samples
  side by side) into its own partial, and dx = col2im(W^T dy) per sample into its own dx[n];
  the partials are summed in chunk order afterwards.

Every ``prange`` iteration writes memory no other iteration writes (its own planes, samples or
partials): the backward passes gather per output element or per owned sample, never scatter-add
across iterations.  Chunk counts depend on the problem size only, never on the thread count, so
results are bit-identical from run to run and across thread counts.
"""
import numpy as np
from numba import njit, prange

from ._blas import gemm

ACT_NONE, ACT_RELU, ACT_SIGMOID, ACT_TANH = 0, 1, 2, 3
ALGO_DIRECT, ALGO_IM2COL, ALGO_WINOGRAD = 0, 1, 2
ALGORITHMS = {"direct": ALGO_DIRECT, "im2col": ALGO_IM2COL, "winograd": ALGO_WINOGRAD}

#: receptive-field size (C_in/groups * KH * KW) up to which the direct algorithm is used
DIRECT_MAX_K = 32
#: elements of im2col columns a backward chunk builds at once (several samples side by side)
_COLS_BUDGET = 1 << 21
#: elements of per-chunk weight-gradient partials the backward may hold in all
_PARTIALS_BUDGET = 1 << 23
#: elements of Winograd tile buffers (transformed inputs and products) a chunk holds at once
_TILES_BUDGET = 1 << 18

# Flags that keep NaN/Inf semantics (DESIGN.md); "reassoc" lets LLVM vectorise the reductions.
# A vectorised reduction sums in a different order from its scalar fallback, and LLVM picks
# between them at run time when the loop also stores (memory-overlap checks on the addresses),
# which would make results depend on where buffers happen to lie.  So every reduction loop here
# is a pure reduction: loads and accumulators only, no stores.
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}

# Loop style (docs/kernels.md, and measured here): hot loops index flat C-contiguous views with
# np.uint64 offsets (``dst[d + i] = src[s + i]`` with d, s, i all unsigned).  A signed index
# makes Numba emit negative-index wraparound code that stops LLVM from vectorising, and taking a
# slice per row costs more than copying a short row (im2col ran 15 ms instead of 2.7 ms for a
# (128, 32, 14, 14) batch).  Never mix np.uint64 and signed ints in one expression (Numba gives
# float64): offsets are computed as ints and converted once.  Constants are typed to the data
# (``one``); every kernel uses ``error_model="numpy"``.  Calls between njit functions cost an
# atomic reference-count update per array argument, so helpers work on whole planes.
U = np.uint64
_u0, _1, _2, _3 = U(0), U(1), U(2), U(3)  # a bare literal would make an unsigned expression signed


@njit(cache=True, error_model="numpy")
def _n_blocks(items, grain, most):
    """Blocks to split ``items`` units of work into: one per ``grain`` units, 1 to ``most``."""
    return max(1, min(most, items // max(1, grain)))


@njit(cache=True, inline="always", error_model="numpy")
def _cdiv(a, b):
    """ceil(a / b) for b > 0 and any integer a."""
    return -((-a) // b)


@njit(cache=True, inline="always", error_model="numpy")
def _span(off, s, n_in, n_out):
    """Output positions o in [lo, hi) whose input position o*s + off lies in [0, n_in)."""
    lo = max(0, _cdiv(-off, s))
    hi = min(n_out, _cdiv(n_in - off, s))
    return lo, max(lo, hi)


@njit(cache=True, inline="always", error_model="numpy", fastmath=_FM)
def _activate(z, act, one):
    """act(z); ``one`` is 1 in z's dtype (a bare 1 would promote float32 to float64)."""
    if act == ACT_RELU:
        return z if z > 0 else one - one
    if act == ACT_SIGMOID:
        return one / (one + np.exp(-z))
    if act == ACT_TANH:
        return np.tanh(z)
    return z


@njit(cache=True, inline="always", error_model="numpy", fastmath=_FM)
def _activation_grad(y, act, one):
    """act'(z) from y = act(z)."""
    if act == ACT_RELU:
        return one if y > 0 else one - one
    if act == ACT_SIGMOID:
        return y * (one - y)
    if act == ACT_TANH:
        return one - y * y
    return one


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


# ----------------------------------------------------------------------------------- im2col


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _im2col(x, n, c0, Cg, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW, cols, col0):
    """cols[(ci*KH + kh)*KW + kw, col0 + oh*OW + ow] = x[n, c0+ci, oh*sh-pt+kh*dh, ow*sw-pl+kw*dw]
    (zero outside the input); cols is C-contiguous (K, Lc)."""
    C, H, Wd = x.shape[1], x.shape[2], x.shape[3]
    xf = x.reshape(-1)
    Lc = cols.shape[1]
    cf = cols.reshape(-1)
    z = x.dtype.type(0)
    uOW, usw = U(OW), U(sw)
    for ci in range(Cg):
        pbase = (n * C + c0 + ci) * H * Wd
        for kh in range(KH):
            offh = kh * dh - pt
            for kw in range(KW):
                offw = kw * dw - pl
                ow0, ow1 = _span(offw, sw, Wd, OW)
                r = (ci * KH + kh) * KW + kw
                head, cnt, tail = U(ow0), U(ow1 - ow0), U(OW - ow1)
                for oh in range(OH):
                    ih = oh * sh + offh
                    d = U(r * Lc + col0 + oh * OW)
                    if ih < 0 or ih >= H:
                        for i in range(uOW):
                            cf[d + i] = z
                        continue
                    for i in range(head):
                        cf[d + i] = z
                    dm = d + head
                    if cnt > 0:
                        s = U(pbase + ih * Wd + ow0 * sw + offw)
                        if sw == 1:
                            for i in range(cnt):
                                cf[dm + i] = xf[s + i]
                        else:
                            for i in range(cnt):
                                cf[dm + i] = xf[s + i * usw]
                    de = dm + cnt
                    for i in range(tail):
                        cf[de + i] = z


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _col2im(dcols, dx, n, c0, Cg, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW):
    """dx[n, c0:c0+Cg] = the adjoint of _im2col applied to dcols (K, OH*OW): each input
    element gets the sum of the column entries that read it.  Writes only dx[n, c0:c0+Cg]."""
    C, H, Wd = dx.shape[1], dx.shape[2], dx.shape[3]
    dxf = dx.reshape(-1)
    df = dcols.reshape(-1)
    P = OH * OW
    z = dx.dtype.type(0)
    usw = U(sw)
    for ci in range(Cg):
        pbase = (n * C + c0 + ci) * H * Wd
        p0 = U(pbase)
        for i in range(U(H * Wd)):
            dxf[p0 + i] = z
        for kh in range(KH):
            offh = kh * dh - pt
            oh0, oh1 = _span(offh, sh, H, OH)
            for kw in range(KW):
                offw = kw * dw - pl
                ow0, ow1 = _span(offw, sw, Wd, OW)
                cnt = U(ow1 - ow0)
                r = (ci * KH + kh) * KW + kw
                for oh in range(oh0, oh1):
                    s = U(r * P + oh * OW + ow0)
                    d = U(pbase + (oh * sh + offh) * Wd + ow0 * sw + offw)
                    if sw == 1:
                        for i in range(cnt):
                            dxf[d + i] += df[s + i]
                    else:
                        for i in range(cnt):
                            dxf[d + i * usw] += df[s + i]


@njit(parallel=True, cache=True, error_model="numpy", fastmath=_FM)
def conv2d_forward_im2col(x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act):
    """im2col + GEMM convolution: y (N, C_out, OH, OW); see the module docstring."""
    N, C, H, Wd = x.shape
    Cout, Cg, KH, KW = W.shape
    cout_g = Cout // groups
    K = Cg * KH * KW
    P = OH * OW
    one = x.dtype.type(1)
    W3 = W.reshape(groups, cout_g, K)
    y = np.empty((N, Cout, OH, OW), dtype=x.dtype)
    y3 = y.reshape(N, groups, cout_g, P)
    items = N * groups
    nb = min(items, 64)
    for k in prange(nb):
        cols = np.empty((K, P), dtype=x.dtype)
        for it in range(k * items // nb, (k + 1) * items // nb):
            n = it // groups
            grp = it % groups
            _im2col(x, n, grp * Cg, Cg, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW, cols, 0)
            out = y3[n, grp]
            np.dot(W3[grp], cols, out)
            of = out.reshape(-1)
            for j in range(cout_g):
                bv = b[grp * cout_g + j]
                o = U(j * P)
                for p in range(U(P)):
                    of[o + p] = _activate(of[o + p] + bv, act, one)
    return y


@njit(cache=True, error_model="numpy")
def _backward_chunks(N, Cout, K, P):
    """(chunks, samples per GEMM): a fixed number of batch chunks for the weight-gradient
    partials (memory-capped), and how many samples' columns one GEMM takes at once."""
    nc = max(1, min(N, 16))
    while nc > 1 and nc * Cout * K > _PARTIALS_BUDGET:
        nc -= 1
    per = (N + nc - 1) // nc
    m = max(1, min(per, _COLS_BUDGET // max(1, K * P)))
    return nc, m


@njit(parallel=True, cache=True, error_model="numpy", fastmath=_FM)
def conv2d_backward_im2col(x, W, y, dy, sh, sw, pt, pl, dh, dw, groups, act, need_dx):
    """Gradients of conv2d_forward_im2col: (dx, dW, db); dx is (0, C, H, W) when ``need_dx``
    is False.  y is the forward output (used for the activation's derivative)."""
    N, C, H, Wd = x.shape
    Cout, Cg, KH, KW = W.shape
    OH, OW = dy.shape[2], dy.shape[3]
    cout_g = Cout // groups
    K = Cg * KH * KW
    P = OH * OW
    one = x.dtype.type(1)
    z = x.dtype.type(0)
    W3 = W.reshape(groups, cout_g, K)
    WT = np.empty((groups, K, cout_g), dtype=x.dtype)      # per-group W^T, contiguous for BLAS
    for grp in range(groups):
        for j in range(cout_g):
            for r in range(K):
                WT[grp, r, j] = W3[grp, j, r]
    dyf, yf = dy.reshape(-1), y.reshape(-1)
    dx = np.empty((N if need_dx else 0, C, H, Wd), dtype=x.dtype)
    nc, m = _backward_chunks(N, Cout, K, P)
    partW = np.empty((nc, groups, cout_g, K), dtype=x.dtype)
    partb = np.empty((nc, Cout), dtype=x.dtype)
    uP = U(P)
    for c in prange(nc):
        n0, n1 = c * N // nc, (c + 1) * N // nc
        colbuf = np.empty(K * m * P, dtype=x.dtype)
        gbuf = np.empty(cout_g * m * P, dtype=x.dtype)
        gs = np.empty((cout_g, P), dtype=x.dtype)
        gsf = gs.reshape(-1)
        tmp = np.empty((cout_g, K), dtype=x.dtype)
        dcols = np.empty((K if need_dx else 0, P), dtype=x.dtype)
        for grp in range(groups):
            pw = partW[c, grp]
            for j in range(cout_g):
                partb[c, grp * cout_g + j] = z
                for r in range(K):
                    pw[j, r] = z
            for s0 in range(n0, n1, m):
                ms = min(n1, s0 + m) - s0
                L = ms * P
                cols = colbuf[:K * L].reshape(K, L)
                gm = gbuf[:cout_g * L]
                for n in range(s0, s0 + ms):
                    col0 = (n - s0) * P
                    _im2col(x, n, grp * Cg, Cg, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW,
                            cols, col0)
                    for j in range(cout_g):
                        src = U(((n * groups + grp) * cout_g + j) * P)
                        o = U(j * P)
                        if act == ACT_NONE:
                            for p in range(uP):
                                gsf[o + p] = dyf[src + p]
                        else:
                            for p in range(uP):
                                gsf[o + p] = dyf[src + p] * _activation_grad(yf[src + p], act,
                                                                             one)
                        s = z
                        for p in range(uP):                 # a pure reduction: see _FM
                            s += gsf[o + p]
                        partb[c, grp * cout_g + j] += s
                        d = U(j * L + col0)
                        for p in range(uP):
                            gm[d + p] = gsf[o + p]
                    if need_dx:
                        np.dot(WT[grp], gs, dcols)
                        _col2im(dcols, dx, n, grp * Cg, Cg, KH, KW, sh, sw, pt, pl, dh, dw,
                                OH, OW)
                np.dot(gm.reshape(cout_g, L), cols.T, tmp)   # this sub-batch's share of dW
                for j in range(cout_g):
                    for r in range(K):
                        pw[j, r] += tmp[j, r]
    dW = np.empty((Cout, Cg, KH, KW), dtype=x.dtype)
    dW3 = dW.reshape(groups, cout_g, K)
    db = np.empty(Cout, dtype=x.dtype)
    rows = groups * cout_g
    nb = min(rows, _n_blocks(rows * K * nc, 65536, 16))
    for k in prange(nb):
        for r in range(k * rows // nb, (k + 1) * rows // nb):
            grp, j = r // cout_g, r % cout_g
            for q in range(K):
                s = partW[0, grp, j, q]
                for c in range(1, nc):
                    s += partW[c, grp, j, q]
                dW3[grp, j, q] = s
            s = partb[0, r]
            for c in range(1, nc):
                s += partb[c, r]
            db[r] = s
    return dx, dW, db


# --------------------------------------------------------------------------------- winograd
#
# Winograd F(2x2, 3x3) (Lavin & Gray 2016) for 3x3, stride 1, dilation 1, one group: each 2x2
# output tile is A^T [(G w G^T) * (B^T d B)] A, with d the 4x4 input tile, so the products
# become 16 independent GEMMs (one per position xi, nu of the 4x4 transformed tile) of
# (C_out, C_in) @ (C_in, tiles): 2.25x fewer multiplies than im2col.  Tiles are taken from a
# zero-padded copy of each input plane, so there are no bounds checks in the transforms.
#   The backward follows from the same bilinear form (transposition principle), with
#   Gt = A g A^T the transformed 2x2 gradient tile, computed once per batch chunk for both:
#   dW = G^T [ sum_tiles Gt * (B^T d B) ] G: 16 GEMMs of (C_out, tiles) @ (tiles, C_in) per
#   chunk, each accumulated into the chunk's partial by BLAS (beta = 1), partials summed in
#   chunk order;  dx: 16 GEMMs U_e^T @ Gt_e give dL/d(B^T d B) per tile, and B (.) B^T of each
#   tile, overlapping tiles summed, is dL/dd (_wino_input_grad).


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _wino_weights(W):
    """U (16, C_out, C_in) = G W G^T for every (co, ci); W (C_out, C_in, 3, 3)."""
    Cout, Cin = W.shape[0], W.shape[1]
    U_ = np.empty((16, Cout, Cin), dtype=W.dtype)
    h = W.dtype.type(0.5)
    t = np.empty((4, 3), dtype=W.dtype)
    for co in range(Cout):
        for ci in range(Cin):
            for j in range(3):                  # t = G w   (rows)
                w0, w1, w2 = W[co, ci, 0, j], W[co, ci, 1, j], W[co, ci, 2, j]
                t[0, j] = w0
                t[1, j] = h * (w0 + w1 + w2)
                t[2, j] = h * (w0 - w1 + w2)
                t[3, j] = w2
            for i in range(4):                  # U = t G^T   (columns)
                w0, w1, w2 = t[i, 0], t[i, 1], t[i, 2]
                U_[i * 4 + 0, co, ci] = w0
                U_[i * 4 + 1, co, ci] = h * (w0 + w1 + w2)
                U_[i * 4 + 2, co, ci] = h * (w0 - w1 + w2)
                U_[i * 4 + 3, co, ci] = w2
    return U_


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _wino_input(x, n, C, pt, pl, TH, TW, plane, V, t0, Tc):
    """V[xi*4 + nu, c, t0 + th*TW + tw] = (B^T d B)[xi, nu] for every channel c of sample n,
    d the 4x4 input tile at rows 2*th - pt ..., columns 2*tw - pl ... (zero outside x; the
    padding on every side is not negative: 2*TH + 2 >= pt + H, 2*TW + 2 >= pl + W).
    ``plane`` is scratch for one zero-padded plane (2*TH + 2, 2*TW + 2); V is flat
    (16, C, Tc), the forward's GEMM operand (the backward's dW wants tiles first:
    _wino_input_tf)."""
    H, Wd = x.shape[2], x.shape[3]
    Hp, Wp = 2 * TH + 2, 2 * TW + 2
    z = x.dtype.type(0)
    xf = x.reshape(-1)
    V2 = V[:16 * C * Tc].reshape(16, C * Tc)
    for c in range(C):
        for i in range(U(Hp * Wp)):
            plane[i] = z
        for r in range(H):
            d = U((pt + r) * Wp + pl)
            sx = U(((n * C + c) * H + r) * Wd)
            for q in range(U(Wd)):
                plane[d + q] = xf[sx + q]
        for th in range(TH):
            a = U(2 * th * Wp)
            b = a + U(Wp)
            e = b + U(Wp)
            f = e + U(Wp)
            o = U(c * Tc + t0 + th * TW)
            for tw in range(U(TW)):
                j = _2 * tw
                # rows of B^T d: (d0 - d2, d1 + d2, d2 - d1, d1 - d3), per column
                u0 = plane[a + j] - plane[e + j]
                u1 = plane[a + j + _1] - plane[e + j + _1]
                u2 = plane[a + j + _2] - plane[e + j + _2]
                u3 = plane[a + j + _3] - plane[e + j + _3]
                v0 = plane[b + j] + plane[e + j]
                v1 = plane[b + j + _1] + plane[e + j + _1]
                v2 = plane[b + j + _2] + plane[e + j + _2]
                v3 = plane[b + j + _3] + plane[e + j + _3]
                w0 = plane[e + j] - plane[b + j]
                w1 = plane[e + j + _1] - plane[b + j + _1]
                w2 = plane[e + j + _2] - plane[b + j + _2]
                w3 = plane[e + j + _3] - plane[b + j + _3]
                y0 = plane[b + j] - plane[f + j]
                y1 = plane[b + j + _1] - plane[f + j + _1]
                y2 = plane[b + j + _2] - plane[f + j + _2]
                y3 = plane[b + j + _3] - plane[f + j + _3]
                p = o + tw
                V2[0, p] = u0 - u2
                V2[1, p] = u1 + u2
                V2[2, p] = u2 - u1
                V2[3, p] = u1 - u3
                V2[4, p] = v0 - v2
                V2[5, p] = v1 + v2
                V2[6, p] = v2 - v1
                V2[7, p] = v1 - v3
                V2[8, p] = w0 - w2
                V2[9, p] = w1 + w2
                V2[10, p] = w2 - w1
                V2[11, p] = w1 - w3
                V2[12, p] = y0 - y2
                V2[13, p] = y1 + y2
                V2[14, p] = y2 - y1
                V2[15, p] = y1 - y3


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _wino_input_tf(x, n, C, pt, pl, TH, TW, Xe, R, V, t0):
    """_wino_input's V for sample n in the tiles-first layout that dW's GEMMs want:
    V[xi*4 + nu, (t0 + th*TW + tw)*C + c] = (B^T d B)[xi, nu] (V flat (16, Tc*C)).  Built
    channels-last so that every loop runs over whole rows of tiles x channels with one store
    stream (written tile by tile, 16 values per tile to 16 places Tc*C apart, the layout took
    0.89 ms of the (128, 32, 14, 14) backward).  Xe, scratch (2*TH + 2, 2, TW + 1, C), is the
    zero-padded sample with its columns split by parity (column j at [j % 2, j // 2]), zero
    outside x (set up by the caller; only the interior is written here).  Per tile row, R
    (4, 2*(TW + 1)*C) gets the rows of B^T d (d0 - d2, d1 + d2, d2 - d1, d1 - d3 of the
    row's four padded rows), then each (. ) B column combination is one loop over the row's
    TW tiles x C channels: tile tw's columns 2tw .. 2tw + 3 are [even, odd] at tw and tw + 1."""
    H, Wd = x.shape[2], x.shape[3]
    xf = x.reshape(-1)
    uC, h = U(C), U(TW + 1)
    L = _2 * h * uC                                     # one padded row, both parities
    for c in range(C):
        for r in range(H):
            sx = U(((n * C + c) * H + r) * Wd)
            for w in range(Wd):
                j = pl + w
                Xe[((U(pt + r) * _2 + U(j % 2)) * h + U(j // 2)) * uC + U(c)] = xf[sx + U(w)]
    m = U(TW) * uC                                      # a tile row's tiles x channels
    od = h * uC                                         # where a row's odd columns start
    Vs = V.shape[0] // 16
    r0, r1, r2, r3 = R[0], R[1], R[2], R[3]
    for th in range(TH):
        d0 = U(2 * th) * L
        d1, d2, d3 = d0 + L, d0 + _2 * L, d0 + _3 * L
        for i in range(L):
            r0[i] = Xe[d0 + i] - Xe[d2 + i]
        for i in range(L):
            r1[i] = Xe[d1 + i] + Xe[d2 + i]
        for i in range(L):
            r2[i] = Xe[d2 + i] - Xe[d1 + i]
        for i in range(L):
            r3[i] = Xe[d1 + i] - Xe[d3 + i]
        o = U((t0 + th * TW) * C)
        for xi in range(4):
            ev = R[xi]
            b = U(4 * xi * Vs) + o
            for j in range(m):                          # nu = 0: d0 - d2
                V[b + j] = ev[j] - ev[uC + j]
            b += U(Vs)
            for j in range(m):                          # nu = 1: d1 + d2
                V[b + j] = ev[od + j] + ev[uC + j]
            b += U(Vs)
            for j in range(m):                          # nu = 2: d2 - d1
                V[b + j] = ev[uC + j] - ev[od + j]
            b += U(Vs)
            for j in range(m):                          # nu = 3: d1 - d3
                V[b + j] = ev[od + j] - ev[od + uC + j]


@njit(parallel=True, cache=True, error_model="numpy", fastmath=_FM)
def _wino_forward(x, U_, b, pt, pl, OH, OW, act):
    """y (N, C_out, OH, OW) = act(conv3x3(x, W) + b) from U = _wino_weights(W); pt, pl are
    the padding on the top and on the left."""
    N, C = x.shape[0], x.shape[1]
    Cout = U_.shape[1]
    TH, TW = (OH + 1) // 2, (OW + 1) // 2
    per = TH * TW
    spc = max(1, min(N, _TILES_BUDGET // max(1, 16 * (C + Cout) * per)))   # samples a chunk
    nb = (N + spc - 1) // spc
    y = np.empty((N, Cout, OH, OW), dtype=x.dtype)
    yf = y.reshape(-1)
    one = x.dtype.type(1)
    z = x.dtype.type(0)
    for k in prange(nb):
        n0, n1 = k * spc, min(N, (k + 1) * spc)
        Tc = (n1 - n0) * per
        V = np.empty(16 * C * Tc, dtype=x.dtype)
        Mb = np.empty(16 * Cout * Tc, dtype=x.dtype)
        plane = np.empty((2 * TH + 2) * (2 * TW + 2), dtype=x.dtype)
        for n in range(n0, n1):
            _wino_input(x, n, C, pt, pl, TH, TW, plane, V, (n - n0) * per, Tc)
        for e in range(16):
            np.dot(U_[e], V[e * C * Tc:(e + 1) * C * Tc].reshape(C, Tc),
                   Mb[e * Cout * Tc:(e + 1) * Cout * Tc].reshape(Cout, Tc))
        # A^T m A over all the chunk's tiles at once, in loops of few arrays each (LLVM only
        # vectorises a loop when it can check the overlap of a handful of pointers)
        CT = Cout * Tc
        cs = np.empty((8, CT), dtype=x.dtype)
        O = np.empty((4, CT), dtype=x.dtype)     # the four outputs of every tile, by position
        Of = O.reshape(-1)
        TWf = OW // 2                           # tiles with two output columns
        for xi in range(4):
            a0 = Mb[4 * xi * CT:(4 * xi + 1) * CT]
            a1 = Mb[(4 * xi + 1) * CT:(4 * xi + 2) * CT]
            a2 = Mb[(4 * xi + 2) * CT:(4 * xi + 3) * CT]
            a3 = Mb[(4 * xi + 3) * CT:(4 * xi + 4) * CT]
            c0 = cs[2 * xi]
            c1 = cs[2 * xi + 1]
            for t in range(CT):
                c0[t] = a0[t] + a1[t] + a2[t]
                c1[t] = a1[t] - a2[t] - a3[t]
        for j in range(2):
            e0, e1, e2, e3 = cs[j], cs[2 + j], cs[4 + j], cs[6 + j]
            o0, o1 = O[j], O[2 + j]
            for t in range(CT):
                o0[t] = e0[t] + e1[t] + e2[t]
            for t in range(CT):
                o1[t] = e1[t] - e2[t] - e3[t]
        for co in range(Cout):
            bv = b[co]
            for n in range(n0, n1):
                for th in range(TH):
                    t0 = (n - n0) * per + th * TW
                    for a in range(2):
                        oh = 2 * th + a
                        if oh >= OH:
                            break
                        q = U(((n * Cout + co) * OH + oh) * OW)
                        s0 = U(2 * a * CT + co * Tc + t0)
                        s1 = s0 + U(CT)
                        if act == ACT_NONE:
                            for tw in range(U(TWf)):
                                yf[q + _2 * tw] = Of[s0 + tw] + bv
                                yf[q + _2 * tw + _1] = Of[s1 + tw] + bv
                        elif act == ACT_RELU:
                            for tw in range(U(TWf)):
                                yf[q + _2 * tw] = max(Of[s0 + tw] + bv, z)
                                yf[q + _2 * tw + _1] = max(Of[s1 + tw] + bv, z)
                        else:
                            for tw in range(U(TWf)):
                                yf[q + _2 * tw] = _activate(Of[s0 + tw] + bv, act, one)
                                yf[q + _2 * tw + _1] = _activate(Of[s1 + tw] + bv, act, one)
                        if OW % 2:
                            yf[q + U(OW - 1)] = _activate(Of[s0 + U(TWf)] + bv, act, one)
    return y


def conv2d_forward_winograd(x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act):
    """Winograd F(2x2, 3x3) convolution: W (C_out, C_in, 3, 3), stride 1, dilation 1, one
    group; y (N, C_out, OH, OW).  Arguments as in the module docstring."""
    return _wino_forward(x, _wino_weights(W), b, pt, pl, OH, OW, act)


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _wino_grad_tiles(g, n, Cout, TH, TW, K, t0, Tc):
    """K[j, co, t0 + th*TW + tw] = value j (row-major) of the 2x2 gradient tile at (2*th, 2*tw)
    of g[n, co] (zero past the edge); K flat (4, C_out, Tc).  _wino_grad_transform turns a
    whole chunk's K into A g A^T."""
    OH, OW = g.shape[2], g.shape[3]
    gf = g.reshape(-1)
    z = g.dtype.type(0)
    CT = U(Cout * Tc)
    TWf = U(OW // 2)                            # tiles with two columns
    for co in range(Cout):
        for th in range(TH):
            q = U(((n * Cout + co) * OH + 2 * th) * OW)
            k = U(co * Tc + t0 + th * TW)
            two_rows = 2 * th + 1 < OH
            for tw in range(TWf):
                K[k + tw] = gf[q + _2 * tw]
                K[CT + k + tw] = gf[q + _2 * tw + _1]
                K[_2 * CT + k + tw] = gf[q + U(OW) + _2 * tw] if two_rows else z
                K[_3 * CT + k + tw] = gf[q + U(OW) + _2 * tw + _1] if two_rows else z
            if OW % 2:
                K[k + TWf] = gf[q + _2 * TWf]
                K[CT + k + TWf] = z
                K[_2 * CT + k + TWf] = gf[q + U(OW) + _2 * TWf] if two_rows else z
                K[_3 * CT + k + TWf] = z


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _wino_grad_transform(K, Gt, CT, uv):
    """Gt (16, CT) = A g A^T of every tile of a chunk, from K (4, CT) (_wino_grad_tiles):
    A g's row xi is (u, v) = (g0, g1), (g0 + g2, g1 + g3), (g0 - g2, g1 - g3), (-g2, -g3),
    then Gt[xi*4 + nu] = (u, u + v, u - v, -v)[nu].  Loops over the whole chunk, each over a
    few arrays (what LLVM vectorises); ``uv`` is scratch (2, CT)."""
    n = U(CT)
    u, v = uv[0], uv[1]
    a, b, c, d = K[0], K[1], K[2], K[3]
    for xi in range(4):
        if xi == 0:
            for q in range(n):
                u[q] = a[q]
                v[q] = b[q]
        elif xi == 1:
            for q in range(n):
                u[q] = a[q] + c[q]
                v[q] = b[q] + d[q]
        elif xi == 2:
            for q in range(n):
                u[q] = a[q] - c[q]
                v[q] = b[q] - d[q]
        else:
            for q in range(n):
                u[q] = -c[q]
                v[q] = -d[q]
        o0, o1, o2, o3 = Gt[4 * xi], Gt[4 * xi + 1], Gt[4 * xi + 2], Gt[4 * xi + 3]
        for q in range(n):
            o0[q] = u[q]
        for q in range(n):
            o1[q] = u[q] + v[q]
        for q in range(n):
            o2[q] = u[q] - v[q]
        for q in range(n):
            o3[q] = -v[q]


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _wino_input_grad(Mx, n, C, pt, pl, TH, TW, Z, Ze, dx, t0, Tc):
    """dx[n] from Mx flat (16, C, Tc), the gradient of every transformed input tile
    (Mx[xi*4 + nu, c, t0 + th*TW + tw] = dL/dV[xi, nu]).  The adjoint of _wino_input: each
    tile's B M B^T is added into the padded plane at (2*th, 2*tw), overlapping tiles summed, and
    the interior is dx.  B on one axis maps (m0, m1, m2, m3) to (m0, m1 - m2 + m3,
    m1 + m2 - m0, -m3), and a tile's last two outputs overlap the next tile's first two.
    Per channel, in two passes: the columns (nu) of all the sample's tiles in one loop, into
    Z (4 [xi], TH + 2, 2*TW) (padded columns 0 .. 2*TW - 1) and Ze (4, TH + 2, 2) (columns
    2*TW, 2*TW + 1), tile row th at row th + 1; then every row of dx from the rows (xi) of Z of
    its tile row and the one above.  Z's and Ze's first and last rows stay zero (scratch set
    up by the caller), so the top and bottom rows need no special case.  Assumes the bottom
    and right padding are not negative (2*TH + 2 >= pt + H, 2*TW + 2 >= pl + W)."""
    H, Wd = dx.shape[2], dx.shape[3]
    dxf = dx.reshape(-1)
    per, tw_, CT = U(TH * TW), U(TW), U(C * Tc)
    zs, es = U((TH + 2) * 2 * TW), U((TH + 2) * 2)         # strides of xi in Z and Ze
    jz = U(max(0, min(Wd, 2 * TW - pl)))                    # columns of dx that Z holds
    for c in range(C):
        for xi in range(4):                                 # pass 1: columns
            m0 = U(4 * xi) * CT + U(c * Tc + t0)            # Mx[xi*4 + nu, c] at m0 + nu*CT
            m1 = m0 + CT
            m2 = m1 + CT
            m3 = m2 + CT
            zo = U(xi) * zs + U(2 * TW)
            eo = U(xi) * es + _2
            for u in range(_1, per):        # tile u and its left neighbour u - 1 (wrong at
                d = zo + _2 * u             # the start of a row: redone below)
                Z[d] = Mx[m0 + u] - Mx[m0 + u - _1] + Mx[m1 + u - _1] + Mx[m2 + u - _1]
                Z[d + _1] = Mx[m1 + u] - Mx[m2 + u] + Mx[m3 + u] - Mx[m3 + u - _1]
            for th in range(U(TH)):
                u = th * tw_                                # first tile of a row: no left
                d = zo + _2 * u
                Z[d] = Mx[m0 + u]
                Z[d + _1] = Mx[m1 + u] - Mx[m2 + u] + Mx[m3 + u]
                u += tw_ - _1                               # last tile: its right two columns
                Ze[eo + _2 * th] = Mx[m1 + u] + Mx[m2 + u] - Mx[m0 + u]
                Ze[eo + _2 * th + _1] = -Mx[m3 + u]
        for i in range(H):                                  # pass 2: rows
            r = pt + i
            q = U(((n * C + c) * H + i) * Wd)
            a = U((r // 2 + 1) * 2 * TW + pl)               # Z row of tile row r // 2 ...
            b = a - U(2 * TW)                               # ... and of the one above
            ea = U((r // 2 + 1) * 2 + pl - 2 * TW)          # Ze, for the columns past jz
            eb = ea - _2
            if r % 2 == 0:                                  # m0 here; m1 + m2 - m0 above
                for j in range(jz):
                    dxf[q + j] = Z[a + j] + Z[zs + b + j] + Z[_2 * zs + b + j] - Z[b + j]
                for j in range(jz, U(Wd)):
                    dxf[q + j] = Ze[ea + j] + Ze[es + eb + j] + Ze[_2 * es + eb + j] - Ze[eb + j]
            else:                                           # m1 - m2 + m3 here; -m3 above
                for j in range(jz):
                    dxf[q + j] = (Z[zs + a + j] - Z[_2 * zs + a + j] + Z[_3 * zs + a + j]
                                  - Z[_3 * zs + b + j])
                for j in range(jz, U(Wd)):
                    dxf[q + j] = (Ze[es + ea + j] - Ze[_2 * es + ea + j] + Ze[_3 * es + ea + j]
                                  - Ze[_3 * es + eb + j])


@njit(parallel=True, cache=True, error_model="numpy", fastmath=_FM)
def _wino_backward(x, g, Ut, pt, pl, need_dx):
    """dx (N, C_in, H, W) (or (0, ...) without ``need_dx``), dW (C_out, C_in, 3, 3) and db
    (C_out,) from g = dL/d(pre-activation) (N, C_out, OH, OW) and Ut (16, C_in, C_out), the
    transformed weights with their channel axes swapped.  Per batch chunk the gradient tiles
    are transformed once (A g A^T) and serve both: 16 GEMMs with the transformed input tiles
    into the chunk's dW partial, and 16 GEMMs Ut_e @ Gt_e giving the gradient of the transformed
    input tiles, turned into dx by _wino_input_grad.  Partials summed in chunk order, then
    transformed back (G^T M G)."""
    N, C, H, Wd = x.shape
    Cout, OH, OW = g.shape[1], g.shape[2], g.shape[3]
    TH, TW = (OH + 1) // 2, (OW + 1) // 2
    per = TH * TW
    nc = max(1, min(N, 16))
    while nc > 1 and nc * 16 * Cout * C > _PARTIALS_BUDGET:
        nc -= 1
    spc = max(1, min((N + nc - 1) // nc,
                     _TILES_BUDGET // max(1, (16 * (2 * C if need_dx else C) + 22 * Cout) * per)))
    part = np.empty((nc, 16, Cout, C), dtype=x.dtype)
    partb = np.empty((nc, Cout), dtype=x.dtype)
    dx = np.empty((N if need_dx else 0, C, H, Wd), dtype=x.dtype)
    z = x.dtype.type(0)
    gf = g.reshape(-1)
    for k in prange(nc):
        n0, n1 = k * N // nc, (k + 1) * N // nc
        V = np.empty(16 * C * spc * per, dtype=x.dtype)
        Gt = np.empty(16 * Cout * spc * per, dtype=x.dtype)
        Mx = np.empty(16 * C * spc * per if need_dx else 0, dtype=x.dtype)
        Xe = np.zeros((2 * TH + 2) * 2 * (TW + 1) * C, dtype=x.dtype)
        R = np.empty((4, 2 * (TW + 1) * C), dtype=x.dtype)
        K = np.empty(4 * Cout * spc * per, dtype=x.dtype)
        uv = np.empty(2 * Cout * spc * per, dtype=x.dtype)
        Z = np.zeros(4 * (TH + 2) * 2 * TW, dtype=x.dtype)
        Ze = np.zeros(4 * (TH + 2) * 2, dtype=x.dtype)
        pk = part[k]
        for e in range(16):
            for co in range(Cout):
                for ci in range(C):
                    pk[e, co, ci] = z
        for co in range(Cout):
            partb[k, co] = z
        for s0 in range(n0, n1, spc):
            ms = min(n1, s0 + spc) - s0
            Tc = ms * per
            for n in range(s0, s0 + ms):
                _wino_input_tf(x, n, C, pt, pl, TH, TW, Xe, R, V[:16 * C * Tc], (n - s0) * per)
                _wino_grad_tiles(g, n, Cout, TH, TW, K, (n - s0) * per, Tc)
                for co in range(Cout):
                    o = U((n * Cout + co) * OH * OW)
                    s = z
                    for i in range(U(OH * OW)):         # a pure reduction: see _FM
                        s += gf[o + i]
                    partb[k, co] += s
            _wino_grad_transform(K[:4 * Cout * Tc].reshape(4, Cout * Tc),
                                 Gt[:16 * Cout * Tc].reshape(16, Cout * Tc), Cout * Tc,
                                 uv[:2 * Cout * Tc].reshape(2, Cout * Tc))
            for e in range(16):
                Gte = Gt[e * Cout * Tc:(e + 1) * Cout * Tc].reshape(Cout, Tc)
                gemm(Gte, V[e * C * Tc:(e + 1) * C * Tc].reshape(Tc, C), pk[e], False, False,
                     1.0, 1.0)                                  # pk_e += Gt_e V_e
                if need_dx:
                    np.dot(Ut[e], Gte, Mx[e * C * Tc:(e + 1) * C * Tc].reshape(C, Tc))
            if need_dx:
                for n in range(s0, s0 + ms):
                    _wino_input_grad(Mx, n, C, pt, pl, TH, TW, Z, Ze, dx, (n - s0) * per, Tc)
    dW = np.empty((Cout, C, 3, 3), dtype=x.dtype)
    db = np.empty(Cout, dtype=x.dtype)
    h = x.dtype.type(0.5)
    for co in prange(Cout):
        m = np.empty(16, dtype=x.dtype)
        t = np.empty((3, 4), dtype=x.dtype)
        for ci in range(C):
            for e in range(16):
                s = part[0, e, co, ci]
                for k in range(1, nc):
                    s += part[k, e, co, ci]
                m[e] = s
            for j in range(4):                  # t = G^T m   (rows)
                m0, m1, m2, m3 = m[j], m[4 + j], m[8 + j], m[12 + j]
                t[0, j] = m0 + h * (m1 + m2)
                t[1, j] = h * (m1 - m2)
                t[2, j] = h * (m1 + m2) + m3
            for i in range(3):                  # dW = t G   (columns)
                m0, m1, m2, m3 = t[i, 0], t[i, 1], t[i, 2], t[i, 3]
                dW[co, ci, i, 0] = m0 + h * (m1 + m2)
                dW[co, ci, i, 1] = h * (m1 - m2)
                dW[co, ci, i, 2] = h * (m1 + m2) + m3
        s = partb[0, co]
        for k in range(1, nc):
            s += partb[k, co]
        db[co] = s
    return dx, dW, db


@njit(parallel=True, cache=True, error_model="numpy", fastmath=_FM)
def _grad_pre_activation(y, dy, act):
    """dy * act'(y) elementwise, as a new array (N, C, OH, OW)."""
    g = np.empty_like(dy)
    gf, yf, df = g.reshape(-1), y.reshape(-1), dy.reshape(-1)
    n = gf.shape[0]
    one = dy.dtype.type(1)
    nb = _n_blocks(n, 32768, 64)
    for k in prange(nb):
        lo, hi = U(k * n // nb), U((k + 1) * n // nb)
        for i in range(hi - lo):
            gf[lo + i] = df[lo + i] * _activation_grad(yf[lo + i], act, one)
    return g


def conv2d_backward_winograd(x, W, y, dy, sh, sw, pt, pl, dh, dw, groups, act, need_dx):
    """Gradients of conv2d_forward_winograd: (dx, dW, db); dx is (0, C, H, W) when
    ``need_dx`` is False.  y is the forward output (used for the activation's derivative)."""
    g = dy if act == ACT_NONE else _grad_pre_activation(y, dy, act)
    Ut = np.ascontiguousarray(_wino_weights(W).transpose(0, 2, 1))
    return _wino_backward(x, g, Ut, pt, pl, need_dx)


# ------------------------------------------------------------------------------ dispatchers


def conv2d_algorithm(C, KH, KW, sh, sw, groups, dh=1, dw=1, Cout=None):
    """The algorithm the dispatchers use for this shape:

    * ALGO_DIRECT for stride 1 when one group's receptive field C/groups*KH*KW is at most
      DIRECT_MAX_K (one input channel, depthwise);
    * ALGO_WINOGRAD for 3x3, stride 1, dilation 1, one group, at least 8 input and output
      channels (below that the GEMMs are too thin to pay for the transforms);
    * ALGO_IM2COL otherwise.
    """
    if sh == 1 and sw == 1 and (C // groups) * KH * KW <= DIRECT_MAX_K:
        return ALGO_DIRECT
    if (KH == KW == 3 and sh == sw == 1 and dh == dw == 1 and groups == 1 and C >= 8
            and (Cout is None or Cout >= 8)):
        return ALGO_WINOGRAD
    return ALGO_IM2COL


_FORWARD = {ALGO_DIRECT: conv2d_forward_direct, ALGO_IM2COL: conv2d_forward_im2col,
            ALGO_WINOGRAD: conv2d_forward_winograd}
_BACKWARD = {ALGO_DIRECT: conv2d_backward_direct, ALGO_IM2COL: conv2d_backward_im2col,
             ALGO_WINOGRAD: conv2d_backward_winograd}


def conv2d_forward(x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act, algo=-1):
    """y = act(conv(x, W) + b), (N, C_out, OH, OW), with the algorithm ``algo`` (an ALGO_*
    code; -1 picks one with ``conv2d_algorithm``).  Arguments: module docstring."""
    if algo < 0:
        algo = conv2d_algorithm(x.shape[1], W.shape[2], W.shape[3], sh, sw, groups, dh, dw,
                                W.shape[0])
    return _FORWARD[algo](x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act)


def conv2d_backward(x, W, y, dy, sh, sw, pt, pl, dh, dw, groups, act, need_dx, algo=-1):
    """Gradients of conv2d_forward: (dx (N, C, H, W) or (0, C, H, W) without ``need_dx``,
    dW (C_out, C_in/groups, KH, KW), db (C_out,)).  y: the forward output; dy = dL/dy."""
    if algo < 0:
        algo = conv2d_algorithm(x.shape[1], W.shape[2], W.shape[3], sh, sw, groups, dh, dw,
                                W.shape[0])
    return _BACKWARD[algo](x, W, y, dy, sh, sw, pt, pl, dh, dw, groups, act, need_dx)
