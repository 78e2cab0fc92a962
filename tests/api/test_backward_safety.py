"""Backward trusts nothing it is given (issue 14, class 1).

Numba does not bounds-check, so a backward handed a cache, params or dy of another shape,
dtype or integer range than its forward saw would read or write out of bounds.  Every
backward must raise a clear ValueError/TypeError instead, before any kernel runs.

The fuzz runs each layer family in a subprocess (this file run as a script), so a crash fails
the test with its output instead of killing the test run.  For every layer it runs forward,
then backward once per mutation of one leaf of dy, params or cache: shapes one larger or
smaller (or a wrong size doubled), the other float dtype, an integer dtype for floats, and
out-of-range values in integer arrays (token ids, pooling argmax, step ranges, masks).
"""
import json
import subprocess
import sys

import numpy as np
import pytest

FAMILIES = ("core", "conv", "embedding", "recurrent", "serial")


# ------------------------------------------------------------------ the layers under test
def _cases(family):
    """(name, layer, params, x, forward kwargs) for the family, small odd shapes."""
    from dlkit import layers as L, nn, random
    from dlkit.layers import Padded
    rng = np.random.default_rng(0)
    x2 = rng.standard_normal((5, 11)).astype(np.float32)
    img = rng.standard_normal((3, 2, 7, 7)).astype(np.float32)
    seq = rng.standard_normal((3, 5, 4)).astype(np.float32)
    ids = rng.integers(0, 13, (3, 5))
    train = {"key": random.key(1), "train": True}
    layers = {
        "core": [("dense", L.Dense(7, activation="relu"), x2, {}),
                 ("relu", L.Relu(), x2, {}), ("sigmoid", L.Sigmoid(), x2, {}),
                 ("leaky", L.LeakyRelu(0.1), x2, {}), ("softmax", L.Softmax(), x2, {}),
                 ("logsoftmax", L.LogSoftmax(), x2, {}),
                 ("flatten", L.Flatten(), img, {}), ("dropout", L.Dropout(0.3), x2, train),
                 ("dropout-eval", L.Dropout(0.3), x2, {})],
        "conv": [("conv", L.Conv2D(4, 3, padding=1), img, {}),
                 ("conv-s2-nobias", L.Conv2D(3, 3, stride=2, use_bias=False), img, {}),
                 ("conv-winograd", L.Conv2D(4, 3, algorithm="winograd"), img, {}),
                 ("maxpool", L.MaxPool2D(2), img[:, :, :6, :6], {}),
                 ("maxpool-3s2p1", L.MaxPool2D(3, stride=2, padding=1), img, {}),
                 ("avgpool", L.AvgPool2D(2), img, {}),
                 ("globalavg", L.GlobalAvgPool2D(), img, {})],
        "embedding": [("embedding", L.Embedding(13, 6), ids, {}),
                      ("embedding-pad", L.Embedding(13, 6, padding_idx=0), ids, {}),
                      ("spatialdropout", L.SpatialDropout1D(0.5), seq, train)],
        "recurrent": [("rnn", L.SimpleRNN(6), seq, {}),
                      ("rnn-relu", L.SimpleRNN(6, activation="relu"), seq, {}),
                      ("lstm-seq", L.LSTM(6, return_sequences=True), seq, {}),
                      ("lstm-ragged", L.LSTM(6), Padded(seq, np.array([5, 2, 3]), "pre"), {}),
                      ("lstm-state", L.LSTM(6, return_state=True), seq, {}),
                      ("gru", L.GRU(6, return_sequences=True), seq, {}),
                      ("bidirectional", L.Bidirectional(L.LSTM(4)), seq, {}),
                      ("timedistributed", L.TimeDistributed(L.Dense(3)), seq, {})],
        "serial": [("serial", nn.serial(("conv", L.Conv2D(3, 3, activation="relu")),
                                        ("pool", L.MaxPool2D(2)), ("flat", L.Flatten()),
                                        ("drop", L.Dropout(0.2)), ("fc", L.Dense(4))),
                    img, train)],
    }[family]
    out = []
    for name, layer, x, kw in layers:
        v = x.values if isinstance(x, Padded) else x
        shape = v.shape[1:]
        _, params = layer.init(random.key(2), shape)
        out.append((name, layer, params, x, kw))
    return out


