"""nn.summary (issue 19): the rows' param and state counts are the sizes of what model.init
returns, for every zoo model and for branching and nested models; totals are the sums;
multiply-adds by hand for Dense, Conv2D (stride, padding, groups), LSTM and friends; nested
names and output shapes against a real forward; layers written by hand; clear errors."""
import numpy as np
import pytest

from dlkit import layers as L
from dlkit import nn, random, tree, zoo
from dlkit.layers.base import Layer, StatefulLayer, _info, is_stateful


def init_sizes(model, in_shape):
    out = model.init(random.key(0), in_shape)
    return tree.size(out[1]), tree.size(out[2]) if is_stateful(model) else 0


def check_counts(model, in_shape):
    s = nn.summary(model, in_shape)
    assert (s.totals["params"], s.totals["state"]) == init_sizes(model, in_shape)
    for field in ("params", "state"):
        assert s.totals[field] == sum(getattr(r, field) for r in s.rows)
    assert s.totals["macs"] == sum(r.macs or 0 for r in s.rows)
    assert s.out_shape == tuple(model.init(random.key(0), in_shape)[0])
    return s


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_zoo_counts_equal_init(name):
    model, prepare, in_shape = zoo.MODELS[name]()
    s = check_counts(model, in_shape)
    out = model.init(random.key(0), in_shape)
    kw = {"state": out[2]} if is_stateful(model) else {}
    y = model.forward(out[1], prepare(np.zeros((2, 28, 28), np.uint8)), **kw)[0]
    assert y.shape == (2,) + s.out_shape
    assert all(r.macs is not None for r in s.rows)     # every zoo layer has a rule
    assert s.totals["macs"] > 0
    text = str(s)
    assert f"Params: {s.totals['params']:,}" in text
    assert all(r.name in text for r in s.rows)


def branchy_layers():
    """Three branches (one of them a serial, one without params) concatenated."""
    deep = nn.serial(("fc", L.Dense(4)), ("act", L.Tanh()))
    return [("fc0", L.Dense(6)), ("split", nn.fan_out(3)),
            ("branches", nn.parallel(("wide", L.Dense(5)), ("deep", deep), ("skip", L.Relu()))),
            ("cat", nn.fan_in_concat()), ("out", L.Dense(2))]


def branchy():
    return nn.serial(*branchy_layers())


def stateful_nested():
    """BatchNorm three levels down, in a parallel branch and as a residual's shortcut."""
    inner = nn.residual(("fc", L.Dense(4)), ("bn", L.BatchNorm()),
                        shortcut=nn.serial(("proj", L.Dense(4)), ("bn", L.BatchNorm())))
    return nn.serial(("split", nn.fan_out(2)),
                     ("branches", nn.parallel(("a", nn.serial(("block", inner))),
                                              ("b", L.Dense(4)))),
                     ("sum", nn.fan_in_sum()), ("norm", L.LayerNorm()))


def test_branching_and_nested_models():
    s = check_counts(branchy(), (3,))
    names = [r.name for r in s.rows]
    assert names == ["fc0", "split", "branches/wide", "branches/deep/fc",
                     "branches/deep/act", "branches/skip", "cat", "out"]
    assert s.rows[1].out_shape == ((6,), (6,), (6,))
    assert s.rows[6].out_shape == (15,)
    assert [r.macs for r in s.rows] == [3 * 6, 0, 6 * 5, 6 * 4, 0, 0, 0, 15 * 2]

    s = check_counts(stateful_nested(), (3,))
    by_name = {r.name: r for r in s.rows}
    assert by_name["branches/a/block/bn"].state == 8
    assert by_name["branches/a/block/shortcut/bn"].state == 8
    assert by_name["branches/a/block/shortcut/proj"].params == 3 * 4 + 4
    assert s.totals["state"] == 16
    assert by_name["norm"].macs == 2 * 4

    res = nn.residual(("conv_a", L.Conv2D(4, 3, padding="same")), ("act", L.Relu()),
                      shortcut=L.Conv2D(4, 1))
    s = check_counts(res, (2, 5, 5))                    # a residual at the top level
    assert [r.name for r in s.rows] == ["conv_a", "act", "shortcut"]
    assert s.rows[2].macs == 4 * 2 * 5 * 5
    s = check_counts(L.Dense(3), (4,))                  # a single layer
    assert [(r.name, r.macs) for r in s.rows] == [("Dense", 12)]


