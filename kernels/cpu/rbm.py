"""Restricted Boltzmann machine kernels: contrastive divergence (CD-k / PCD-k), free energy and
its gradient, pseudo-log-likelihood, conditional means, Gibbs sampling.

Shapes and names: v (N, V) visible states, W (V, H) weights (the Dense layout (in, out)),
b (V,) visible bias, c (H,) hidden bias, h (N, H) hidden states.  ``gaussian`` selects the
visible units:

    Bernoulli (gaussian=False)  E(v, h) = -v.b - h.c - v W h          P(v_i=1|h) = sigm(b_i + W_i h)
    Gaussian  (gaussian=True)   E(v, h) = |v - b|^2 / 2 - h.c - v W h  v_i | h ~ N(b_i + W_i h, 1)

and hidden units are Bernoulli in both: P(h_j=1|v) = sigm(c_j + v W_:j).  Free energy:

    F(v) = -v.b - sum_j softplus(c_j + v W_:j)            (Bernoulli visible)
    F(v) = |v - b|^2 / 2 - sum_j softplus(c_j + v W_:j)    (Gaussian visible)

with softplus(z) = max(z, 0) + log1p(exp(-|z|)) (no overflow for any finite z).

Randomness comes in as arrays drawn on the host (DESIGN.md): ``uh`` uniforms in [0, 1) for
hidden samples (h = 1 if u < p), ``nv`` for visible samples: uniforms (Bernoulli, same rule) or
standard normals (Gaussian, v = mean + noise).  Kernels are deterministic functions of their
inputs.

Matrix products call BLAS (``_blas.gemm``, the s/dgemm behind ``np.dot``) on strided
sub-blocks, so a column block W[:, j0:j1] is multiplied in place without a copy and the 1/N scale of the gradient is BLAS's alpha.  The blocks split the *columns* of each
product (hidden units for v -> h, visible units for h -> v and for the weight gradient), so each
block reads only its slice of W and writes only its slice of the output; sigmoid, bias and
sampling are fused into each block's epilogue.  Block counts depend only on the sizes
(``_n_blocks``), so results are bit-identical across runs and thread counts.
"""
import numpy as np
from numba import njit, prange

from ._blas import gemm


@njit(cache=True)
def _n_blocks(n):
    """Column blocks for n columns: a power of two, at least about 200 columns a block (fewer
    blocks pack less: BLAS repacks the shared operand for every block), but 2 blocks from 128
    columns on; at most 16."""
    nb = 1
    while nb < 16 and 2 * nb * 200 <= n:
        nb *= 2
    return 2 if nb == 1 and n >= 128 else nb


@njit(cache=True, inline="always")
def _softplus(z, zero):
    return max(z, zero) + np.log1p(np.exp(-abs(z)))


@njit(cache=True, fastmath={"contract"}, error_model="numpy")
def _sigmoid_seg(x, bias, ebits):
    """x[j] = sigm(x[j] + bias[j]) in place, for a contiguous segment x.

    float64: 1 / (1 + exp(-z)) with libm's exp.  float32: the same through a branch-free
    exp that the compiler vectorises (Cephes' expf: 2^n times a degree-7 polynomial on
    |r| <= ln2 / 2, about 1 ulp; 2^n built in ``ebits``, int32 scratch of len(x)).
    Inputs below -87 give exactly 0 (no denormals), NaN stays NaN.  In place on purpose: with
    separate input and output arrays that happen to be the same memory, the vectoriser's
    overlap check sends every call down the scalar path.  error_model="numpy": Python's
    zero-division check (1 + e^y is never 0) would stop the vectorisation too.
    """
    L = x.shape[0]
    if x.itemsize == 8:
        for j in range(L):
            x[j] = 1.0 / (1.0 + np.exp(-(x[j] + bias[j])))
        return
    F = np.float32
    ef = ebits.view(np.float32)
    for j in range(L):
        y = -(x[j] + bias[j])                       # sigm(z) = 1 / (1 + e^y), y = -z
        yc = min(max(y, F(-87.0)), F(87.0))
        n = np.floor(yc * F(1.44269504088896341) + F(0.5))
        r = yc - n * F(0.693359375) - n * F(-2.12194440e-4)
        q = F(1.9875691500e-4)
        q = q * r + F(1.3981999507e-3)
        q = q * r + F(8.3334519073e-3)
        q = q * r + F(4.1665795894e-2)
        q = q * r + F(1.6666665459e-1)
        q = q * r + F(5.0000001201e-1)
        bits = (np.int32(n) + np.int32(127)) << np.int32(23)
        bits = np.int32(0x7F800000) if y > F(87.0) else bits     # e^y = inf -> sigm = 0
        ebits[j] = np.int32(0x7FC00000) if y != y else bits      # NaN in, NaN out
        x[j] = q * r * r + r + F(1.0)
    for j in range(L):
        x[j] = F(1.0) / (F(1.0) + x[j] * ef[j])


