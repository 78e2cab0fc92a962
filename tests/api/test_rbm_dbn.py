"""dlkit.rbm and dlkit.dbn: the documented random-number order, no hidden state, optimizers,
scikit-learn's formulas, errors before any kernel runs, DBN stacking / MLP conversion /
generation, and short real runs on Fashion-MNIST."""
import numpy as np
import pytest

from dlkit import data, dbn, losses, optim, random, rbm, train, tree
from dlkit import layers as L
from dlkit import nn


def sigm(z):
    return 1 / (1 + np.exp(-z))


def make(rng, V=12, H=7, dtype=np.float64, scale=0.5):
    p = {"W": rng.normal(0, scale, (V, H)), "vbias": rng.normal(0, 0.2, V),
         "hbias": rng.normal(0, 0.2, H)}
    return {k: a.astype(dtype) for k, a in p.items()}


def binary(rng, N, V, dtype=np.float64):
    return (rng.random((N, V)) < 0.4).astype(dtype)


# ---------------------------------------------------------------- init
def test_init_shapes_and_data_bias():
    X = np.zeros((10, 6), np.float32)
    X[:5, 0] = 1
    X[:, 1] = 1
    p = rbm.init(random.key(0), 6, 4, data=X)
    assert p["W"].shape == (6, 4) and p["vbias"].shape == (6,) and p["hbias"].shape == (4,)
    assert all(a.dtype == np.float32 for a in p.values())
    assert abs(p["W"].std() - 0.01) < 0.005 and not p["hbias"].any()
    np.testing.assert_allclose(p["vbias"][:3], [0, np.log(0.999 / 0.001), np.log(0.001 / 0.999)],
                               rtol=1e-5, atol=1e-6)
    g = rbm.init(random.key(0), 6, 4, data=X * 3, visible="gaussian", dtype=np.float64)
    np.testing.assert_allclose(g["vbias"], (X * 3).mean(0))
    assert tree.equal(p, rbm.init(random.key(0), 6, 4, data=X))


