"""LayerNorm through the API: gradient check, (N, T, D) input, init shapes, and every
validation error (naming expected and got, changing nothing)."""
import numpy as np
import pytest

import dlkit
from dlkit import layers as L
from dlkit import nn, random


@pytest.mark.parametrize("in_shape", [(1,), (7,), (3, 5), (2, 3, 4)])
def test_init_shape_agrees_with_forward(in_shape):
    layer = L.LayerNorm()
    out_shape, params = layer.init(random.key(0), in_shape)
    assert out_shape == in_shape
    D = in_shape[-1]
    np.testing.assert_array_equal(params["gamma"], np.ones(D, np.float32))
    np.testing.assert_array_equal(params["beta"], np.zeros(D, np.float32))
    x = np.random.default_rng(0).standard_normal((3, *in_shape)).astype(np.float32)
    y, _ = layer.forward(params, x)
    assert y.shape == (3, *out_shape) and y.dtype == np.float32


def _params(rng, D):
    return {"gamma": rng.standard_normal(D), "beta": rng.standard_normal(D)}


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (4, 7), (2, 3, 5), (1, 1, 3)])
def test_gradcheck(rng, shape):
    errs = dlkit.gradcheck(L.LayerNorm(1e-3), _params(rng, shape[-1]),
                           rng.standard_normal(shape) * 2 + 1, tol=1e-6)
    assert set(errs) == {"dx", "gamma", "beta"}


def test_sequence_input_matches_rows(rng):
    """(N, T, D) is normalised per (n, t) exactly as the flattened (N*T, D) rows."""
    x = rng.standard_normal((3, 11, 6)).astype(np.float32)
    layer = L.LayerNorm()
    params = {k: v.astype(np.float32) for k, v in _params(rng, 6).items()}
    y3, cache3 = layer.forward(params, x)
    y2, cache2 = layer.forward(params, x.reshape(33, 6))
    np.testing.assert_array_equal(y3.reshape(33, 6), y2)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx3, g3 = layer.backward(params, cache3, dy)
    dx2, g2 = layer.backward(params, cache2, dy.reshape(33, 6))
    assert dx3.shape == x.shape
    np.testing.assert_array_equal(dx3.reshape(33, 6), dx2)
    for k in g3:
        np.testing.assert_array_equal(g3[k], g2[k])
        assert g3[k].shape == params[k].shape and g3[k].dtype == np.float32
    assert layer.backward(params, cache3, dy, need_dx=False)[0] is None


def test_in_a_serial_model(rng):
    model = nn.serial(("fc", L.Dense(8)), ("ln", L.LayerNorm()), ("act", L.Tanh()))
    _, params = model.init(random.key(0), (5,), np.float64)
    assert set(params["ln"]) == {"gamma", "beta"}
    dlkit.gradcheck(model, params, rng.standard_normal((4, 5)))


def test_non_contiguous_and_read_only_input(rng):
    """Strided or read-only x and dy give the contiguous input's results."""
    layer = L.LayerNorm()
    params = _params(rng, 4)
    x = rng.standard_normal((6, 12))[:, ::3]
    want, _ = layer.forward(params, np.ascontiguousarray(x))
    ro = np.ascontiguousarray(x)
    ro.flags.writeable = False
    for inp in (x, ro):
        y, cache = layer.forward(params, inp)
        np.testing.assert_array_equal(y, want)
        dy = np.arange(48.0).reshape(6, 8)[:, ::2] / 10      # strided dy too
        dx, grads = layer.backward(params, cache, dy)
        want_dx, want_g = layer.backward(params, cache, np.ascontiguousarray(dy))
        np.testing.assert_array_equal(dx, want_dx)
        for k in grads:
            np.testing.assert_array_equal(grads[k], want_g[k])


@pytest.mark.parametrize("eps", [0, -1e-5, float("nan"), float("inf"), "1e-5", True, None])
def test_bad_eps(eps):
    with pytest.raises(ValueError, match=r"eps must be a finite number > 0, got"):
        L.LayerNorm(eps)


@pytest.mark.parametrize("in_shape", [(), (3, 0)])
def test_bad_init_shape(in_shape):
    with pytest.raises(ValueError, match=r"expected an input shape \(\.\.\., D\) with D >= 1"):
        L.LayerNorm().init(random.key(0), in_shape)


def _snap(tree):
    return {k: v.copy() for k, v in tree.items()}


