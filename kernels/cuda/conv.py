"""2-D convolution (cross-correlation, NCHW) on the GPU; mirrors kernels.cpu.conv (same names,
arguments, layouts and activation codes; see its docstring for the arguments).

One algorithm, the implicit GEMM: the convolution of group g is the product
W_g (C_out/groups, K) @ cols_g (K, N*OH*OW), K = C_in/groups*KH*KW, where cols is the im2col
matrix, never stored: the GEMM's B-tile loader gathers each element straight from x (zero
outside the image) and the epilogue writes y in NCHW with bias and activation fused.  The
names of the CPU's algorithms (``*_direct``, ``*_im2col``, ``*_winograd``), their codes, the
CPU's ``conv2d_algorithm`` and the ``algo`` argument are kept so code that picks one runs
unchanged; on the GPU they all run the implicit GEMM.

Work to threads:

* forward: the tiling of ``kernels.cuda.dense.gemm`` (16x16 threads, a 64x64 tile of
  (output channel, output pixel) per block, 16-deep K slices in shared memory, 4x4 register
  micro-tiles); grid (pixel tiles, channel tiles, groups).  W loads are coalesced along K (its
  contiguous axis), x gathers and y stores along output pixels (consecutive ow).
* backward, g = dy * act'(y) and db: a block of 256 threads per (output channel, chunk of the
  N*OH*OW pixels), coalesced along pixels, shared-memory tree sum into a per-chunk partial;
  the partials are added in chunk order (chunk count depends on the size only).
* backward, dW: implicit GEMM g_g (C_out/groups, N*OH*OW) @ cols_g^T, split over a fixed,
  size-dependent number of slices of the long N*OH*OW axis (grid z = groups x slices) so a
  small weight tensor still fills the device; each slice writes its own partial, summed in
  order afterwards.  No atomics: deterministic.
* backward, dx: a gather, one thread per input element (grid-stride, consecutive threads on
  consecutive iw): it sums W[co, ci, kh, kw] * g[n, co, oh, ow] over the output positions whose
  window covers it, in a fixed order; g reads are coalesced, W reads are warp broadcasts.
"""
import functools

import numpy as np
from numba import cuda, from_dtype

from ..cpu import conv as _cpu
from ._launch import cdiv, empty, grid_1d
from .dense import AS_W, BK, BM, BN, BS_W, RM, RN, TX, TY, _activate, _activation_grad, \
    _sum_chunks, n_chunks

ACT_NONE, ACT_RELU, ACT_SIGMOID, ACT_TANH = 0, 1, 2, 3
# The algorithm codes and the CPU's choice of algorithm, shared so code that names or picks an
# algorithm runs unchanged on either backend (the GPU runs the implicit GEMM for all of them).
ALGO_DIRECT, ALGO_IM2COL = _cpu.ALGO_DIRECT, _cpu.ALGO_IM2COL
ALGORITHMS = _cpu.ALGORITHMS
DIRECT_MAX_K = _cpu.DIRECT_MAX_K
conv2d_algorithm = _cpu.conv2d_algorithm

_NT = TY * TX
_RED = 256                  # threads of the per-channel reduction blocks
_SLICE = 4096               # pixels (N*OH*OW) per dW split-K slice, at most _MAX_SLICES
_MAX_SLICES = 64


@cuda.jit(device=True, inline=True)
def _tile_mma(As, Bs, acc, a, b, tx, ty):
    """acc += As^T Bs over one K slice, for this thread's 4x4 micro-tile."""
    for kk in range(BK):
        for i in range(RM):
            a[i] = As[kk, ty + TY * i]
        for j in range(RN):
            b[j] = Bs[kk, tx + TX * j]
        for i in range(RM):
            for j in range(RN):
                acc[i, j] += a[i] * b[j]


@cuda.jit(device=True, inline=True)
def _x_at(x, n, c, kr, p, KH, KW, sh, sw, pt, pl, dh, dw, OW, zero):
    """cols[(ci, kh, kw) = kr, (n, p)] for channel c = the group's first channel + ci."""
    kh = kr // KW
    kw = kr - kh * KW
    oh = p // OW
    ow = p - oh * OW
    ih = oh * sh - pt + kh * dh
    iw = ow * sw - pl + kw * dw
    if ih >= 0 and ih < x.shape[2] and iw >= 0 and iw < x.shape[3]:
        return x[n, c, ih, iw]
    return zero