@njit(cache=True)
def _bernoulli_seg(p, u, out):
    """out[j] = 1 if u[j] < p[j] else 0 (u uniform in [0, 1): P(out = 1) = p); out is not p."""
    one, zero = out.dtype.type(1), out.dtype.type(0)
    for j in range(out.shape[0]):
        out[j] = one if u[j] < p[j] else zero


@njit(cache=True)
def _bernoulli_inplace(p, u):
    """p[j] = 1 if u[j] < p[j] else 0, in place (see _sigmoid_seg on why in place)."""
    one, zero = p.dtype.type(1), p.dtype.type(0)
    for j in range(p.shape[0]):
        p[j] = one if u[j] < p[j] else zero


@njit(cache=True)
def _sqdist_seg(a, b):
    """sum_j (a[j] - b[j])^2 in a fixed order: 16 lane sums (j mod 16, vectorisable without
    reassociation, so the result cannot depend on the buffers' alignment), then the lanes."""
    L = a.shape[0]
    acc = np.zeros(16, a.dtype)
    m = L - L % 16
    for j0 in range(0, m, 16):
        for l in range(16):
            d = a[j0 + l] - b[j0 + l]
            acc[l] += d * d
    for j in range(m, L):
        d = a[j] - b[j]
        acc[j - m] += d * d
    s = a.dtype.type(0)
    for l in range(16):
        s += acc[l]
    return s


