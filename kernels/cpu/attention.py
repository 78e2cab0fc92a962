"""Scaled-dot-product attention, fused (FlashAttention-style): q, k, v, out (B, H, T, D).

Per batch b and head h, with Q, K, V the (T, D) slices, s = ``scale`` (usually 1/sqrt(D)):

    S_ij   = s q_i . k_j                   (-inf where causal and j > i: query i sees j <= i)
    lse_i  = log sum_j e^(S_ij)            (the softmax normaliser, over the undropped weights)
    P_ij   = e^(S_ij - lse_i)
    out_i  = sum_j P_ij Z_ij v_j           Z_ij = keep_ij / (1 - p)   (Z = 1 without dropout)

Dropout (rate p) acts on the attention weights after the softmax, as in PyTorch; weight (i, j)
of head (b, h) is kept when the top 32 bits of ``_splitmix(seed, ((b H + h) T + i) T + j)``
are >= round(p 2^32): the same stream and threshold as ``activations.dropout_mask`` over a flat
(B, H, T, T) array, so the mask is a fixed function of (seed, shape) and the backward redraws
it.  With p == 0 nothing is hashed.

Backward (FlashAttention-2), with dO the output gradient and Di = sum_d dO_id O_id:

    dV_j  = sum_i P_ij Z_ij dO_i           dP_ij = Z_ij (dO_i . v_j)
    dS_ij = P_ij (dP_ij - Di)              dQ_i  = s sum_j dS_ij k_j     dK_j = s sum_i dS_ij q_i

(sum_j P_ij dP_ij = dO_i . O_i = Di, so the softmax's row sums come from O, not from P.)

Tiling: the (T, T) score matrix is never stored.  The forward runs one query block of ``BQ``
rows at a time: for each key block of ``BK`` keys it forms the (BQ, BK) score tile with one
``gemm`` (alpha = s), masks it, keeps a running row max m and row sum l (online softmax: the
accumulator's row is rescaled by e^(m_old - m_new) when the max grows), and adds the tile's
P V_blk with a second ``gemm`` straight into the output rows; at the end out /= l and
lse = m + log l.  The backward recomputes P tile by tile from lse (5 ``gemm`` a tile) with
key blocks outer, query blocks inner.  Causal: key blocks wholly above the diagonal are
skipped (about half the work).  Memory beyond the outputs: the forward one (BQ, BK) tile and
two BQ-vectors per iteration, the backward four (BQ, BK) tiles and a T-vector per (b, h):
linear in T.

``BQ = BK = 64``: a 64 x 64 float32 tile is 16 KB, so the tile, the query block and the key
and value blocks (64 x D each) stay in L1/L2 through the tile's products, and 64 is large
enough for BLAS to run near its peak on 64 x 64 x D products.

Work split and determinism: the forward's ``prange`` runs over (b, h, query block), each
iteration writing only its rows of out and lse; the backward's over (b, h), each writing only
its (b, h) slices of dq, dk, dv, in a fixed tile order.  No cross-iteration reductions, so
results are bit-identical across runs and thread counts.  Below ``GRAIN`` (B H T^2 D
multiply-adds) the kernels run serially (``_parallel.parallel_above``; same bits).  A
backward with B H = 1 runs on one thread (the race-free split is per head).

Precision: tiles are in the data's dtype (the ``gemm`` products, P, dS); the row max, row sum
and the lse are formed in float64 and stored in the data's dtype.  float32 exponentials use a
vectorisable Cephes expf (``_vecmath._exp32``, clamped to [-87, 88]; Numba has no
vector exp here without SVML); float64 uses np.exp, so
float64 inputs give float64-accurate results (the finite-difference tests rely on it).

``heads_split`` / ``heads_merge`` move a fused projection's (B, T, parts H D) columns to the
kernels' (parts, B, H, T, D) layout and back (the multi-head layer's reshapes, as kernels so
they run where the arrays live).

``attention_forward_reference`` / ``attention_backward_reference`` below are the same maths in
plain float64 NumPy with the whole (T, T) matrix, the textbook version the kernels are tested
against.
"""
import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ._blas import gemm
from ._parallel import parallel_above
from ._vecmath import _exp32
from .activations import _splitmix

