"""RBM kernels (kernels.cpu.rbm) against plain-NumPy float64 references given the same random
numbers; scikit-learn's BernoulliRBM formulas; finite differences of the free energy; extreme
weights; float32 vs float64; bit-identical repeats and thread counts."""
import numba
import numpy as np
import pytest

from kernels.cpu import rbm as K


# ---------------------------------------------------------------- NumPy references (float64)
def sigm(z):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-z))


def softplus(z):
    return np.logaddexp(0, z)


def ref_cd(v0, W, b, c, chain, k, persistent, gaussian, sample_visible, uh, nv):
    """CD-k / PCD-k written out plainly, the textbook way."""
    N = len(v0)
    p0 = sigm(v0 @ W + c)
    hs = chain.copy() if persistent else (uh[0] < p0).astype(float)
    err = np.zeros(N)
    for t in range(k):
        m = hs @ W.T + b
        if not gaussian:
            m = sigm(m)
        if t == 0 and not persistent:
            err = ((v0 - m) ** 2).sum(1)
        if sample_visible:
            v = m + nv[t] if gaussian else (nv[t] < m).astype(float)
        else:
            v = m
        pk = sigm(v @ W + c)
        if persistent or t < k - 1:
            hs = (uh[t if persistent else t + 1] < pk).astype(float)
    pos_W, neg_W = v0.T @ p0, v.T @ pk
    grads = (-(pos_W - neg_W) / N, -(v0.sum(0) - v.sum(0)) / N, -(p0.sum(0) - pk.sum(0)) / N)
    return grads, hs, v, err


def ref_free_energy(v, W, b, c, gaussian=False):
    """scikit-learn's BernoulliRBM._free_energy (and the Gaussian-visible version)."""
    vis = 0.5 * ((v - b) ** 2).sum(1) if gaussian else -(v @ b)
    return vis - softplus(v @ W + c).sum(1)


def ref_pseudo_likelihood(v, W, b, c, idx):
    """scikit-learn's BernoulliRBM.score_samples with the flipped indices given."""
    v_ = v.copy()
    rows = np.arange(len(v))
    v_[rows, idx] = 1 - v_[rows, idx]
    fe, fe_ = ref_free_energy(v, W, b, c), ref_free_energy(v_, W, b, c)
    return -v.shape[1] * np.logaddexp(0, -(fe_ - fe))


def problem(rng, N, V, H, k, gaussian, dtype=np.float64, scale=0.3):
    v0 = rng.standard_normal((N, V)) if gaussian else (rng.random((N, V)) < 0.4) * 1.0
    W = rng.normal(0, scale, (V, H))
    b, c = rng.normal(0, 0.2, V), rng.normal(0, 0.2, H)
    chain = (rng.random((N, H)) < 0.5) * 1.0
    uh = rng.random((k, N, H))
    nv = rng.standard_normal((k, N, V)) if gaussian else rng.random((k, N, V))
    return [a.astype(dtype) for a in (v0, W, b, c, chain, uh, nv)]


def run_cd(v0, W, b, c, chain, uh, nv, k, persistent, gaussian, sample_visible):
    ch = chain if persistent else np.empty((0, W.shape[1]), v0.dtype)
    return K.rbm_cd(v0, W, b, c, ch, k, persistent, gaussian, sample_visible, uh, nv)


# ---------------------------------------------------------------- CD-k / PCD-k
@pytest.mark.parametrize("N,V,H", [(1, 1, 1), (7, 13, 11), (33, 300, 257)])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("persistent", [False, True], ids=["cd", "pcd"])
@pytest.mark.parametrize("gaussian,sample_visible", [(False, True), (False, False),
                                                     (True, True)],
                         ids=["bernoulli", "bernoulli-mean", "gaussian"])