# ---------------------------------------------------------------- contrastive divergence
@njit(parallel=True, cache=True)
def _cd_core(v0, W, b, c, chain, k, persistent, gaussian, sample_visible, uh, nv,
             sgd, lr, momentum, l2, l1, vW, vb, vc):
    """The CD-k / PCD-k chain of ``rbm_cd``, and with sgd=True the update of ``rbm_cd_sgd``.

    Regions: 1 (hidden-unit blocks) P(h|v0) and h^(0); then per step one region over visible-
    unit blocks (h -> v) and one over hidden-unit blocks (v -> h).  The last h -> v region also
    forms db (and updates b), the last v -> h region dc and its block of columns of
    dW = [v0; v_k]^T [-P(h|v0); p_k] / N (one GEMM with K = 2N), then the SGD update of those
    columns of W.  Each block owns its columns throughout, so the bias sums are
    block-local, and W, b, c can be updated in place: a block only rewrites columns that no
    other block reads in the same region, after their last use.  (In place rather than into
    separate outputs that may alias the inputs: the vectoriser's overlap checks would fail.)
    """
    N, V = v0.shape
    H = W.shape[1]
    T = v0.dtype.type
    lr_, mu_, l2_, l1_ = T(lr), T(momentum), T(l2), T(l1)
    X = np.empty((2 * N, V), v0.dtype)      # [v0; v_k]
    G = np.empty((2 * N, H), v0.dtype)      # [-P(h|v0); p_k]
    hs = np.empty((N, H), v0.dtype)         # current hidden sample
    nbh, nbv = _n_blocks(H), _n_blocks(V)
    errb = np.zeros((nbv, N), v0.dtype)
    dW = np.empty((0 if sgd else V, H), v0.dtype)
    db = np.zeros(V, v0.dtype)
    dc = np.zeros(H, v0.dtype)
    Xn, Gn = X[N:], G[N:]
    inv = 1.0 / N

    # positive phase: P(h|v0) (stored negated in G), h^(0) for CD, dc's positive part
    for q in prange(nbh):
        j0, j1 = q * H // nbh, (q + 1) * H // nbh
        eb = np.empty(j1 - j0, np.int32)
        gemm(v0, W[:, j0:j1], G[:N, j0:j1], False, False, 1.0, 0.0)
        for n in range(N):
            g = G[n, j0:j1]
            _sigmoid_seg(g, c[j0:j1], eb)
            if not persistent:
                _bernoulli_seg(g, uh[0, n, j0:j1], hs[n, j0:j1])
            for j in range(j0, j1):
                dc[j] -= G[n, j]
                G[n, j] = -G[n, j]

    for t in range(k):
        src = chain if persistent and t == 0 else hs
        last = t == k - 1
        # h -> v: v_t from h^(t-1); at t = 0 also copy v0 into X and measure the reconstruction
        for q in prange(nbv):
            i0, i1 = q * V // nbv, (q + 1) * V // nbv
            eb = np.empty(i1 - i0, np.int32)
            gemm(src, W[i0:i1], Xn[:, i0:i1], False, True, 1.0, 0.0)
            for n in range(N):
                x = Xn[n, i0:i1]
                if gaussian:
                    for i in range(i0, i1):
                        Xn[n, i] += b[i]
                else:
                    _sigmoid_seg(x, b[i0:i1], eb)
                if t == 0:
                    X[n, i0:i1] = v0[n, i0:i1]
                    if not persistent:
                        errb[q, n] = _sqdist_seg(v0[n, i0:i1], x)
                if sample_visible:
                    if gaussian:
                        for i in range(i0, i1):
                            Xn[n, i] += nv[t, n, i]
                    else:
                        _bernoulli_inplace(x, nv[t, n, i0:i1])
                if last:
                    for i in range(i0, i1):
                        db[i] += Xn[n, i] - v0[n, i]
            if last:
                for i in range(i0, i1):
                    db[i] *= T(inv)
                if sgd:
                    for i in range(i0, i1):
                        vb[i] = mu_ * vb[i] + db[i]
                        b[i] = b[i] + (-lr_ * vb[i])
        # v -> h: p_t, h^(t); at the last step also dc and this block's columns of dW
        draw = persistent or not last
        s = t if persistent else t + 1
        for q in prange(nbh):
            j0, j1 = q * H // nbh, (q + 1) * H // nbh
            eb = np.empty(j1 - j0, np.int32)
            gemm(Xn, W[:, j0:j1], Gn[:, j0:j1], False, False, 1.0, 0.0)
            for n in range(N):
                g = Gn[n, j0:j1]
                _sigmoid_seg(g, c[j0:j1], eb)
                if draw:
                    _bernoulli_seg(g, uh[s, n, j0:j1], hs[n, j0:j1])
                if last:
                    for j in range(j0, j1):
                        dc[j] += Gn[n, j]
            if last:
                for j in range(j0, j1):
                    dc[j] *= T(inv)
                if not sgd:
                    gemm(X, G[:, j0:j1], dW[:, j0:j1], True, False, inv, 0.0)
                else:
                    w = j1 - j0
                    tile = np.empty((V, w), v0.dtype)
                    gemm(X, G[:, j0:j1], tile, True, False, inv, 0.0)
                    for i in range(V):          # optim.sgd's arithmetic, op for op
                        for jj in range(w):
                            j = j0 + jj
                            g = (tile[i, jj] + l2_ * W[i, j]) + l1_ * np.sign(W[i, j])
                            vW[i, j] = mu_ * vW[i, j] + g
                            W[i, j] = W[i, j] + (-lr_ * vW[i, j])
                if sgd:
                    for j in range(j0, j1):
                        vc[j] = mu_ * vc[j] + dc[j]
                        c[j] = c[j] + (-lr_ * vc[j])

    err = np.zeros(N, v0.dtype)
    for q in range(nbv):
        for n in range(N):
            err[n] += errb[q, n]
    new_chain = hs if persistent else np.empty((0, H), v0.dtype)
    return dW, db, dc, new_chain, Xn, err


