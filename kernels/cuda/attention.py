"""Fused scaled-dot-product attention (FlashAttention-style) and the head split / merge copies
on the GPU; mirrors kernels.cpu.attention (same names, arguments, shapes, formulas and dropout
mask; see its docstring for the maths).  q, k, v, out, dout (B, H, T, D), lse (B, H, T).

Work to threads:

* ``attention_forward``: one block of ``BQ`` (64) threads per (b, h, query tile of BQ rows),
  one thread per query row.  The block walks the key tiles of ``BK`` (32) keys (causal: only
  those up to its last row, about half the work); each K and V tile is staged into shared
  memory with coalesced loads (consecutive threads on consecutive elements of the contiguous
  (keys, D) block), then every thread reads it row by row (the same address for the whole
  warp: a broadcast, no bank conflicts) to form its row's BK scores, the tile max, and the
  online softmax: the running max m and sum l live in registers, the output row's
  accumulator (D values) in registers, rescaled by e^(m_old - m_new) only when the max grows.
  At the end out = acc / l and lse = m + log l.  The (T, T) score matrix is never stored.
* ``attention_backward`` (FlashAttention-2, no atomics, deterministic), two kernels:
    1. dQ, one block per (b, h, query tile), one thread per query row: Di = dO_i . O_i (also
       written to a (B, H, T) scratch array), then over the key tiles (staged as above) it
       recomputes P_ij = e^(s q_i.k_j - lse_i), dP_ij = Z_ij dO_i.v_j, dS = P (dP - Di) and
       accumulates dQ_i = s sum_j dS_ij k_j in registers.
    2. dK and dV, one block per (b, h, key tile of BQ keys), one thread per key row: over the
       query tiles (causal: from the block's first key on), the Q and dO tiles and their lse
       and Di are staged in shared memory and each thread accumulates dV_j = sum_i P_ij Z_ij
       dO_i and dK_j = s sum_i dS_ij q_i in registers.
  Each output row is summed by one thread in a fixed order: bit-identical from run to run.
* Per-row data (a block's own q / dO / O rows, or k / v rows, and its output rows) moves
  through the same shared buffers in BK-row chunks, so those loads and stores are coalesced
  too; the buffers' rows are padded to an odd width (DMAX + 1) so the thread-per-row reads
  are free of bank conflicts.
* Dropout: the thread of row i hashes weight (i, j) itself with the same SplitMix64 stream as
  the CPU (``_splitmix`` below, ``kernels.cpu.activations._splitmix`` bit for bit), so the
  mask is identical and needs no memory; the backward re-hashes it.  p == 0 hashes nothing.
* ``heads_split`` / ``heads_merge``: grid-stride copies, consecutive threads on consecutive
  elements of the output (coalesced writes; the reads are contiguous runs of D).

Compile-time shapes: the kernels are built per (dtype, DMAX, BQ, BK) by a factory, DMAX being
D rounded up to a multiple of 8 (the register rows and the shared tiles have DMAX columns,
zero padded, so the loops over D have a constant trip count and unroll).  BK shrinks for large
D (float64 especially) so the shared tiles stay under ``SMEM_BYTES``.  Register use is about
3 to 4 DMAX-wide rows a thread: fine to D = 64 in float32; beyond that rows spill to local
memory (cached, correct, slower), and a split of D over several lanes would be the next step.
"""
import functools
import math

import numpy as np
from numba import cuda, from_dtype, uint64

from ._launch import cdiv, empty, grid_1d

#: threads (rows) per block; rows per staged shared-memory tile (shrunk for wide rows)
BQ = 64
BK = 32
#: static shared memory a kernel may use (the hardware limit is 48 KB)
SMEM_BYTES = 40 * 1024

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S27, _S30, _S31, _S32 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(32)


@cuda.jit(device=True, inline=True)
def _splitmix(seed, i):
    """Output i (uint64) of the SplitMix64 stream started at ``seed``: as on the CPU."""
    z = seed + (i + uint64(1)) * _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@cuda.jit(device=True, inline=True)
def _weight(seed, thr, bh, T, i, j, inv, zero):
    """Z_ij of head bh: inv (1 / (1 - p)) if the weight is kept, else zero."""
    idx = (uint64(bh) * uint64(T) + uint64(i)) * uint64(T) + uint64(j)
    return inv if (_splitmix(seed, idx) >> _S32) >= thr else zero


