"""Branching combinators of dlkit.nn (fan_out, parallel, fan_in_sum, fan_in_concat, residual):
gradients (float64 gradcheck, a NumPy reference for fan-out), init shapes, the two-level
naming of params and checkpoints, clear errors that change nothing, training, and (under the
CUDA simulator or on a GPU) device arrays."""
import numpy as np
import pytest

import dlkit
from dlkit import checkpoint as C
from dlkit import device
from dlkit import layers as L
from dlkit import losses, nn, optim, random, tree


def res_mlp(width=8):
    return nn.serial(("fc0", L.Dense(width)),
                     ("block1", nn.residual(("fc_a", L.Dense(width)), ("act_a", L.Tanh()),
                                            ("fc_b", L.Dense(width)))),
                     ("act1", L.Relu()), ("out", L.Dense(3)))


def res_block():
    return nn.residual(("conv_a", L.Conv2D(4, 3, padding="same")), ("act_a", L.Relu()),
                       ("conv_b", L.Conv2D(4, 3, padding="same")), shortcut=L.Conv2D(4, 1))


def res_cnn():
    return nn.serial(("conv0", L.Conv2D(3, 3, padding="same")), ("block1", res_block()),
                     ("flat", L.Flatten()), ("out", L.Dense(2)))


def branchy():
    return nn.serial(("fc0", L.Dense(6)), ("split", nn.fan_out(2)),
                     ("branches", nn.parallel(("wide", L.Dense(5)),
                                              ("deep", nn.serial(("fc", L.Dense(4)),
                                                                 ("act", L.Tanh()))))),
                     ("cat", nn.fan_in_concat()), ("out", L.Dense(2)))


def inception():
    return nn.serial(("split", nn.fan_out(3)),
                     ("towers", nn.parallel(("c1", L.Conv2D(2, 1)),
                                            ("c3", L.Conv2D(3, 3, padding="same")),
                                            ("id", L.Tanh()))),
                     ("cat", nn.fan_in_concat(axis=0)), ("flat", L.Flatten()),
                     ("out", L.Dense(2)))


@pytest.mark.parametrize("model,in_shape", [(res_mlp, (5,)), (res_cnn, (2, 5, 5)),
                                            (branchy, (4,)), (inception, (2, 4, 4))])
def test_gradcheck_float64(model, in_shape):
    model = model()
    _, params = model.init(random.key(0), in_shape, np.float64)
    x = np.random.default_rng(0).standard_normal((3, *in_shape))
    errs = dlkit.gradcheck(model, params, x, tol=1e-6, max_elems=30)
    assert set(errs) == {"dx"} | set(tree.flatten(params))


def test_fan_out_gradient_is_the_sum_of_the_branch_gradients(rng):
    a, b = L.Dense(3), L.Dense(3)
    model = nn.serial(("split", nn.fan_out(3)),
                      ("br", nn.parallel(("a", a), ("b", b), ("r", L.Relu()))),
                      ("sum", nn.fan_in_sum()))
    _, params = model.init(random.key(1), (3,), np.float64)
    x = rng.standard_normal((4, 3))
    y, cache = model.forward(params, x)
    pa, pb = params["br"]["a"], params["br"]["b"]
    np.testing.assert_allclose(y, x @ pa["W"] + pa["b"] + x @ pb["W"] + pb["b"] + np.maximum(x, 0))
    dy = rng.standard_normal(y.shape)
    dx, grads = model.backward(params, cache, dy)
    np.testing.assert_allclose(dx, dy @ pa["W"].T + dy @ pb["W"].T + dy * (x > 0), rtol=1e-12)
    np.testing.assert_allclose(grads["br"]["a"]["W"], x.T @ dy, rtol=1e-12)
    # the fan_out backward alone: the sum in branch order, None counting as zero
    f = nn.fan_out(3)
    _, c = f.forward({}, x)
    d = [rng.standard_normal(x.shape) for _ in range(3)]
    assert np.array_equal(f.backward({}, c, tuple(d))[0], (d[0] + d[1]) + d[2])
    assert np.array_equal(f.backward({}, c, (d[0], None, d[2]))[0], d[0] + d[2])
    assert f.backward({}, c, tuple(d), need_dx=False) == (None, {})


