"""im2col + GEMM convolution (any stride, dilation, groups, kernel): ``conv2d_forward_im2col`` /
``conv2d_backward_im2col``.

Arguments and the choice between algorithms: conv.py's docstring.  Shared helpers:
_conv_common.py (after editing that file, clear the Numba caches as its docstring says).
"""
import numpy as np
from numba import njit, prange

from ._conv_common import _FM, _PARTIALS_BUDGET, ACT_NONE, U, _activate, _activation_grad, \
    _n_blocks

#: elements of im2col columns a backward chunk builds at once (several samples side by side)
_COLS_BUDGET = 1 << 21


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