@njit(cache=True)
def rbm_cd(v0, W, b, c, chain, k, persistent, gaussian, sample_visible, uh, nv):
    """CD-k (persistent=False) or PCD-k (persistent=True) gradient in one call.

    v0 (N, V) data, W (V, H), b (V,), c (H,).
    chain (N, H): the persistent hidden state the negative phase starts from (read only when
        persistent; pass shape (0, H) otherwise).
    uh (k, N, H) uniforms for the k hidden samples: CD uses uh[0] for h0 ~ P(h|v0) and uh[t]
        for h_t (t = 1..k-1); PCD uses uh[t-1] for h_t (t = 1..k), h_k being the new chain.
    nv (k, N, V) visible noise for v_1..v_k (uniforms, or normals when gaussian); with
        sample_visible False the visible means are used instead and nv may be (0, N, V).

    Chain: h^(0) = sample of P(h|v0) (CD) or ``chain`` (PCD); for t = 1..k:
    v_t = sample (or mean) of P(v|h^(t-1)), p_t = P(h=1|v_t), h^(t) = sample of p_t.
    Statistics: positive v0^T P(h|v0), negative v_k^T p_k.

    Returns
        dW (V, H) = -(v0^T P(h|v0) - v_k^T p_k) / N   (dLoss/dW, the descent direction)
        db (V,)   = -(sum v0 - sum v_k) / N
        dc (H,)   = -(sum P(h|v0) - sum p_k) / N
        new_chain (N, H) = h^(k) (PCD; shape (0, H) for CD)
        v_neg (N, V) = v_k, the negative visible states
        err (N,) squared reconstruction error per row, |v0 - E[v_1|h^(0)]|^2 (CD; zeros for PCD)

    2k + 1 parallel regions (see _cd_core).
    """
    H = W.shape[1]
    e1 = np.empty(0, v0.dtype)
    e2 = np.empty((0, H), v0.dtype)
    return _cd_core(v0, W, b, c, chain, k, persistent, gaussian, sample_visible, uh, nv,
                    False, 0.0, 0.0, 0.0, 0.0, e2, e1, e1)


@njit(cache=True)
def rbm_cd_sgd(v0, W, b, c, chain, k, persistent, gaussian, sample_visible, uh, nv,
               lr, momentum, l2, l1, vW, vb, vc):
    """rbm_cd fused with an SGD-with-momentum step (Hinton's recipe) that updates W, b, c and
    their velocities vW, vb, vc IN PLACE (the caller owns them; dlkit.rbm.fit works on copies).

    With (g_W, g_b, g_c) = rbm_cd's ((dW + l2 W) + l1 sign(W), db, dc) (weight decay, L2 and
    L1, on W only), for each parameter p with velocity v:  v = momentum v + g,  p = p + (-lr v):
    exactly the arithmetic of ``optim.sgd(lr, momentum)`` after ``rbm.weight_decay``, so the
    two paths agree bit for bit; but the gradient is never returned: each block's columns of dW
    update the same columns of W right after their GEMM, in parallel, with no Python between
    the CD step and the update.
    Returns (new_chain, v_neg, err) as rbm_cd.
    """
    _, _, _, new_chain, v_neg, err = _cd_core(
        v0, W, b, c, chain, k, persistent, gaussian, sample_visible, uh, nv,
        True, lr, momentum, l2, l1, vW, vb, vc)
    return new_chain, v_neg, err