FORWARD_ERRORS = [
    (lambda p, x: (p, x[0]), ValueError,
     r"expected an input of shape \(batch, \.\.\., D\) with D >= 1, got shape \(5,\)"),
    (lambda p, x: (p, x[:, :3]), ValueError,
     r"expected gamma and beta of shape \(3,\) \(the input's last axis\), got gamma\(5,\)"),
    (lambda p, x: (p, x.astype(np.float32)), TypeError,
     r"mixed dtypes \(x.dtype=float32, gamma.dtype=float64"),
    (lambda p, x: (p, x.astype(np.int64)), TypeError,
     r"expected dtype float32 or float64, got int64"),
    (lambda p, x: (p, x.tolist()), TypeError, r"expected a numpy array or a CUDA device array"),
    (lambda p, x: ({"gamma": p["gamma"]}, x), ValueError,
     r"params keys \['gamma'\] do not match the expected \['beta', 'gamma'\]"),
    (lambda p, x: ({**p, "beta": p["beta"][:4]}, x), ValueError,
     r"expected gamma and beta of shape \(5,\).*got gamma\(5,\) and beta\(4,\)"),
    (lambda p, x: ({**p, "gamma": p["gamma"].astype(np.int32)}, x), TypeError,
     r"param 'gamma' must be a float32/float64 ndarray, got int32"),
]


@pytest.mark.parametrize("bad,exc,msg", FORWARD_ERRORS)
def test_forward_errors_change_nothing(rng, bad, exc, msg):
    layer = L.LayerNorm()
    params, x = _params(rng, 5), rng.standard_normal((2, 5))
    p, xb = bad(params, x)
    before, x0 = _snap(params), x.copy()
    with pytest.raises(exc, match=r"LayerNorm\(eps=1e-05\).*" + msg):
        layer.forward(p, xb)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    np.testing.assert_array_equal(x, x0)


def _backward_case(rng):
    layer = L.LayerNorm()
    params, x = _params(rng, 5), rng.standard_normal((2, 3, 5))
    y, cache = layer.forward(params, x)
    return layer, params, cache, np.ones_like(y)


BACKWARD_ERRORS = [
    (lambda p, c, dy: (p, c[:3], dy), TypeError,
     r"expected the cache its forward returned \(a tuple of 4\), got a tuple of 3"),
    (lambda p, c, dy: (p, list(c), dy), TypeError, r"a tuple of 4\), got a list of 4"),
    (lambda p, c, dy: (p, (c[0], c[1], c[2], (30,)), dy), ValueError,
     r"cache must hold the input shape, got \(30,\)"),
    (lambda p, c, dy: (p, (c[0], c[1], c[2], (2, 3)), dy), ValueError,
     r"cache x: expected shape \(2, 3\) and dtype float64 .*got shape \(6, 5\)"),
    (lambda p, c, dy: (p, (c[0][:5], c[1], c[2], c[3]), dy), ValueError,
     r"cache x: expected shape \(6, 5\) and dtype float64 .*got shape \(5, 5\)"),
    (lambda p, c, dy: (p, (c[0], c[1][:5], c[2], c[3]), dy), ValueError,
     r"cache mean: expected shape \(6,\) and dtype float64 .*got shape \(5,\)"),
    (lambda p, c, dy: (p, (c[0], c[1], c[2].astype(np.float32), c[3]), dy), ValueError,
     r"cache rstd: expected shape \(6,\) and dtype float64 .*got shape \(6,\) dtype float32"),
    (lambda p, c, dy: (p, c, dy[:, :2]), ValueError,
     r"dy must match the forward output \(2, 3, 5\) float64, got \(2, 2, 5\) float64"),
    (lambda p, c, dy: (p, c, dy.astype(np.float32)), ValueError,
     r"dy must match the forward output \(2, 3, 5\) float64, got \(2, 3, 5\) float32"),
    (lambda p, c, dy: ({**p, "gamma": p["gamma"][:4]}, c, dy), ValueError,
     r"backward: expected gamma and beta of shape \(5,\) .*got gamma\(4,\)"),
    (lambda p, c, dy: ({**p, "gamma": p["gamma"].astype(np.float32)}, c, dy), TypeError,
     r"backward: mixed dtypes \(x.dtype=float64, gamma.dtype=float32"),
]


@pytest.mark.parametrize("bad,exc,msg", BACKWARD_ERRORS)
def test_backward_errors_change_nothing(rng, bad, exc, msg):
    layer, params, cache, dy = _backward_case(rng)
    before = _snap(params)
    cache0 = [a.copy() if isinstance(a, np.ndarray) else a for a in cache]
    p, c, d = bad(params, cache, dy)
    with pytest.raises(exc, match=r"LayerNorm\(eps=1e-05\).*" + msg):
        layer.backward(p, c, d)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    for a, b in zip(cache, cache0):
        np.testing.assert_array_equal(a, b)