@functools.lru_cache(maxsize=None)
def _kernels(dtype):
    nt = from_dtype(np.dtype(dtype))

    @cuda.jit
    def forward(x, W, b, y, sh, sw, pt, pl, dh, dw, act):
        As = cuda.shared.array((BK, AS_W), nt)
        Bs = cuda.shared.array((BK, BS_W), nt)
        acc = cuda.local.array((RM, RN), nt)
        a = cuda.local.array(RM, nt)
        bb = cuda.local.array(RN, nt)
        N, C = x.shape[0], x.shape[1]
        Cout, Cg, KH, KW = W.shape
        OH, OW = y.shape[2], y.shape[3]
        grp = cuda.blockIdx.z
        cout_g = Cout // (C // Cg)
        KHW = KH * KW
        K = Cg * KHW
        P = OH * OW
        NP = N * P
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * TX + tx
        row0 = cuda.blockIdx.y * BM          # output channel within the group
        col0 = cuda.blockIdx.x * BN          # output pixel over the batch, n*P + p
        zero, one = nt(0), nt(1)
        for i in range(RM):
            for j in range(RN):
                acc[i, j] = zero
        for k0 in range(0, K, BK):
            for l in range(tid, BM * BK, _NT):          # W: consecutive threads along k
                k, m = l % BK, l // BK
                gk, gm = k0 + k, row0 + m
                if gk < K and gm < cout_g:
                    ci = gk // KHW
                    r = gk - ci * KHW
                    As[k, m] = W[grp * cout_g + gm, ci, r // KW, r % KW]
                else:
                    As[k, m] = zero
            for l in range(tid, BN * BK, _NT):          # x gather: consecutive along pixels
                col, k = l % BN, l // BN
                gk, gc = k0 + k, col0 + col
                if gk < K and gc < NP:
                    ci = gk // KHW
                    n = gc // P
                    Bs[k, col] = _x_at(x, n, grp * Cg + ci, gk - ci * KHW, gc - n * P, KH, KW,
                                       sh, sw, pt, pl, dh, dw, OW, zero)
                else:
                    Bs[k, col] = zero
            cuda.syncthreads()
            _tile_mma(As, Bs, acc, a, bb, tx, ty)
            cuda.syncthreads()
        for i in range(RM):
            m = row0 + ty + TY * i
            if m < cout_g:
                co = grp * cout_g + m
                for j in range(RN):
                    gc = col0 + tx + TX * j
                    if gc < NP:
                        n = gc // P
                        p = gc - n * P
                        oh = p // OW
                        y[n, co, oh, p - oh * OW] = _activate(acc[i, j] + b[co], act, one)

    @cuda.jit
    def grad_chansum(y, dy, act, g, part):
        """g = dy * act'(y) and part[c, co] = sum of g[:, co] over pixel chunk c."""
        red = cuda.shared.array(_RED, nt)
        N, Cout, OH, OW = y.shape
        P = OH * OW
        NP = N * P
        R = part.shape[0]
        co, c = cuda.blockIdx.x, cuda.blockIdx.y
        t = cuda.threadIdx.x
        one = nt(1)
        s = nt(0)
        for i in range(c * NP // R + t, (c + 1) * NP // R, _RED):
            n = i // P
            p = i - n * P
            oh = p // OW
            ow = p - oh * OW
            v = dy[n, co, oh, ow] * _activation_grad(y[n, co, oh, ow], act, one)
            g[n, co, oh, ow] = v
            s += v
        red[t] = s
        cuda.syncthreads()
        h = _RED // 2
        while h > 0:
            if t < h:
                red[t] += red[t + h]
            cuda.syncthreads()
            h //= 2
        if t == 0:
            part[c, co] = red[0]

    @cuda.jit
    def weight_grad(x, g, part, sh, sw, pt, pl, dh, dw, KH, KW):
        """part[s, co, k] = sum over pixel slice s of g[n, co, p] * cols[k, (n, p)]."""
        As = cuda.shared.array((BK, AS_W), nt)
        Bs = cuda.shared.array((BK, BS_W), nt)
        acc = cuda.local.array((RM, RN), nt)
        a = cuda.local.array(RM, nt)
        bb = cuda.local.array(RN, nt)
        N, C = x.shape[0], x.shape[1]
        Cout, OH, OW = g.shape[1], g.shape[2], g.shape[3]
        S = part.shape[0]
        K = part.shape[2]
        KHW = KH * KW
        Cg = K // KHW
        groups = C // Cg
        cout_g = Cout // groups
        grp = cuda.blockIdx.z % groups
        s = cuda.blockIdx.z // groups
        P = OH * OW
        NP = N * P
        l0, l1 = s * NP // S, (s + 1) * NP // S
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * TX + tx
        row0 = cuda.blockIdx.y * BM          # output channel within the group
        col0 = cuda.blockIdx.x * BN          # k = (ci, kh, kw)
        zero = nt(0)
        for i in range(RM):
            for j in range(RN):
                acc[i, j] = zero
        for q0 in range(l0, l1, BK):
            for e in range(tid, BM * BK, _NT):          # g: consecutive threads along pixels
                q, m = e % BK, e // BK
                gq, gm = q0 + q, row0 + m
                if gq < l1 and gm < cout_g:
                    n = gq // P
                    p = gq - n * P
                    oh = p // OW
                    As[q, m] = g[n, grp * cout_g + gm, oh, p - oh * OW]
                else:
                    As[q, m] = zero
            for e in range(tid, BN * BK, _NT):          # x gather: consecutive along pixels
                q, kc = e % BK, e // BK
                gq, gk = q0 + q, col0 + kc
                if gq < l1 and gk < K:
                    ci = gk // KHW
                    n = gq // P
                    Bs[q, kc] = _x_at(x, n, grp * Cg + ci, gk - ci * KHW, gq - n * P, KH, KW,
                                      sh, sw, pt, pl, dh, dw, OW, zero)
                else:
                    Bs[q, kc] = zero
            cuda.syncthreads()
            _tile_mma(As, Bs, acc, a, bb, tx, ty)
            cuda.syncthreads()
        for i in range(RM):
            m = row0 + ty + TY * i
            if m < cout_g:
                for j in range(RN):
                    k = col0 + tx + TX * j
                    if k < K:
                        part[s, grp * cout_g + m, k] = acc[i, j]

    return forward, grad_chansum, weight_grad


@cuda.jit
def _sum_slices(part, out):
    """out[r] = sum over s of part[s, r] in order (part (S, R) flat per slice)."""
    for r in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        t = part[0, r]
        for s in range(1, part.shape[0]):
            t += part[s, r]
        out[r] = t


@cuda.jit
def _input_grad(g, W, dx, sh, sw, pt, pl, dh, dw, zero):
    """dx[n, c, ih, iw] = sum of W[co, ci, kh, kw] g[n, co, oh, ow] over the (co, kh, kw) of
    c's group whose output position (oh, ow) reads (ih, iw); one thread per dx element."""
    N, C, H, Wd = dx.shape
    Cout, Cg, KH, KW = W.shape
    OH, OW = g.shape[2], g.shape[3]
    cout_g = Cout // (C // Cg)
    total = N * C * H * Wd
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        iw = e % Wd
        r = e // Wd
        ih = r % H
        r //= H
        c = r % C
        n = r // C
        grp = c // Cg
        ci = c - grp * Cg
        s = zero
        for j in range(cout_g):
            co = grp * cout_g + j
            for kh in range(KH):
                th = ih + pt - kh * dh
                if th < 0 or th % sh != 0:
                    continue
                oh = th // sh
                if oh >= OH:
                    continue
                for kw in range(KW):
                    tw = iw + pl - kw * dw
                    if tw < 0 or tw % sw != 0:
                        continue
                    ow = tw // sw
                    if ow < OW:
                        s += W[co, ci, kh, kw] * g[n, co, oh, ow]
        dx[n, c, ih, iw] = s


def conv2d_forward(x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act, algo=-1):
    """y = act(conv(x, W) + b), (N, C_out, OH, OW); ``algo`` is accepted and ignored."""
    N = x.shape[0]
    Cout = W.shape[0]
    y = empty((N, Cout, OH, OW), x.dtype)
    if N * OH * OW == 0 or Cout == 0:
        return y
    cout_g = Cout // groups
    grid = (cdiv(N * OH * OW, BN), cdiv(cout_g, BM), groups)
    _kernels(x.dtype)[0][grid, (TX, TY)](x, W, b, y, sh, sw, pt, pl, dh, dw, act)
    return y


def conv2d_backward(x, W, y, dy, sh, sw, pt, pl, dh, dw, groups, act, need_dx, algo=-1):
    """Gradients of conv2d_forward: (dx (N, C, H, W) or (0, C, H, W) without ``need_dx``,
    dW (C_out, C_in/groups, KH, KW), db (C_out,)).  y: the forward output; dy = dL/dy."""
    N, C, H, Wd = x.shape
    Cout, Cg, KH, KW = W.shape
    OH, OW = y.shape[2], y.shape[3]
    NP = N * OH * OW
    K = Cg * KH * KW
    fwd, chansum, wgrad = _kernels(x.dtype)
    g = empty(y.shape, y.dtype)
    db = empty(Cout, x.dtype)
    dW = empty((Cout, Cg, KH, KW), x.dtype)
    if Cout:
        R = n_chunks(NP)
        part = empty((R, Cout), x.dtype)
        chansum[(Cout, R), _RED](y, dy, act, g, part)
        _sum_chunks[cdiv(Cout, 128), 128](part, db)
        S = max(1, min(_MAX_SLICES, cdiv(NP, _SLICE)))
        partW = empty((S, Cout, K), x.dtype)
        grid = (cdiv(K, BN), cdiv(Cout // groups, BM), groups * S)
        wgrad[grid, (TX, TY)](x, g, partW, sh, sw, pt, pl, dh, dw, KH, KW)
        _sum_slices[grid_1d(Cout * K)](partW.reshape(S, Cout * K), dW.reshape(Cout * K))
    if not need_dx:
        return empty((0, C, H, Wd), x.dtype), dW, db
    dx = empty((N, C, H, Wd), x.dtype)
    if N * C * H * Wd:
        _input_grad[grid_1d(N * C * H * Wd)](g, W, dx, sh, sw, pt, pl, dh, dw,
                                             x.dtype.type(0))
    return dx, dW, db


def conv2d_forward_direct(x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act):
    """The CPU's direct-algorithm entry point; on the GPU, the implicit GEMM."""
    return conv2d_forward(x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act)


def conv2d_forward_im2col(x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act):
    """The CPU's im2col entry point; on the GPU, the implicit GEMM (im2col done in the loads)."""
    return conv2d_forward(x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act)


def conv2d_backward_direct(x, W, y, dy, sh, sw, pt, pl, dh, dw, groups, act, need_dx):
    """The CPU's direct-algorithm entry point; on the GPU, the implicit-GEMM backward."""
    return conv2d_backward(x, W, y, dy, sh, sw, pt, pl, dh, dw, groups, act, need_dx)


def conv2d_backward_im2col(x, W, y, dy, sh, sw, pt, pl, dh, dw, groups, act, need_dx):
    """The CPU's im2col entry point; on the GPU, the implicit-GEMM backward."""
    return conv2d_backward(x, W, y, dy, sh, sw, pt, pl, dh, dw, groups, act, need_dx)


def conv2d_forward_winograd(x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act):
    """The CPU's Winograd entry point; on the GPU, the implicit GEMM."""
    return conv2d_forward(x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act)


def conv2d_backward_winograd(x, W, y, dy, sh, sw, pt, pl, dh, dw, groups, act, need_dx):
    """The CPU's Winograd entry point; on the GPU, the implicit-GEMM backward."""
    return conv2d_backward(x, W, y, dy, sh, sw, pt, pl, dh, dw, groups, act, need_dx)


def __getattr__(name):
    """Algorithm codes the CPU module defines beyond these (``ALGO_*``) are the CPU's."""
    if name.startswith("ALGO_"):
        return getattr(_cpu, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