# ---------------------------------------------------------------- conditionals and sampling
@njit(parallel=True, cache=True)
def rbm_hidden(v, W, c):
    """P(h=1|v) = sigm(v W + c).  v (N, V) -> (N, H)."""
    N = v.shape[0]
    H = W.shape[1]
    h = np.empty((N, H), v.dtype)
    nb = _n_blocks(H)
    for q in prange(nb):
        j0, j1 = q * H // nb, (q + 1) * H // nb
        eb = np.empty(j1 - j0, np.int32)
        gemm(v, W[:, j0:j1], h[:, j0:j1], False, False, 1.0, 0.0)
        for n in range(N):
            _sigmoid_seg(h[n, j0:j1], c[j0:j1], eb)
    return h


@njit(parallel=True, cache=True)
def rbm_visible(h, W, b, gaussian):
    """E[v|h] = sigm(h W^T + b) (Bernoulli) or h W^T + b (Gaussian).  h (N, H) -> (N, V)."""
    N = h.shape[0]
    V = W.shape[0]
    v = np.empty((N, V), h.dtype)
    nb = _n_blocks(V)
    for q in prange(nb):
        i0, i1 = q * V // nb, (q + 1) * V // nb
        eb = np.empty(i1 - i0, np.int32)
        gemm(h, W[i0:i1], v[:, i0:i1], False, True, 1.0, 0.0)
        for n in range(N):
            if gaussian:
                for i in range(i0, i1):
                    v[n, i] += b[i]
            else:
                _sigmoid_seg(v[n, i0:i1], b[i0:i1], eb)
    return v


@njit(parallel=True, cache=True)
def rbm_gibbs(v, W, b, c, n_steps, gaussian, uh, nv):
    """n_steps of block Gibbs sampling v -> h -> v starting from v (N, V).

    uh (n_steps, N, H) uniforms for the hidden samples, nv (n_steps, N, V) visible noise
    (uniforms, or normals when gaussian).  Step t: h ~ P(h|v) with uh[t], then
    m = E[v|h], v = sample of P(v|h) with nv[t].
    Returns (v (N, V) the last sample, m (N, V) the last visible mean, h (N, H) the last hidden
    sample); with n_steps = 0, (copy of v, copy of v, zeros).
    """
    N, V = v.shape
    H = W.shape[1]
    x = v.copy()
    m = v.copy()
    h = np.zeros((N, H), v.dtype)
    nbh, nbv = _n_blocks(H), _n_blocks(V)
    for t in range(n_steps):
        for q in prange(nbh):
            j0, j1 = q * H // nbh, (q + 1) * H // nbh
            eb = np.empty(j1 - j0, np.int32)
            gemm(x, W[:, j0:j1], h[:, j0:j1], False, False, 1.0, 0.0)
            for n in range(N):
                g = h[n, j0:j1]
                _sigmoid_seg(g, c[j0:j1], eb)
                _bernoulli_inplace(g, uh[t, n, j0:j1])
        for q in prange(nbv):
            i0, i1 = q * V // nbv, (q + 1) * V // nbv
            eb = np.empty(i1 - i0, np.int32)
            gemm(h, W[i0:i1], m[:, i0:i1], False, True, 1.0, 0.0)
            for n in range(N):
                if gaussian:
                    for i in range(i0, i1):
                        m[n, i] += b[i]
                        x[n, i] = m[n, i] + nv[t, n, i]
                else:
                    _sigmoid_seg(m[n, i0:i1], b[i0:i1], eb)
                    _bernoulli_seg(m[n, i0:i1], nv[t, n, i0:i1], x[n, i0:i1])
    return x, m, h


