"""State in the layer contract (issue 19): StatefulLayer threaded through the combinators,
value_and_grad, fit / evaluate / predict, checkpoints and resume, gradcheck.

The stateful layer here is the test's own ``Center``: y = (x - m) * g, with m the batch mean
in training and the running mean (state) in eval, the running mean updated with momentum."""
import numpy as np
import pytest

from dlkit import checkpoint, clip, gradcheck, layers as L, nn, optim, random, train, tree
from dlkit.layers.base import Layer, StatefulLayer, is_stateful


def Center(momentum=0.5):
    """(x - mean) * g: batch mean in training, running mean (state {"mean"}) in eval."""
    def init(key, in_shape, dtype=np.float32):
        shape = tuple(in_shape)
        return shape, {"g": np.ones(shape, dtype)}, {"mean": np.zeros(shape, dtype)}

    def forward(params, x, *, state, key=None, train=False):
        if not isinstance(state, dict) or set(state) != {"mean"}:
            raise ValueError(f"center: state must be {{'mean': array}}, got {state!r:.60}")
        if state["mean"].shape != x.shape[1:]:
            raise ValueError(f"center: mean {state['mean'].shape}, x {x.shape}")
        if train:
            m = x.mean(axis=0)
            new = {"mean": (momentum * state["mean"] + (1 - momentum) * m).astype(x.dtype)}
            return (x - m) * params["g"], (x - m, params["g"]), new
        xc = x - state["mean"]
        return xc * params["g"], (xc, params["g"]), state

    def backward(params, cache, dy, *, need_dx=True):
        xc, g = cache
        dxc = dy * g
        dx = dxc - dxc.mean(axis=0) if need_dx else None   # training-mode derivative
        return dx, {"g": (dy * xc).sum(axis=0)}

    return StatefulLayer(init, forward, backward)


def model():
    block = nn.residual(("bn", Center()), ("fc", L.Dense(4)), shortcut=Center())
    branches = nn.parallel(("a", Center()), ("b", L.Relu()))
    return nn.serial(("fc0", L.Dense(4)), ("block1", block), ("split", nn.fan_out(2)),
                     ("branches", branches), ("join", nn.fan_in_sum()), ("out", L.Dense(3)))


def data(n=48, d=5):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d)).astype(np.float32) + 2.0
    return X, (X[:, 0] + X[:, 1] > 4).astype(np.int64)


def setup(dtype=np.float32):
    return model().init(random.key(0), (5,), dtype)


def test_init_state_names_and_shapes():
    m = model()
    assert is_stateful(m) and isinstance(m, StatefulLayer)
    out_shape, params, state = setup()
    assert out_shape == (3,)
    flat = tree.flatten(state)
    assert sorted(flat) == ["block1/bn/mean", "block1/shortcut/mean", "branches/a/mean"]
    assert all(a.shape == (4,) and a.dtype == np.float32 and not a.any() for a in flat.values())
    assert "block1/shortcut/g" in tree.flatten(params)
    # no stateful child: a plain Layer with the 2-tuple init, as before
    plain = nn.serial(("fc", L.Dense(2)), ("r", nn.residual(L.Dense(2))))
    assert type(plain) is Layer and len(plain.init(random.key(0), (2,))) == 2


def test_state_threads_through_residual_and_parallel():
    _, params, state = setup()
    x = data()[0][:8]
    y, cache, new = model().forward(params, x, state=state, train=True)
    # recompute by hand: the running means after one step are half the batch means
    h = x @ params["fc0"]["W"] + params["fc0"]["b"]
    np.testing.assert_allclose(new["block1"]["bn"]["mean"], 0.5 * h.mean(0), rtol=1e-6)
    np.testing.assert_allclose(new["block1"]["shortcut"]["mean"], 0.5 * h.mean(0), rtol=1e-6)
    assert set(new) == {"block1", "branches"} and set(new["branches"]) == {"a"}
    dx, grads = model().backward(params, cache, np.ones_like(y))
    assert tree.flatten(grads).keys() == tree.flatten(params).keys()


def test_eval_returns_the_same_object_and_train_never_mutates():
    _, params, state = setup()
    x = data()[0][:8]
    _, _, new = model().forward(params, x, state=state, train=True)
    before = tree.copy(new)
    y1, _, same = model().forward(params, x, state=new, train=False)
    assert same is new and tree.equal(new, before)
    # training from `new` gives new arrays, `new`'s arrays keep their values
    _, _, newer = model().forward(params, x, state=new, train=True)
    assert tree.equal(new, before) and not tree.equal(newer, new)
    assert all(a is not b for a, b in zip(tree.leaves(newer), tree.leaves(new)))
    y2 = model().forward(params, x, state=new, train=False)[0]
    np.testing.assert_array_equal(y1, y2)