#: query rows / keys per tile (see the module docstring)
BQ = 64
BK = 64
#: B H T^2 D multiply-adds below which the kernels run serially
GRAIN = 1 << 20
#: elements below which heads_split / heads_merge copy serially
COPY_GRAIN = 1 << 16

# fastmath only with flags that keep NaN/Inf semantics (DESIGN.md).
_FM = {"nsz", "arcp", "afn", "reassoc"}
_EM = {"error_model": "numpy", "fastmath": _FM}
_u = np.uint64
_S32 = np.uint64(32)


# ------------------------------------------------------------------ readable references
def _scores_reference(q, k, causal, scale):
    """scale q k^T with -inf above the diagonal when causal: (B, H, T, T) float64."""
    s = scale * np.einsum("bhid,bhjd->bhij", np.asarray(q, np.float64), np.asarray(k, np.float64))
    if causal:
        T = s.shape[-1]
        s[..., np.triu(np.ones((T, T), bool), 1)] = -np.inf
    return s


def _softmax_reference(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def attention_forward_reference(q, k, v, causal, scale):
    """Plain-NumPy float64 attention softmax(scale q k^T + mask) v.  q, k, v (B, H, T, D) ->
    out (B, H, T, D)."""
    return _softmax_reference(_scores_reference(q, k, causal, scale)) @ np.asarray(v, np.float64)


def attention_backward_reference(q, k, v, dout, causal, scale):
    """Plain-NumPy float64 gradients of ``attention_forward_reference``.  q, k, v, dout
    (B, H, T, D) -> dq, dk, dv (B, H, T, D)."""
    q, k, v, dout = (np.asarray(a, np.float64) for a in (q, k, v, dout))
    p = _softmax_reference(_scores_reference(q, k, causal, scale))
    dv = p.swapaxes(-1, -2) @ dout
    dp = dout @ v.swapaxes(-1, -2)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    return scale * ds @ k, scale * ds.swapaxes(-1, -2) @ q, dv


# ------------------------------------------------------------------ vectorisable exp
def _exp(x):  # pragma: no cover - replaced by the overload below inside njit code
    return np.exp(x)


@overload(_exp, jit_options=_EM)
def _ov_exp(x):
    if x == types.float32:      # Cephes expf (_vecmath), clamped
        return lambda x: _exp32(min(max(x, np.float32(-87.0)), np.float32(88.0)))
    return lambda x: np.exp(x)


# ------------------------------------------------------------------ tile helpers
@njit(cache=True, **_EM)
def _visible(causal, nk, row, k0):
    """Keys of the tile starting at key k0 that query ``row`` sees: the first n of its nk."""
    return max(0, min(nk, row - k0 + 1)) if causal else nk


@njit(cache=True, **_EM)
def _dropout_tile(Z, nq, nk, bh, T, q0, k0, seed, thr, inv):
    """Z[:nq, :nk] <- keep / (1 - p) for the tile's weights (see the module docstring)."""
    zero = Z.dtype.type(0)
    for r in range(nq):
        base = (_u(bh) * _u(T) + _u(q0 + r)) * _u(T) + _u(k0)
        for c in range(nk):
            Z[r, c] = inv if (_splitmix(seed, base + _u(c)) >> _S32) >= thr else zero


@njit(cache=True, **_EM)
def _forward_block(q, k, v, out, lse, b, h, qb, causal, scale, p, seed):
    """Query block qb of head (b, h): its rows of out and lse."""
    H, T = q.shape[1], q.shape[2]
    t = q.dtype.type
    zero = t(0)
    q0 = qb * BQ
    q1 = min(T, q0 + BQ)
    nq = q1 - q0
    Qb = q[b, h, q0:q1, :]
    O = out[b, h, q0:q1, :]
    S = np.empty((BQ, BK), q.dtype)
    drop = p > 0
    Z = np.empty((BQ, BK) if drop else (1, 1), q.dtype)
    thr = _u(p * 4294967296.0 + 0.5)
    inv = t(1.0 / (1.0 - p))
    m = np.full(BQ, -np.inf)
    l = np.zeros(BQ)
    kend = q1 if causal else T
    for kb in range((kend + BK - 1) // BK):
        k0 = kb * BK
        k1 = min(kend, k0 + BK)
        nk = k1 - k0
        gemm(Qb, k[b, h, k0:k1, :], S[:nq, :nk], False, True, scale, 0.0)
        if drop:
            _dropout_tile(Z, nq, nk, b * H + h, T, q0, k0, seed, thr, inv)
        for r in range(nq):
            n = _visible(causal, nk, q0 + r, k0)
            for c in range(n, nk):
                S[r, c] = zero
            if n == 0:
                continue
            mx = S[r, 0]
            for c in range(1, n):
                mx = max(mx, S[r, c])
            mnew = max(m[r], np.float64(mx))
            mt = t(mnew)
            s = zero
            for c in range(n):
                e = _exp(S[r, c] - mt)
                S[r, c] = e
                s += e
            if drop:
                for c in range(n):
                    S[r, c] *= Z[r, c]
            if kb > 0 and mnew > m[r]:           # rescale the row's accumulator
                a = t(np.exp(m[r] - mnew))
                for d in range(O.shape[1]):
                    O[r, d] *= a
                l[r] *= np.exp(m[r] - mnew)
            l[r] += np.float64(s)
            m[r] = mnew
        gemm(S[:nq, :nk], v[b, h, k0:k1, :], O, False, False, 1.0, 0.0 if kb == 0 else 1.0)
    for r in range(nq):
        il = t(1.0 / l[r])
        for d in range(O.shape[1]):
            O[r, d] *= il
        lse[b, h, q0 + r] = t(m[r] + np.log(l[r]))


@njit(cache=True, **_EM)
def _backward_head(q, k, v, out, lse, dout, dq, dk, dv, b, h, causal, scale, p, seed):
    """Head (b, h): its slices of dq, dk, dv."""
    H, T, D = q.shape[1], q.shape[2], q.shape[3]
    t = q.dtype.type
    zero = t(0)
    Di = np.empty(T, q.dtype)
    for i in range(T):
        s = 0.0
        for d in range(D):
            s += np.float64(dout[b, h, i, d]) * np.float64(out[b, h, i, d])
        Di[i] = t(s)
        for d in range(D):
            dq[b, h, i, d] = zero
            dk[b, h, i, d] = zero
            dv[b, h, i, d] = zero
    S = np.empty((BQ, BK), q.dtype)
    dP = np.empty((BQ, BK), q.dtype)
    drop = p > 0
    Z = np.empty((BQ, BK) if drop else (1, 1), q.dtype)
    Pd = np.empty((BQ, BK) if drop else (1, 1), q.dtype)
    thr = _u(p * 4294967296.0 + 0.5)
    inv = t(1.0 / (1.0 - p))
    nqb = (T + BQ - 1) // BQ
    for kb in range((T + BK - 1) // BK):
        k0 = kb * BK
        k1 = min(T, k0 + BK)
        nk = k1 - k0
        Kj, Vj = k[b, h, k0:k1, :], v[b, h, k0:k1, :]
        dKj, dVj = dk[b, h, k0:k1, :], dv[b, h, k0:k1, :]
        for qb in range(k0 // BQ if causal else 0, nqb):
            q0 = qb * BQ
            q1 = min(T, q0 + BQ)
            nq = q1 - q0
            Qi, dOi, dQi = q[b, h, q0:q1, :], dout[b, h, q0:q1, :], dq[b, h, q0:q1, :]
            gemm(Qi, Kj, S[:nq, :nk], False, True, scale, 0.0)
            for r in range(nq):
                n = _visible(causal, nk, q0 + r, k0)
                L = lse[b, h, q0 + r]
                for c in range(n):
                    S[r, c] = _exp(S[r, c] - L)
                for c in range(n, nk):
                    S[r, c] = zero
            if drop:
                _dropout_tile(Z, nq, nk, b * H + h, T, q0, k0, seed, thr, inv)
                for r in range(nq):
                    for c in range(nk):
                        Pd[r, c] = S[r, c] * Z[r, c]
                gemm(Pd[:nq, :nk], dOi, dVj, True, False, 1.0, 1.0)
            else:
                gemm(S[:nq, :nk], dOi, dVj, True, False, 1.0, 1.0)
            gemm(dOi, Vj, dP[:nq, :nk], False, True, 1.0, 0.0)
            for r in range(nq):
                di = Di[q0 + r]
                if drop:
                    for c in range(nk):
                        dP[r, c] = S[r, c] * (dP[r, c] * Z[r, c] - di)
                else:
                    for c in range(nk):
                        dP[r, c] = S[r, c] * (dP[r, c] - di)
            gemm(dP[:nq, :nk], Qi, dKj, True, False, scale, 1.0)
            gemm(dP[:nq, :nk], Kj, dQi, False, False, scale, 1.0)


# ------------------------------------------------------------------ fast kernels
def _work(q, *_):
    return q.size * q.shape[2]


@parallel_above(GRAIN, size=_work)
def attention_forward(q, k, v, causal, scale, dropout_p, seed):
    """Fused attention.  q, k, v (B, H, T, D) C-contiguous, float32 or float64; causal (bool);
    scale (float); dropout_p in [0, 1) on the attention weights; seed (uint64 or int >= 0)
    -> out (B, H, T, D), lse (B, H, T) (log-sum-exp of each row's scaled, masked scores),
    both of q's dtype."""
    B, H, T, D = q.shape
    out = np.empty((B, H, T, D), q.dtype)
    lse = np.empty((B, H, T), q.dtype)
    nqb = (T + BQ - 1) // BQ
    useed = _u(seed)
    p = np.float64(dropout_p)
    sc = np.float64(scale)
    for it in prange(B * H * nqb):
        bh = it // nqb
        _forward_block(q, k, v, out, lse, bh // H, bh % H, it % nqb, causal, sc, p, useed)
    return out, lse


@parallel_above(GRAIN, size=_work)
def attention_backward(q, k, v, out, lse, dout, causal, scale, dropout_p, seed):
    """Gradients of ``attention_forward``.  q, k, v, out, dout (B, H, T, D), lse (B, H, T)
    (the forward's out and lse), the forward's causal, scale, dropout_p and seed ->
    dq, dk, dv (B, H, T, D), of q's dtype."""
    B, H, T, D = q.shape
    dq = np.empty((B, H, T, D), q.dtype)
    dk = np.empty((B, H, T, D), q.dtype)
    dv = np.empty((B, H, T, D), q.dtype)
    useed = _u(seed)
    p = np.float64(dropout_p)
    sc = np.float64(scale)
    for bh in prange(B * H):
        _backward_head(q, k, v, out, lse, dout, dq, dk, dv, bh // H, bh % H, causal, sc, p,
                       useed)
    return dq, dk, dv


# ------------------------------------------------------------------ head split and merge
@parallel_above(COPY_GRAIN, size=lambda x, parts, heads: x.size)
def heads_split(x, parts, heads):
    """x (B, T, parts * heads * D) -> (parts, B, heads, T, D): the fused projection's columns
    [p, h, d] to part p (q, k, v), head h, feature d; a copy in the kernels' layout."""
    B, T, F = x.shape
    Dh = F // (parts * heads)
    out = np.empty((parts, B, heads, T, Dh), x.dtype)
    for ph in prange(parts * B * heads):
        p, b, h = ph // (B * heads), (ph // heads) % B, ph % heads
        c0 = (p * heads + h) * Dh
        for t in range(T):
            src, dst = x[b, t, c0:c0 + Dh], out[p, b, h, t]
            for d in range(Dh):
                dst[d] = src[d]
    return out


@parallel_above(COPY_GRAIN, size=lambda parts: len(parts) * parts[0].size)
def heads_merge(parts):
    """parts: a tuple of P arrays (B, H, T, D) -> (B, T, P * H * D), the inverse of
    heads_split (part p, head h, feature d to column (p H + h) D + d)."""
    P = len(parts)
    B, H, T, Dh = parts[0].shape
    out = np.empty((B, T, P * H * Dh), parts[0].dtype)
    for ph in prange(P * B * H):
        p, b, h = ph // (B * H), (ph // H) % B, ph % H
        c0 = (p * H + h) * Dh
        part = parts[p]
        for t in range(T):
            src, dst = part[b, h, t], out[b, t, c0:c0 + Dh]
            for d in range(Dh):
                dst[d] = src[d]
    return out
