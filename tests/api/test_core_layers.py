"""The functional API over the foundation kernels: init shapes, serial, value_and_grad,
non-contiguous / read-only inputs, bad input (clear errors, nothing changed)."""
import numpy as np
import pytest

import dlkit
from dlkit import layers as L
from dlkit import losses, nn, optim, random, tree


def mlp():
    return nn.serial(("flatten", L.Flatten()), ("fc1", L.Dense(32, activation="relu")),
                     ("drop1", L.Dropout(0.2)), ("fc2", L.Dense(10)))


@pytest.mark.parametrize("layer,in_shape", [
    (L.Dense(7), (5,)), (L.Dense(3, activation="tanh"), (1,)), (L.Flatten(), (3, 4, 5)),
    (L.Relu(), (4, 2)), (L.LeakyRelu(0.2), (3,)), (L.Sigmoid(), (2, 2)), (L.Tanh(), (6,)),
    (L.Dropout(0.5), (8,)), (L.Softmax(), (4,)), (L.LogSoftmax(), (4,)), (mlp()[0:3], (6, 6))])
def test_init_shape_agrees_with_forward(layer, in_shape):
    layer = L.Layer(*layer)
    out_shape, params = layer.init(random.key(0), in_shape)
    x = np.random.default_rng(0).standard_normal((3, *in_shape)).astype(np.float32)
    y, _ = layer.forward(params, x, key=random.key(1), train=True)
    assert y.shape == (3, *out_shape) and y.dtype == np.float32


def test_serial_gradcheck_float64():
    model = mlp()
    _, params = model.init(random.key(0), (3, 4), np.float64)
    x = np.random.default_rng(0).standard_normal((5, 3, 4))
    errs = dlkit.gradcheck(model, params, x, key=random.key(2))
    assert set(errs) == {"dx", "fc1/W", "fc1/b", "fc2/W", "fc2/b"}


def test_initialisers_statistics():
    from dlkit import init
    k = random.key(3)
    for name, std in [("glorot_normal", np.sqrt(2 / 700)), ("he_normal", np.sqrt(2 / 400)),
                      ("glorot_uniform", np.sqrt(6 / 700) / np.sqrt(3)),
                      ("he_uniform", np.sqrt(6 / 400) / np.sqrt(3))]:
        w = init.get(name)(k, (400, 300))
        assert w.dtype == np.float32 and abs(w.std() / std - 1) < 0.02, name
    q = init.orthogonal(k, (64, 32), np.float64)
    np.testing.assert_allclose(q.T @ q, np.eye(32), atol=1e-12)
    assert np.all(init.zeros(k, (3,)) == 0)
    w_conv = init.he_normal(k, (64, 32, 3, 3))
    assert abs(w_conv.std() / np.sqrt(2 / (32 * 9)) - 1) < 0.05
    with pytest.raises(ValueError, match="unknown initialiser"):
        init.get("nope")


def test_non_contiguous_and_read_only_inputs():
    model = mlp()
    _, params = model.init(random.key(0), (6,))
    base = np.random.default_rng(0).standard_normal((8, 12)).astype(np.float32)
    x_nc = base[:, ::2]
    assert not x_nc.flags.c_contiguous
    x_ro = np.ascontiguousarray(x_nc)
    x_ro.setflags(write=False)
    for p in tree.leaves(params):
        p.setflags(write=False)
    y1, _ = model.forward(params, x_nc)
    y2, _ = model.forward(params, x_ro)
    assert y1.tobytes() == y2.tobytes()
    f = nn.value_and_grad(model, losses.softmax_cross_entropy)
    _, _, g = f(params, x_ro, np.arange(8) % 10, key=random.key(1))
    assert tree.flatten(g).keys() == tree.flatten(params).keys()


def _snapshot(*trees):
    return [tree.copy(t) for t in trees]


@pytest.fixture
def setup():
    model = mlp()
    _, params = model.init(random.key(0), (28, 28))
    opt = optim.adam(1e-3)
    state = opt.init(params)
    x = np.random.default_rng(0).random((16, 28, 28)).astype(np.float32)
    y = np.arange(16) % 10
    return model, params, opt, state, x, y


def _assert_unchanged(params, state, snap):
    assert tree.equal(params, snap[0]) and tree.equal(state, snap[1])