def test_fan_in_sum_and_concat_backward_reference(rng):
    xs = tuple(rng.standard_normal((2, 3, 4)) for _ in range(3))
    y, c = nn.fan_in_sum().forward({}, xs)
    assert np.array_equal(y, (xs[0] + xs[1]) + xs[2])
    dy = rng.standard_normal(y.shape)
    dxs, g = nn.fan_in_sum().backward({}, c, dy)
    assert len(dxs) == 3 and all(np.array_equal(d, dy) for d in dxs) and g == {}
    ys = (rng.standard_normal((2, 3, 1)), rng.standard_normal((2, 3, 2)))
    for axis, np_axis in ((-1, 2), (1, 2), (0, 1), (-2, 1)):
        parts = ys if np_axis == 2 else (ys[0].transpose(0, 2, 1), ys[1].transpose(0, 2, 1))
        layer = nn.fan_in_concat(axis)
        y, c = layer.forward({}, parts)
        assert np.array_equal(y, np.concatenate(parts, axis=np_axis))
        dxs, _ = layer.backward({}, c, y * 2)
        assert all(np.array_equal(d, 2 * p) and d.flags.c_contiguous for d, p in zip(dxs, parts))


@pytest.mark.parametrize("model,in_shape", [
    (res_mlp, (5,)), (res_cnn, (2, 5, 5)), (branchy, (4,)), (inception, (2, 4, 4)),
    (lambda: nn.residual(nn.residual(L.Dense(4), L.Relu()), L.Dense(4)), (4,)),
    (lambda: nn.serial(nn.fan_out(2), nn.parallel(nn.fan_out(2), L.Relu()),
                       nn.parallel(nn.fan_in_concat(), L.Tanh()), nn.fan_in_concat()), (3,))])
def test_init_shapes_equal_forward_shapes(model, in_shape):
    model = model()
    out_shape, params = model.init(random.key(0), in_shape)
    y, _ = model.forward(params, np.ones((2, *in_shape), np.float32), key=random.key(1),
                         train=True)
    assert y.shape == (2, *out_shape) and y.dtype == np.float32


def test_branch_init_shapes():
    assert nn.fan_out(2).init(None, (3, 4)) == (((3, 4), (3, 4)), {})
    shapes, params = nn.parallel(L.Dense(2), L.Flatten()).init(random.key(0), ((3,), (2, 2)))
    assert shapes == ((2,), (4,)) and list(params) == ["0"]
    assert nn.fan_in_concat(0).init(None, ((1, 4, 4), (2, 4, 4)))[0] == (3, 4, 4)


def test_two_level_names_and_checkpoint_round_trip(tmp_path):
    model = res_cnn()
    _, params = model.init(random.key(0), (2, 5, 5))
    assert sorted(tree.flatten(params)) == [
        "block1/conv_a/W", "block1/conv_a/b", "block1/conv_b/W", "block1/conv_b/b",
        "block1/shortcut/W", "block1/shortcut/b", "conv0/W", "conv0/b", "out/W", "out/b"]
    # without a projection there are no shortcut params
    _, p = res_mlp().init(random.key(0), (5,))
    assert sorted(p["block1"]) == ["fc_a", "fc_b"]
    opt = optim.adam(1e-3)
    st = opt.init(params)
    C.save(tmp_path, 7, params, st)
    c = C.restore(tmp_path, like=params)
    assert c.step == 7 and tree.equal(c.params, params) and tree.equal(c.opt_state, st)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    assert np.array_equal(model.forward(c.params, x)[0], model.forward(params, x)[0])


def test_residual_main_path_keyed_like_serial():
    """The main path's layers get the keys serial gives them, so residual(layers) + x starts
    from the weights of serial(layers)."""
    layers = (("fc_a", L.Dense(4)), ("act", L.Relu()), ("fc_b", L.Dense(4)))
    _, p_res = nn.residual(*layers).init(random.key(3), (4,))
    _, p_ser = nn.serial(*layers).init(random.key(3), (4,))
    assert tree.equal(p_res, p_ser)


