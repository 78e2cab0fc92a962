"""2-D pooling, NCHW: max pooling (argmax kept), average pooling and global average pooling.

Arguments shared by the windowed kernels:

    x  (N, C, H, W)         input;  y (N, C, OH, OW) output
    KH, KW                  window size;  sh, sw  stride (>= 1)
    pt, pl                  padding on the top and on the left (the host keeps padding at most
                            half the window, as PyTorch does, so every window holds at least one
                            input element); the bottom/right padding is implied by OH, OW:
                            OH = (H + pt + pb - KH) // sh + 1

Window (oh, ow) covers rows oh*sh - pt + kh and columns ow*sw - pl + kw, kh < KH, kw < KW.

Max pooling: padded positions never win (they count as -inf).  ``arg[n, c, oh, ow]`` is the
window-local index kh*KW + kw of the maximum; ties go to the FIRST maximum in row-major order
(smallest kh, then smallest kw), so a window of equal values sends its whole gradient to its
top-left element.  A NaN counts as larger than any number (the first NaN wins), so NaNs
propagate as in PyTorch.  ``arg`` is uint8 when KH*KW <= 256 and int32 otherwise (the host
allocates it; smaller indices mean less memory traffic).

Average pooling: y = (sum of the window's input elements) / divisor, with divisor = KH*KW when
``count_include_pad`` (PyTorch's default: padded zeros count) and the number of input elements
in the window otherwise.

Backward passes are gathers: each input element sums the gradients of the windows that cover
it (for max pooling, of the windows whose argmax it is), in a fixed order.  The common 2x2
stride-2 unpadded max pooling has its own loops: its windows do not overlap, so its backward
zeroes the plane and stores each window's gradient at the window's argmax (every element is
written by at most one window).  Every ``prange`` iteration owns whole (sample, channel) planes,
so results are bit-identical run to run and across thread counts.
"""
import numpy as np
from numba import njit, prange

# Hot loops index flat views with np.uint64 offsets (see kernels/cpu/_conv_common.py, "Loop style"):
# per-row slices and signed indices cost more than the work of a short row.
U = np.uint64
_1, _2, _3 = U(1), U(2), U(3)      # a bare literal would make an unsigned expression signed


@njit(cache=True, error_model="numpy")
def _n_blocks(items, grain, most):
    """Blocks to split ``items`` units of work into: one per ``grain`` units, 1 to ``most``."""
    return max(1, min(most, items // max(1, grain)))


@njit(cache=True, error_model="numpy")
def _cover(n_in, n_out, k, s, p):
    """For each input position i: the outputs o in [lo[i], hi[i]) whose window covers it
    (o*s - p <= i <= o*s - p + k - 1)."""
    lo = np.empty(n_in, dtype=np.int64)
    hi = np.empty(n_in, dtype=np.int64)
    for i in range(n_in):
        a = -((-(i + p - k + 1)) // s)          # ceil((i + p - k + 1) / s)
        b = (i + p) // s + 1
        lo[i] = max(0, a)
        hi[i] = max(lo[i], min(n_out, b))
    return lo, hi


@njit(cache=True, inline="always", error_model="numpy")
def _window_max(xp, h0, w0, kh0, kh1, kw0, kw1, KW, yr, ar, ow, nan_aware):
    """yr[ow], ar[ow] = max and first argmax of the window of plane xp whose top-left corner is
    (h0, w0), over taps kh0 <= kh < kh1, kw0 <= kw < kw1.  The plain pass uses branch-free
    selects and returns False (leaving the result unusable) if the window holds a NaN; the
    ``nan_aware`` pass lets the first NaN win and always returns True."""
    m = xp[h0 + kh0, w0 + kw0]
    a = kh0 * KW + kw0
    s = m * 0
    for kh in range(kh0, kh1):
        for kw in range(kw0, kw1):
            v = xp[h0 + kh, w0 + kw]
            if nan_aware:
                if v > m or (v != v and m == m):
                    m, a = v, kh * KW + kw
            else:
                w = v > m
                m, a = (v, kh * KW + kw) if w else (m, a)
                s += v
    yr[ow] = m
    ar[ow] = a
    return nan_aware or s == s


@njit(parallel=True, cache=True, error_model="numpy")
def maxpool2d_forward(x, KH, KW, sh, sw, pt, pl, OH, OW, arg):
    """Max pooling: returns y (N, C, OH, OW) and fills ``arg`` (N, C, OH, OW), uint8 or int32,
    with the window-local index kh*KW + kw of each window's first maximum."""
    N, C, H, Wd = x.shape
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    xf, yf, af = x.reshape(-1), y.reshape(-1), arg.reshape(-1)
    uOW = U(OW)
    items = N * C
    nb = min(items, _n_blocks(items * H * Wd, 16384, 256))
    fast = KH == 2 and KW == 2 and sh == 2 and sw == 2 and pt == 0 and pl == 0
    for k in prange(nb):
        for it in range(k * items // nb, (k + 1) * items // nb):
            n, c = it // C, it % C
            xp = x[n, c]
            yp = y[n, c]
            ap = arg[n, c]
            if fast:
                for oh in range(OH):
                    r0 = U(((n * C + c) * H + 2 * oh) * Wd)
                    r1 = r0 + U(Wd)
                    o = U(((n * C + c) * OH + oh) * OW)
                    bad = False
                    for ow in range(uOW):         # branch-free selects; NaN rows redone below
                        v0, v1 = xf[r0 + _2 * ow], xf[r0 + _2 * ow + _1]
                        v2, v3 = xf[r1 + _2 * ow], xf[r1 + _2 * ow + _1]
                        m, a = v0, 0
                        w = v1 > m
                        m, a = (v1, 1) if w else (m, a)
                        w = v2 > m
                        m, a = (v2, 2) if w else (m, a)
                        w = v3 > m
                        m, a = (v3, 3) if w else (m, a)
                        yf[o + ow] = m
                        af[o + ow] = a
                        s = v0 + v1 + v2 + v3
                        bad |= s != s
                    if bad:
                        yr = yp[oh]
                        ar = ap[oh]
                        for ow in range(OW):
                            _window_max(xp, 2 * oh, 2 * ow, 0, 2, 0, 2, 2, yr, ar, ow, True)
                continue
            for oh in range(OH):
                h0 = oh * sh - pt
                kh0, kh1 = max(0, -h0), min(KH, H - h0)
                yr = yp[oh]
                ar = ap[oh]
                for ow in range(OW):
                    w0 = ow * sw - pl
                    if not _window_max(xp, h0, w0, kh0, kh1, max(0, -w0), min(KW, Wd - w0), KW,
                                       yr, ar, ow, False):
                        _window_max(xp, h0, w0, kh0, kh1, max(0, -w0), min(KW, Wd - w0), KW,
                                    yr, ar, ow, True)
    return y


@njit(parallel=True, cache=True, error_model="numpy")
def maxpool2d_backward(dy, arg, KH, KW, sh, sw, pt, pl, H, W):
    """Gradient of maxpool2d_forward: dx (N, C, H, W), where each input element gathers dy of
    the windows whose argmax it is (zero if none)."""
    N, C, OH, OW = dy.shape
    dx = np.empty((N, C, H, W), dtype=dy.dtype)
    dxf, gf, af = dx.reshape(-1), dy.reshape(-1), arg.reshape(-1)
    uOW = U(OW)
    z = dy.dtype.type(0)
    items = N * C
    nb = min(items, _n_blocks(items * H * W, 16384, 256))
    fast = KH == 2 and KW == 2 and sh == 2 and sw == 2 and pt == 0 and pl == 0
    hlo, hhi = _cover(H, OH, KH, sh, pt)
    wlo, whi = _cover(W, OW, KW, sw, pl)
    for k in prange(nb):
        for it in range(k * items // nb, (k + 1) * items // nb):
            n, c = it // C, it % C
            gp = dy[n, c]
            ap = arg[n, c]
            out = dx[n, c]
            if fast:
                # windows tile the plane without overlap: zero the plane (one contiguous,
                # vectorised pass), then store each window's gradient at its argmax (masked
                # to the window's four places, so no argmax value can write outside it)
                p0 = U((n * C + c) * H * W)
                for i in range(U(H * W)):
                    dxf[p0 + i] = z
                uW = U(W)
                for oh in range(OH):
                    d0 = p0 + U(2 * oh) * uW
                    o = U(((n * C + c) * OH + oh) * OW)
                    for ow in range(uOW):
                        a = U(af[o + ow]) & _3
                        dxf[d0 + (a >> _1) * uW + _2 * ow + (a & _1)] = gf[o + ow]
                continue
            for ih in range(H):
                for iw in range(W):
                    s = z
                    for oh in range(hlo[ih], hhi[ih]):
                        base = (ih - (oh * sh - pt)) * KW + pl + iw
                        for ow in range(wlo[iw], whi[iw]):
                            if ap[oh, ow] == base - ow * sw:
                                s += gp[oh, ow]
                    out[ih, iw] = s
    return dx


@njit(cache=True, error_model="numpy")
def _divisors(n_in, n_out, k, s, p, include_pad):
    """Per output position along one axis: how many window positions count (k, or the number
    of them inside the input)."""
    d = np.empty(n_out, dtype=np.int64)
    for o in range(n_out):
        a = o * s - p
        d[o] = k if include_pad else min(a + k, n_in) - max(a, 0)
    return d


@njit(parallel=True, cache=True, error_model="numpy")
def avgpool2d_forward(x, KH, KW, sh, sw, pt, pl, OH, OW, count_include_pad):
    """Average pooling: y (N, C, OH, OW); see the module docstring for the divisor."""
    N, C, H, Wd = x.shape
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    dvh = _divisors(H, OH, KH, sh, pt, count_include_pad)
    dvw = _divisors(Wd, OW, KW, sw, pl, count_include_pad)
    items = N * C
    nb = min(items, _n_blocks(items * H * Wd, 16384, 256))
    for k in prange(nb):
        for it in range(k * items // nb, (k + 1) * items // nb):
            n, c = it // C, it % C
            xp = x[n, c]
            yp = y[n, c]
            for oh in range(OH):
                h0 = oh * sh - pt
                kh0, kh1 = max(0, -h0), min(KH, H - h0)
                for ow in range(OW):
                    w0 = ow * sw - pl
                    kw0, kw1 = max(0, -w0), min(KW, Wd - w0)
                    s = x.dtype.type(0)
                    for kh in range(kh0, kh1):
                        for kw in range(kw0, kw1):
                            s += xp[h0 + kh, w0 + kw]
                    yp[oh, ow] = s / x.dtype.type(dvh[oh] * dvw[ow])
    return y


@njit(parallel=True, cache=True, error_model="numpy")
def avgpool2d_backward(dy, KH, KW, sh, sw, pt, pl, H, W, count_include_pad):
    """Gradient of avgpool2d_forward: dx (N, C, H, W); each input element gathers
    dy / divisor of every window that covers it."""
    N, C, OH, OW = dy.shape
    dx = np.empty((N, C, H, W), dtype=dy.dtype)
    dvh = _divisors(H, OH, KH, sh, pt, count_include_pad)
    dvw = _divisors(W, OW, KW, sw, pl, count_include_pad)
    hlo, hhi = _cover(H, OH, KH, sh, pt)
    wlo, whi = _cover(W, OW, KW, sw, pl)
    items = N * C
    nb = min(items, _n_blocks(items * H * W, 16384, 256))
    for k in prange(nb):
        g = np.empty((OH, OW), dtype=dy.dtype)
        for it in range(k * items // nb, (k + 1) * items // nb):
            n, c = it // C, it % C
            gp = dy[n, c]
            for oh in range(OH):
                for ow in range(OW):
                    g[oh, ow] = gp[oh, ow] / dy.dtype.type(dvh[oh] * dvw[ow])
            out = dx[n, c]
            for ih in range(H):
                for iw in range(W):
                    s = dy.dtype.type(0)
                    for oh in range(hlo[ih], hhi[ih]):
                        for ow in range(wlo[iw], whi[iw]):
                            s += g[oh, ow]
                    out[ih, iw] = s
    return dx


@njit(parallel=True, cache=True, error_model="numpy")
def global_avgpool2d_forward(x):
    """y (N, C) = the mean of each (H, W) plane of x (N, C, H, W)."""
    N, C, H, Wd = x.shape
    y = np.empty((N, C), dtype=x.dtype)
    items = N * C
    nb = min(items, _n_blocks(items * H * Wd, 16384, 256))
    inv = x.dtype.type(1) / x.dtype.type(H * Wd)
    for k in prange(nb):
        for it in range(k * items // nb, (k + 1) * items // nb):
            n, c = it // C, it % C
            s = x.dtype.type(0)
            for ih in range(H):
                for iw in range(Wd):
                    s += x[n, c, ih, iw]
            y[n, c] = s * inv
    return y


@njit(parallel=True, cache=True, error_model="numpy")
def global_avgpool2d_backward(dy, H, W):
    """Gradient of global_avgpool2d_forward: dx (N, C, H, W) = dy[n, c] / (H*W) everywhere."""
    N, C = dy.shape
    dx = np.empty((N, C, H, W), dtype=dy.dtype)
    items = N * C
    nb = min(items, _n_blocks(items * H * W, 16384, 256))
    inv = dy.dtype.type(1) / dy.dtype.type(H * W)
    for k in prange(nb):
        for it in range(k * items // nb, (k + 1) * items // nb):
            n, c = it // C, it % C
            g = dy[n, c] * inv
            for ih in range(H):
                for iw in range(W):
                    dx[n, c, ih, iw] = g
    return dx
