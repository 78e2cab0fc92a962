"""dlkit.rbm and dlkit.dbn on device arrays against the CPU: cd_grads (CD and a PCD chain round
trip), transform, free_energy, gibbs, pseudo_likelihood and a two-step greedy pretraining
(cd_grads + weight decay + optim.sgd on the device vs the CPU's fused CD+SGD kernel); float32,
1e-5 relative, dtypes asserted, and every host/device copy counted.  The same key gives the
same host-drawn random numbers on both sides, so the samples agree exactly."""
import numpy as np
import pytest

from dlkit import device

OK, WHY = device.available()
if not OK:
    pytest.skip(WHY, allow_module_level=True)

from dlkit import dbn, random, rbm, tree  # noqa: E402

F32 = np.float32
KEY = random.key(3)


def close(got, want, rtol=1e-5):
    g = device.to_host(got)
    assert type(g) is np.ndarray and g.dtype == want.dtype == F32 and g.shape == want.shape, \
        (type(g), g.dtype, g.shape, want.shape)
    scale = max(float(np.max(np.abs(want))), 1e-30) if want.size else 1.0
    np.testing.assert_allclose(g, want, rtol=rtol, atol=rtol * scale)


def close_trees(got, want):
    fg, fw = tree.flatten(got), tree.flatten(want)
    assert fg.keys() == fw.keys()
    for k in fw:
        assert device.on_device(fg[k]), k
        close(fg[k], fw[k])


def setup(rng, N, V, H, visible):
    params = rbm.init(random.key(1), V, H, std=0.5)
    params["vbias"] = (rng.standard_normal(V) * 0.2).astype(F32)
    params["hbias"] = (rng.standard_normal(H) * 0.2).astype(F32)
    v = (rng.standard_normal((N, V)) if visible == "gaussian" else rng.random((N, V))).astype(F32)
    return params, v


def copies(transfers):
    out = (transfers.h2d, transfers.d2h, transfers.implicit)
    transfers.reset()
    return out


@pytest.mark.parametrize("N,V,H,k,visible", [(1, 5, 3, 2, "bernoulli"),
                                             (4, 3, 5, 1, "gaussian")])
def test_api_matches_cpu(rng, transfers, N, V, H, k, visible):
    """Batch 1 and odd sizes.  Copies per call: the range check of the data (24 bytes back),
    the random numbers (one copy up), cd_grads' per-row reconstruction errors (back)."""
    params, v = setup(rng, N, V, H, visible)
    pd, vd = device.to_device((params, v))
    transfers.reset()
    kw = dict(visible=visible)

    grads, chain, stats = rbm.cd_grads(pd, vd, KEY, k=k, **kw)
    assert copies(transfers) == (1, 2, 0) and chain is None
    want, _, want_stats = rbm.cd_grads(params, v, KEY, k=k, **kw)
    close_trees(grads, want)
    assert stats["recon_error"] == pytest.approx(want_stats["recon_error"], rel=1e-5)

    transfers.reset()
    h, F = rbm.transform(pd, vd, **kw), rbm.free_energy(pd, vd, **kw)
    assert copies(transfers) == (0, 2, 0)
    got = rbm.gibbs(pd, vd, KEY, k, **kw)
    assert copies(transfers) == (1, 1, 0)
    close(h, rbm.transform(params, v, **kw))
    close(F, rbm.free_energy(params, v, **kw))
    for g, w in zip(got, rbm.gibbs(params, v, KEY, k, **kw)):
        close(g, w)
    if visible == "bernoulli":
        transfers.reset()
        pl = rbm.pseudo_likelihood(pd, vd, KEY)
        assert copies(transfers) == (1, 1, 0)
        close(pl, rbm.pseudo_likelihood(params, v, KEY))