def test_value_and_grad_grads_have_params_keys_only():
    _, params, state = setup()
    X, Y = data()
    fn = nn.value_and_grad(model(), train.losses.softmax_cross_entropy)
    loss, out, grads, new = fn(params, X[:8], Y[:8], state=state)
    assert isinstance(loss, float) and out.shape == (8, 3)
    assert tree.flatten(grads).keys() == tree.flatten(params).keys()
    assert tree.flatten(new).keys() == tree.flatten(state).keys()
    # a stateless model: the 3-tuple, as before
    plain = nn.serial(("fc", L.Dense(3)))
    _, p = plain.init(random.key(0), (5,))
    assert len(nn.value_and_grad(plain, train.losses.softmax_cross_entropy)(p, X[:4], Y[:4])) == 3


def test_gradcheck_with_state():
    _, params, state = model().init(random.key(0), (5,), np.float64)
    x = data()[0][:6].astype(np.float64)
    errors = gradcheck(model(), params, x, state=state)
    assert max(errors.values()) < 1e-6 and "block1/shortcut/g" in errors
    with pytest.raises(ValueError, match="has state.*pass state="):
        gradcheck(model(), params, x)
    with pytest.raises(ValueError, match="has no state"):
        gradcheck(L.Relu(), {}, x, state={})


def spy(inner, seen):
    """inner with update() recording the keys of the grads and params it gets."""
    def update(grads, opt_state, params):
        seen.append((sorted(tree.flatten(grads)), sorted(tree.flatten(params))))
        return inner.update(grads, opt_state, params)
    return optim.Optimizer(**dict(inner._asdict(), update=update, step=None))


def fit(params, state, **kw):
    kw = dict(dict(key=random.key(3), epochs=2, batch_size=12, progress=False,
                   log=lambda msg: None), **kw)
    opt = kw.pop("opt", None) or optim.adamw(1e-2, weight_decay=0.1)
    return train.fit(model(), params, opt, data(), state=state, **kw)


def test_fit_updates_state_the_optimizer_never_sees_it():
    _, params, state = setup()
    before_p, before_s = tree.copy(params), tree.copy(state)
    seen, clipped = [], []

    def transform(grads):
        clipped.append(sorted(tree.flatten(grads)))
        return clip.clip_by_global_norm(grads, 1.0)
    r = fit(params, state, opt=spy(optim.adamw(1e-2, weight_decay=0.1), seen),
            grad_transform=transform, val=data())
    keys = sorted(tree.flatten(params))
    assert len(seen) == 8 and all(g == keys and p == keys for g, p in seen)
    assert all(c == keys for c in clipped)
    assert not any("mean" in k for k in tree.flatten(r.opt_state))
    assert tree.flatten(r.state).keys() == tree.flatten(state).keys()
    assert not tree.equal(r.state, state)
    assert tree.equal(params, before_p) and tree.equal(state, before_s)   # inputs untouched
    # validation used eval mode with the state: evaluate gives the same numbers
    loss, acc, _ = train.evaluate(model(), r.params, *data(), state=r.state)
    assert r.history["val_loss"][-1] == pytest.approx(loss, rel=1e-6)
    # a stateless model's result has state None
    plain = nn.serial(("fc", L.Dense(2)))
    _, p = plain.init(random.key(0), (5,))
    r2 = train.fit(plain, p, optim.sgd(0.1), data(), key=random.key(3), progress=False,
                   log=lambda msg: None)
    assert r2.state is None
    params2, _, history2 = r2                 # unpacks as three names, as before state existed
    assert params2 is r2.params and history2 is r2.history


def test_nan_step_keeps_the_state_of_before(tmp_path):
    _, params, state = setup()
    calls = []                  # grads of step 3 (the 4th) become NaN: that step fails

    def nan_at_3(grads):
        calls.append(1)
        return tree.map(lambda g: g * np.float32(np.nan), grads) if len(calls) == 4 else grads
    with pytest.raises(FloatingPointError, match="params were not updated|non-finite"):
        fit(params, state, epochs=1, grad_transform=nan_at_3, checkpoint_dir=tmp_path / "a",
            checkpoint_every=1, opt=optim.sgd(0.1))
    last = checkpoint.restore(tmp_path / "a")
    assert last.step == 3
    ref = fit(params, state, epochs=1, max_steps=3, opt=optim.sgd(0.1))
    assert tree.equal(last.state, ref.state) and tree.equal(last.params, ref.params)