# ---------------------------------------------------------------- free energy and friends
@njit(parallel=True, cache=True)
def rbm_free_energy(v, W, b, c, gaussian):
    """F(v) per row.  v (N, V) -> (N,).  See the module docstring for the formulas."""
    N, V = v.shape
    H = W.shape[1]
    z = np.empty((N, H), v.dtype)
    nb = _n_blocks(H)
    for q in prange(nb):
        j0, j1 = q * H // nb, (q + 1) * H // nb
        gemm(v, W[:, j0:j1], z[:, j0:j1], False, False, 1.0, 0.0)
    F = np.empty(N, v.dtype)
    zero, half = v.dtype.type(0), v.dtype.type(0.5)
    nr = max(1, min(16, N // 16))
    for q in prange(nr):
        for n in range(q * N // nr, (q + 1) * N // nr):
            s = zero
            for i in range(V):
                if gaussian:
                    d = v[n, i] - b[i]
                    s += half * d * d
                else:
                    s -= v[n, i] * b[i]
            for j in range(H):
                s -= _softplus(z[n, j] + c[j], zero)
            F[n] = s
    return F


@njit(parallel=True, cache=True)
def rbm_free_energy_grad(v, W, b, c, gaussian):
    """Gradient of mean_n F(v_n) with respect to (W, b, c).  v (N, V) ->

        dW (V, H) = -v^T P(h|v) / N
        db (V,)   = -mean_n v_n           (Bernoulli)   or  mean_n (b - v_n)   (Gaussian)
        dc (H,)   = -mean_n P(h|v_n)

    The CD gradient is free-energy gradient at the data minus that at the negative samples.
    """
    N, V = v.shape
    H = W.shape[1]
    T = v.dtype.type
    P = np.empty((N, H), v.dtype)
    nbh, nbv = _n_blocks(H), _n_blocks(V)
    dc = np.empty(H, v.dtype)
    for q in prange(nbh):
        j0, j1 = q * H // nbh, (q + 1) * H // nbh
        eb = np.empty(j1 - j0, np.int32)
        gemm(v, W[:, j0:j1], P[:, j0:j1], False, False, 1.0, 0.0)
        for j in range(j0, j1):
            dc[j] = T(0)
        for n in range(N):
            _sigmoid_seg(P[n, j0:j1], c[j0:j1], eb)
            for j in range(j0, j1):
                dc[j] -= P[n, j]
        for j in range(j0, j1):
            dc[j] *= T(1.0 / N)
    dW = np.empty((V, H), v.dtype)
    db = np.empty(V, v.dtype)
    for q in prange(nbv):
        i0, i1 = q * V // nbv, (q + 1) * V // nbv
        gemm(v[:, i0:i1], P, dW[i0:i1], True, False, -1.0 / N, 0.0)
        for i in range(i0, i1):
            db[i] = T(0)
        for n in range(N):
            for i in range(i0, i1):
                db[i] += (b[i] - v[n, i]) if gaussian else -v[n, i]
        for i in range(i0, i1):
            db[i] *= T(1.0 / N)
    return dW, db, dc


@njit(parallel=True, cache=True)
def rbm_pseudo_likelihood(v, W, b, c, idx):
    """Stochastic pseudo-log-likelihood, as scikit-learn's BernoulliRBM.score_samples.

    v (N, V), idx (N,) int64 in [0, V): the unit flipped in each row.  With v' = v except
    v'[n, idx[n]] = 1 - v[n, idx[n]]:  PL_n = -V * softplus(-(F(v'_n) - F(v_n))) = V log sigm(
    F(v'_n) - F(v_n)).  F(v') - F(v) is computed directly as
    -d b_i - sum_j [softplus(z_j + d W_ij) - softplus(z_j)], z = v W + c, d = 1 - 2 v_i,
    so only one matrix product is needed.  Returns (N,).
    """
    N, V = v.shape
    H = W.shape[1]
    T = v.dtype.type
    zero, one, two = T(0), T(1), T(2)
    z = np.empty((N, H), v.dtype)
    nb = _n_blocks(H)
    for q in prange(nb):
        j0, j1 = q * H // nb, (q + 1) * H // nb
        gemm(v, W[:, j0:j1], z[:, j0:j1], False, False, 1.0, 0.0)
    out = np.empty(N, v.dtype)
    nr = max(1, min(16, N // 16))
    for q in prange(nr):
        for n in range(q * N // nr, (q + 1) * N // nr):
            i = idx[n]
            d = one - two * v[n, i]
            diff = -d * b[i]
            for j in range(H):
                zj = z[n, j] + c[j]
                diff -= _softplus(zj + d * W[i, j], zero) - _softplus(zj, zero)
            out[n] = -T(V) * _softplus(-diff, zero)
    return out