BAD = [
    ("wrong feature count", lambda x, y, p: (x[:, :27], y, p), ValueError,
     r"input has 756 features, expected 784 \(x.shape=\(16, 756\), W.shape=\(784, 32\)\)"),
    ("label too large", lambda x, y, p: (x, np.where(y == 3, 10, y), p), ValueError,
     r"label 10 at position 3 is outside \[0, 10\)"),
    ("negative label", lambda x, y, p: (x, np.where(y == 5, -1, y), p), ValueError,
     r"label -1 at position 5 is outside \[0, 10\)"),
    ("float labels", lambda x, y, p: (x, y.astype(np.float32), p), TypeError,
     "labels must be integers"),
    ("batch mismatch", lambda x, y, p: (x, y[:15], p), ValueError,
     r"expected labels of shape \(16,\) to match the batch of 16, got shape \(15,\)"),
    ("mixed dtypes", lambda x, y, p: (x.astype(np.float64), y, p), TypeError, "mixed dtypes"),
    ("integer input", lambda x, y, p: ((x * 255).astype(np.uint8), y, p), TypeError,
     "expected dtype float32 or float64, got uint8"),
    ("missing param", lambda x, y, p: (x, y, {**p, "fc1": {"W": p["fc1"]["W"]}}), ValueError,
     r"missing \['b'\]"),
    ("extra param", lambda x, y, p: (x, y, {**p, "fc1": {**p["fc1"], "c": p["fc1"]["b"]}}),
     ValueError, r"extra \['c'\]"),
    ("extra layer", lambda x, y, p: (x, y, {**p, "fc9": p["fc1"]}), ValueError,
     r"entries \['fc9'\] that match no layer"),
    ("mis-shaped param", lambda x, y, p: (x, y, {**p, "fc2": {**p["fc2"], "b": p["fc2"]["b"][:5]}}),
     ValueError, r"expected W of shape \(in, 10\) and b of shape \(10,\)"),
]


@pytest.mark.parametrize("case,mutate,exc,msg", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_and_changes_nothing(setup, case, mutate, exc, msg):
    model, params, opt, state, x, y = setup
    snap = _snapshot(params, state)
    xb, yb, pb = mutate(x, y, params)
    f = nn.value_and_grad(model, losses.softmax_cross_entropy)
    with pytest.raises(exc, match=msg):
        _, _, g = f(pb, xb, yb, key=random.key(0))
        opt.update(g, state, pb)
    _assert_unchanged(params, state, snap)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, "0.2"])
def test_dropout_rate_outside_range(rate):
    with pytest.raises(ValueError, match=r"rate must be a number in \[0, 1\)"):
        L.Dropout(rate)


def test_dropout_training_needs_key():
    with pytest.raises(ValueError, match="needs a key"):
        L.Dropout(0.5).forward({}, np.ones((2, 2), np.float32), train=True)


def test_optimizer_rejects_mismatched_grads(setup):
    model, params, opt, state, x, y = setup
    snap = _snapshot(params, state)
    bad = tree.copy(params)
    bad["fc1"]["W"] = bad["fc1"]["W"][:, :5]
    with pytest.raises(ValueError, match=r"grads\['fc1/W'\]: expected shape \(784, 32\)"):
        opt.update(bad, state, params)
    del bad["fc1"]
    with pytest.raises(ValueError, match=r"missing \['fc1/W', 'fc1/b'\]"):
        opt.update(bad, state, params)
    with pytest.raises(ValueError, match=r"missing \['fc1/W', 'fc1/b'\]"):
        opt.step(bad, state, params)
    _assert_unchanged(params, state, snap)


def test_optimizer_rejects_bad_state(setup):
    model, params, opt, state, x, y = setup
    snap = _snapshot(params, state)
    g = tree.map(np.ones_like, params)
    wrong_dtype = {**state, "m": tree.map(lambda a: a.astype(np.float64), state["m"])}
    no_step = {k: v for k, v in state.items() if k != "step"}
    short_v = {**state, "v": {**state["v"], "fc2": {**state["v"]["fc2"],
                                                     "b": state["v"]["fc2"]["b"][:3]}}}
    for bad, msg in [(wrong_dtype, r"state\['m'\]\['fc1/W'\]: expected shape \(784, 32\) dtype "
                                   r"float32, got \(784, 32\) float64"),
                     (no_step, r"state must be a dict with keys \['m', 'step', 'v'\]"),
                     (short_v, r"state\['v'\]\['fc2/b'\]: expected shape \(10,\)")]:
        for fn in (opt.update, opt.step):
            with pytest.raises(ValueError, match=msg):
                fn(g, bad, params)
    _assert_unchanged(params, state, snap)


def test_backward_rejects_wrong_dy(setup):
    model, params, *_ = setup
    y, cache = model.forward(params, np.zeros((4, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"dy must match the forward output \(4, 10\)"):
        model.backward(params, cache, np.zeros((4, 9), np.float32))


def test_serial_rejects_bad_composition():
    with pytest.raises(TypeError, match="not a Layer"):
        nn.serial(("a", L.Dense(3)), ("b", 42))
    with pytest.raises(ValueError, match="duplicate layer names"):
        nn.serial(("a", L.Dense(3)), ("a", L.Relu()))
    with pytest.raises(ValueError, match="put a Flatten"):
        nn.serial(L.Dense(3)).init(random.key(0), (2, 2))
