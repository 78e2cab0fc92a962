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

Two algorithms, each a forward/backward pair; ``conv2d_forward`` / ``conv2d_backward`` pick one
per shape (``conv2d_algorithm``), and either can be called directly:

* ``direct`` (stride 1 only): loops over the taps on "wide" planes (below), each tap one long
  vectorised multiply-add.  Used when one group's receptive field is small
  (``C_in/groups * KH * KW <= DIRECT_MAX_K``, e.g. a first layer on one input channel or a
  depthwise convolution), where a GEMM would have a tiny inner dimension.  Forward and dx are
  parallel over (sample, channel) planes, dW and db over output channels (each computes its own
  dW[co] over the whole batch, in sample order).
* ``im2col``: per (sample, group), unfold the receptive fields into a column matrix
  (C_in/groups*KH*KW, OH*OW) and do one BLAS GEMM with the group's (C_out/groups, K) weights.
  Forward is parallel over blocks of (sample, group) pairs, writing y[n] directly; the backward
  is parallel over a fixed number of batch chunks: each chunk does dW's GEMM over its samples at
  once (columns of several samples side by side) into its own partial, and dx = col2im(W^T dy)
  per sample into its own dx[n]; the partials are summed in chunk order afterwards.

Every ``prange`` iteration writes memory no other iteration writes (its own planes, samples or
partials): the backward passes gather per output element or per owned sample, never scatter-add
across iterations.  Chunk counts depend on the problem size only, never on the thread count, so
results are bit-identical from run to run and across thread counts.
"""
import numpy as np
from numba import njit, prange

ACT_NONE, ACT_RELU, ACT_SIGMOID, ACT_TANH = 0, 1, 2, 3
ALGO_DIRECT, ALGO_IM2COL = 0, 1
ALGORITHMS = {"direct": ALGO_DIRECT, "im2col": ALGO_IM2COL}

#: receptive-field size (C_in/groups * KH * KW) up to which the direct algorithm is used
DIRECT_MAX_K = 32
#: elements of im2col columns a backward chunk builds at once (several samples side by side)
_COLS_BUDGET = 1 << 21
#: elements of per-chunk weight-gradient partials the backward may hold in all
_PARTIALS_BUDGET = 1 << 23

# Flags that keep NaN/Inf semantics (DESIGN.md); "reassoc" lets LLVM vectorise the reductions.
# A vectorised reduction sums in a different order from its scalar fallback, and LLVM picks
# between them at run time when the loop also stores (memory-overlap checks on the addresses),
# which would make results depend on where buffers happen to lie.  So every reduction loop here
# is a pure reduction: loads and accumulators only, no stores.
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(cache=True)
def _n_blocks(items, grain, most):
    """Blocks to split ``items`` units of work into: one per ``grain`` units, 1 to ``most``."""
    return max(1, min(most, items // max(1, grain)))


@njit(cache=True, inline="always")
def _cdiv(a, b):
    """ceil(a / b) for b > 0 and any integer a."""
    return -((-a) // b)


@njit(cache=True, inline="always")
def _span(off, s, n_in, n_out):
    """Output positions o in [lo, hi) whose input position o*s + off lies in [0, n_in)."""
    lo = max(0, _cdiv(-off, s))
    hi = min(n_out, _cdiv(n_in - off, s))
    return lo, max(lo, hi)


@njit(cache=True, inline="always")
def _activate(z, act):
    if act == 1:
        return z if z > 0 else z * 0
    if act == 2:
        return 1 / (1 + np.exp(-z))
    if act == 3:
        return np.tanh(z)
    return z


@njit(cache=True, inline="always")
def _activation_grad(y, act):
    if act == 1:
        return y * 0 + 1 if y > 0 else y * 0
    if act == 2:
        return y * (1 - y)
    if act == 3:
        return 1 - y * y
    return y * 0 + 1


# ----------------------------------------------------------------------------------- direct
#
# The direct algorithm uses "wide" planes: an input plane (zero-padded into a buffer when there
# is padding) is read with its own row length Wp, and the output is computed as one flat vector
# of length L = (OH-1)*Wp + OW over that row length (the Wp-OW entries past each output row are
# junk and never copied out).  Tap (kh, kw) then reads the input plane at the flat offset
# kh*dh*Wp + kw*dw, so every tap is one long, contiguous, vectorisable loop instead of OH short
# rows.  Taps are applied three at a time (one pass over the accumulator per three taps).  This
# needs stride 1; strided convolutions go to im2col.


@njit(cache=True, fastmath=_FM)
def _taps_axpy(acc, xf, o, L, w, t, r, step):
    """acc[i] += sum_{j<r} w[t+j] * xf[o + j*step + i] for i < L (r = 1, 2 or 3)."""
    if r == 3:
        w0, w1, w2 = w[t], w[t + 1], w[t + 2]
        a = xf[o:o + L]
        b = xf[o + step:o + step + L]
        c = xf[o + 2 * step:o + 2 * step + L]
        for i in range(L):
            acc[i] += w0 * a[i] + w1 * b[i] + w2 * c[i]
    elif r == 2:
        w0, w1 = w[t], w[t + 1]
        a = xf[o:o + L]
        b = xf[o + step:o + step + L]
        for i in range(L):
            acc[i] += w0 * a[i] + w1 * b[i]
    else:
        w0 = w[t]
        a = xf[o:o + L]
        for i in range(L):
            acc[i] += w0 * a[i]


@njit(cache=True, fastmath=_FM)
def _padded_planes(x, n, c0, Cg, pt, pl, Hn, Wn, buf):
    """The planes x[n, c0:c0+Cg] as flat (Cg, Hp*Wp) arrays with the padding applied, and Wp.
    Without padding (and when the needed extent Hn x Wn fits in the input) this is a view of
    x; otherwise the planes are copied into ``buf`` (Cg*Hn*Wn elements) with zero borders."""
    H, Wd = x.shape[2], x.shape[3]
    if pt == 0 and pl == 0 and Hn <= H and Wn <= Wd:
        return x[n, c0:c0 + Cg].reshape(Cg, H * Wd), Wd
    xb = buf[:Cg * Hn * Wn].reshape(Cg, Hn, Wn)
    z = x.dtype.type(0)
    for ci in range(Cg):
        for r in range(Hn):
            ih = r - pt
            if ih < 0 or ih >= H:
                for q in range(Wn):
                    xb[ci, r, q] = z
            else:
                for q in range(Wn):
                    iw = q - pl
                    xb[ci, r, q] = x[n, c0 + ci, ih, iw] if 0 <= iw < Wd else z
    return xb.reshape(Cg, Hn * Wn), Wn


@njit(parallel=True, cache=True, fastmath=_FM)
def conv2d_forward_direct(x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act):
    """Direct convolution, stride 1 only (sh = sw = 1): y (N, C_out, OH, OW); see the module
    docstring for the arguments."""
    N, C, H, Wd = x.shape
    Cout, Cg, KH, KW = W.shape
    cout_g = Cout // groups
    y = np.empty((N, Cout, OH, OW), dtype=x.dtype)
    Hn, Wn = (OH - 1) * sh + (KH - 1) * dh + 1, (OW - 1) * sw + (KW - 1) * dw + 1
    Wf = W.reshape(Cout, Cg * KH * KW)
    # work items: (sample, group, block of the group's output channels)
    cb = max(1, min(cout_g, 64 // max(1, N * groups)))
    items = N * groups * cb
    for it in prange(items):
        n = it // (groups * cb)
        grp = (it // cb) % groups
        q = it % cb
        co0 = grp * cout_g + q * cout_g // cb
        co1 = grp * cout_g + (q + 1) * cout_g // cb
        buf = np.empty(Cg * Hn * Wn, dtype=x.dtype)
        xf, Wp = _padded_planes(x, n, grp * Cg, Cg, pt, pl, Hn, Wn, buf)
        L = (OH - 1) * Wp + OW
        acc = np.empty(L, dtype=x.dtype)
        for co in range(co0, co1):
            bv = b[co]
            for i in range(L):
                acc[i] = bv
            w = Wf[co]
            for ci in range(Cg):
                for kh in range(KH):
                    t0 = (ci * KH + kh) * KW
                    for kw in range(0, KW, 3):
                        _taps_axpy(acc, xf[ci], kh * dh * Wp + kw * dw, L, w, t0 + kw,
                                   min(3, KW - kw), dw)
            out = y[n, co]
            for oh in range(OH):
                for ow in range(OW):
                    out[oh, ow] = _activate(acc[oh * Wp + ow], act)
    return y


@njit(cache=True, fastmath=_FM)
def _wide_grad(dy, y, n, co, act, Wp, M, gw):
    """gw[M + oh*Wp + ow] = dy[n, co, oh, ow] * act'(y[n, co, oh, ow]); zeros elsewhere in gw.
    Returns the sum of the gradient over the plane (the sample's share of db[co])."""
    OH, OW = dy.shape[2], dy.shape[3]
    z = dy.dtype.type(0)
    for i in range(gw.shape[0]):
        gw[i] = z
    for oh in range(OH):
        for ow in range(OW):
            gw[M + oh * Wp + ow] = dy[n, co, oh, ow] * _activation_grad(y[n, co, oh, ow], act)
    s = z
    for i in range(M, M + (OH - 1) * Wp + OW):    # a pure reduction: see _FM
        s += gw[i]
    return s


@njit(parallel=True, cache=True, fastmath=_FM)
def _direct_dw_db(x, y, dy, KH, KW, sh, sw, pt, pl, dh, dw, groups, act):
    """dW (C_out, Cg, KH, KW) and db (C_out,), parallel over output channels; each sums over
    the batch in sample order, one partial sum per sample (wide planes)."""
    N, C, H, Wd = x.shape
    Cout, OH, OW = dy.shape[1], dy.shape[2], dy.shape[3]
    Cg = C // groups
    cout_g = Cout // groups
    K = Cg * KH * KW
    Hn, Wn = (OH - 1) * sh + (KH - 1) * dh + 1, (OW - 1) * sw + (KW - 1) * dw + 1
    dWf = np.empty((Cout, K), dtype=x.dtype)
    db = np.empty(Cout, dtype=x.dtype)
    for co in prange(Cout):
        c0 = (co // cout_g) * Cg
        z = x.dtype.type(0)
        tb = z
        for t in range(K):
            dWf[co, t] = z
        buf = np.empty(Cg * Hn * Wn, dtype=x.dtype)
        Wp = Wd if (pt == 0 and pl == 0 and Hn <= H and Wn <= Wd) else Wn
        L = (OH - 1) * Wp + OW
        gw = np.empty(L, dtype=x.dtype)
        for n in range(N):
            tb += _wide_grad(dy, y, n, co, act, Wp, 0, gw)
            xf, _ = _padded_planes(x, n, c0, Cg, pt, pl, Hn, Wn, buf)
            for ci in range(Cg):
                for kh in range(KH):
                    for kw in range(0, KW, 3):
                        o = kh * dh * Wp + kw * dw
                        t = (ci * KH + kh) * KW + kw
                        r = min(3, KW - kw)
                        a = xf[ci, o:o + L]
                        s0 = z
                        s1 = z
                        s2 = z
                        if r == 3:
                            bb = xf[ci, o + dw:o + dw + L]
                            cc = xf[ci, o + 2 * dw:o + 2 * dw + L]
                            for i in range(L):
                                gi = gw[i]
                                s0 += gi * a[i]
                                s1 += gi * bb[i]
                                s2 += gi * cc[i]
                            dWf[co, t + 2] += s2
                            dWf[co, t + 1] += s1
                        elif r == 2:
                            bb = xf[ci, o + dw:o + dw + L]
                            for i in range(L):
                                gi = gw[i]
                                s0 += gi * a[i]
                                s1 += gi * bb[i]
                            dWf[co, t + 1] += s1
                        else:
                            for i in range(L):
                                s0 += gw[i] * a[i]
                        dWf[co, t] += s0
        db[co] = tb
    return dWf.reshape(Cout, Cg, KH, KW), db


@njit(parallel=True, cache=True, fastmath=_FM)
def _direct_dx(y, dy, W, H, Wd, sh, sw, pt, pl, dh, dw, groups, act):
    """dx (N, C, H, W), parallel over input planes; each plane gathers from the gradient
    planes of its group's output channels (wide planes with a leading zero margin, read with
    the taps flipped)."""
    N, Cout, OH, OW = dy.shape
    _, Cg, KH, KW = W.shape
    C = Cg * groups
    cout_g = Cout // groups
    dx = np.empty((N, C, H, Wd), dtype=dy.dtype)
    z = dy.dtype.type(0)
    items = N * C
    Wp = Wd + pl + max(0, (OW - 1) + (KW - 1) * dw + 1 - Wd - pl)
    Hp = H + pt + max(0, (OH - 1) + (KH - 1) * dh + 1 - H - pt)
    M = (KH - 1) * dh * Wp + (KW - 1) * dw
    Lx = Hp * Wp
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
        gw = np.empty(M + Lx, dtype=dy.dtype)
        for co in range(grp * cout_g, (grp + 1) * cout_g):
            _wide_grad(dy, y, n, co, act, Wp, M, gw)
            w = wflip[co, ci]
            # acc[j] += sum_t W[co,ci,kh,kw] * gw[M + j - kh*dh*Wp - kw*dw]; with flipped
            # taps (kh', kw') = (KH-1-kh, KW-1-kw) the read offset is kh'*dh*Wp + kw'*dw.
            for kh in range(KH):
                for kw in range(0, KW, 3):
                    _taps_axpy(acc, gw, kh * dh * Wp + kw * dw, Lx, w, kh * KW + kw,
                               min(3, KW - kw), dw)
        out = dx[n, c]
        for ih in range(H):
            for iw in range(Wd):
                out[ih, iw] = acc[(ih + pt) * Wp + iw + pl]
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


@njit(cache=True, fastmath=_FM)
def _im2col(x, n, c0, Cg, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW, cols, col0):
    """cols[(ci*KH + kh)*KW + kw, col0 + oh*OW + ow] = x[n, c0+ci, oh*sh-pt+kh*dh, ow*sw-pl+kw*dw]
    (zero outside the input)."""
    H, Wd = x.shape[2], x.shape[3]
    z = x.dtype.type(0)
    for ci in range(Cg):
        xp = x[n, c0 + ci]
        for kh in range(KH):
            offh = kh * dh - pt
            for kw in range(KW):
                offw = kw * dw - pl
                ow0, ow1 = _span(offw, sw, Wd, OW)
                row = cols[(ci * KH + kh) * KW + kw]
                for oh in range(OH):
                    ih = oh * sh + offh
                    base = col0 + oh * OW
                    if ih < 0 or ih >= H:
                        for ow in range(OW):
                            row[base + ow] = z
                        continue
                    xr = xp[ih]
                    for ow in range(ow0):
                        row[base + ow] = z
                    if sw == 1:
                        for ow in range(ow0, ow1):
                            row[base + ow] = xr[ow + offw]
                    else:
                        for ow in range(ow0, ow1):
                            row[base + ow] = xr[ow * sw + offw]
                    for ow in range(ow1, OW):
                        row[base + ow] = z


@njit(cache=True, fastmath=_FM)
def _col2im(dcols, dx, n, c0, Cg, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW):
    """dx[n, c0:c0+Cg] = the adjoint of _im2col applied to dcols (K, OH*OW): each input
    element gets the sum of the column entries that read it.  Writes only dx[n, c0:c0+Cg]."""
    H, Wd = dx.shape[2], dx.shape[3]
    for ci in range(Cg):
        out = dx[n, c0 + ci]
        for ih in range(H):
            for iw in range(Wd):
                out[ih, iw] = 0
        for kh in range(KH):
            offh = kh * dh - pt
            oh0, oh1 = _span(offh, sh, H, OH)
            for kw in range(KW):
                offw = kw * dw - pl
                ow0, ow1 = _span(offw, sw, Wd, OW)
                row = dcols[(ci * KH + kh) * KW + kw]
                for oh in range(oh0, oh1):
                    orow = out[oh * sh + offh]
                    base = oh * OW
                    if sw == 1:
                        for ow in range(ow0, ow1):
                            orow[ow + offw] += row[base + ow]
                    else:
                        for ow in range(ow0, ow1):
                            orow[ow * sw + offw] += row[base + ow]


@njit(parallel=True, cache=True, fastmath=_FM)
def conv2d_forward_im2col(x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act):
    """im2col + GEMM convolution: y (N, C_out, OH, OW); see the module docstring."""
    N, C, H, Wd = x.shape
    Cout, Cg, KH, KW = W.shape
    cout_g = Cout // groups
    K = Cg * KH * KW
    P = OH * OW
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
            for j in range(cout_g):
                bv = b[grp * cout_g + j]
                for p in range(P):
                    out[j, p] = _activate(out[j, p] + bv, act)
    return y


@njit(cache=True)
def _backward_chunks(N, Cout, K, P):
    """(chunks, samples per GEMM): a fixed number of batch chunks for the weight-gradient
    partials (memory-capped), and how many samples' columns one GEMM takes at once."""
    nc = max(1, min(N, 16))
    while nc > 1 and nc * Cout * K > _PARTIALS_BUDGET:
        nc -= 1
    per = (N + nc - 1) // nc
    m = max(1, min(per, _COLS_BUDGET // max(1, K * P)))
    return nc, m


@njit(parallel=True, cache=True, fastmath=_FM)
def conv2d_backward_im2col(x, W, y, dy, sh, sw, pt, pl, dh, dw, groups, act, need_dx):
    """Gradients of conv2d_forward_im2col: (dx, dW, db); dx is (0, C, H, W) when ``need_dx``
    is False.  y is the forward output (used for the activation's derivative)."""
    N, C, H, Wd = x.shape
    Cout, Cg, KH, KW = W.shape
    OH, OW = dy.shape[2], dy.shape[3]
    cout_g = Cout // groups
    K = Cg * KH * KW
    P = OH * OW
    W3 = W.reshape(groups, cout_g, K)
    WT = np.empty((groups, K, cout_g), dtype=x.dtype)      # per-group W^T, contiguous for BLAS
    for grp in range(groups):
        for j in range(cout_g):
            for r in range(K):
                WT[grp, r, j] = W3[grp, j, r]
    dy3 = dy.reshape(N, groups, cout_g, P)
    y3 = y.reshape(N, groups, cout_g, P)
    dx = np.empty((N if need_dx else 0, C, H, Wd), dtype=x.dtype)
    nc, m = _backward_chunks(N, Cout, K, P)
    partW = np.empty((nc, groups, cout_g, K), dtype=x.dtype)
    partb = np.empty((nc, Cout), dtype=x.dtype)
    for c in prange(nc):
        n0, n1 = c * N // nc, (c + 1) * N // nc
        colbuf = np.empty(K * m * P, dtype=x.dtype)
        gbuf = np.empty(cout_g * m * P, dtype=x.dtype)
        gs = np.empty((cout_g, P), dtype=x.dtype)
        tmp = np.empty((cout_g, K), dtype=x.dtype)
        dcols = np.empty((K if need_dx else 0, P), dtype=x.dtype)
        for grp in range(groups):
            pw = partW[c, grp]
            for j in range(cout_g):
                partb[c, grp * cout_g + j] = 0
                for r in range(K):
                    pw[j, r] = 0
            for s0 in range(n0, n1, m):
                ms = min(n1, s0 + m) - s0
                L = ms * P
                cols = colbuf[:K * L].reshape(K, L)
                gm = gbuf[:cout_g * L].reshape(cout_g, L)
                for n in range(s0, s0 + ms):
                    col0 = (n - s0) * P
                    _im2col(x, n, grp * Cg, Cg, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW,
                            cols, col0)
                    for j in range(cout_g):
                        for p in range(P):
                            v = dy3[n, grp, j, p] * _activation_grad(y3[n, grp, j, p], act)
                            gs[j, p] = v
                            gm[j, col0 + p] = v
                        s = x.dtype.type(0)
                        for p in range(P):                  # a pure reduction: see _FM
                            s += gs[j, p]
                        partb[c, grp * cout_g + j] += s
                    if need_dx:
                        np.dot(WT[grp], gs, dcols)
                        _col2im(dcols, dx, n, grp * Cg, Cg, KH, KW, sh, sw, pt, pl, dh, dw,
                                OH, OW)
                np.dot(gm, cols.T, tmp)             # this sub-batch's share of dW
                for j in range(cout_g):
                    for r in range(K):
                        pw[j, r] += tmp[j, r]
    dW = np.empty((Cout, Cg, KH, KW), dtype=x.dtype)
    dW3 = dW.reshape(groups, cout_g, K)
    db = np.empty(Cout, dtype=x.dtype)
    rows = groups * cout_g
    nb = _n_blocks(rows * K * nc, 65536, 16)
    nb = min(nb, rows)
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


# ------------------------------------------------------------------------------ dispatchers


def conv2d_algorithm(C, KH, KW, sh, sw, groups):
    """The algorithm the dispatchers use for this shape: ALGO_DIRECT for stride 1 when one
    group's receptive field C/groups*KH*KW is at most DIRECT_MAX_K, else ALGO_IM2COL."""
    small = (C // groups) * KH * KW <= DIRECT_MAX_K
    return ALGO_DIRECT if (sh == 1 and sw == 1 and small) else ALGO_IM2COL


def conv2d_forward(x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act, algo=-1):
    """y = act(conv(x, W) + b), (N, C_out, OH, OW), with the algorithm ``algo`` (ALGO_DIRECT or
    ALGO_IM2COL; -1 picks one with ``conv2d_algorithm``).  Arguments: module docstring."""
    if algo < 0:
        algo = conv2d_algorithm(x.shape[1], W.shape[2], W.shape[3], sh, sw, groups)
    f = conv2d_forward_direct if algo == ALGO_DIRECT else conv2d_forward_im2col
    return f(x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act)


def conv2d_backward(x, W, y, dy, sh, sw, pt, pl, dh, dw, groups, act, need_dx, algo=-1):
    """Gradients of conv2d_forward: (dx (N, C, H, W) or (0, C, H, W) without ``need_dx``,
    dW (C_out, C_in/groups, KH, KW), db (C_out,)).  y: the forward output; dy = dL/dy."""
    if algo < 0:
        algo = conv2d_algorithm(x.shape[1], W.shape[2], W.shape[3], sh, sw, groups)
    f = conv2d_backward_direct if algo == ALGO_DIRECT else conv2d_backward_im2col
    return f(x, W, y, dy, sh, sw, pt, pl, dh, dw, groups, act, need_dx)