def test_cd_matches_numpy_reference(N, V, H, k, persistent, gaussian, sample_visible):
    rng = np.random.default_rng(N * 1000 + V + k)
    v0, W, b, c, chain, uh, nv = problem(rng, N, V, H, k, gaussian)
    dW, db, dc, new_chain, v_neg, err = run_cd(v0, W, b, c, chain, uh, nv, k, persistent,
                                               gaussian, sample_visible)
    (rW, rb, rc), r_chain, r_vneg, r_err = ref_cd(v0, W, b, c, chain, k, persistent, gaussian,
                                                 sample_visible, uh, nv)
    # the sampled states are exactly the reference's: every Bernoulli decision agrees
    if persistent:
        assert np.array_equal(new_chain, r_chain)
    else:
        assert new_chain.shape == (0, H)
    if sample_visible and not gaussian:
        assert np.array_equal(v_neg, r_vneg)
    else:
        np.testing.assert_allclose(v_neg, r_vneg, rtol=1e-13, atol=1e-13)
    # the statistics differ only by the order of float64 sums inside BLAS
    for got, want in ((dW, rW), (db, rb), (dc, rc)):
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(err, r_err if not persistent else 0 * r_err,
                               rtol=1e-12, atol=1e-12)


def test_cd_gradient_is_free_energy_gradient_difference(rng):
    """dLoss/dθ of CD = dF/dθ at the data minus dF/dθ at the negative samples (row means)."""
    for gaussian in (False, True):
        v0, W, b, c, chain, uh, nv = problem(rng, 20, 31, 17, 2, gaussian)
        dW, db, dc, _, v_neg, _ = run_cd(v0, W, b, c, chain, uh, nv, 2, False, gaussian, True)
        pos, neg = (K.rbm_free_energy_grad(v, W, b, c, gaussian) for v in (v0, v_neg))
        for got, p, n in zip((dW, db, dc), pos, neg):
            np.testing.assert_allclose(got, p - n, rtol=1e-12, atol=1e-13)


def test_pcd_chain_is_input_and_output_only(rng):
    """The kernel keeps no state: same inputs, same outputs; the input chain is not written."""
    v0, W, b, c, chain, uh, nv = problem(rng, 10, 12, 9, 1, False)
    keep = chain.copy()
    out1 = run_cd(v0, W, b, c, chain, uh, nv, 1, True, False, True)
    out2 = run_cd(v0, W, b, c, chain, uh, nv, 1, True, False, True)
    assert np.array_equal(chain, keep)
    for a, o in zip(out1, out2):
        assert a.tobytes() == o.tobytes()
    # continuing from the returned chain is what moves the chain on
    out3 = run_cd(v0, W, b, c, out1[3], uh, nv, 1, True, False, True)
    ref3 = ref_cd(v0, W, b, c, out1[3], 1, True, False, True, uh, nv)
    assert np.array_equal(out3[3], ref3[1])


# ---------------------------------------------------------------- free energy & friends
@pytest.mark.parametrize("gaussian", [False, True])
def test_free_energy_matches_formula(gaussian, rng):
    v0, W, b, c, *_ = problem(rng, 23, 41, 19, 1, gaussian, scale=2.0)
    np.testing.assert_allclose(K.rbm_free_energy(v0, W, b, c, gaussian),
                               ref_free_energy(v0, W, b, c, gaussian), rtol=1e-12, atol=1e-11)