@functools.lru_cache(maxsize=None)
def _attention_kernels(dtype, dmax, bq, bk):
    nt = from_dtype(np.dtype(dtype))
    W = dmax + 1                       # odd row stride of the shared tiles

    @cuda.jit(device=True, inline=True)
    def _zero(buf, tid):
        for e in range(tid, bk * W, bq):
            r = e // W
            buf[r, e - r * W] = nt(0)

    @cuda.jit(device=True, inline=True)
    def _load(src, b, h, r0, r1, buf, tid):
        """buf[:r1 - r0, :D] <- src[b, h, r0:r1, :] (a contiguous block: coalesced)."""
        D = src.shape[3]
        for e in range(tid, (r1 - r0) * D, bq):
            r = e // D
            d = e - r * D
            buf[r, d] = src[b, h, r0 + r, d]

    @cuda.jit(device=True, inline=True)
    def _own_row(src, b, h, r0, r1, buf, tid, row):
        """row[:D] <- src[b, h, r0 + tid, :] for the block's rows r0..r1, staged through buf in
        bk-row chunks (every thread of the block calls it)."""
        for c0 in range(0, bq, bk):
            lo = min(r1, r0 + c0)
            cuda.syncthreads()
            _load(src, b, h, lo, min(r1, lo + bk), buf, tid)
            cuda.syncthreads()
            if c0 <= tid and tid < c0 + bk and r0 + tid < r1:
                for d in range(dmax):
                    row[d] = buf[tid - c0, d]

    @cuda.jit(device=True, inline=True)
    def _put_row(row, dst, b, h, r0, r1, buf, tid):
        """dst[b, h, r0 + tid, :] <- row[:D], staged through buf (coalesced stores)."""
        D = dst.shape[3]
        for c0 in range(0, bq, bk):
            lo = min(r1, r0 + c0)
            cuda.syncthreads()
            if c0 <= tid and tid < c0 + bk and r0 + tid < r1:
                for d in range(dmax):
                    buf[tid - c0, d] = row[d]
            cuda.syncthreads()
            for e in range(tid, (min(r1, lo + bk) - lo) * D, bq):
                r = e // D
                d = e - r * D
                dst[b, h, lo + r, d] = buf[r, d]

    @cuda.jit(device=True, inline=True)
    def _dot(a, buf, r):
        s = nt(0)
        for d in range(dmax):
            s += a[d] * buf[r, d]
        return s

    @cuda.jit(device=True, inline=True)
    def _visible(causal, n, i, k0):
        """Keys of the tile at k0 (n of them) that query row i sees: the first ones."""
        return max(0, min(n, i - k0 + 1)) if causal else n

    @cuda.jit
    def forward(q, k, v, out, lse, causal, scale, drop, seed, thr, inv):
        Ks = cuda.shared.array((bk, W), nt)
        Vs = cuda.shared.array((bk, W), nt)
        qr = cuda.local.array(dmax, nt)
        acc = cuda.local.array(dmax, nt)
        sc = cuda.local.array(bk, nt)
        H, T = q.shape[1], q.shape[2]
        zero = nt(0)
        tid = cuda.threadIdx.x
        nqb = (T + bq - 1) // bq
        bh = cuda.blockIdx.x // nqb
        b = bh // H
        h = bh - b * H
        q0 = (cuda.blockIdx.x - bh * nqb) * bq
        q1 = min(T, q0 + bq)
        i = q0 + tid
        ok = i < T
        for d in range(dmax):
            qr[d] = zero
            acc[d] = zero
        _zero(Ks, tid)
        _zero(Vs, tid)
        _own_row(q, b, h, q0, q1, Ks, tid, qr)
        m = zero
        l = zero
        kend = q1 if causal else T
        for k0 in range(0, kend, bk):
            k1 = min(kend, k0 + bk)
            cuda.syncthreads()
            _load(k, b, h, k0, k1, Ks, tid)
            _load(v, b, h, k0, k1, Vs, tid)
            cuda.syncthreads()
            n = _visible(causal, k1 - k0, i, k0)
            if ok and n > 0:
                mx = zero
                for c in range(n):
                    s = _dot(qr, Ks, c) * scale
                    sc[c] = s
                    mx = s if c == 0 else max(mx, s)
                if l > zero:                   # rows already started: rescale if m grows
                    if mx > m:
                        a = math.exp(m - mx)
                        l *= a
                        for d in range(dmax):
                            acc[d] *= a
                        m = mx
                else:
                    m = mx
                for c in range(n):
                    e = math.exp(sc[c] - m)
                    l += e
                    if drop:
                        e *= _weight(seed, thr, bh, T, i, k0 + c, inv, zero)
                    for d in range(dmax):
                        acc[d] += e * Vs[c, d]
        if ok:
            il = nt(1) / l
            for d in range(dmax):
                acc[d] *= il
            lse[b, h, i] = m + math.log(l)
        _put_row(acc, out, b, h, q0, q1, Ks, tid)

    @cuda.jit
    def backward_dq(q, k, v, out, lse, dout, dq, Di, causal, scale, drop, seed, thr, inv):
        Ks = cuda.shared.array((bk, W), nt)
        Vs = cuda.shared.array((bk, W), nt)
        qr = cuda.local.array(dmax, nt)
        dor = cuda.local.array(dmax, nt)
        acc = cuda.local.array(dmax, nt)
        H, T = q.shape[1], q.shape[2]
        zero = nt(0)
        tid = cuda.threadIdx.x
        nqb = (T + bq - 1) // bq
        bh = cuda.blockIdx.x // nqb
        b = bh // H
        h = bh - b * H
        q0 = (cuda.blockIdx.x - bh * nqb) * bq
        q1 = min(T, q0 + bq)
        i = q0 + tid
        ok = i < T
        for d in range(dmax):
            qr[d] = zero
            dor[d] = zero
            acc[d] = zero
        _zero(Ks, tid)
        _zero(Vs, tid)
        _own_row(q, b, h, q0, q1, Ks, tid, qr)
        _own_row(dout, b, h, q0, q1, Vs, tid, dor)
        _own_row(out, b, h, q0, q1, Ks, tid, acc)
        di = zero
        L = zero
        if ok:
            for d in range(dmax):
                di += dor[d] * acc[d]
            Di[b, h, i] = di
            L = lse[b, h, i]
        for d in range(dmax):
            acc[d] = zero
        kend = q1 if causal else T
        for k0 in range(0, kend, bk):
            k1 = min(kend, k0 + bk)
            cuda.syncthreads()
            _load(k, b, h, k0, k1, Ks, tid)
            _load(v, b, h, k0, k1, Vs, tid)
            cuda.syncthreads()
            if ok:
                for c in range(_visible(causal, k1 - k0, i, k0)):
                    p = math.exp(_dot(qr, Ks, c) * scale - L)
                    dp = _dot(dor, Vs, c)
                    if drop:
                        dp *= _weight(seed, thr, bh, T, i, k0 + c, inv, zero)
                    ds = p * (dp - di)
                    for d in range(dmax):
                        acc[d] += ds * Ks[c, d]
        if ok:
            for d in range(dmax):
                acc[d] *= scale
        _put_row(acc, dq, b, h, q0, q1, Ks, tid)

    @cuda.jit
    def backward_dkv(q, k, v, dout, lse, Di, dk, dv, causal, scale, drop, seed, thr, inv):
        Qs = cuda.shared.array((bk, W), nt)
        Os = cuda.shared.array((bk, W), nt)
        Ls = cuda.shared.array(bk, nt)
        Ds = cuda.shared.array(bk, nt)
        kr = cuda.local.array(dmax, nt)
        vr = cuda.local.array(dmax, nt)
        ak = cuda.local.array(dmax, nt)
        av = cuda.local.array(dmax, nt)
        H, T = q.shape[1], q.shape[2]
        zero = nt(0)
        tid = cuda.threadIdx.x
        nkb = (T + bq - 1) // bq
        bh = cuda.blockIdx.x // nkb
        b = bh // H
        h = bh - b * H
        j0 = (cuda.blockIdx.x - bh * nkb) * bq
        j1 = min(T, j0 + bq)
        j = j0 + tid
        ok = j < T
        for d in range(dmax):
            kr[d] = zero
            vr[d] = zero
            ak[d] = zero
            av[d] = zero
        _zero(Qs, tid)
        _zero(Os, tid)
        _own_row(k, b, h, j0, j1, Qs, tid, kr)
        _own_row(v, b, h, j0, j1, Os, tid, vr)
        for i0 in range(j0 if causal else 0, T, bk):
            i1 = min(T, i0 + bk)
            cuda.syncthreads()
            _load(q, b, h, i0, i1, Qs, tid)
            _load(dout, b, h, i0, i1, Os, tid)
            for r in range(tid, i1 - i0, bq):
                Ls[r] = lse[b, h, i0 + r]
                Ds[r] = Di[b, h, i0 + r]
            cuda.syncthreads()
            if ok:
                for r in range(max(0, j - i0) if causal else 0, i1 - i0):
                    p = math.exp(_dot(kr, Qs, r) * scale - Ls[r])
                    dp = _dot(vr, Os, r)
                    pz = p
                    if drop:
                        z = _weight(seed, thr, bh, T, i0 + r, j, inv, zero)
                        pz = p * z
                        dp *= z
                    ds = p * (dp - Ds[r])
                    for d in range(dmax):
                        av[d] += pz * Os[r, d]
                        ak[d] += ds * Qs[r, d]
        if ok:
            for d in range(dmax):
                ak[d] *= scale
        _put_row(ak, dk, b, h, j0, j1, Qs, tid)
        _put_row(av, dv, b, h, j0, j1, Qs, tid)

    return forward, backward_dq, backward_dkv


def _tiles(dtype, D):
    """(DMAX, BK) for rows of D values of ``dtype``: D rounded up to a multiple of 8, and the
    staged tile's rows, halved until the shared tiles (two (BK, DMAX + 1) tiles and two
    BK-vectors) fit ``SMEM_BYTES``."""
    dmax = max(8, cdiv(D, 8) * 8)
    bk = BK
    while bk > 1 and (2 * bk * (dmax + 1) + 2 * bk) * np.dtype(dtype).itemsize > SMEM_BYTES:
        bk //= 2
    return dmax, bk


def _config(q):
    """(kernels, blocks) for q's dtype and head size."""
    B, H, T, D = q.shape
    dmax, bk = _tiles(q.dtype, D)
    return _attention_kernels(q.dtype, dmax, BQ, bk), B * H * cdiv(T, BQ)


def _dropout_args(t, dropout_p, seed):
    """(drop, seed, threshold, 1 / (1 - p)) as the kernels take them (the CPU's formulas)."""
    p = float(dropout_p)
    return (p > 0, np.uint64(seed), np.uint64(int(p * 4294967296.0 + 0.5)),
            t(1.0 / (1.0 - p)))


def attention_forward(q, k, v, causal, scale, dropout_p, seed):
    """Fused attention.  q, k, v (B, H, T, D) C-contiguous device arrays, float32 or float64;
    causal (bool); scale (float); dropout_p in [0, 1) on the attention weights; seed (uint64
    or int >= 0) -> out (B, H, T, D), lse (B, H, T) device arrays of q's dtype."""
    B, H, T, D = q.shape
    out = empty((B, H, T, D), q.dtype)
    lse = empty((B, H, T), q.dtype)
    if B * H * T:
        (fwd, _, _), blocks = _config(q)
        t = q.dtype.type
        fwd[blocks, BQ](q, k, v, out, lse, bool(causal), t(scale),
                        *_dropout_args(t, dropout_p, seed))
    return out, lse


