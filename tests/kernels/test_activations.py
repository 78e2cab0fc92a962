"""Activation, softmax and dropout kernels against float64 references and finite differences."""
import numpy as np
import pytest

import dlkit
from dlkit import layers as L
from dlkit import random
from kernels.cpu import activations as K

REFS = {
    K.RELU: lambda x, a: np.maximum(x, 0),
    K.SIGMOID: lambda x, a: 1 / (1 + np.exp(-x)),
    K.TANH: lambda x, a: np.tanh(x),
    K.LEAKY_RELU: lambda x, a: np.where(x > 0, x, a * x),
}
LAYERS = {K.RELU: L.Relu(), K.SIGMOID: L.Sigmoid(), K.TANH: L.Tanh(),
          K.LEAKY_RELU: L.LeakyRelu(0.1)}


def _away_from_kinks(rng, shape):
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 1e-3, 0.5, x)   # finite differences are wrong at a kink


@pytest.mark.parametrize("act", list(REFS))
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 3, 7)])
def test_elementwise_gradcheck(act, shape, rng):
    dlkit.gradcheck(LAYERS[act], {}, _away_from_kinks(rng, shape), tol=1e-7)


@pytest.mark.parametrize("act", list(REFS))
@pytest.mark.parametrize("n", [1, 1001, 200_003])
def test_elementwise_reference(act, n, rng):
    x = rng.standard_normal(n) * 5
    dy = rng.standard_normal(n)
    y = K.activation_forward(x, act, 0.1)
    np.testing.assert_allclose(y, REFS[act](x, 0.1), rtol=1e-13, atol=1e-15)
    eps = 1e-6
    num = (REFS[act](x + eps, 0.1) - REFS[act](x - eps, 0.1)) / (2 * eps)
    ok = np.abs(x) > 1e-4
    np.testing.assert_allclose(K.activation_backward(x, y, dy, act, 0.1)[ok], (dy * num)[ok],
                               rtol=1e-5, atol=1e-8)
    y32 = K.activation_forward(x.astype(np.float32), act, 0.1)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (1, 10), (7, 3), (300, 100)])
def test_softmax(log, shape, rng):
    x = rng.standard_normal(shape) * 10
    e = np.exp(x - x.max(1, keepdims=True))
    ref = e / e.sum(1, keepdims=True)
    y = K.softmax_forward(x, log)
    np.testing.assert_allclose(y, np.log(ref) if log else ref, rtol=1e-12, atol=1e-13)
    y32 = K.softmax_forward(x.astype(np.float32), log)
    np.testing.assert_allclose(y32, y, rtol=1e-5, atol=1e-5)
    if x.size < 100:
        dlkit.gradcheck(L.LogSoftmax() if log else L.Softmax(), {}, x, tol=1e-7)


def test_softmax_is_stable_for_huge_logits():
    x = np.array([[1e4, 0.0, -1e4]], np.float32)
    assert np.isfinite(K.softmax_forward(x, True)).all()
    np.testing.assert_allclose(K.softmax_forward(x, False), [[1, 0, 0]])


def test_dropout_scaling_and_mask(rng):
    x = rng.standard_normal(10_001).astype(np.float32)
    keep = (rng.random(x.size) >= 0.3).astype(np.uint8)
    y = K.dropout_forward(x, keep, 1 / 0.7)
    np.testing.assert_allclose(y, np.where(keep, x / np.float32(0.7), 0), rtol=1e-6)
    np.testing.assert_array_equal(K.dropout_backward(x, keep, 1 / 0.7), y)


def test_dropout_layer_gradcheck_and_determinism(rng):
    x = rng.standard_normal((4, 9))
    layer = L.Dropout(0.4)
    dlkit.gradcheck(layer, {}, x, key=random.key(5), tol=1e-7)
    y1, _ = layer.forward({}, x, key=random.key(5), train=True)
    y2, _ = layer.forward({}, x, key=random.key(5), train=True)
    y3, _ = layer.forward({}, x, key=random.key(6), train=True)
    assert y1.tobytes() == y2.tobytes() and y1.tobytes() != y3.tobytes()
    assert layer.forward({}, x, train=False)[0] is x
