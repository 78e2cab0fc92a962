"""Batch-norm kernels (kernels.cpu.batchnorm) against their NumPy references, central
differences (with the fused ReLU), float32, odd layouts and thread counts."""
import numba
import numpy as np
import pytest

from finite_differences import central_differences
from kernels.cpu import batchnorm as K

# (N, C, S): (N, C) inputs are S = 1; batch 1 with S > 1; odd/prime sizes; the last is parallel
SHAPES = [(2, 3, 1), (7, 5, 1), (1, 3, 7), (3, 2, 13), (5, 7, 11), (17, 13, 163)]
EPS = 1e-5


def _inputs(rng, shape, dtype=np.float64, shift=0.0):
    C = shape[1]
    x = rng.standard_normal(shape) * 2 + shift
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    dy = rng.standard_normal(shape)
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2.0, C)
    return tuple(a.astype(dtype) for a in (x, gamma, beta, dy, rm, rv))


def test_parallel_build_is_exercised():
    assert np.prod(SHAPES[-1]) >= K.GRAIN > np.prod(SHAPES[-2])


@pytest.mark.parametrize("act", [K.NONE, K.RELU])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(rng, shape, act):
    x, gamma, beta, dy, rm, rv = _inputs(rng, shape, shift=3.0)
    y, mean, invstd = K.batchnorm_forward_train(x, gamma, beta, EPS, act)
    yr, mr, rr = K.batchnorm_forward_train_reference(x, gamma, beta, EPS, act)
    for got, want in ((y, yr), (mean, mr), (invstd, rr)):
        assert got.dtype == np.float64 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)
    got = K.batchnorm_backward(x, y, gamma, mean, invstd, dy, act)
    want = K.batchnorm_backward_reference(x, yr, gamma, mr, rr, dy, act)
    for g, w in zip(got, want):
        assert g.dtype == np.float64 and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10)
    ye = K.batchnorm_forward_eval(x, gamma, beta, rm, rv, EPS, act)
    np.testing.assert_allclose(
        ye, K.batchnorm_forward_eval_reference(x, gamma, beta, rm, rv, EPS, act),
        rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", [K.NONE, K.RELU])
@pytest.mark.parametrize("shape", [(2, 3, 1), (5, 2, 1), (1, 2, 5), (3, 3, 4)])
def test_central_differences_train(rng, shape, act):
    x, gamma, beta, R, _, _ = _inputs(rng, shape)
    y, mean, invstd = K.batchnorm_forward_train(x, gamma, beta, EPS, act)
    dx, dg, db = K.batchnorm_backward(x, y, gamma, mean, invstd, R, act)
    fd = central_differences(lambda x, g, b: K.batchnorm_forward_train(x, g, b, EPS, act)[0],
                   [x, gamma, beta], R)
    for got, want in zip((dx, dg, db), fd):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act", [K.NONE, K.RELU])
@pytest.mark.parametrize("shape", [(3, 2, 1), (1, 3, 5)])
def test_central_differences_eval(rng, shape, act):
    x, gamma, beta, R, rm, rv = _inputs(rng, shape)
    y = K.batchnorm_forward_eval(x, gamma, beta, rm, rv, EPS, act)
    dx, dg, db = K.batchnorm_backward_eval(x, y, gamma, rm, rv, EPS, R, act)
    fd = central_differences(lambda x, g, b: K.batchnorm_forward_eval(x, g, b, rm, rv, EPS, act),
                   [x, gamma, beta], R)
    for got, want in zip((dx, dg, db), fd):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", [(7, 5, 1), (5, 7, 11), (17, 13, 163)])
def test_float32_agrees_with_float64(rng, shape):
    x, gamma, beta, dy, rm, rv = _inputs(rng, shape, shift=100.0)   # |mean| >> std
    x32, g32, b32, dy32, rm32, rv32 = (a.astype(np.float32) for a in (x, gamma, beta, dy, rm, rv))
    x = x32.astype(np.float64)
    for act in (K.NONE, K.RELU):
        y, m, r = K.batchnorm_forward_train(x32, g32, b32, EPS, act)
        yr, mr, rr = K.batchnorm_forward_train_reference(x, g32, b32, EPS, act)
        assert y.dtype == m.dtype == r.dtype == np.float32
        np.testing.assert_allclose(m, mr, rtol=1e-6)
        np.testing.assert_allclose(r, rr, rtol=1e-6)
        np.testing.assert_allclose(y, yr, rtol=1e-4, atol=1e-4)
        got = K.batchnorm_backward(x32, y, g32, m, r, dy32, act)
        want = K.batchnorm_backward_reference(x, yr, g32, mr, rr, dy32, act)
        for g, w in zip(got, want):
            assert g.dtype == np.float32
            np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3 * np.abs(w).max())


