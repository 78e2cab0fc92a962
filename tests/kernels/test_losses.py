"""Fused loss kernels: value and gradient against float64 references and finite differences."""
import numpy as np
import pytest

from dlkit import losses


def ref_sce(z, y):
    m = z.max(1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(1))
    p = np.exp(z - lse[:, None])
    d = p.copy()
    d[np.arange(len(y)), y] -= 1
    return np.mean(lse - z[np.arange(len(y)), y]), d / len(y)


def fd(f, z, eps=1e-6):
    g = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        old = z[i]
        z[i] = old + eps
        lp = f(z)
        z[i] = old - eps
        lm = f(z)
        z[i] = old
        g[i] = (lp - lm) / (2 * eps)
    return g


@pytest.mark.parametrize("n,c", [(1, 1), (1, 10), (7, 3), (2000, 10)])
def test_softmax_cross_entropy(n, c, rng):
    z = rng.standard_normal((n, c)) * 3
    y = rng.integers(0, c, n)
    loss, d = losses.softmax_cross_entropy(z, y)
    rl, rd = ref_sce(z, y)
    assert abs(loss - rl) < 1e-12 * max(1, abs(rl))
    np.testing.assert_allclose(d, rd, rtol=1e-12, atol=1e-15)
    if n * c < 50:
        np.testing.assert_allclose(d, fd(lambda a: losses.softmax_cross_entropy(a, y)[0], z),
                                   rtol=1e-6, atol=1e-9)
    l32, d32 = losses.softmax_cross_entropy(z.astype(np.float32), y)
    assert d32.dtype == np.float32
    assert abs(l32 - rl) < 1e-5 * max(1, abs(rl))
    np.testing.assert_allclose(d32, rd, rtol=1e-5, atol=1e-7)


def test_softmax_cross_entropy_stable_for_huge_logits():
    z = np.array([[1e4, -1e4], [-1e4, 1e4]], np.float32)
    loss, d = losses.softmax_cross_entropy(z, np.array([1, 1]))
    assert np.isfinite(loss) and np.isfinite(d).all()
    assert abs(loss - 1e4) < 1


@pytest.mark.parametrize("n", [1, 5, 100_001])
def test_sigmoid_binary_cross_entropy(n, rng):
    z = rng.standard_normal(n) * 4
    t = rng.random(n)
    loss, d = losses.sigmoid_binary_cross_entropy(z, t)
    p = 1 / (1 + np.exp(-z))
    ref = np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)))
    assert abs(loss - ref) < 1e-10
    np.testing.assert_allclose(d, (p - t) / n, rtol=1e-10, atol=1e-16)
    if n < 10:
        np.testing.assert_allclose(
            d, fd(lambda a: losses.sigmoid_binary_cross_entropy(a, t)[0], z), rtol=1e-6)
    big = np.array([800.0, -800.0], np.float32)
    loss, d = losses.sigmoid_binary_cross_entropy(big, np.array([0.0, 1.0]))
    assert np.isfinite(loss) and abs(loss - 800) < 1e-3


@pytest.mark.parametrize("shape", [(1,), (3, 4), (50_000, 3)])
def test_mean_squared_error(shape, rng):
    p, t = rng.standard_normal(shape), rng.standard_normal(shape)
    loss, d = losses.mean_squared_error(p, t)
    assert abs(loss - np.mean((p - t) ** 2)) < 1e-12
    np.testing.assert_allclose(d, 2 * (p - t) / p.size, rtol=1e-12)
    if p.size < 20:
        np.testing.assert_allclose(d, fd(lambda a: losses.mean_squared_error(a, t)[0], p),
                                   rtol=1e-6)


def test_losses_bit_identical_repeats(rng):
    z = rng.standard_normal((5000, 10)).astype(np.float32)
    y = rng.integers(0, 10, 5000)
    a, b = losses.softmax_cross_entropy(z, y), losses.softmax_cross_entropy(z, y)
    assert a[0] == b[0] and a[1].tobytes() == b[1].tobytes()