@pytest.mark.parametrize("bad", [1.5, -0.25, np.nan])
def test_out_of_range_bernoulli_data_on_device(rng, transfers, bad):
    """The CPU's error, found by one reduction kernel (24 bytes back), before any RBM kernel."""
    params, v = setup(rng, 3, 4, 2, "bernoulli")
    v[2, 1] = bad
    with pytest.raises(ValueError) as cpu:
        rbm.cd_grads(params, v, KEY)
    pd, vd = device.to_device((params, v))
    transfers.reset()
    with pytest.raises(ValueError) as dev:
        rbm.cd_grads(pd, vd, KEY)
    assert str(dev.value) == str(cpu.value)
    assert "Bernoulli visible units need data in [0, 1]" in str(dev.value)
    assert copies(transfers) == (0, 1, 0)          # the range only: no uniforms went up


def test_bad_input_on_device_raises_before_any_kernel(rng, transfers):
    params, v = setup(rng, 3, 4, 2, "bernoulli")
    pd, vd = device.to_device((params, v))
    short, big = device.to_device((np.zeros((2, 2), F32), np.full((3, 2), 2, F32)))
    transfers.reset()
    with pytest.raises(TypeError, match="mixed host"):
        rbm.transform(pd, v)
    with pytest.raises(ValueError, match="k \\(Gibbs steps\\)"):
        rbm.cd_grads(pd, vd, KEY, k=0)
    assert copies(transfers) == (0, 0, 0)
    with pytest.raises(ValueError, match="chain has shape"):
        rbm.cd_grads(pd, vd, KEY, chain=short)
    assert copies(transfers) == (0, 1, 0)          # the data's range check
    with pytest.raises(ValueError, match="chain values must lie in"):
        rbm.cd_grads(pd, vd, KEY, chain=big)
    assert copies(transfers) == (0, 2, 0)          # the data's and the chain's


def test_pcd_chain_round_trip(rng, transfers):
    """PCD-1 twice, the device chain passed back: the CPU's grads and chains."""
    params, v = setup(rng, 3, 5, 4, "bernoulli")
    chain = rbm.init_chain(params, v, KEY)
    pd, vd, cd = device.to_device((params, v, chain))
    keys = random.fold_in(KEY, 1), random.fold_in(KEY, 2)
    transfers.reset()
    for key in keys:
        gd, cd, sd = rbm.cd_grads(pd, vd, key, chain=cd)
        assert copies(transfers) == (1, 2, 0)      # uniforms up; data and chain range checks
        grads, chain, stats = rbm.cd_grads(params, v, key, chain=chain)
        assert stats == sd == {"recon_error": None}
        close_trees(gd, grads)
        close(cd, chain)
        transfers.reset()


def test_pretrain_two_steps_matches_cpu(rng, transfers):
    """Greedy pretraining of a 2-layer stack, 2 steps a layer with Hinton's recipe (momentum,
    L2 + L1 weight decay on W): on the device cd_grads + weight_decay + optim.sgd, on the CPU
    the fused CD+SGD kernel; then generation in the top RBM."""
    X = rng.random((6, 7)).astype(F32)
    stack = dbn.init(random.key(4), [7, 5, 3], data=X, std=0.3)
    opts = dict(epochs=1, batch_size=3, l1=1e-3, monitor_size=0, momentum=0.7)
    want, want_hist = dbn.pretrain(stack, X, KEY, **opts)
    sd = device.to_device(stack)
    transfers.reset()
    got, hist = dbn.pretrain(sd, X, KEY, **opts)
    # up: X once; per layer the epoch's order and each step's uniforms.  Back, per layer: the
    # range check of its data in fit and each step's reconstruction errors; and the range
    # check of layer 1's data (layer 0's transform).  (The monitor set: test_train_dbn.)
    assert copies(transfers) == (1 + 2 * (1 + 2), 2 * (1 + 2) + 1, 0)
    for g, w in zip(got, want):
        close_trees(g, w)
    for h, w in zip(hist, want_hist):
        np.testing.assert_allclose(h["recon_error"], w["recon_error"], rtol=1e-5)
    v, top = dbn.generate(got, KEY, 2, n_steps=2)
    want_v, want_top = dbn.generate(want, KEY, 2, n_steps=2)
    close(v, want_v)
    close(top, want_top)