def test_non_contiguous_and_read_only(rng):
    x, gamma, beta, dy, rm, rv = _inputs(rng, (6, 8, 10))
    want_f = K.batchnorm_forward_train(x[:, ::2, ::2].copy(), gamma[::2].copy(),
                                       beta[::2].copy(), EPS, K.RELU)
    xs, gs, bs = x[:, ::2, ::2], gamma[::2], beta[::2]
    xs.flags.writeable = False
    got_f = K.batchnorm_forward_train(xs, gs, bs, EPS, K.RELU)
    for g, w in zip(got_f, want_f):       # another compiled layout: same values up to rounding
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-13)
    y, m, r = want_f
    want_b = K.batchnorm_backward(xs.copy(), y, gs.copy(), m, r, dy[:, ::2, ::2].copy(), K.RELU)
    got_b = K.batchnorm_backward(xs, y, gs, m, r, dy[:, ::2, ::2], K.RELU)
    for g, w in zip(got_b, want_b):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def _run(x, gamma, beta, dy, rm, rv):
    out = []
    for act in (K.NONE, K.RELU):
        y, mean, invstd = K.batchnorm_forward_train(x, gamma, beta, EPS, act)
        out += [y, mean, invstd, *K.batchnorm_backward(x, y, gamma, mean, invstd, dy, act)]
        ye = K.batchnorm_forward_eval(x, gamma, beta, rm, rv, EPS, act)
        out += [ye, *K.batchnorm_backward_eval(x, ye, gamma, rm, rv, EPS, dy, act)]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bit_identical_across_runs_and_threads(rng, dtype):
    args = _inputs(rng, (33, 7, 197), dtype)
    assert args[0].size >= K.GRAIN
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        first = _run(*args)
        again = _run(*args)
        numba.set_num_threads(1)
        one = _run(*args)
    finally:
        numba.set_num_threads(old)
    x, gamma, beta = args[:3]
    serial = K.batchnorm_forward_train.serial(x, gamma, beta, EPS, K.NONE)
    for a, b, c in zip(first, again, one):
        assert a.tobytes() == b.tobytes() == c.tobytes()
    for a, b in zip(first[:3], serial):
        assert a.tobytes() == b.tobytes()


def test_running_stats(rng):
    x, gamma, beta, _, rm, rv = _inputs(rng, (4, 3, 5))
    _, mean, invstd = K.batchnorm_forward_train(x, gamma, beta, EPS, K.NONE)
    nm, nv = K.batchnorm_running_stats(rm, rv, mean, invstd, EPS, 0.1, 20)
    np.testing.assert_allclose(nm, 0.9 * rm + 0.1 * x.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(nv, 0.9 * rv + 0.1 * x.var(axis=(0, 2), ddof=1), rtol=1e-9)
    assert nm is not rm and nv is not rv


def test_constant_channel_gives_beta(rng):
    x = np.full((4, 2, 3), 7.0)
    gamma, beta = np.array([2.0, -1.0]), np.array([0.5, -0.25])
    y, mean, invstd = K.batchnorm_forward_train(x, gamma, beta, EPS, K.NONE)
    np.testing.assert_array_equal(y, np.broadcast_to(beta[None, :, None], x.shape))
    np.testing.assert_array_equal(mean, [7.0, 7.0])