# ------------------------------------------------------------------ mutations of one leaf
def _array_variants(a):
    """(label, array) pairs differing from a in shape, dtype or (for integers) range."""
    out = []
    for axis in range(a.ndim):
        for n in (a.shape[axis] + 1, a.shape[axis] - 1):
            if n >= 1:
                shape = a.shape[:axis] + (n,) + a.shape[axis + 1:]
                out.append((f"shape {shape}", np.resize(a, shape)))
    out.append((f"shape {a.shape + (1,)}", a.reshape(a.shape + (1,))))
    others = ([np.float64 if a.dtype == np.float32 else np.float32, np.int64]
              if a.dtype.kind == "f" else [np.int32 if a.dtype != np.int32 else np.int64])
    out += [(f"dtype {np.dtype(t)}", a.astype(t)) for t in others]
    if a.dtype.kind in "iu" and a.size:
        for bad in (min(int(a.max()) + 1000, int(np.iinfo(a.dtype).max)), -1):
            if bad >= 0 or a.dtype.kind == "i":
                b = a.copy()
                b.reshape(-1)[a.size // 2] = bad
                out.append((f"value {bad}", b))
    return out


def _variants(tree, path=""):
    """(label, tree) for every tree equal to ``tree`` but for one leaf: arrays as above, ints
    doubled plus one or negative, tuples and lists cut short, a dict key dropped or added."""
    if isinstance(tree, np.ndarray):
        return [(f"{path}: {label}", v) for label, v in _array_variants(tree)]
    if type(tree) is int:
        return [(f"{path}: {v}", v) for v in (2 * tree + 1, -1)]
    if isinstance(tree, dict):
        out = [(f"{path}/{drop} dropped", {k: v for k, v in tree.items() if k != drop})
               for drop in tree]
        out.append((f"{path}/extra added", {**tree, "extra": np.zeros(1, np.float32)}))
        for k, v in tree.items():
            out += [(label, {**tree, k: w}) for label, w in _variants(v, f"{path}/{k}")]
        return out
    if isinstance(tree, (tuple, list)) and not hasattr(tree, "_fields"):
        out = [(f"{path} cut short", type(tree)(tree[:-1]))] if tree else []
        for i, v in enumerate(tree):
            out += [(label, type(tree)(tree[:i]) + type(tree)([w]) + type(tree)(tree[i + 1:]))
                    for label, w in _variants(v, f"{path}[{i}]")]
        return out
    if hasattr(tree, "_fields"):              # a Padded dy: its values
        return [(label, tree._replace(values=w))
                for label, w in _variants(tree.values, f"{path}.values")]
    return []


def _grad_for(y):
    if isinstance(y, np.ndarray):
        return np.ones_like(y)
    if isinstance(y, tuple) and hasattr(y, "_fields"):
        return y._replace(values=np.ones_like(y.values))
    return tuple(_grad_for(v) for v in y)


# Mutations that describe another valid forward: under stride 2 (or global pooling) an input
# one row larger, or of any height, has the same output size, so backward returns the input
# gradient of the input the cache now holds, with that input's shape (checked), reading and
# writing nothing out of bounds.  Every other mutation must raise.
CONSISTENT = {("conv-s2-nobias", "cache[0]: shape (3, 2, 8, 7)"): (3, 2, 8, 7),
              ("conv-s2-nobias", "cache[0]: shape (3, 2, 7, 8)"): (3, 2, 7, 8),
              ("globalavg", "cache[0][2]: 15"): (3, 2, 15, 7),
              ("globalavg", "cache[0][3]: 15"): (3, 2, 7, 15)}


def fuzz(family):
    """Runs every mutation of the family; returns a list of those that did not raise a
    ValueError/TypeError (each as a short description)."""
    failures = []
    for name, layer, params, x, kw in _cases(family):
        y, cache = layer.forward(params, x, **kw)
        dy = _grad_for(y)
        layer.backward(params, cache, dy)               # the unmutated call works
        before = {k: np.copy(v) for k, v in _flat(params)}
        for what, args in (("dy", [(label, params, cache, d) for label, d in _variants(dy)]),
                           ("params", [(label, p, cache, dy) for label, p in _variants(params)]),
                           ("cache", [(label, params, c, dy) for label, c in _variants(cache)])):
            for label, p, c, d in args:
                try:
                    dx, _ = layer.backward(p, c, d)
                except (ValueError, TypeError):
                    continue
                if CONSISTENT.get((name, what + label)) == dx.shape:
                    continue
                failures.append(f"{name}: {what}{label} was accepted")
        if any(not np.array_equal(v, dict(_flat(params))[k]) for k, v in before.items()):
            failures.append(f"{name}: params changed")
    return failures


def _flat(tree, prefix=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _flat(v, f"{prefix}{k}/")
    else:
        yield prefix, tree


# ------------------------------------------------------------------ the tests
def _run(code, timeout=600):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, cwd=str(__import__("pathlib").Path(__file__).parent))


@pytest.mark.parametrize("family", FAMILIES)
def test_fuzz_backward_rejects_every_foreign_cache_params_and_dy(family):
    r = _run(f"import json, test_backward_safety as t; print(json.dumps(t.fuzz({family!r})))")
    assert r.returncode == 0, f"the fuzz process died (rc {r.returncode}):\n{r.stderr[-3000:]}"
    failures = json.loads(r.stdout.strip().splitlines()[-1])
    assert failures == [], "\n".join(failures)


PROBES = {
    # the examples, each of which crashed or read garbage before the fix
    "embedding ids changed after forward": """
ids = np.array([[1, 2, 3], [4, 5, 6]])
init, fwd, bwd = L.Embedding(10, 4)
_, p = init(random.key(0), (3,))
y, c = fwd(p, ids)
ids[0, 0] = 10 ** 9                      # the caller reuses its array: the cache is a snapshot
_, g = bwd(p, c, np.ones_like(y))
assert g["E"].shape == (10, 4) and g["E"][1].sum() == 4
c[0][0, 0] = 10 ** 9                     # the snapshot itself changed: checked again
expect(lambda: bwd(p, c, np.ones_like(y)), "outside the vocabulary")
""",
    "dropout dy of another size": """
init, fwd, bwd = L.Dropout(0.5)
y, c = fwd({}, np.ones((4, 5), np.float32), key=random.key(0), train=True)
expect(lambda: bwd({}, c, np.ones(3, np.float32)), "dy must match")
expect(lambda: bwd({}, c, np.ones((400, 500), np.float32)), "dy must match")
""",
    "dense params of another shape or dtype": """
init, fwd, bwd = L.Dense(8)
_, p = init(random.key(0), (16,))
y, c = fwd(p, np.ones((4, 16), np.float32))
expect(lambda: bwd({"W": np.ones((32, 8), np.float32), "b": p["b"]}, c, y), "W")
expect(lambda: bwd({"W": p["W"].astype(np.float64), "b": p["b"]}, c, y), "dtype")
""",
    "conv params of another shape": """
init, fwd, bwd = L.Conv2D(4, 3)
_, p = init(random.key(0), (2, 9, 9))
y, c = fwd(p, np.ones((2, 2, 9, 9), np.float32))
expect(lambda: bwd({"W": np.ones((4, 8, 3, 3), np.float32), "b": p["b"]}, c, y), "W")
""",
    "lstm params of another shape": """
init, fwd, bwd = L.LSTM(5)
_, p = init(random.key(0), (4, 3))
y, c = fwd(p, np.ones((2, 4, 3), np.float32))
expect(lambda: bwd({**p, "U": np.ones((50, 20), np.float32)}, c, y), "U")
expect(lambda: bwd({**p, "W": np.ones((300, 20), np.float32)}, c, y), "W")
""",
    "maxpool argmax out of its window": """
init, fwd, bwd = L.MaxPool2D(2)
y, c = fwd({}, np.ones((2, 3, 8, 8), np.float32))
c[2][0, 0, 0, 0] = 200
expect(lambda: bwd({}, c, y), "argmax")
""",
}


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_hostile_probe_raises_in_a_subprocess(probe):
    code = ("import numpy as np\nfrom dlkit import layers as L, random\n"
            "def expect(fn, text):\n"
            "    try:\n        fn()\n"
            "    except (ValueError, TypeError) as e:\n"
            "        assert text in str(e), f'{text!r} not in {e}'\n        return\n"
            "    raise AssertionError('no error raised')\n" + PROBES[probe] + "\nprint('ok')\n")
    r = _run(code, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), \
        f"rc {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"


def test_sizes_beyond_32_bit_indices_are_refused_before_any_allocation():
    from dlkit import layers as L, random
    init, fwd, _ = L.Dense(1 << 16)
    _, p = init(random.key(0), (4,))
    x = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (1 << 16, 4), (0, 0))
    with pytest.raises(ValueError, match=r"2\*\*31 - 1"):
        fwd(p, x)                        # the output would hold 2**32 elements
    big = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (1 << 31, 1), (0, 0))
    with pytest.raises(ValueError, match="split the batch"):
        L.Relu().forward({}, big)