def test_macs_dense_conv_recurrent_by_hand():
    def macs(layer, shape):
        (row,) = nn.summary(layer, shape).rows
        return row.macs

    assert macs(L.Dense(7), (5,)) == 5 * 7
    # Cout * Cin/groups * KH * KW * OH * OW, OH = floor((H + 2p - k) / s) + 1
    assert macs(L.Conv2D(8, 3), (2, 10, 10)) == 8 * 2 * 9 * 8 * 8
    assert macs(L.Conv2D(8, 3, stride=2, padding=1), (2, 10, 10)) == 8 * 2 * 9 * 5 * 5
    assert macs(L.Conv2D(8, (3, 5), stride=(2, 1), padding="same", groups=2),
                (4, 9, 7)) == 8 * 2 * 15 * 5 * 7
    assert macs(L.Conv2D(6, 3, groups=6), (6, 4, 4)) == 6 * 1 * 9 * 2 * 2    # depthwise
    # T * gates * H * (F + H)
    assert macs(L.LSTM(16), (28, 28)) == 28 * 4 * 16 * (28 + 16)
    assert macs(L.GRU(5, return_sequences=True), (7, 3)) == 7 * 3 * 5 * (3 + 5)
    assert macs(L.SimpleRNN(5), (7, 3)) == 7 * 1 * 5 * (3 + 5)
    assert macs(L.Bidirectional(L.LSTM(4)), (6, 3)) == 2 * 6 * 4 * 4 * (3 + 4)
    assert macs(L.TimeDistributed(L.Dense(2)), (5, 3)) == 5 * 3 * 2
    assert macs(L.BatchNorm(), (3, 4, 4)) == 2 * 3 * 16
    assert macs(L.LayerNorm(), (5, 4)) == 2 * 20
    for zero in (L.MaxPool2D(2), L.AvgPool2D(2), L.GlobalAvgPool2D(), L.Relu(), L.Flatten()):
        assert macs(zero, (2, 4, 4)) == 0
    assert macs(L.Embedding(50, 8), (6,)) == 0
    assert nn.summary(L.Embedding(50, 8), (6,)).rows[0].params == 400


def test_resnet_names_and_shapes_match_a_real_forward():
    model, prepare, in_shape = zoo.resnet()
    s = nn.summary(model, in_shape)
    by_name = {r.name: r for r in s.rows}
    for name in ("block1/conv_a", "block1/bn_a", "block2/conv_b", "block2/shortcut", "fc"):
        assert name in by_name
    assert by_name["block1/bn_a"].kind == "BatchNorm"
    assert by_name["block1/bn_a"].state == 64 and by_name["block1/bn_a"].params == 64
    assert by_name["block1/conv_a"].macs == 32 * 32 * 9 * 28 * 28
    # every row's name is a key path of params or state (or a layer without either)
    _, params, state = model.init(random.key(0), in_shape)
    keys = set(tree.flatten(params)) | set(tree.flatten(state))
    for r in s.rows:
        assert any(k.startswith(r.name + "/") for k in keys) == bool(r.params or r.state)
    # output shapes of the whole model and of a prefix of it, against forward on a batch of 2
    x = prepare(np.zeros((2, 28, 28), np.uint8))
    y = model.forward(params, x, state=state)[0]
    assert y.shape == (2,) + s.out_shape == (2,) + s.rows[-1].out_shape
    # every top-level layer's output: forward through the model's first k layers (eval mode)
    children = _info(model)[2]
    for k, (name, _) in enumerate(children, 1):
        prefix = nn.serial(*children[:k])
        out = prefix.init(random.key(0), in_shape)
        y = prefix.forward(out[1], x, **({"state": out[2]} if is_stateful(prefix) else {}))[0]
        last = [r for r in s.rows if r.name == name or r.name.startswith(name + "/")][-1]
        assert y.shape == (2,) + last.out_shape, name
    assert by_name["pool1"].out_shape == (32, 14, 14)
    text = str(s)
    assert "block1/conv_a (Conv2D)" in text and "(32, 28, 28)" in text
    assert "Params: 112,106" in text


