"""Winograd convolution (3x3, stride 1, dilation 1, one group): ``conv2d_forward_winograd`` /
``conv2d_backward_winograd``.

Winograd F(2x2, 3x3) (Lavin & Gray 2016) for 3x3, stride 1, dilation 1, one group: each 2x2
output tile is A^T [(G w G^T) * (B^T d B)] A, with d the 4x4 input tile, so the products
become 16 independent GEMMs (one per position xi, nu of the 4x4 transformed tile) of
(C_out, C_in) @ (C_in, tiles): 2.25x fewer multiplies than im2col.  Tiles are taken from a
zero-padded copy of each input plane, so there are no bounds checks in the transforms.
  The backward follows from the same bilinear form (transposition principle), with
  Gt = A g A^T the transformed 2x2 gradient tile, computed once per batch chunk for both:
  dW = G^T [ sum_tiles Gt * (B^T d B) ] G: 16 GEMMs of (C_out, tiles) @ (tiles, C_in) per
  chunk, each accumulated into the chunk's partial by BLAS (beta = 1), partials summed in
  chunk order;  dx: 16 GEMMs W_tf[e]^T @ Gt_e give dL/d(B^T d B) per tile, and B (.) B^T of each
  tile, overlapping tiles summed, is dL/dd (_wino_input_grad).

Arguments and the choice between algorithms: conv.py's docstring.  Shared helpers:
_conv_common.py (after editing that file, clear the Numba caches as its docstring says).
``U`` is np.uint64 here, as in every conv file; the transformed weights G W G^T are ``W_tf``.
"""
import numpy as np
from numba import njit, prange

from ._blas import gemm
from ._conv_common import _FM, _PARTIALS_BUDGET, ACT_NONE, ACT_RELU, U, _1, _2, _3, \
    _activate, _activation_grad, _n_blocks

#: elements of Winograd tile buffers (transformed inputs and products) a chunk holds at once
_TILES_BUDGET = 1 << 18


@njit(cache=True, error_model="numpy", fastmath=_FM)
def _wino_weights(W):
    """W_tf (16, C_out, C_in) = G W G^T for every (co, ci); W (C_out, C_in, 3, 3)."""
    Cout, Cin = W.shape[0], W.shape[1]
    W_tf = np.empty((16, Cout, Cin), dtype=W.dtype)
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
            for i in range(4):                  # W_tf = t G^T   (columns)
                w0, w1, w2 = t[i, 0], t[i, 1], t[i, 2]
                W_tf[i * 4 + 0, co, ci] = w0
                W_tf[i * 4 + 1, co, ci] = h * (w0 + w1 + w2)
                W_tf[i * 4 + 2, co, ci] = h * (w0 - w1 + w2)
                W_tf[i * 4 + 3, co, ci] = w2
    return W_tf


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
def _wino_forward(x, W_tf, b, pt, pl, OH, OW, act):
    """y (N, C_out, OH, OW) = act(conv3x3(x, W) + b) from W_tf = _wino_weights(W); pt, pl are
    the padding on the top and on the left."""
    N, C = x.shape[0], x.shape[1]
    Cout = W_tf.shape[1]
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
            np.dot(W_tf[e], V[e * C * Tc:(e + 1) * C * Tc].reshape(C, Tc),
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
def _wino_backward(x, g, W_tfT, pt, pl, need_dx):
    """dx (N, C_in, H, W) (or (0, ...) without ``need_dx``), dW (C_out, C_in, 3, 3) and db
    (C_out,) from g = dL/d(pre-activation) (N, C_out, OH, OW) and W_tfT (16, C_in, C_out), the
    transformed weights with their channel axes swapped.  Per batch chunk the gradient tiles
    are transformed once (A g A^T) and serve both: 16 GEMMs with the transformed input tiles
    into the chunk's dW partial, and 16 GEMMs W_tfT[e] @ Gt_e giving the gradient of the transformed
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
                    np.dot(W_tfT[e], Gte, Mx[e * C * Tc:(e + 1) * C * Tc].reshape(C, Tc))
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
    W_tfT = np.ascontiguousarray(_wino_weights(W).transpose(0, 2, 1))
    return _wino_backward(x, g, W_tfT, pt, pl, need_dx)