def test_checkpoint_round_trip_of_state(tmp_path):
    _, params, state = setup()
    _, _, state = model().forward(params, data()[0][:8], state=state, train=True)
    checkpoint.save(tmp_path, 5, params, state=state)
    c = checkpoint.restore(tmp_path, like=params, like_state=state)
    assert tree.flatten(c.state).keys() == tree.flatten(state).keys()
    for k, a in tree.flatten(state).items():
        b = tree.flatten(c.state)[k]
        assert b.dtype == a.dtype and b.tobytes() == a.tobytes()
    # a checkpoint without state loads with state None; like_state then refuses it
    checkpoint.save(tmp_path / "old", 1, params)
    assert checkpoint.load(tmp_path / "old").state is None
    with pytest.raises(checkpoint.CheckpointError, match="no model state"):
        checkpoint.load(tmp_path / "old", like_state=state)
    wrong = tree.map(lambda a: np.zeros(a.shape + (1,), a.dtype), state)
    with pytest.raises(checkpoint.CheckpointError, match="state 'block1/bn/mean'"):
        checkpoint.load(tmp_path, like_state=wrong)
    bad = tree.map(lambda a: a * np.nan, state)
    with pytest.raises(FloatingPointError, match="state/"):
        checkpoint.save(tmp_path / "nan", 1, params, state=bad)


@pytest.mark.parametrize("stop", [3, 4])          # mid-epoch, and at the epoch's end
def test_resume_is_bit_identical(tmp_path, stop):
    _, params, state = setup()
    full = fit(params, state, checkpoint_dir=tmp_path / "full")
    fit(params, state, checkpoint_dir=tmp_path / "cut", checkpoint_every=1, max_steps=stop)
    assert checkpoint.restore(tmp_path / "cut").step == stop
    resumed = fit(params, state, checkpoint_dir=tmp_path / "cut", resume=True)
    assert tree.digest(resumed.params) == tree.digest(full.params)
    assert tree.digest(resumed.state) == tree.digest(full.state)
    assert tree.digest(resumed.opt_state) == tree.digest(full.opt_state)
    assert resumed.history["loss"] == full.history["loss"]


def test_evaluate_and_predict_use_the_state():
    _, params, state = setup()
    X, Y = data()
    _, _, moved = model().forward(params, X[:8], state=state, train=True)
    kept = tree.copy(moved)
    out = train.predict(model(), params, X, state=moved, batch_size=10)
    np.testing.assert_array_equal(out, model().forward(params, X, state=moved)[0])
    assert not np.array_equal(out, train.predict(model(), params, X, state=state))
    loss, acc, preds = train.evaluate(model(), params, X, Y, state=moved)
    np.testing.assert_array_equal(preds, train.predictions(out))
    assert tree.equal(moved, kept)


def test_errors_name_what_is_wrong_and_change_nothing():
    _, params, state = setup()
    X, Y = data()
    p0, s0 = tree.copy(params), tree.copy(state)
    m = model()
    cases = [
        (lambda: train.fit(m, params, optim.sgd(0.1), (X, Y), key=random.key(0)),
         ValueError, r"fit: the model has state.*pass state="),
        (lambda: train.evaluate(m, params, X, Y), ValueError, r"evaluate: .*pass state="),
        (lambda: train.predict(m, params, X), ValueError, r"predict: .*pass state="),
        (lambda: m.forward(params, X, train=True), TypeError, r"serial: .*pass state="),
        (lambda: m.forward(params, X, state={"block1": state["block1"]}, train=True),
         ValueError, r"expected exactly the stateful layers \['block1', 'branches'\]; "
                     r"missing \['branches'\]"),
        (lambda: m.forward(params, X, state=dict(state, fc0={}), train=True),
         ValueError, r"extra \['fc0'\]"),
        (lambda: m.forward(params, X, state=dict(state, block1={"bn": state["block1"]["bn"]})),
         ValueError, r"layer 'block1': residual: .*missing \['shortcut'\]"),
        (lambda: m.forward(params, X, state=dict(state, branches={"b": {}})),
         ValueError, r"layer 'branches': parallel: .*missing \['a'\]; extra \['b'\]"),
        (lambda: m.forward(params, X, state=[1]), TypeError, r"state must be a dict"),
    ]
    plain = nn.serial(("fc", L.Dense(2)))
    _, pp = plain.init(random.key(0), (5,))
    cases += [
        (lambda: train.fit(plain, pp, optim.sgd(0.1), (X, Y), key=random.key(0), state={}),
         ValueError, r"fit: state= was given but the model has no state"),
        (lambda: train.evaluate(plain, pp, X, Y, state={}), ValueError, "has no state"),
        (lambda: train.predict(plain, pp, X, state={}), ValueError, "has no state"),
    ]
    for fn, kind, match in cases:
        with pytest.raises(kind, match=match):
            fn()
        assert tree.equal(params, p0) and tree.equal(state, s0)


def test_kernels_never_run_on_a_bad_state():
    """The state's keys are checked before the first layer runs."""
    ran = []

    def spy_init(key, in_shape, dtype=np.float32):
        return tuple(in_shape), {}

    def spy_forward(params, x, *, key=None, train=False):
        ran.append(1)
        return x, None
    m = nn.serial(("spy", Layer(spy_init, spy_forward, None)), ("c", Center()))
    _, params, state = m.init(random.key(0), (5,))
    with pytest.raises(ValueError, match="missing"):
        m.forward(params, data()[0], state={}, train=True)
    assert not ran
