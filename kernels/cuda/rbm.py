"""Restricted Boltzmann machine kernels on the GPU; mirrors kernels.cpu.rbm (same names,
arguments, formulas, random-number conventions and results; see its docstring).

Work to threads:

* every matrix product is ``kernels.cuda.dense.gemm`` (shared-memory tiles, 4x4 register
  micro-tiles) with the bias and the sigmoid fused in its epilogue, and the weight gradient's
  1/N as its alpha; products read W or W^T in place;
* sampling (h = [u < p], v = mean + noise) and copies are grid-stride elementwise kernels,
  one element per thread, coalesced;
* bias gradients are column sums: per (32-column, row-chunk) block, 32 consecutive columns by 8
  rows (coalesced along rows), a shared-memory sum of the 8 partials, then the chunks added in
  order (chunk count depends on the size only): no atomics, deterministic;
* per-row results (reconstruction error, free energy, pseudo-likelihood) use 32 lanes per row
  and 4 rows per block, lanes striding the row (coalesced) and a shared-memory tree sum.
"""
import functools
import math

import numpy as np
from numba import cuda, from_dtype

from ._launch import cdiv, empty, grid_1d, max_blocks
from .dense import ACT_NONE, ACT_SIGMOID, CB_X, CB_Y, gemm, n_chunks

LANES, ROWS = 32, 4


@cuda.jit
def _bernoulli(p, u, out, one, zero):
    """out = 1 where u < p else 0; (N, M) arrays, out may be p."""
    M = p.shape[1]
    for e in range(cuda.grid(1), p.shape[0] * M, cuda.gridsize(1)):
        n = e // M
        j = e - n * M
        out[n, j] = one if u[n, j] < p[n, j] else zero


@cuda.jit
def _add_into(a, b, out):
    """out = a + b; (N, M) arrays, out may be a."""
    M = a.shape[1]
    for e in range(cuda.grid(1), a.shape[0] * M, cuda.gridsize(1)):
        n = e // M
        j = e - n * M
        out[n, j] = a[n, j] + b[n, j]


@cuda.jit
def _copy(src, dst):
    M = src.shape[1]
    for e in range(cuda.grid(1), src.shape[0] * M, cuda.gridsize(1)):
        n = e // M
        j = e - n * M
        dst[n, j] = src[n, j]


@cuda.jit
def _negate(a):
    M = a.shape[1]
    for e in range(cuda.grid(1), a.shape[0] * M, cuda.gridsize(1)):
        n = e // M
        j = e - n * M
        a[n, j] = -a[n, j]