# ---------------------------------------------------------------- cd_grads
@pytest.mark.parametrize("persistent", [False, True], ids=["cd", "pcd"])
@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_cd_grads_follow_the_documented_random_numbers(persistent, visible, rng):
    """uh then the visible noise in one random.uniform array (Gaussian noise: normals from
    generator(key)), as documented, reproduce the result in NumPy."""
    p = make(rng)
    gaussian = visible == "gaussian"
    v0 = rng.standard_normal((9, 12)) if gaussian else binary(rng, 9, 12)
    chain = (rng.random((9, 7)) < 0.5) * 1.0 if persistent else None
    key, k = random.key(3), 2
    grads, new_chain, stats = rbm.cd_grads(p, v0, key, k=k, chain=chain, visible=visible)
    u = random.uniform(key, (k * 9 * (7 + (0 if gaussian else 12)),), np.float64)
    uh = u[:k * 9 * 7].reshape(k, 9, 7)
    nv = random.generator(key).standard_normal((k, 9, 12)) if gaussian else \
        u[k * 9 * 7:].reshape(k, 9, 12)
    W, b, c = p["W"], p["vbias"], p["hbias"]
    p0 = sigm(v0 @ W + c)
    hs = chain if persistent else (uh[0] < p0) * 1.0
    for t in range(k):
        m = hs @ W.T + b if gaussian else sigm(hs @ W.T + b)
        if t == 0:
            recon = ((v0 - m) ** 2).sum(1).mean()
        v = m + nv[t] if gaussian else (nv[t] < m) * 1.0
        pk = sigm(v @ W + c)
        if persistent or t < k - 1:
            hs = (uh[t if persistent else t + 1] < pk) * 1.0
    np.testing.assert_allclose(grads["W"], -(v0.T @ p0 - v.T @ pk) / 9, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads["vbias"], -(v0 - v).mean(0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads["hbias"], -(p0 - pk).mean(0), rtol=1e-12, atol=1e-14)
    if persistent:
        assert np.array_equal(new_chain, hs) and stats["recon_error"] is None
    else:
        assert new_chain is None
        assert stats["recon_error"] == pytest.approx(recon, rel=1e-12)


def test_same_key_same_bits_and_nothing_modified(rng):
    p = make(rng, 30, 20, np.float32)
    v0 = binary(rng, 16, 30, np.float32)
    before, v_before = tree.copy(p), v0.copy()
    a = rbm.cd_grads(p, v0, random.key(5), k=3)
    b = rbm.cd_grads(p, v0, random.key(5), k=3)
    c = rbm.cd_grads(p, v0, random.key(6), k=3)
    assert tree.equal(a[0], b[0]) and a[2] == b[2]
    assert not tree.equal(a[0], c[0])
    assert tree.equal(p, before) and np.array_equal(v0, v_before)
    assert all(g.dtype == np.float32 and g.shape == p[n].shape for n, g in a[0].items())


def test_pcd_chain_persists_only_through_the_returned_value(rng):
    p = make(rng, 30, 20, np.float32)
    v0 = binary(rng, 16, 30, np.float32)
    chain = rbm.init_chain(p, v0, random.key(1))
    assert chain.shape == (16, 20) and set(np.unique(chain)) <= {0, 1}
    keep = chain.copy()
    g1, c1, _ = rbm.cd_grads(p, v0, random.key(2), chain=chain)
    g2, c2, _ = rbm.cd_grads(p, v0, random.key(2), chain=chain)   # same chain in: same out
    assert np.array_equal(chain, keep)
    assert tree.equal(g1, g2) and np.array_equal(c1, c2)
    g3, c3, _ = rbm.cd_grads(p, v0, random.key(2), chain=c1)      # the new chain moves it on
    assert not np.array_equal(c3, c1) or not tree.equal(g3, g1)
    g4, none, _ = rbm.cd_grads(p, v0, random.key(2))              # CD: no chain at all
    assert none is None and not tree.equal(g4, g1)


def test_read_only_and_strided_inputs(rng):
    p = make(rng, 30, 20, np.float32)
    big = binary(rng, 16, 60, np.float32)
    v0 = big[:, ::2]
    ro = {k: a.copy() for k, a in p.items()}
    for a in ro.values():
        a.flags.writeable = False
    vro = v0.copy()
    vro.flags.writeable = False
    ref = rbm.cd_grads(p, np.ascontiguousarray(v0), random.key(0))
    for params, v in ((p, v0), (ro, vro)):
        got = rbm.cd_grads(params, v, random.key(0))
        assert tree.equal(ref[0], got[0])
    assert np.array_equal(rbm.transform(ro, vro), rbm.transform(p, np.ascontiguousarray(v0)))


def test_any_optimizer_trains_an_rbm(rng):
    """CD grads are dLoss/dθ: optimizers minimise, and the reconstruction error falls."""
    protos = binary(rng, 4, 36)
    X = np.abs(protos[rng.integers(0, 4, 400)] - (rng.random((400, 36)) < 0.05)).astype(
        np.float32)
    for opt in (rbm.hinton_sgd(0.1, 0.5), optim.sgd(0.05, momentum=0.9), optim.adam(0.01)):
        p = rbm.init(random.key(0), 36, 16, data=X)
        state = opt.init(p)
        start = rbm.reconstruction_error(p, X)
        for step in range(150):
            xb = X[(step * 40) % 400:(step * 40) % 400 + 40]
            grads, _, _ = rbm.cd_grads(p, xb, random.fold_in(random.key(1), step))
            grads = rbm.weight_decay(grads, p, 2e-4)
            updates, state = opt.update(grads, state, p)
            p = optim.apply_updates(p, updates)
        assert rbm.reconstruction_error(p, X) < 0.4 * start, opt.name


def test_weight_decay_touches_W_only(rng):
    p = make(rng)
    g = {k: np.zeros_like(a) for k, a in p.items()}
    d = rbm.weight_decay(g, p, 0.5)
    np.testing.assert_allclose(d["W"], 0.5 * p["W"])
    assert not d["vbias"].any() and not d["hbias"].any()
    d1 = rbm.weight_decay(g, p, 0.5, l1=0.25)
    np.testing.assert_allclose(d1["W"], 0.5 * p["W"] + 0.25 * np.sign(p["W"]))
    assert rbm.weight_decay(g, p, 0.0) is g


@pytest.mark.parametrize("persistent", [False, True], ids=["cd", "pcd"])
def test_fit_fused_sgd_equals_cd_grads_with_optim_sgd(persistent, rng):
    """The fused SGD path is optim.sgd + weight_decay on cd_grads, bit for bit; and a run
    resumed from its returned params / opt_state / chain continues exactly."""
    protos = binary(rng, 3, 20)
    X = protos[rng.integers(0, 3, 130)].astype(np.float32)
    p = rbm.init(random.key(0), 20, 10, data=X)
    kw = dict(batch_size=20, k=2, persistent=persistent, sample_visible=True,
              weight_decay=1e-3, l1=1e-3)
    fused = rbm.fit(p, X, random.key(1), epochs=3, lr=0.1, momentum=0.5, final_momentum=None,
                    **kw)
    generic = rbm.fit(p, X, random.key(1), epochs=3, optimizer=optim.sgd(0.1, momentum=0.5),
                      **kw)
    assert tree.equal(fused.params, generic.params)
    assert tree.equal(fused.opt_state, generic.opt_state)
    assert fused.history["recon_error"] == generic.history["recon_error"]
    if persistent:
        assert np.array_equal(fused.chain, generic.chain)
    # stop after 2 epochs, resume for the third: the same as 3 epochs in one go
    head = rbm.fit(p, X, random.key(1), epochs=2, lr=0.1, momentum=0.5, final_momentum=None,
                   **kw)
    tail = rbm.fit(head.params, X, random.key(1), epochs=3, start_epoch=2,
                   opt_state=head.opt_state, chain=head.chain, lr=0.1, momentum=0.5,
                   final_momentum=None, **kw)
    assert tree.equal(tail.params, fused.params) and tree.equal(tail.opt_state, fused.opt_state)
    assert tree.equal(p, rbm.init(random.key(0), 20, 10, data=X))     # inputs untouched


def test_fit_cd_pcd_gaussian_and_determinism(rng):
    protos = binary(rng, 3, 20)
    X = protos[rng.integers(0, 3, 250)].astype(np.float32)
    p = rbm.init(random.key(0), 20, 10, data=X)
    a = rbm.fit(p, X, random.key(1), epochs=3, batch_size=25, momentum_switch=1,
                monitor=X[:50])
    b = rbm.fit(p, X, random.key(1), epochs=3, batch_size=25, momentum_switch=1,
                monitor=X[:50])
    assert tree.equal(a.params, b.params) and a.history["recon_error"] == b.history["recon_error"]
    assert a.history["monitor_recon_error"][-1] < rbm.reconstruction_error(p, X[:50])
    assert len(a.history["monitor_pseudo_likelihood"]) == 3 and a.chain is None
    c = rbm.fit(p, X, random.key(1), epochs=2, batch_size=24, persistent=True, k=2)
    assert c.chain.shape == (24, 10) and c.history["recon_error"] == [None, None]
    # a Gaussian-visible RBM on standardised real-valued data
    Z = (X + 0.3 * rng.standard_normal(X.shape)).astype(np.float32)
    Z = (Z - Z.mean(0)) / Z.std(0)
    g = rbm.init(random.key(0), 20, 10, data=Z, visible="gaussian")
    r = rbm.fit(g, Z, random.key(2), epochs=5, batch_size=25, visible="gaussian",
                optimizer=optim.sgd(0.01, momentum=0.5), sample_visible=False)
    assert rbm.reconstruction_error(r.params, Z, visible="gaussian") < \
        rbm.reconstruction_error(g, Z, visible="gaussian")


# ---------------------------------------------------------------- inference
def test_free_energy_and_pseudo_likelihood_are_sklearns_formulas(rng):
    p = make(rng, 25, 9, scale=1.0)
    v = binary(rng, 30, 25)
    W, b, c = p["W"], p["vbias"], p["hbias"]
    fe = -(v @ b) - np.logaddexp(0, v @ W + c).sum(1)
    np.testing.assert_allclose(rbm.free_energy(p, v), fe, rtol=1e-12)
    key = random.key(9)
    idx = random.generator(key).integers(0, 25, 30)
    v_ = v.copy()
    v_[np.arange(30), idx] = 1 - v_[np.arange(30), idx]
    fe_ = -(v_ @ b) - np.logaddexp(0, v_ @ W + c).sum(1)
    pl = -25 * np.logaddexp(0, -(fe_ - fe))
    np.testing.assert_allclose(rbm.pseudo_likelihood(p, v, key), pl, rtol=1e-10)
    assert np.array_equal(rbm.pseudo_likelihood(p, v, key), rbm.pseudo_likelihood(p, v, key))
    g = rbm.free_energy(p, v, visible="gaussian")
    np.testing.assert_allclose(g, 0.5 * ((v - b) ** 2).sum(1)
                               - np.logaddexp(0, v @ W + c).sum(1), rtol=1e-12)
    grads = rbm.free_energy_grad(p, v)
    np.testing.assert_allclose(grads["W"], -v.T @ sigm(v @ W + c) / 30, rtol=1e-12)


def test_transform_reconstruct_gibbs(rng):
    p = make(rng, 25, 9, np.float32)
    v = binary(rng, 30, 25, np.float32)
    h = rbm.transform(p, v)
    np.testing.assert_allclose(h, sigm(v @ p["W"] + p["hbias"]), rtol=1e-5)
    r = rbm.reconstruct(p, v)
    np.testing.assert_allclose(r, sigm(h @ p["W"].T + p["vbias"]), rtol=1e-5)
    assert rbm.reconstruction_error(p, v) == pytest.approx(((v - r) ** 2).sum(1).mean(), 1e-5)
    x, m, hs = rbm.gibbs(p, v, random.key(0), n_steps=5)
    assert x.shape == m.shape == v.shape and hs.shape == (30, 9)
    assert set(np.unique(x)) <= {0, 1} and ((m > 0) & (m < 1)).all()
    x2, _, _ = rbm.gibbs(p, v, random.key(0), n_steps=5)
    assert np.array_equal(x, x2)
    x0, m0, _ = rbm.gibbs(p, v, random.key(0), n_steps=0)
    assert np.array_equal(x0, v) and np.array_equal(m0, v)


# ---------------------------------------------------------------- errors, before any kernel
class _NoKernels:
    def __getattr__(self, name):
        def kernel(*args):
            raise AssertionError(f"kernel {name} ran before the input was rejected")
        return kernel


@pytest.fixture
def no_kernels(monkeypatch):
    monkeypatch.setattr(rbm, "_kernels", lambda W: _NoKernels())


def _bad_calls(rng):
    p = make(rng, 12, 7, np.float32)
    v = binary(rng, 8, 12, np.float32)
    chain = np.zeros((8, 7), np.float32)
    key = random.key(0)
    return [
        (lambda: rbm.cd_grads(p, v * 2, key), ValueError, "data in [0, 1], got range [0, 2]"),
        (lambda: rbm.cd_grads(p, v - 0.5, key), ValueError, "data in [0, 1]"),
        (lambda: rbm.cd_grads(p, v * np.nan, key), ValueError, "NaN"),
        (lambda: rbm.transform(p, v + 1), ValueError, "data in [0, 1]"),
        (lambda: rbm.pseudo_likelihood(p, -v, key), ValueError, "data in [0, 1]"),
        (lambda: rbm.fit(p, v * 255, key), ValueError, "data in [0, 1]"),
        (lambda: rbm.cd_grads(p, (v * 255).astype(np.uint8), key), TypeError, "x / 255"),
        (lambda: rbm.cd_grads(p, v, key, k=0), ValueError, "k (Gibbs steps) must be an int >= 1"),
        (lambda: rbm.cd_grads(p, v, key, k=-1), ValueError, "got -1"),
        (lambda: rbm.cd_grads(p, v, key, k=1.5), ValueError, "got 1.5"),
        (lambda: rbm.fit(p, v, key, k=0), ValueError, "k (Gibbs steps)"),
        (lambda: rbm.cd_grads(p, v, key, chain=chain[:5]), ValueError,
         "chain has shape (5, 7) but this batch needs (8, 7)"),
        (lambda: rbm.cd_grads(p, v, key, chain=np.zeros((8, 6), np.float32)), ValueError,
         "needs (8, 7)"),
        (lambda: rbm.cd_grads(p, v, key, chain=chain.astype(np.float64)), TypeError,
         "chain is float64"),
        (lambda: rbm.cd_grads(p, v, key, chain=chain + 2), ValueError, "chain values"),
        (lambda: rbm.cd_grads(p, v[:, :10], key), ValueError,
         "has 10 units per row, the RBM has 12 visible units"),
        (lambda: rbm.cd_grads(p, v.astype(np.float64), key), TypeError,
         "is float64 but the params are float32"),
        (lambda: rbm.cd_grads(dict(p, hbias=p["hbias"][:5]), v, key), ValueError,
         "hbias of shape (7,)"),
        (lambda: rbm.cd_grads({"W": p["W"]}, v, key), ValueError, "missing"),
        (lambda: rbm.cd_grads(p, v, key, visible="poisson"), ValueError, "visible must be"),
        (lambda: rbm.cd_grads(p, v, "seed"), TypeError, "expected a key"),
        (lambda: rbm.gibbs(p, v, key, n_steps=-1), ValueError, "n_steps"),
        (lambda: rbm.fit(p, v, key, persistent=True, batch_size=100), ValueError,
         "at least one full batch"),
        (lambda: dbn.check([p, make(rng, 8, 3, np.float32)]), ValueError,
         "layer 0 has 7 hidden units (W (12, 7)) but layer 1 has 8 visible units"),
        (lambda: dbn.pretrain([p, make(rng, 6, 3, np.float32)], v, key), ValueError,
         "layer sizes do not chain"),
        (lambda: dbn.to_mlp([p, make(rng, 9, 3, np.float32)], 10, key), ValueError,
         "layer 1's W must have shape (7, n_hidden)"),
        (lambda: dbn.check([p, make(rng, 7, 3, np.float64)]), TypeError, "one dtype"),
        (lambda: dbn.check([]), TypeError, "non-empty list"),
        (lambda: dbn.to_mlp([p], 1, key), ValueError, "n_classes"),
        (lambda: dbn.transform([p], v * 3), ValueError, "data in [0, 1]"),
    ]


def test_bad_input_raises_before_any_kernel(no_kernels, rng):
    for call, exc, msg in _bad_calls(rng):
        with pytest.raises(exc) as e:
            call()
        assert msg in str(e.value), (msg, str(e.value))


# ---------------------------------------------------------------- DBN
def test_dbn_stack_transform_mlp_and_generate(rng):
    X = binary(rng, 60, 20, np.float32)
    stack = dbn.init(random.key(0), [20, 12, 8], data=X)
    assert dbn.sizes(stack) == [20, 12, 8] and dbn.check(stack) == [(20, 12), (12, 8)]
    stack = [dict(p, W=(rng.standard_normal(p["W"].shape) * 0.5).astype(np.float32))
             for p in stack]
    top = dbn.transform(stack, X)
    np.testing.assert_allclose(top, rbm.transform(stack[1], rbm.transform(stack[0], X)),
                               rtol=1e-6)
    assert np.array_equal(dbn.transform(stack, X, n_layers=1), rbm.transform(stack[0], X))
    model, params = dbn.to_mlp(stack, 5, random.key(1))
    assert list(params) == ["fc1", "fc2", "out"] and params["out"]["W"].shape == (8, 5)
    logits, _ = model.forward(params, X)
    np.testing.assert_allclose(logits, top @ params["out"]["W"] + params["out"]["b"],
                               rtol=1e-5, atol=1e-6)
    params["fc1"]["W"][:] = 0                                   # copies, not views
    assert stack[0]["W"].any()
    model2, params2 = dbn.to_mlp(stack, 5, random.key(1), flatten=True)
    assert np.allclose(model2.forward(params2, X.reshape(60, 4, 5))[0], logits, atol=1e-6)
    v, top_v = dbn.generate(stack, random.key(2), 7, n_steps=20)
    assert v.shape == (7, 20) and top_v.shape == (7, 12)
    assert ((v > 0) & (v < 1)).all() and set(np.unique(top_v)) <= {0, 1}
    assert np.array_equal(v, dbn.generate(stack, random.key(2), 7, n_steps=20)[0])
    v2, _ = dbn.generate(stack, random.key(2), 7, n_steps=5, init=X[:7])
    assert v2.shape == (7, 20)


def test_dbn_pretrain_greedy(rng):
    protos = binary(rng, 3, 24)
    X = protos[rng.integers(0, 3, 200)].astype(np.float32)
    stack = dbn.init(random.key(0), [24, 16, 8], data=X)
    seen = []
    new, hist = dbn.pretrain(stack, X, random.key(1), epochs=[3, 2], batch_size=20,
                             monitor_size=50, callback=lambda l, r: seen.append(l))
    assert seen == [0, 1] and [len(h["epoch"]) for h in hist] == [3, 2]
    assert dbn.sizes(new) == [24, 16, 8] and not tree.equal(new[0], stack[0])
    # layer 1 was trained on layer 0's hidden probabilities: check against training it alone
    alone = rbm.fit(stack[1], rbm.transform(new[0], X), random.fold_in(random.key(1), 1),
                    epochs=2, batch_size=20, monitor=rbm.transform(new[0], X)[:50])
    assert tree.equal(alone.params, new[1])
    # resuming after layer 0 (start_layer=1) gives the same stack
    resumed, h2 = dbn.pretrain([new[0], stack[1]], X, random.key(1), epochs=[3, 2],
                               batch_size=20, monitor_size=50, start_layer=1)
    assert len(h2) == 1 and all(tree.equal(a, b) for a, b in zip(resumed, new))


# ---------------------------------------------------------------- real data (Fashion-MNIST)
def _fashion(data_dir, n_train, n_test):
    (xtr, ytr), (xte, yte) = data.load_mnist("fashion-mnist", data_dir=data_dir,
                                             download=False, progress=False)
    f = lambda x: (x.reshape(len(x), -1) / np.float32(255)).astype(np.float32)  # noqa: E731
    return f(xtr[:n_train]), ytr[:n_train], f(xte[:n_test]), yte[:n_test]


def _probe(A, y, At, yt):
    """Softmax regression (Adam 0.01, 5 epochs of batch 100) on features A -> test accuracy."""
    model = nn.serial(("out", L.Dense(10)))
    _, params = model.init(random.key(2), (A.shape[1],))
    fit = train.fit(model, params, optim.adam(0.01), (A, y), key=random.key(3), epochs=5,
                    batch_size=100, progress=False, log=lambda *a: None)
    return train.evaluate(model, fit.params, At, yt)[1]


def test_rbm_features_on_fashion_mnist(data_dir):
    """10 epochs of CD-1 (784-512) on 10k images, then softmax regression on P(h|v), against
    the same softmax regression on the raw pixels (computed here, same split, same 5-epoch
    budget).  Measured (2000 test images): raw pixels 0.8325; RBM 784-256 x 2 epochs (the old
    test) 0.784, below raw pixels; 784-256 x 5 epochs 0.8195; 784-1024 x 10 epochs 0.8455;
    784-512 x 10 epochs 0.8585.  Bar: raw + 0.015.  What this does and does not show: with a
    10-epoch probe the raw pixels catch up (0.855 vs 0.852), so the claim is that RBM features
    are linearly more useful than pixels for a short probe, not at convergence.  (Its speed
    lives in benchmarks/bench_rbm_fashion.py, not in a timing assertion here.)"""
    X, y, Xt, yt = _fashion(data_dir, 10000, 2000)
    p = rbm.init(random.key(0), 784, 512, data=X)
    res = rbm.fit(p, X, random.key(1), epochs=10, sample_visible=False, weight_decay=2e-4)
    errs = res.history["recon_error"]
    assert errs[-1] < 0.8 * errs[0] and errs[-1] < errs[1] < errs[0], errs
    acc = _probe(rbm.transform(res.params, X), y, rbm.transform(res.params, Xt), yt)
    raw = _probe(X, y, Xt, yt)
    assert 0.80 < raw < 0.87, raw                 # the baseline itself is sane
    assert acc >= raw + 0.015, (acc, raw)


def test_dbn_fine_tuning_on_fashion_mnist(data_dir):
    """784-256-128 pretrained 2 epochs a layer on 10k images, fine-tuned 2 epochs by SGD, against
    the same stack un-pretrained (dbn.init's small random weights and data-derived visible
    bias) fine-tuned the same way (computed here).  Measured (2000 test images): un-pretrained
    0.754, pretrained 0.795.  Bar: un-pretrained + 0.02."""
    X, y, Xt, yt = _fashion(data_dir, 10000, 2000)
    stack0 = dbn.init(random.key(0), [784, 256, 128], data=X)
    stack, hist = dbn.pretrain(stack0, X, random.key(1), epochs=2, monitor_size=500)
    assert hist[1]["monitor_recon_error"][1] < hist[1]["monitor_recon_error"][0]

    def fine_tuned(s):
        model, params = dbn.to_mlp(s, 10, random.key(2))
        fit = train.fit(model, params, optim.sgd(0.1, momentum=0.9), (X, y), key=random.key(3),
                        epochs=2, batch_size=50, progress=False, log=lambda *a: None)
        return train.evaluate(model, fit.params, Xt, yt, loss_fn=losses.softmax_cross_entropy)[1]
    acc, base = fine_tuned(stack), fine_tuned(stack0)
    assert 0.70 < base < 0.85, base               # the baseline itself is sane
    assert acc >= base + 0.02, (acc, base)
