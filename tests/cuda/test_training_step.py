"""The API on device arrays: the same forward / loss / backward / update code as on the CPU,
routed to kernels.cuda by the arrays' type, giving the CPU step's params, with no host copy
inside the step but the loss read-back (counted by the ``transfers`` fixture, conftest.py)."""
import numpy as np
import pytest

from dlkit import device

OK, WHY = device.available()
if not OK:
    pytest.skip(WHY, allow_module_level=True)

from dlkit import layers as L  # noqa: E402
from dlkit import losses, nn, optim, random, tree  # noqa: E402

F32 = np.float32


def assert_tree_close(got, want, rtol=1e-5):
    fg, fw = tree.flatten(got), tree.flatten(want)
    assert fg.keys() == fw.keys()
    for k, w in fw.items():
        g = fg[k]
        assert isinstance(g, np.ndarray) and g.dtype == w.dtype and g.shape == w.shape, k
        scale = max(float(np.max(np.abs(w))), 1e-30) if w.size else 1.0
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * scale, err_msg=k)


def run_steps(model, opt, params, batches, loss_fn, transfers=None, key=random.key(7)):
    """A few training steps; on the device when ``transfers`` is given, counting the copies
    of each step (the batches are moved before the step, as a loader would)."""
    step = nn.value_and_grad(model, loss_fn)
    state = opt.init(params)
    counts, losses_ = [], []
    for i, (x, y) in enumerate(batches):
        if transfers is not None:
            x, y = device.to_device((x, y))
            transfers.reset()
        loss, out, grads = step(params, x, y, key=random.fold_in(key, i))
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
        if transfers is not None:
            counts.append((transfers.h2d, transfers.d2h, transfers.implicit))
        losses_.append(loss)
    return params, state, losses_, counts


def _batches(rng, n_steps, shape, n_classes):
    return [(rng.standard_normal(shape).astype(F32), rng.integers(0, n_classes, shape[0]))
            for _ in range(n_steps)]


def test_mlp_step_matches_cpu_without_host_copies(rng, transfers):
    """Adam with L2 through whole MLP steps (every optimizer's kernel is checked against the
    CPU in test_kernels_foundation.py; SGD with momentum also trains in the fit test below
    and in the RBM tests)."""
    opt = optim.adam(1e-2, l2=1e-3)
    model = nn.serial(("flat", L.Flatten()), ("fc1", L.Dense(13, activation="relu")),
                      ("fc2", L.Dense(11)), ("act", L.Tanh()), ("fc3", L.Dense(5)))
    _, params = model.init(random.key(0), (2, 5))
    batches = _batches(rng, 2, (6, 2, 5), 5)
    want, want_state, want_loss, _ = run_steps(model, opt, params, batches,
                                               losses.softmax_cross_entropy)
    transfers.reset()
    dparams = device.to_device(params)
    assert transfers.h2d == len(tree.leaves(params))
    got, got_state, got_loss, counts = run_steps(model, opt, dparams, batches,
                                                 losses.softmax_cross_entropy, transfers)
    assert all(device.is_device_array(a) for a in tree.leaves(got))
    assert counts == [(0, 1, 0)] * len(batches)      # the loss read-back, nothing else
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    assert_tree_close(device.to_host(got), want)
    assert isinstance(got_state["step"], np.ndarray) and int(got_state["step"]) == 2
    assert_tree_close(device.to_host(got_state), want_state)


def test_dropout_sigmoid_bce_step(rng, transfers):
    """Dropout's mask is drawn on the host from the key (bit-identical to the CPU's) and is
    the step's one host-to-device copy; a (N, 1) binary head with host targets adds one."""
    model = nn.serial(("fc1", L.Dense(9)), ("sig", L.Sigmoid()), ("drop", L.Dropout(0.4)),
                      ("leaky", L.LeakyRelu(0.2)), ("out", L.Dense(1)))
    _, params = model.init(random.key(1), (4,))
    batches = [(rng.standard_normal((5, 4)).astype(F32), rng.random((5, 1)).astype(F32))
               for _ in range(2)]
    opt = optim.adamw(1e-2)
    want, _, want_loss, _ = run_steps(model, opt, params, batches,
                                      losses.sigmoid_binary_cross_entropy)
    got, _, got_loss, counts = run_steps(model, opt, device.to_device(params), batches,
                                         losses.sigmoid_binary_cross_entropy, transfers)
    assert counts == [(1, 1, 0)] * 2
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    assert_tree_close(device.to_host(got), want)