def test_need_dx_false_gives_the_same_grads(rng):
    for model, in_shape in ((res_cnn(), (2, 5, 5)), (branchy(), (4,)), (inception(), (2, 4, 4))):
        _, params = model.init(random.key(0), in_shape, np.float64)
        x = rng.standard_normal((3, *in_shape))
        y, cache = model.forward(params, x)
        dy = rng.standard_normal(y.shape)
        dx, g1 = model.backward(params, cache, dy)
        none, g2 = model.backward(params, cache, dy, need_dx=False)
        assert dx.shape == x.shape and none is None and tree.equal(g1, g2)
    # a combinator first in the model: need_dx=False skips every dx
    block = nn.residual(L.Dense(3), shortcut=L.Dense(3))
    _, p = block.init(random.key(0), (2,))
    y, c = block.forward(p, np.ones((1, 2), np.float32))
    assert block.backward(p, c, np.ones_like(y), need_dx=False)[0] is None


def test_training_a_residual_mlp_reduces_the_loss():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    labels = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.int64) + (x[:, 3] > 1)
    model = res_mlp(16)
    _, params = model.init(random.key(0), (5,))
    opt = optim.adam(1e-2)
    state = opt.init(params)
    step = nn.value_and_grad(model, losses.softmax_cross_entropy)
    history = []
    for _ in range(60):
        loss, _, grads = step(params, x, labels)
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
        history.append(loss)
    assert history[-1] < 0.5 * history[0], history[::10]