def test_free_energy_and_pseudo_likelihood_match_sklearn(rng, need):
    v0, W, b, c, *_ = problem(rng, 50, 64, 20, 1, False, scale=1.0)
    idx = rng.integers(0, 64, 50)
    pl = K.rbm_pseudo_likelihood(v0, W, b, c, idx)
    np.testing.assert_allclose(pl, ref_pseudo_likelihood(v0, W, b, c, idx), rtol=1e-10,
                               atol=1e-10)
    sk = need("sklearn.neural_network")
    m = sk.BernoulliRBM(n_components=20, random_state=7)
    m.components_, m.intercept_visible_, m.intercept_hidden_ = W.T.copy(), b, c
    m.n_features_in_ = 64
    np.testing.assert_allclose(K.rbm_free_energy(v0, W, b, c, False), m._free_energy(v0),
                               rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(K.rbm_hidden(v0, W, c), m.transform(v0), rtol=1e-13, atol=1e-15)
    # score_samples draws idx = RandomState(random_state).randint(0, V, N): use the same ones
    sk_idx = np.random.RandomState(7).randint(0, 64, 50)
    np.testing.assert_allclose(K.rbm_pseudo_likelihood(v0, W, b, c, sk_idx.astype(np.int64)),
                               m.score_samples(v0), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("gaussian", [False, True])
@pytest.mark.parametrize("N,V,H", [(1, 3, 2), (5, 13, 7)])
def test_free_energy_gradient_finite_differences(gaussian, N, V, H, rng):
    v0, W, b, c, *_ = problem(rng, N, V, H, 1, gaussian, scale=0.7)
    grads = K.rbm_free_energy_grad(v0, W, b, c, gaussian)
    eps = 1e-6

    def meanF():
        return K.rbm_free_energy(v0, W, b, c, gaussian).mean()

    for arr, g in zip((W, b, c), grads):
        assert g.shape == arr.shape
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + eps
            fp = meanF()
            arr[idx] = old - eps
            fm = meanF()
            arr[idx] = old
            num = (fp - fm) / (2 * eps)
            assert abs(num - g[idx]) <= 1e-7 * max(1, abs(num)), (idx, num, g[idx])


def test_conditionals_match_numpy(rng):
    v0, W, b, c, chain, *_ = problem(rng, 9, 300, 130, 1, False)
    np.testing.assert_allclose(K.rbm_hidden(v0, W, c), sigm(v0 @ W + c), rtol=1e-13)
    np.testing.assert_allclose(K.rbm_visible(chain, W, b, False), sigm(chain @ W.T + b),
                               rtol=1e-13)
    np.testing.assert_allclose(K.rbm_visible(chain, W, b, True), chain @ W.T + b, rtol=1e-13,
                               atol=1e-13)


@pytest.mark.parametrize("gaussian", [False, True])
def test_gibbs_matches_numpy(gaussian, rng):
    v0, W, b, c, _, uh, nv = problem(rng, 6, 20, 10, 4, gaussian)
    x, m, h = K.rbm_gibbs(v0, W, b, c, 4, gaussian, uh, nv)
    rx = v0
    for t in range(4):
        rh = (uh[t] < sigm(rx @ W + c)) * 1.0
        rm = rh @ W.T + b if gaussian else sigm(rh @ W.T + b)
        rx = rm + nv[t] if gaussian else (nv[t] < rm) * 1.0
    assert np.array_equal(h, rh)
    np.testing.assert_allclose(m, rm, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(x, rx, rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------- numerics
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [50.0, 1e4, 1e6])
def test_extreme_weights_stay_finite(dtype, scale, rng):
    v0, W, b, c, chain, uh, nv = problem(rng, 16, 40, 24, 3, False, dtype)
    W = (np.sign(rng.standard_normal(W.shape)) * scale).astype(dtype)
    b, c = (b * scale).astype(dtype), (c * scale).astype(dtype)
    for persistent in (False, True):
        out = run_cd(v0, W, b, c, chain, uh, nv, 3, persistent, False, True)
        for a in out:
            assert np.isfinite(a).all()
        assert set(np.unique(out[4])) <= {0, 1}
    x, m, h = K.rbm_gibbs(v0, W, b, c, 3, False, uh, nv)
    assert np.isfinite(m).all() and set(np.unique(x)) <= {0, 1} and set(np.unique(h)) <= {0, 1}
    assert ((m >= 0) & (m <= 1)).all()
    for a in (K.rbm_hidden(v0, W, c), K.rbm_free_energy(v0, W, b, c, False),
              K.rbm_pseudo_likelihood(v0, W, b, c, rng.integers(0, 40, 16)),
              *K.rbm_free_energy_grad(v0, W, b, c, False)):
        assert np.isfinite(a).all()


def test_float32_sigmoid_saturates_cleanly():
    z = np.array([-np.inf, -1e30, -200, -104, -88, -87.5, -87, -30, -1, 0, 1, 30, 87, 88, 200,
                  1e30, np.inf, np.nan], np.float32)
    p = K.rbm_hidden(z[:, None].copy(), np.ones((1, 1), np.float32), np.zeros(1, np.float32))
    p = p[:, 0]
    want = sigm(z.astype(np.float64))
    ok = ~np.isnan(z)
    assert np.isnan(p[~ok]).all()
    assert ((p[ok] >= 0) & (p[ok] <= 1)).all()
    np.testing.assert_allclose(p[ok], want[ok], rtol=3e-7, atol=2e-38)
    # nothing below the normal range (denormals slow every later product down)
    assert not ((p > 0) & (p < np.finfo(np.float32).tiny)).any()


def test_float32_matches_float64(rng):
    for gaussian, persistent in ((False, False), (False, True), (True, False)):
        v0, W, b, c, chain, uh, nv = problem(rng, 40, 100, 60, 2, gaussian, scale=0.1)
        # same random numbers; with this seed no uniform lies within float32 rounding of its
        # probability, so both precisions take the same samples and agree to rounding
        out64 = run_cd(v0, W, b, c, chain, uh, nv, 2, persistent, gaussian, True)
        args32 = [a.astype(np.float32) for a in (v0, W, b, c, chain, uh, nv)]
        out32 = run_cd(*args32, 2, persistent, gaussian, True)
        for a32, a64 in zip(out32, out64):
            assert a32.dtype == np.float32
            np.testing.assert_allclose(a32, a64, rtol=2e-4, atol=2e-5)
        for f in (lambda *a: K.rbm_hidden(a[0], a[1], a[3]),
                  lambda *a: K.rbm_free_energy(a[0], a[1], a[2], a[3], gaussian)):
            np.testing.assert_allclose(f(*args32), f(v0, W, b, c), rtol=1e-5, atol=1e-4)


def test_bit_identical_repeats_and_thread_counts(rng):
    v0, W, b, c, chain, uh, nv = (a.astype(np.float32) for a in
                                  problem(rng, 100, 784, 500, 2, False, scale=0.01))
    ref = run_cd(v0, W, b, c, chain, uh, nv, 2, False, False, True)
    threads = numba.get_num_threads()
    try:
        for n in sorted({1, threads}):
            numba.set_num_threads(n)
            for _ in range(2):
                out = run_cd(v0, W, b, c, chain, uh, nv, 2, False, False, True)
                for a, o in zip(ref, out):
                    assert a.tobytes() == o.tobytes()
    finally:
        numba.set_num_threads(threads)


def _misaligned(a, offset):
    """a copied into a buffer starting ``offset`` elements past an aligned address."""
    buf = np.empty(a.size + 16, a.dtype)
    start = (-buf.ctypes.data // a.itemsize) % 16 + offset
    out = buf[start:start + a.size].reshape(a.shape)
    out[...] = a
    return out


def test_bit_identical_across_buffer_alignments(rng):
    """No vectorised reduction may depend on where the arrays happen to start."""
    args = [a.astype(np.float32) for a in problem(rng, 100, 300, 130, 1, False, scale=0.1)]
    outs = []
    for offset in (0, 1, 3):
        v0, W, b, c, chain, uh, nv = (_misaligned(a, offset) for a in args)
        outs.append(run_cd(v0, W, b, c, chain, uh, nv, 1, False, False, True)
                    + (K.rbm_free_energy(v0, W, b, c, False),))
    for other in outs[1:]:
        for a, o in zip(outs[0], other):
            assert a.tobytes() == o.tobytes()