def test_softmax_layers_and_mse(rng, transfers):
    for layer in (L.Softmax(), L.LogSoftmax()):
        x, dy = rng.standard_normal((3, 6)).astype(F32), rng.standard_normal((3, 6)).astype(F32)
        y, c = layer.forward({}, x)
        dx, _ = layer.backward({}, c, dy)
        xd, dyd = device.to_device((x, dy))
        transfers.reset()
        yd, cd = layer.forward({}, xd)
        dxd, _ = layer.backward({}, cd, dyd)
        assert (transfers.h2d, transfers.d2h) == (0, 0)
        np.testing.assert_allclose(yd.copy_to_host(), y, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dxd.copy_to_host(), dx, rtol=1e-5, atol=1e-6)
    p, t = rng.standard_normal((4, 3)).astype(F32), rng.standard_normal((4, 3)).astype(F32)
    loss, d = losses.mean_squared_error(p, t)
    for target in (t, device.to_device(t)):
        dloss, dd = losses.mean_squared_error(device.to_device(p), target)
        assert dd.shape == (4, 3) and dd.dtype == F32
        np.testing.assert_allclose(dloss, loss, rtol=1e-5)
        np.testing.assert_allclose(dd.copy_to_host(), d, rtol=1e-5)


def test_bad_labels_and_targets_on_the_device_raise(rng):
    z = device.to_device(rng.standard_normal((4, 3)).astype(F32))
    with pytest.raises(ValueError, match=r"label 7 at position 2 is outside \[0, 3\)"):
        losses.softmax_cross_entropy(z, device.to_device(np.array([0, 1, 7, 2])))
    with pytest.raises(ValueError, match=r"label 3 at position 1"):     # host labels: host check
        losses.softmax_cross_entropy(z, np.array([0, 3, 1, 2]))
    with pytest.raises(TypeError, match="labels must be integers"):
        losses.softmax_cross_entropy(z, device.to_device(np.zeros(4, F32)))
    zb = device.to_device(rng.standard_normal(4).astype(F32))
    with pytest.raises(ValueError, match="target 1.5 at position 3 is outside"):
        losses.sigmoid_binary_cross_entropy(zb, device.to_device(np.array([0, 1, .5, 1.5], F32)))


def test_mixed_host_and_device_arrays_are_refused(rng):
    layer = L.Dense(3)
    _, params = layer.init(random.key(0), (4,))
    x = rng.standard_normal((2, 4)).astype(F32)
    with pytest.raises(TypeError, match="mixed host .numpy. and device .CUDA. arrays"):
        layer.forward(params, device.to_device(x))
    with pytest.raises(TypeError, match="mixed host"):
        layer.forward(device.to_device(params), x)
    opt = optim.sgd(0.1)
    dparams = device.to_device(params)
    with pytest.raises(TypeError, match="mixed host"):
        opt.update(params, opt.init(dparams), dparams)


