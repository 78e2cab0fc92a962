"""Dense kernels: finite differences (float64), a plain-NumPy reference, float32 vs float64,
bit-identical repeats, and the need_dx shortcut."""
import numpy as np
import pytest

import dlkit
from dlkit import layers as L
from dlkit import random
from kernels.cpu import dense as K

ACTS = {None: K.ACT_NONE, "relu": K.ACT_RELU, "sigmoid": K.ACT_SIGMOID, "tanh": K.ACT_TANH}


def ref_forward(x, W, b, act):
    z = x @ W + b
    return {None: z, "relu": np.maximum(z, 0), "sigmoid": 1 / (1 + np.exp(-z)),
            "tanh": np.tanh(z)}[act]


def ref_backward(x, W, y, dy, act):
    g = dy * {None: np.ones_like(y), "relu": (y > 0).astype(y.dtype), "sigmoid": y * (1 - y),
              "tanh": 1 - y * y}[act]
    return g @ W.T, x.T @ g, g.sum(0)


def _data(rng, n, i, o, dtype=np.float64):
    return (rng.standard_normal((n, i)).astype(dtype), rng.standard_normal((i, o)).astype(dtype),
            rng.standard_normal(o).astype(dtype), rng.standard_normal((n, o)).astype(dtype))


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("n,i,o", [(1, 1, 1), (1, 7, 3), (5, 13, 11), (37, 3, 2)])
def test_gradcheck(act, n, i, o):
    layer = L.Dense(o, activation=act)
    _, params = layer.init(random.key(1), (i,), np.float64)
    params["b"] = np.random.default_rng(0).standard_normal(o)
    x = np.random.default_rng(1).standard_normal((n, i))
    errs = dlkit.gradcheck(layer, params, x, tol=1e-6)
    assert set(errs) == {"dx", "W", "b"}


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("n,i,o", [(1, 784, 128), (67, 129, 31), (256, 50, 10),
                                   (128, 784, 128),    # parallel: 2 inner blocks, dx | dW tasks
                                   (100, 1100, 7),     # 4 inner-dimension partials
                                   (300, 600, 9)])     # row blocks of y and of dx
def test_matches_numpy_reference(act, n, i, o, rng):
    x, W, b, dy = _data(rng, n, i, o)
    y = K.dense_forward(x, W, b, ACTS[act])
    np.testing.assert_allclose(y, ref_forward(x, W, b, act), rtol=1e-12, atol=1e-12)
    for got, want in zip(K.dense_backward(x, W, y, dy, ACTS[act], True),
                         ref_backward(x, W, y, dy, act)):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)
    # float32 agrees with the float64 reference
    x32, W32, b32, dy32 = (a.astype(np.float32) for a in (x, W, b, dy))
    y32 = K.dense_forward(x32, W32, b32, ACTS[act])
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y, rtol=1e-4, atol=1e-4)
    for got, want in zip(K.dense_backward(x32, W32, y32, dy32, ACTS[act], True),
                         ref_backward(x, W, y, dy, act)):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-4 * np.sqrt(n))


@pytest.mark.parametrize("n,i,o", [(9, 5, 4), (128, 784, 128)])   # serial, 2 dW blocks
def test_need_dx_false_skips_input_gradient(rng, n, i, o):
    x, W, b, dy = _data(rng, n, i, o, np.float32)
    y = K.dense_forward(x, W, b, K.ACT_RELU)
    dx, dW, db = K.dense_backward(x, W, y, dy, K.ACT_RELU, False)
    _, dW2, db2 = K.dense_backward(x, W, y, dy, K.ACT_RELU, True)
    assert dx.shape == (0, i)
    assert np.array_equal(dW, dW2) and np.array_equal(db, db2)


def test_bit_identical_repeats(rng):
    x, W, b, dy = _data(rng, 300, 200, 100, np.float32)
    y1 = K.dense_forward(x, W, b, K.ACT_TANH)
    g1 = K.dense_backward(x, W, y1, dy, K.ACT_TANH, True)
    for _ in range(3):
        y2 = K.dense_forward(x, W, b, K.ACT_TANH)
        assert y1.tobytes() == y2.tobytes()
        for a, c in zip(g1, K.dense_backward(x, W, y2, dy, K.ACT_TANH, True)):
            assert a.tobytes() == c.tobytes()