def test_shapes_match_forward_in_branching_model():
    model = branchy()
    s = nn.summary(model, (3,))
    _, params = model.init(random.key(0), (3,))
    x = np.ones((2, 3), np.float32)
    h = model.forward(params, x)[0]
    assert h.shape[1:] == s.out_shape
    # the branches' outputs, from the same model's first three layers
    prefix = nn.serial(*branchy_layers()[:3])
    _, p = prefix.init(random.key(0), (3,))
    ys = prefix.forward(p, x)[0]
    assert tuple(y.shape[1:] for y in ys) == tuple(s.rows[i].out_shape for i in (2, 4, 5))


def test_user_written_layers():
    def init(key, in_shape, dtype=np.float32):
        return (in_shape[0] * 2,), {"scale": np.ones(in_shape[0], dtype),
                                    "nested": {"w": np.zeros((2, 3), dtype)}}

    def forward(params, x, *, key=None, train=False):
        return np.concatenate([x * params["scale"], x], axis=1), None

    user = Layer(init, forward, lambda params, cache, dy, *, need_dx=True: (None, {}))

    def init_s(key, in_shape, dtype=np.float32):
        return tuple(in_shape), {}, {"count": np.zeros(3)}

    counter = StatefulLayer(init_s, lambda p, x, *, state, key=None, train=False:
                            (x, None, state), None)
    model = nn.serial(("fc", L.Dense(4)), ("mine", user), ("count", counter),
                      ("out", L.Dense(2)))
    s = check_counts(model, (3,))
    row = s.rows[1]
    assert (row.name, row.kind, row.out_shape, row.params, row.macs) == \
        ("mine", "Layer", (8,), 4 + 6, None)
    assert (s.rows[2].kind, s.rows[2].state, s.rows[2].macs) == ("StatefulLayer", 3, None)
    assert s.totals["macs"] == 3 * 4 + 8 * 2           # unknown counted as 0
    text = str(s)
    assert "mine (Layer)" in text and "?" in text and "unknown for 2 layers" in text
    bare = Layer(lambda key, shape, dtype=None: (shape, {}), None, None)    # no functions
    assert nn.summary(bare, (3,)).rows == [nn.SummaryRow("Layer", "Layer", (3,), 0, 0, None)]
    # a TimeDistributed around a combinator: shapes and params known, multiply-adds not
    td = L.TimeDistributed(nn.serial(("fc", L.Dense(2))))
    (row,) = check_counts(td, (5, 3)).rows
    assert (row.out_shape, row.params, row.macs) == ((5, 2), 8, None)


def test_bad_in_shape_and_model():
    model = nn.serial(("flat", L.Flatten()), ("fc1", L.Dense(3)))
    conv = nn.serial(("conv", L.Conv2D(2, 3)), ("fc1", L.Dense(3)))
    for bad in (784, None, "28x28", (28.0, 28), (True, 3), [(1, 2), 3]):
        with pytest.raises(TypeError, match="in_shape must be the per-example input shape"):
            nn.summary(model, bad)
    with pytest.raises(TypeError, match=r"for one axis write \(784,\)"):
        nn.summary(model, 784)
    with pytest.raises(ValueError, match="axis of size < 1"):
        nn.summary(model, (0, 28))
    with pytest.raises(ValueError, match=r"layer Dense 'fc1' rejects the input shape "
                                         r"\(2, 26, 26\).*Flatten"):
        nn.summary(conv, (1, 28, 28))
    with pytest.raises(ValueError, match=r"layer Conv2D 'conv'.*batch axis"):
        nn.summary(conv, (8, 1, 28, 28))                # a batch axis included by mistake
    with pytest.raises(TypeError, match="summary: parallel 'p'"):
        nn.summary(nn.serial(("p", nn.parallel(L.Dense(2), L.Dense(2)))), (3,))
    with pytest.raises(TypeError, match="model must be a Layer"):
        nn.summary(print, (3,))


def test_summary_changes_nothing():
    """Layers stay three-field NamedTuples and behave as before."""
    dense = L.Dense(3)
    assert type(dense) is Layer and len(dense) == 3
    model = zoo.resnet()[0]
    assert type(model) is StatefulLayer and len(model) == 3
    assert nn.summary(dense, (2,)).rows[0]._asdict()["params"] == 9