def test_non_contiguous_device_input_is_refused(rng):
    from numba import cuda
    x = cuda.to_device(rng.standard_normal((4, 6)).astype(F32))[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        L.Relu().forward({}, x)


def test_to_device_to_host_round_trip():
    opt = optim.adam(1e-3)
    params = {"fc": {"W": np.arange(6, dtype=F32).reshape(2, 3), "b": np.ones(3, F32)}}
    state = opt.init(params)
    d = device.to_device({"params": params, "state": state, "tag": "x", "pair": (1, 2.0)})
    assert device.is_device_array(d["params"]["fc"]["W"])
    assert isinstance(d["state"]["step"], np.ndarray) and d["state"]["step"].ndim == 0
    assert d["tag"] == "x" and d["pair"] == (1, 2.0)
    back = device.to_host(d)
    assert tree.equal(back["params"], params) and tree.equal(back["state"], state)


def test_empty_and_zeros_follow_like(transfers):
    host, dev_ = np.ones(2, F32), device.to_device(np.ones(2, F32))
    assert type(device.empty((2, 3), np.uint8, host)) is np.ndarray
    assert type(device.zeros((2, 3), F32, host)) is np.ndarray
    transfers.reset()
    e, z = device.empty((2, 3), np.uint8, dev_), device.zeros((2, 3), F32, dev_)
    assert (transfers.h2d, transfers.d2h) == (0, 0)
    assert device.is_device_array(e) and e.dtype == np.uint8 and e.shape == (2, 3)
    assert device.is_device_array(z) and np.all(z.copy_to_host() == 0)


def test_opt_init_on_device_makes_no_copies(transfers):
    params = device.to_device({"a": {"W": np.ones((3, 2), F32)}})
    transfers.reset()
    state = optim.adam(1e-3).init(params)
    assert (transfers.h2d, transfers.d2h) == (0, 0)
    assert device.is_device_array(state["m"]["a"]["W"])
    assert np.all(state["v"]["a"]["W"].copy_to_host() == 0)


def test_strict_simulated_arrays_catch_host_round_trips(transfers):
    """The conftest's guard: a hidden host read of a device array is counted (a real
    DeviceNDArray copies to the host for it), arithmetic on device arrays fails."""
    from numba import cuda
    if "simulator" not in cuda.device_array.__module__:
        pytest.skip("simulator only")
    a = cuda.to_device(np.ones(3, F32))
    transfers.reset()
    np.asarray(a)
    float(a[0])
    assert transfers.d2h > 0
    with pytest.raises(TypeError):
        a + a


def test_clear_error_without_gpu_or_simulator(monkeypatch):
    """What a user without a GPU, driver or simulator sees when CUDA is asked for."""
    from numba import cuda

    def device_array(*a, **k):       # a non-simulator numba.cuda, as on a GPU install
        raise AssertionError
    monkeypatch.setattr(cuda, "device_array", device_array)
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"numba-cuda.*NUMBA_ENABLE_CUDASIM=1"):
        device.cuda()
    ok, why = device.available()
    assert not ok and "pip install" in why


def test_fit_on_device_matches_cpu_and_resumes(rng, tmp_path):
    """dlkit.train.fit with device params: same history and params as on the CPU; checkpoints
    are written from host copies and a device run resumes from them."""
    from dlkit import train
    model = nn.serial(("fc1", L.Dense(7, activation="relu")), ("fc2", L.Dense(3)))
    _, params = model.init(random.key(2), (6,))
    X = rng.standard_normal((7, 6)).astype(F32)       # two batches: 4 and a ragged 3
    Y = rng.integers(0, 3, 7)
    opt = optim.sgd(0.1, momentum=0.9)
    kw = dict(key=random.key(5), batch_size=4, val=(X[:4], Y[:4]), progress=False,
              log=lambda *_: None)
    cpu = train.fit(model, params, opt, (X, Y), epochs=2, **kw)
    gpu = train.fit(model, device.to_device(params), opt, (X, Y), epochs=1,
                    checkpoint_dir=tmp_path, **kw)
    assert device.on_device_tree(gpu.params) and device.on_device_tree(gpu.opt_state)
    gpu = train.fit(model, device.to_device(params), opt, (X, Y), epochs=2,
                    checkpoint_dir=tmp_path, resume=True, **kw)
    for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(gpu.history[k], cpu.history[k], rtol=1e-5)
    assert_tree_close(device.to_host(gpu.params), cpu.params)
    loss, acc, pred = train.evaluate(model, gpu.params, X, Y)
    assert pred.shape == (7,) and np.isclose(acc, np.mean(pred == Y))


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_fit_on_device_stops_on_nan(rng):
    from dlkit import train
    model = nn.serial(("fc", L.Dense(3)))
    _, params = model.init(random.key(2), (4,))
    X = rng.standard_normal((4, 4)).astype(F32)
    X[1, 2] = np.inf
    with pytest.raises(FloatingPointError, match="step 0"):
        train.fit(model, device.to_device(params), optim.sgd(0.1), (X, np.zeros(4, int)),
                  key=random.key(0), batch_size=4, progress=False, log=lambda *_: None)