def attention_backward(q, k, v, out, lse, dout, causal, scale, dropout_p, seed):
    """Gradients of ``attention_forward``.  q, k, v, out, dout (B, H, T, D), lse (B, H, T)
    device arrays (the forward's out and lse), the forward's causal, scale, dropout_p and
    seed -> dq, dk, dv (B, H, T, D) device arrays of q's dtype."""
    B, H, T, D = q.shape
    dq = empty((B, H, T, D), q.dtype)
    dk = empty((B, H, T, D), q.dtype)
    dv = empty((B, H, T, D), q.dtype)
    if B * H * T:
        (_, kdq, kdkv), blocks = _config(q)
        t = q.dtype.type
        drop = _dropout_args(t, dropout_p, seed)
        Di = empty((B, H, T), q.dtype)
        kdq[blocks, BQ](q, k, v, out, lse, dout, dq, Di, bool(causal), t(scale), *drop)
        kdkv[blocks, BQ](q, k, v, dout, lse, Di, dk, dv, bool(causal), t(scale), *drop)
    return dq, dk, dv


# ------------------------------------------------------------------ head split and merge
@cuda.jit
def _heads_split(x, out):
    P, B, H, T, D = out.shape
    for e in range(cuda.grid(1), P * B * H * T * D, cuda.gridsize(1)):
        d = e % D
        r = e // D
        t = r % T
        r //= T
        h = r % H
        r //= H
        b = r % B
        p = r // B
        out[p, b, h, t, d] = x[b, t, (p * H + h) * D + d]


@cuda.jit
def _heads_merge(part, out, p):
    B, H, T, D = part.shape
    for e in range(cuda.grid(1), B * T * H * D, cuda.gridsize(1)):
        c = e % (H * D)                 # h D + d: contiguous in out's row
        r = e // (H * D)
        t = r % T
        b = r // T
        h = c // D
        out[b, t, p * H * D + c] = part[b, h, t, c - h * D]


def heads_split(x, parts, heads):
    """x (B, T, parts * heads * D) device array -> (parts, B, heads, T, D): the fused
    projection's columns [p, h, d] to part p, head h, feature d."""
    B, T, F = x.shape
    Dh = F // (parts * heads)
    out = empty((parts, B, heads, T, Dh), x.dtype)
    n = parts * B * heads * T * Dh
    if n:
        _heads_split[grid_1d(n)](x, out)
    return out


def heads_merge(parts):
    """parts: a tuple of P device arrays (B, H, T, D) -> (B, T, P * H * D), the inverse of
    heads_split (part p, head h, feature d to column (p H + h) D + d)."""
    P = len(parts)
    B, H, T, Dh = parts[0].shape
    out = empty((B, T, P * H * Dh), parts[0].dtype)
    n = B * T * H * Dh
    if n:
        for p in range(P):
            _heads_merge[grid_1d(n)](parts[p], out, p)
    return out