@cuda.jit
def _fill(a, value):
    M = a.shape[1]
    for e in range(cuda.grid(1), a.shape[0] * M, cuda.gridsize(1)):
        a[e // M, e % M] = value


def _ew(kernel, a, *args):
    """Launch a 2-D elementwise kernel over a's elements."""
    n = a.shape[0] * a.shape[1]
    if n:
        kernel[grid_1d(n)](a, *args)


COL_A, COL_A_MINUS_B, COL_BVEC_MINUS_A = 0, 1, 2


@functools.lru_cache(maxsize=None)
def _kernels(dtype):
    nt = from_dtype(np.dtype(dtype))

    @cuda.jit
    def colsum_part(A, B, bvec, mode, part):
        """part[c, j] = sum over row chunk c of A[n, j] (mode 0), A[n, j] - B[n, j] (mode 1)
        or bvec[j] - A[n, j] (mode 2)."""
        red = cuda.shared.array((CB_Y, CB_X), nt)
        N, M = A.shape
        R = part.shape[0]
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        j = cuda.blockIdx.x * CB_X + tx
        c = cuda.blockIdx.y
        s = nt(0)
        if j < M:
            for n in range(c * N // R + ty, (c + 1) * N // R, CB_Y):
                if mode == 0:
                    s += A[n, j]
                elif mode == 1:
                    s += A[n, j] - B[n, j]
                else:
                    s += bvec[j] - A[n, j]
        red[ty, tx] = s
        cuda.syncthreads()
        if ty == 0 and j < M:
            t = red[0, tx]
            for r in range(1, CB_Y):
                t += red[r, tx]
            part[c, j] = t

    @cuda.jit
    def finish(part, scale, out):
        j = cuda.grid(1)
        if j < out.shape[0]:
            t = part[0, j]
            for c in range(1, part.shape[0]):
                t += part[c, j]
            out[j] = t * scale

    @cuda.jit(device=True, inline=True)
    def row_sum(red, ty, tx, s):
        """Sum s over the 32 lanes of row group ty; every thread of the block calls it."""
        red[ty, tx] = s
        cuda.syncthreads()
        h = LANES // 2
        while h > 0:
            if tx < h:
                red[ty, tx] += red[ty, tx + h]
            cuda.syncthreads()
            h //= 2
        t = red[ty, 0]
        cuda.syncthreads()
        return t

    @cuda.jit(device=True, inline=True)
    def softplus(z):
        return max(z, nt(0)) + math.log1p(math.exp(-abs(z)))

    @cuda.jit
    def sqdist_rows(a, b, out):
        red = cuda.shared.array((ROWS, LANES), nt)
        N, M = a.shape
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        for base in range(cuda.blockIdx.x * ROWS, N, cuda.gridDim.x * ROWS):
            n = base + ty
            s = nt(0)
            if n < N:
                for j in range(tx, M, LANES):
                    d = a[n, j] - b[n, j]
                    s += d * d
            t = row_sum(red, ty, tx, s)
            if tx == 0 and n < N:
                out[n] = t

    @cuda.jit
    def free_energy_rows(v, z, b, c, gaussian, out):
        red = cuda.shared.array((ROWS, LANES), nt)
        N, V = v.shape
        H = z.shape[1]
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        half = nt(0.5)
        for base in range(cuda.blockIdx.x * ROWS, N, cuda.gridDim.x * ROWS):
            n = base + ty
            s = nt(0)
            if n < N:
                for i in range(tx, V, LANES):
                    if gaussian:
                        d = v[n, i] - b[i]
                        s += half * d * d
                    else:
                        s -= v[n, i] * b[i]
                for j in range(tx, H, LANES):
                    s -= softplus(z[n, j] + c[j])
            t = row_sum(red, ty, tx, s)
            if tx == 0 and n < N:
                out[n] = t

    @cuda.jit
    def pseudo_likelihood_rows(v, z, W, b, c, idx, out):
        red = cuda.shared.array((ROWS, LANES), nt)
        N, V = v.shape
        H = z.shape[1]
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        one, two = nt(1), nt(2)
        for base in range(cuda.blockIdx.x * ROWS, N, cuda.gridDim.x * ROWS):
            n = base + ty
            s = nt(0)
            i = 0
            d = one
            if n < N:
                i = idx[n]
                d = one - two * v[n, i]
                for j in range(tx, H, LANES):
                    zj = z[n, j] + c[j]
                    s += softplus(zj + d * W[i, j]) - softplus(zj)
            t = row_sum(red, ty, tx, s)
            if tx == 0 and n < N:
                diff = -d * b[i] - t
                out[n] = -nt(V) * softplus(-diff)

    return colsum_part, finish, sqdist_rows, free_energy_rows, pseudo_likelihood_rows


def _colsum(A, scale, mode=COL_A, B=None, bvec=None):
    """scale * (column sums of A, A - B or bvec - A), (M,), deterministic."""
    N, M = A.shape
    out = empty(M, A.dtype)
    if M == 0:
        return out
    R = n_chunks(N)
    part = empty((R, M), A.dtype)
    ks = _kernels(A.dtype)
    B = A if B is None else B
    bvec = empty(M, A.dtype) if bvec is None else bvec
    ks[0][(cdiv(M, CB_X), R), (CB_X, CB_Y)](A, B, bvec, mode, part)
    ks[1][cdiv(M, 128), 128](part, A.dtype.type(scale), out)
    return out


def _rows(kernel, N, *args):
    if N:
        kernel[max(1, min(cdiv(N, ROWS), max_blocks())), (LANES, ROWS)](*args)


def _sample(p, u, out):
    t = p.dtype.type
    _ew(_bernoulli, p, u, out, t(1), t(0))


# ---------------------------------------------------------------- contrastive divergence
def rbm_cd(v0, W, b, c, chain, k, persistent, gaussian, sample_visible, uh, nv):
    """CD-k / PCD-k gradient in one call: (dW, db, dc, new_chain, v_neg, err); arguments and
    results as kernels.cpu.rbm.rbm_cd."""
    N, V = v0.shape
    H = W.shape[1]
    dt = v0.dtype
    inv = 1.0 / N
    X = empty((2 * N, V), dt)              # [v0; v_k]
    G = empty((2 * N, H), dt)              # [-P(h|v0); p_k]
    hs = empty((N, H), dt)
    Xp, Xn, Gp, Gn = X[:N], X[N:], G[:N], G[N:]
    vis_act = ACT_NONE if gaussian else ACT_SIGMOID
    gemm(v0, W, bias=c, act=ACT_SIGMOID, out=Gp)            # P(h|v0)
    if not persistent:
        _sample(Gp, uh[0], hs)
    _ew(_copy, v0, Xp)
    err = empty(N, dt)
    for t in range(k):
        src = chain if persistent and t == 0 else hs
        last = t == k - 1
        gemm(src, W, tb=True, bias=b, act=vis_act, out=Xn)  # E[v | h^(t-1)]
        if t == 0 and not persistent:
            _rows(_kernels(dt)[2], N, v0, Xn, err)
        if sample_visible:
            if gaussian:
                _ew(_add_into, Xn, nv[t], Xn)
            else:
                _sample(Xn, nv[t], Xn)
        gemm(Xn, W, bias=c, act=ACT_SIGMOID, out=Gn)        # p_t
        if persistent or not last:
            _sample(Gn, uh[t if persistent else t + 1], hs)
    if persistent and N:
        _ew(_fill, err.reshape(N, 1), dt.type(0))
    db = _colsum(Xn, inv, COL_A_MINUS_B, B=v0)
    _ew(_negate, Gp)
    dc = _colsum(G, inv)
    dW = gemm(X, G, ta=True, alpha=inv)
    new_chain = hs if persistent else empty((0, H), dt)
    return dW, db, dc, new_chain, Xn, err


# ---------------------------------------------------------------- conditionals and sampling
def rbm_hidden(v, W, c):
    """P(h=1|v) = sigm(v W + c).  v (N, V) -> (N, H)."""
    return gemm(v, W, bias=c, act=ACT_SIGMOID)


def rbm_visible(h, W, b, gaussian):
    """E[v|h] = sigm(h W^T + b) (Bernoulli) or h W^T + b (Gaussian).  h (N, H) -> (N, V)."""
    return gemm(h, W, tb=True, bias=b, act=ACT_NONE if gaussian else ACT_SIGMOID)


def rbm_gibbs(v, W, b, c, n_steps, gaussian, uh, nv):
    """n_steps of block Gibbs sampling from v: (v, mean, h) as kernels.cpu.rbm.rbm_gibbs."""
    N, V = v.shape
    H = W.shape[1]
    x, m, h = empty((N, V), v.dtype), empty((N, V), v.dtype), empty((N, H), v.dtype)
    _ew(_copy, v, x)
    _ew(_copy, v, m)
    _ew(_fill, h, v.dtype.type(0))
    for t in range(n_steps):
        gemm(x, W, bias=c, act=ACT_SIGMOID, out=h)
        _sample(h, uh[t], h)
        gemm(h, W, tb=True, bias=b, act=ACT_NONE if gaussian else ACT_SIGMOID, out=m)
        if gaussian:
            _ew(_add_into, m, nv[t], x)
        else:
            _sample(m, nv[t], x)
    return x, m, h


# ---------------------------------------------------------------- free energy and friends
def rbm_free_energy(v, W, b, c, gaussian):
    """F(v) per row.  v (N, V) -> (N,)."""
    N = v.shape[0]
    z = gemm(v, W)
    F = empty(N, v.dtype)
    _rows(_kernels(v.dtype)[3], N, v, z, b, c, bool(gaussian), F)
    return F


def rbm_free_energy_grad(v, W, b, c, gaussian):
    """Gradient of mean_n F(v_n) with respect to (W, b, c): (dW (V, H), db (V,), dc (H,))."""
    N = v.shape[0]
    inv = 1.0 / N
    P = gemm(v, W, bias=c, act=ACT_SIGMOID)
    dc = _colsum(P, -inv)
    dW = gemm(v, P, ta=True, alpha=-inv)
    db = _colsum(v, inv, COL_BVEC_MINUS_A, bvec=b) if gaussian else _colsum(v, -inv)
    return dW, db, dc


def rbm_pseudo_likelihood(v, W, b, c, idx):
    """Stochastic pseudo-log-likelihood per row (scikit-learn's score_samples).  -> (N,)."""
    N = v.shape[0]
    z = gemm(v, W)
    out = empty(N, v.dtype)
    _rows(_kernels(v.dtype)[4], N, v, z, W, b, c, idx, out)
    return out