def test_layers_run_from_several_python_threads_at_once(run_threads):
    """Each call is a pure function of its arguments and Numba's omp/tbb layers are
    threadsafe: two threads stepping the same model concurrently get the sequential results
    bit for bit."""
    from dlkit import layers as L, nn, random
    model = nn.serial(("conv", L.Conv2D(8, 3, activation="relu")), ("pool", L.MaxPool2D(2)),
                      ("flat", L.Flatten()), ("fc", L.Dense(10)))
    _, params = model.init(random.key(0), (1, 12, 12))
    xs = [np.random.default_rng(i).standard_normal((64, 1, 12, 12)).astype(np.float32)
          for i in range(2)]

    def step(x):
        y, c = model.forward(params, x)
        return model.backward(params, c, y)[1]

    expected = [step(x) for x in xs]
    got = [None, None]

    def work(i):
        for _ in range(20):
            got[i] = step(xs[i])

    errors = run_threads(work, range(2))
    assert not errors, errors
    for e, g in zip(expected, got):
        for k in e:
            for n in e[k]:
                np.testing.assert_array_equal(e[k][n], g[k][n])


def test_workqueue_layer_raises_instead_of_aborting():
    """Numba's workqueue layer aborts the process when two threads run parallel kernels at
    once; dlkit raises RuntimeError in the second thread instead."""
    code = """
import threading, numpy as np
from dlkit import layers as L, random
import numba
init, fwd, bwd = L.Dense(512, activation="relu")
_, p = init(random.key(0), (512,))
x = np.ones((2048, 512), np.float32)
errors = []
def work():
    try:
        for _ in range(300):
            y, c = fwd(p, x); bwd(p, c, y)
    except RuntimeError as e:
        errors.append(str(e))
ts = [threading.Thread(target=work) for _ in range(2)]
[t.start() for t in ts]; [t.join() for t in ts]
assert numba.threading_layer() == "workqueue"
assert errors and "workqueue" in errors[0], errors
print("ok")
"""
    env = {**__import__("os").environ, "NUMBA_THREADING_LAYER": "workqueue"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), \
        f"rc {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"


def test_backward_errors_name_what_was_expected_and_received():
    """In process (the fuzz runs in subprocesses), so docs/errors.md lists these messages."""
    from dlkit import layers as L, random
    x = np.ones((4, 16), np.float32)
    dense = L.Dense(8)
    _, p = dense.init(random.key(0), (16,))
    y, c = dense.forward(p, x)
    with pytest.raises(ValueError, match=r"Dense\(8\) backward W: expected shape \(16, 8\) "
                                         r"and dtype float32 .*got shape \(32, 8\)"):
        dense.backward({**p, "W": np.ones((32, 8), np.float32)}, c, y)
    with pytest.raises(TypeError, match=r"expected the cache its forward returned \(a tuple "
                                        r"of 2\), got a list of 2"):
        dense.backward(p, list(c), y)
    lstm = L.LSTM(5)
    _, p = lstm.init(random.key(0), (4, 3))
    y, c = lstm.forward(p, np.ones((2, 4, 3), np.float32))
    kc = list(c[0])
    kc[1] = kc[1][:-1]
    with pytest.raises(ValueError, match=r"LSTM\(5\) backward cache acts: expected shape "
                                         r"\(8, 20\)"):
        lstm.backward(p, (kc,) + c[1:], y)
    emb = L.Embedding(10, 3)
    _, p = emb.init(random.key(0), (2,))
    y, c = emb.forward(p, np.array([[1, 2]]))
    c[0][0, 1] = 10
    with pytest.raises(ValueError, match=r"token id 10 at sequence 0, step 1 is outside the "
                                         r"vocabulary \[0, 10\)"):
        emb.backward(p, c, y)
    pool = L.MaxPool2D(2)
    y, c = pool.forward({}, np.ones((1, 1, 4, 4), np.float32))
    c[2][0, 0, 1, 1] = 7
    with pytest.raises(ValueError, match=r"argmax: value 7 at flat position 3 is outside "
                                         r"\[0, 4\)"):
        pool.backward({}, c, y)
