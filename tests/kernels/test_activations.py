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


def _gelu_reference(x):
    from math import erfc
    return x * np.vectorize(erfc)(-x / np.sqrt(2)) / 2


@pytest.mark.parametrize("n", [1, 1001, 200_003])
def test_gelu_reference_and_finite_differences(n, rng):
    x = rng.standard_normal(n) * 4
    dy = rng.standard_normal(n)
    y = K.gelu_forward(x)
    np.testing.assert_allclose(y, _gelu_reference(x), rtol=1e-13, atol=1e-15)
    eps = 1e-6
    num = (_gelu_reference(x + eps) - _gelu_reference(x - eps)) / (2 * eps)
    np.testing.assert_allclose(K.gelu_backward(x, dy), dy * num, rtol=1e-6, atol=1e-8)
    y32 = K.gelu_forward(x.astype(np.float32))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y, rtol=2e-6, atol=2e-6)
    # the float32 erfc: relative accuracy in the tails too (2e-5 at x = -12, where GELU is
    # -2e-32: the float32 x^2 in e^(-x^2 / 2)), 3e-6 for x > -4
    x32 = np.linspace(-12, 12, 100_001).astype(np.float32)
    exact = _gelu_reference(x32.astype(np.float64))
    np.testing.assert_allclose(K.gelu_forward(x32), exact, rtol=2e-5, atol=1e-37)
    near = x32 > -4
    np.testing.assert_allclose(K.gelu_forward(x32)[near], exact[near], rtol=3e-6)
    np.testing.assert_allclose(K.gelu_backward(x32, np.ones_like(x32)),
                               K.gelu_backward(x32.astype(np.float64), np.ones(x32.size)),
                               rtol=2e-6, atol=1e-7)


def test_gelu_layer_gradcheck_and_torch(rng):
    x = rng.standard_normal((3, 4, 5))
    dlkit.gradcheck(L.Gelu(), {}, x, tol=1e-7)
    torch = pytest.importorskip("torch")
    x32 = (rng.standard_normal(5000) * 3).astype(np.float32)
    dy = rng.standard_normal(5000).astype(np.float32)
    t = torch.tensor(x32, requires_grad=True)
    torch.nn.functional.gelu(t).backward(torch.tensor(dy))
    y, cache = L.Gelu().forward({}, x32)
    np.testing.assert_allclose(y, torch.nn.functional.gelu(t).detach().numpy(), atol=2e-6)
    np.testing.assert_allclose(L.Gelu().backward({}, cache, dy)[0], t.grad.numpy(), atol=2e-6)


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


def splitmix_reference(seed, n):
    """The SplitMix64 stream in Python integers: outputs 1..n after ``seed``."""
    m = (1 << 64) - 1
    out = []
    for i in range(1, n + 1):
        z = (seed + i * 0x9E3779B97F4A7C15) & m
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        out.append(z ^ (z >> 31))
    return np.array(out, dtype=np.uint64)


@pytest.mark.parametrize("n", [1, 37, 40_000])          # serial and parallel builds
def test_dropout_mask_is_splitmix64(n):
    seed, thr = 0xDEADBEEF12345678, round(0.3 * 2**32)
    want = (splitmix_reference(seed, n) >> np.uint64(32)) >= thr
    got = K.dropout_mask(np.uint64(seed), n, np.uint64(thr))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want.astype(np.uint8))


@pytest.mark.parametrize("n", [1, 37, 40_000])          # serial and parallel builds
@pytest.mark.parametrize("dtype, bits", [(np.float32, 24), (np.float64, 53)])
def test_uniform_is_splitmix64(n, dtype, bits):
    seed = 0x0123456789ABCDEF
    want = (splitmix_reference(seed, n) >> np.uint64(64 - bits)).astype(np.float64) * 2.0 ** -bits
    out = np.full(n, np.nan, dtype)
    K.uniform(np.uint64(seed), out)
    np.testing.assert_array_equal(out, want.astype(dtype))     # exact: every value representable


def test_uniform_statistics_and_range():
    for dtype in (np.float32, np.float64):
        u = random.uniform(random.key(5), (400, 500), dtype)
        assert u.dtype == dtype and u.shape == (400, 500)
        assert 0 <= u.min() and u.max() < 1
        assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)
        assert abs(u.var() - 1 / 12) < 0.002
        flat = u.ravel().astype(np.float64)
        assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.01
    assert np.array_equal(random.uniform(random.key(5), (7,)), random.uniform(random.key(5), (7,)))
    assert not np.array_equal(random.uniform(random.key(5), (7,)),
                              random.uniform(random.key(6), (7,)))
    with pytest.raises(TypeError, match="float32 or float64"):
        random.uniform(random.key(5), (3,), np.int32)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 0.9])
def test_keep_mask_statistics(rate):
    n = 200_000
    m = random.keep_mask(random.key(3), (n,), rate).astype(np.float64)
    sd = np.sqrt(rate * (1 - rate) / n)
    assert abs(m.mean() - (1 - rate)) <= 5 * sd + 1e-12
    if 0 < rate:                       # neighbours and halves independent
        assert abs(np.corrcoef(m[:-1], m[1:])[0, 1]) < 0.02
    other = random.keep_mask(random.key(4), (n,), rate)
    assert rate == 0 or not np.array_equal(m, other)
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        random.keep_mask(random.key(3), (4,), 1.0)