X = np.ones((2, 3), np.float32)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: nn.fan_out(0), ValueError, r"fan_out: n: expected a positive int, got 0"),
    (lambda: nn.fan_out(2.0), ValueError, r"fan_out: n: expected a positive int, got 2.0"),
    (lambda: nn.fan_in_concat(1.5), TypeError, r"fan_in_concat: axis must be an int .*got 1.5"),
    (lambda: nn.fan_in_concat(True), TypeError, r"axis must be an int .*got True"),
    (lambda: nn.parallel(), ValueError, r"parallel: expected at least one layer, got none"),
    (lambda: nn.parallel(L.Relu(), "relu"), TypeError, r"parallel: item 1 \('1'\) is not a Layer"),
    (lambda: nn.parallel(("a", L.Relu()), ("a", L.Tanh())), ValueError,
     r"parallel: duplicate layer names \['a'\]"),
    (lambda: nn.residual(), ValueError, r"residual: expected at least one layer .*got none"),
    (lambda: nn.residual(("shortcut", L.Dense(3))), ValueError,
     r"residual: the main path has a layer named 'shortcut', a name reserved"),
    (lambda: nn.residual(L.Dense(3), shortcut="conv"), TypeError,
     r"residual: shortcut must be a Layer or None, got str"),
    (lambda: nn.fan_in_sum().forward({}, (X, np.ones((2, 4), np.float32))), ValueError,
     r"fan_in_sum: input 1 has shape \(2, 4\) but input 0 has shape \(2, 3\); expected one"),
    (lambda: nn.fan_in_sum().init(None, ((3,), (4,))), ValueError,
     r"fan_in_sum: input 1 has shape \(4,\) but input 0 has shape \(3,\); expected one shape"),
    (lambda: nn.fan_in_sum().forward({}, [X, X]), TypeError,
     r"fan_in_sum: expected a tuple of one or more inputs, got a list of 2"),
    (lambda: nn.fan_in_sum().forward({}, X), TypeError,
     r"fan_in_sum: expected a tuple of one or more inputs, got shape \(2, 3\) dtype float32"),
    (lambda: nn.fan_in_sum().forward({}, ()), ValueError,
     r"fan_in_sum: expected a tuple of one or more inputs, got a tuple of 0"),
    (lambda: nn.fan_in_sum().forward({}, (X, X.astype(np.float64))), TypeError,
     r"fan_in_sum: input 1 has dtype float64 but input 0 has dtype float32; expected one"),
    (lambda: nn.fan_in_sum().forward({}, (X, "x")), TypeError,
     r"fan_in_sum: input 1: expected a numpy array or a CUDA device array, got str"),
    (lambda: nn.fan_in_sum().init(None, (3, 4)), TypeError,
     r"fan_in_sum: expected a tuple of input shapes .*got the single shape \(3, 4\)"),
    (lambda: nn.fan_in_concat().forward({}, (X, np.ones((2, 3, 1), np.float32))), ValueError,
     r"fan_in_concat: input 1 has per-example shape \(3, 1\) but input 0 has \(3,\); expected "
     r"the same number of axes"),
    (lambda: nn.fan_in_concat(0).forward({}, (np.ones((2, 3, 4)), np.ones((2, 3, 5)))),
     ValueError, r"fan_in_concat: input 1 has per-example shape \(3, 5\) but input 0 has "
     r"\(3, 4\); expected them to agree on every axis but axis 0"),
    (lambda: nn.fan_in_concat().forward({}, (X, np.ones((3, 3), np.float32))), ValueError,
     r"fan_in_concat: input 1 has shape \(3, 3\); expected a batch of 2"),
    (lambda: nn.fan_in_concat(1).forward({}, (X, X)), ValueError,
     r"fan_in_concat: axis 1 is out of range for per-example shapes of 1 axes such as \(3,\) "
     r"\(the batch axis is not counted; expected -1 <= axis < 1\)"),
    (lambda: nn.fan_in_concat(-3).init(None, ((3, 4), (3, 4))), ValueError,
     r"axis -3 is out of range .*expected -2 <= axis < 2"),
    (lambda: nn.parallel(L.Relu(), L.Relu()).forward({}, (X,)), ValueError,
     r"parallel: expected a tuple of 2 inputs \(one per layer\), got a tuple of 1"),
    (lambda: nn.parallel(L.Relu(), L.Relu()).forward({}, X), TypeError,
     r"parallel: expected a tuple of 2 inputs \(one per layer\), got shape \(2, 3\)"),
    (lambda: nn.parallel(L.Relu(), L.Relu()).init(None, ((3,), (3,), (3,))), ValueError,
     r"parallel: expected a tuple of 2 input shapes, got a tuple of 3"),
    (lambda: nn.parallel(L.Relu(), L.Relu()).forward({"x": {}}, (X, X)), ValueError,
     r"parallel: params has entries \['x'\] that match no layer; layers are \['0', '1'\]"),
    (lambda: nn.parallel(("fc", L.Dense(2)), L.Relu()).forward(
        {"fc": {"W": np.ones((4, 2), np.float32), "b": np.ones(2, np.float32)}}, (X, X)),
     ValueError, r"layer 'fc': .*"),
    (lambda: nn.residual(L.Dense(4)).init(random.key(0), (3,)), ValueError,
     r"residual: the main path's output shape \(4,\) differs from the shortcut's \(3,\)"),
    (lambda: nn.residual(L.Relu(), shortcut=L.Dense(4)).forward(
        nn.residual(L.Relu(), shortcut=L.Dense(4)).init(random.key(0), (4,))[1], X),
     ValueError, r"layer 'shortcut': .*expected 4"),
    (lambda: nn.residual(L.Relu()).forward({"shortcut": {"W": X}}, X), ValueError,
     r"layer 'shortcut': identity: params keys \['W'\] do not match the expected \[\]"),
    (lambda: nn.residual(L.Relu()).forward([], X), TypeError,
     r"residual: params must be a dict, got list"),
])
def test_errors_name_expected_and_got(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def _model_and_cache():
    model = nn.serial(("split", nn.fan_out(2)),
                      ("br", nn.parallel(("fc", L.Dense(3)), ("act", L.Relu()))),
                      ("sum", nn.fan_in_sum()),
                      ("res", nn.residual(("fc", L.Dense(3)), shortcut=L.Dense(3))),
                      ("split2", nn.fan_out(2)), ("cat", nn.fan_in_concat()))
    _, params = model.init(random.key(0), (3,))
    y, caches = model.forward(params, X)
    return model, params, y, caches


def _swap(caches, i, c):
    caches = list(caches)
    caches[i] = c
    return caches


@pytest.mark.parametrize("mangle,exc,match", [
    (lambda cs, dy: (cs, dy[:, :4]), ValueError,
     r"layer 'cat': fan_in_concat backward: dy: expected shape \(2, 6\) and dtype float32 "
     r"\(what the forward saw\), got shape \(2, 4\)"),
    (lambda cs, dy: (_swap(cs, 5, ((3, 4), (2, 6), 0, np.dtype(np.float32))), dy), ValueError,
     r"fan_in_concat backward: the cache's sizes \(3, 4\) do not add up"),
    (lambda cs, dy: (_swap(cs, 5, "c"), dy), TypeError,
     r"layer 'cat': fan_in_concat backward: expected the cache its forward returned \(a tuple "
     r"of 4\), got str"),
    (lambda cs, dy: (_swap(cs, 4, ((2, 4), np.dtype(np.float32))), dy), ValueError,
     r"layer 'split2': fan_out backward: gradient 0: expected shape \(2, 4\)"),
    (lambda cs, dy: (_swap(cs, 2, (2, (2, 3), np.dtype(np.float64))), dy), ValueError,
     r"layer 'sum': fan_in_sum backward: dy: expected shape \(2, 3\) and dtype float64"),
    (lambda cs, dy: (_swap(cs, 2, (-1, (2, 3), np.dtype(np.float32))), dy), ValueError,
     r"fan_in_sum backward: cache: expected a non-negative int, got -1"),
    (lambda cs, dy: (_swap(cs, 1, cs[1][:1]), dy), TypeError,
     r"layer 'br': parallel backward: expected the tuple of 2 caches its forward returned, "
     r"got a tuple of 1"),
    (lambda cs, dy: (_swap(cs, 1, list(cs[1])), dy), TypeError,
     r"parallel backward: expected the tuple of 2 caches .*got a list of 2"),
    (lambda cs, dy: (_swap(cs, 3, cs[3][:3]), dy), TypeError,
     r"layer 'res': residual backward: expected the cache its forward returned \(a tuple of 4\)"),
    (lambda cs, dy: (_swap(cs, 3, (cs[3][0], cs[3][1], (2, 5), cs[3][3])), dy), ValueError,
     r"layer 'res': residual backward: dy: expected shape \(2, 5\)"),
])
def test_backward_checks_caches_and_dy(mangle, exc, match):
    model, params, y, caches = _model_and_cache()
    before = tree.copy(params)
    caches, dy = mangle(caches, np.ones_like(y))
    with pytest.raises(exc, match=match):
        model.backward(params, caches, dy)
    assert tree.equal(params, before)


def test_branch_backward_tuple_checks():
    f = nn.fan_out(2)
    _, c = f.forward({}, X)
    with pytest.raises(ValueError, match=r"fan_out backward: expected a tuple of 2 gradients "
                                         r"\(one per branch\), got a tuple of 3"):
        f.backward({}, c, (X, X, X))
    with pytest.raises(TypeError, match=r"fan_out backward: expected a tuple of 2 gradients "
                                        r"\(one per branch\), got shape \(2, 3\)"):
        f.backward({}, c, X)
    with pytest.raises(TypeError, match=r"fan_out: expected a numpy or device array, "
                                        r"got a list of 1"):
        f.forward({}, [1.0])
    p = nn.parallel(L.Relu(), L.Relu())
    _, c = p.forward({}, (X, X))
    with pytest.raises(ValueError, match=r"parallel backward: expected a tuple of 2 gradients "
                                         r"\(one per layer\), got a tuple of 1"):
        p.backward({}, c, (X,))


def test_forward_errors_leave_params_unchanged():
    model = nn.serial(("fc0", L.Dense(3)), ("split", nn.fan_out(2)),
                      ("br", nn.parallel(("fc", L.Dense(3)), ("fc2", L.Dense(4)))),
                      ("sum", nn.fan_in_sum()))
    with pytest.raises(ValueError, match=r"layer 'sum': fan_in_sum: input 1 has shape \(4,\) "
                                         r"but input 0 has shape \(3,\)"):
        model.init(random.key(0), (3,))
    model = res_cnn()
    _, params = model.init(random.key(0), (2, 5, 5))
    before = tree.copy(params)
    with pytest.raises(ValueError, match=r"layer 'conv0': "):
        model.forward(params, np.ones((1, 3, 5, 5), np.float32))
    bad = tree.copy(params)
    bad["block1"]["shortcut"]["W"] = np.ones((4, 2, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"layer 'block1': layer 'shortcut': "):
        model.forward(bad, np.ones((1, 2, 5, 5), np.float32))
    assert tree.equal(params, before)


def test_device_arrays_match_host():
    if not device.available()[0]:
        pytest.skip("no CUDA GPU; NUMBA_ENABLE_CUDASIM=1 runs this in the simulator")
    model = nn.serial(("fc0", L.Dense(4)), ("split", nn.fan_out(2)),
                      ("br", nn.parallel(("fc", L.Dense(3)), ("act", L.Tanh()))),
                      ("cat", nn.fan_in_concat()),
                      ("res", nn.residual(("fc", L.Dense(7)), ("act", L.Relu()))),
                      ("split2", nn.fan_out(2)), ("sum", nn.fan_in_sum()))
    _, params = model.init(random.key(0), (3,))
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    y, cache = model.forward(params, x)
    dx, grads = model.backward(params, cache, np.ones_like(y))
    dp = device.to_device(params)
    yd, cd = model.forward(dp, device.to_device(x))
    dxd, gd = model.backward(dp, cd, device.to_device(np.ones_like(y)))
    assert device.is_device_array(yd) and device.is_device_array(dxd)
    np.testing.assert_allclose(device.to_host(yd), y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(device.to_host(dxd), dx, rtol=1e-5, atol=1e-6)
    for k, v in tree.flatten(device.to_host(gd)).items():
        np.testing.assert_allclose(v, tree.flatten(grads)[k], rtol=1e-5, atol=1e-6)
    # concat along a middle axis, and the split back
    a = np.arange(12, dtype=np.float32).reshape(1, 2, 3, 2)
    b = np.arange(6, dtype=np.float32).reshape(1, 2, 3, 1)
    cat = nn.fan_in_concat(axis=1)
    yd, c = cat.forward({}, (device.to_device(a.transpose(0, 1, 3, 2).copy()),
                             device.to_device(b.transpose(0, 1, 3, 2).copy())))
    want = np.concatenate([a.transpose(0, 1, 3, 2), b.transpose(0, 1, 3, 2)], axis=2)
    np.testing.assert_array_equal(device.to_host(yd), want)
    parts, _ = cat.backward({}, c, yd)
    np.testing.assert_array_equal(device.to_host(parts[1]), b.transpose(0, 1, 3, 2))
    with pytest.raises(TypeError, match=r"fan_in_sum: mixed host \(numpy\) and device arrays"):
        nn.fan_in_sum().forward({}, (device.to_device(x), x))


FUZZ = """
import json, numpy as np, test_backward_safety as t
from dlkit import layers as L, nn, random
import test_branching as b
rng = np.random.default_rng(0)
x2 = rng.standard_normal((5, 4)).astype(np.float32)
img = rng.standard_normal((3, 2, 5, 5)).astype(np.float32)
res = nn.serial(("c0", L.Conv2D(3, 3, padding="same")), ("block", b.res_block()),
                ("split", nn.fan_out(2)),
                ("br", nn.parallel(L.Relu(), L.Tanh())), ("sum", nn.fan_in_sum()),
                ("split2", nn.fan_out(2)), ("cat", nn.fan_in_concat(0)))
def cases(family):
    out = []
    for name, layer, x in (("branchy", b.branchy(), x2), ("res", res, img)):
        out.append((name, layer, layer.init(random.key(2), x.shape[1:])[1], x, {}))
    return out
t._cases = cases
print(json.dumps(t.fuzz("branching")))
"""


def test_fuzz_backward_rejects_foreign_caches_params_and_dy():
    """test_backward_safety's fuzz (every leaf of dy, params and cache mutated: shapes one
    off, other dtypes, ints out of range, tuples cut short, keys dropped or added) over
    models with every combinator: each mutation raises ValueError/TypeError, in a subprocess
    so a crash fails the test instead of the run."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    r = subprocess.run([sys.executable, "-c", FUZZ], capture_output=True, text=True,
                       timeout=600, cwd=str(Path(__file__).parent))
    assert r.returncode == 0, f"the fuzz process died (rc {r.returncode}):\n{r.stderr[-3000:]}"
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []
