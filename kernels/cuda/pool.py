"""2-D pooling (NCHW) on the GPU; mirrors kernels.cpu.pool (same names, arguments, layouts,
argmax encoding, tie and NaN rules and divisors; see its docstring).

Work to threads:

* windowed forwards (max, average): one thread per output element, grid-stride over
  N*C*OH*OW with consecutive threads on consecutive ow (stores coalesced, loads of a window
  row shared through L1 by neighbouring threads).  Max pooling keeps the first maximum in
  row-major window order and lets the first NaN win, writing its window-local index to ``arg``.
* windowed backwards: gathers, one thread per input element (consecutive threads on
  consecutive iw): each sums, in (oh, ow) order, the gradients of the windows that cover it (for
  max pooling, those whose argmax it is).  No scatter, no atomics: deterministic.
* global average pooling: forward, 32 lanes per (n, c) plane and 8 planes per block, lanes
  striding the plane (coalesced) and a shared-memory tree sum; backward, one thread per dx
  element.
"""
import functools

import numpy as np
from numba import cuda, from_dtype

from ._launch import cdiv, empty, grid_1d, max_blocks

LANES, PLANES = 32, 8


@cuda.jit(device=True, inline=True)
def _cover_lo(i, p, k, s):
    """First output o whose window (o*s - p .. o*s - p + k - 1) reaches input position i."""
    a = i + p - k + 1
    return 0 if a <= 0 else (a + s - 1) // s


@functools.lru_cache(maxsize=None)
def _kernels(dtype):
    nt = from_dtype(np.dtype(dtype))

    @cuda.jit
    def maxpool_fwd(x, y, arg, KH, KW, sh, sw, pt, pl):
        N, C, H, Wd = x.shape
        OH, OW = y.shape[2], y.shape[3]
        for e in range(cuda.grid(1), N * C * OH * OW, cuda.gridsize(1)):
            ow = e % OW
            r = e // OW
            oh = r % OH
            r //= OH
            c = r % C
            n = r // C
            h0, w0 = oh * sh - pt, ow * sw - pl
            kh0, kh1 = max(0, -h0), min(KH, H - h0)
            kw0, kw1 = max(0, -w0), min(KW, Wd - w0)
            m = x[n, c, h0 + kh0, w0 + kw0]
            a = kh0 * KW + kw0
            for kh in range(kh0, kh1):
                for kw in range(kw0, kw1):
                    v = x[n, c, h0 + kh, w0 + kw]
                    if v > m or (v != v and m == m):     # first max; the first NaN wins
                        m = v
                        a = kh * KW + kw
            y[n, c, oh, ow] = m
            arg[n, c, oh, ow] = a

    @cuda.jit
    def maxpool_bwd(dy, arg, dx, KH, KW, sh, sw, pt, pl):
        N, C, H, Wd = dx.shape
        OH, OW = dy.shape[2], dy.shape[3]
        for e in range(cuda.grid(1), N * C * H * Wd, cuda.gridsize(1)):
            iw = e % Wd
            r = e // Wd
            ih = r % H
            r //= H
            c = r % C
            n = r // C
            s = nt(0)
            for oh in range(_cover_lo(ih, pt, KH, sh), min(OH, (ih + pt) // sh + 1)):
                base = (ih - (oh * sh - pt)) * KW + pl + iw
                for ow in range(_cover_lo(iw, pl, KW, sw), min(OW, (iw + pl) // sw + 1)):
                    if arg[n, c, oh, ow] == base - ow * sw:
                        s += dy[n, c, oh, ow]
            dx[n, c, ih, iw] = s

    @cuda.jit(device=True, inline=True)
    def _divisor(oh, ow, H, Wd, KH, KW, sh, sw, pt, pl, include_pad):
        if include_pad:
            return nt(KH * KW)
        h0, w0 = oh * sh - pt, ow * sw - pl
        return nt((min(h0 + KH, H) - max(h0, 0)) * (min(w0 + KW, Wd) - max(w0, 0)))

    @cuda.jit
    def avgpool_fwd(x, y, KH, KW, sh, sw, pt, pl, include_pad):
        N, C, H, Wd = x.shape
        OH, OW = y.shape[2], y.shape[3]
        for e in range(cuda.grid(1), N * C * OH * OW, cuda.gridsize(1)):
            ow = e % OW
            r = e // OW
            oh = r % OH
            r //= OH
            c = r % C
            n = r // C
            h0, w0 = oh * sh - pt, ow * sw - pl
            s = nt(0)
            for kh in range(max(0, -h0), min(KH, H - h0)):
                for kw in range(max(0, -w0), min(KW, Wd - w0)):
                    s += x[n, c, h0 + kh, w0 + kw]
            y[n, c, oh, ow] = s / _divisor(oh, ow, H, Wd, KH, KW, sh, sw, pt, pl, include_pad)

    @cuda.jit
    def avgpool_bwd(dy, dx, KH, KW, sh, sw, pt, pl, include_pad):
        N, C, H, Wd = dx.shape
        OH, OW = dy.shape[2], dy.shape[3]
        for e in range(cuda.grid(1), N * C * H * Wd, cuda.gridsize(1)):
            iw = e % Wd
            r = e // Wd
            ih = r % H
            r //= H
            c = r % C
            n = r // C
            s = nt(0)
            for oh in range(_cover_lo(ih, pt, KH, sh), min(OH, (ih + pt) // sh + 1)):
                for ow in range(_cover_lo(iw, pl, KW, sw), min(OW, (iw + pl) // sw + 1)):
                    s += dy[n, c, oh, ow] / _divisor(oh, ow, H, Wd, KH, KW, sh, sw, pt, pl,
                                                     include_pad)
            dx[n, c, ih, iw] = s

    @cuda.jit
    def gap_fwd(x, y):
        red = cuda.shared.array((PLANES, LANES), nt)
        N, C, H, Wd = x.shape
        HW = H * Wd
        inv = nt(1) / nt(HW)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        for base in range(cuda.blockIdx.x * PLANES, N * C, cuda.gridDim.x * PLANES):
            pl_ = base + ty
            s = nt(0)
            if pl_ < N * C:
                n, c = pl_ // C, pl_ % C
                for i in range(tx, HW, LANES):
                    s += x[n, c, i // Wd, i % Wd]
            red[ty, tx] = s
            cuda.syncthreads()
            h = LANES // 2
            while h > 0:
                if tx < h:
                    red[ty, tx] += red[ty, tx + h]
                cuda.syncthreads()
                h //= 2
            if tx == 0 and pl_ < N * C:
                y[pl_ // C, pl_ % C] = red[ty, 0] * inv
            cuda.syncthreads()

    @cuda.jit
    def gap_bwd(dy, dx):
        N, C, H, Wd = dx.shape
        inv = nt(1) / nt(H * Wd)
        for e in range(cuda.grid(1), N * C * H * Wd, cuda.gridsize(1)):
            pl_ = e // (H * Wd)
            dx[pl_ // C, pl_ % C, (e // Wd) % H, e % Wd] = dy[pl_ // C, pl_ % C] * inv

    return maxpool_fwd, maxpool_bwd, avgpool_fwd, avgpool_bwd, gap_fwd, gap_bwd


def maxpool2d_forward(x, KH, KW, sh, sw, pt, pl, OH, OW, arg):
    """Max pooling: returns y (N, C, OH, OW) and fills the device array ``arg`` (N, C, OH, OW),
    uint8 or int32, with the window-local index kh*KW + kw of each window's first maximum."""
    N, C = x.shape[:2]
    y = empty((N, C, OH, OW), x.dtype)
    if y.size:
        _kernels(x.dtype)[0][grid_1d(y.size)](x, y, arg, KH, KW, sh, sw, pt, pl)
    return y


def maxpool2d_backward(dy, arg, KH, KW, sh, sw, pt, pl, H, W):
    """Gradient of maxpool2d_forward: dx (N, C, H, W)."""
    N, C = dy.shape[:2]
    dx = empty((N, C, H, W), dy.dtype)
    if dx.size:
        _kernels(dy.dtype)[1][grid_1d(dx.size)](dy, arg, dx, KH, KW, sh, sw, pt, pl)
    return dx


def avgpool2d_forward(x, KH, KW, sh, sw, pt, pl, OH, OW, count_include_pad):
    """Average pooling: y (N, C, OH, OW)."""
    N, C = x.shape[:2]
    y = empty((N, C, OH, OW), x.dtype)
    if y.size:
        _kernels(x.dtype)[2][grid_1d(y.size)](x, y, KH, KW, sh, sw, pt, pl,
                                              bool(count_include_pad))
    return y


def avgpool2d_backward(dy, KH, KW, sh, sw, pt, pl, H, W, count_include_pad):
    """Gradient of avgpool2d_forward: dx (N, C, H, W)."""
    N, C = dy.shape[:2]
    dx = empty((N, C, H, W), dy.dtype)
    if dx.size:
        _kernels(dy.dtype)[3][grid_1d(dx.size)](dy, dx, KH, KW, sh, sw, pt, pl,
                                                bool(count_include_pad))
    return dx


def global_avgpool2d_forward(x):
    """y (N, C) = the mean of each (H, W) plane of x (N, C, H, W)."""
    N, C = x.shape[:2]
    y = empty((N, C), x.dtype)
    if N * C:
        blocks = max(1, min(cdiv(N * C, PLANES), max_blocks()))
        _kernels(x.dtype)[4][blocks, (LANES, PLANES)](x, y)
    return y


def global_avgpool2d_backward(dy, H, W):
    """Gradient of global_avgpool2d_forward: dx (N, C, H, W) = dy[n, c] / (H*W)."""
    N, C = dy.shape
    dx = empty((N, C, H, W), dy.dtype)
    if dx.size:
        _kernels(dy.dtype)[5][grid_1d(dx.size)](dy, dx)
    return dx
