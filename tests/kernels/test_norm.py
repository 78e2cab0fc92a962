"""Layer-norm kernels (kernels.cpu.norm) against their NumPy references, central differences,
float32, odd layouts, thread counts and PyTorch."""
import numba
import numpy as np
import pytest

from conftest import need
from kernels.cpu import norm as K

SHAPES = [(1, 1), (1, 7), (5, 1), (3, 13), (17, 31), (257, 131)]     # the last runs in parallel


def _inputs(rng, rows, D, dtype=np.float64, shift=0.0):
    x = rng.standard_normal((rows, D)) * 2 + shift
    gamma, beta = rng.standard_normal(D), rng.standard_normal(D)
    dy = rng.standard_normal((rows, D))
    return tuple(a.astype(dtype) for a in (x, gamma, beta, dy))


def test_parallel_build_is_exercised():
    assert SHAPES[-1][0] * SHAPES[-1][1] >= K.GRAIN > 17 * 31


@pytest.mark.parametrize("rows,D", SHAPES)
def test_matches_reference(rng, rows, D):
    x, gamma, beta, dy = _inputs(rng, rows, D, shift=3.0)
    y, mean, rstd = K.layernorm_forward(x, gamma, beta, 1e-5)
    yr, mr, rr = K.layernorm_forward_reference(x, gamma, beta, 1e-5)
    for got, want in ((y, yr), (mean, mr), (rstd, rr)):
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    got = K.layernorm_backward(x, gamma, mean, rstd, dy)
    want = K.layernorm_backward_reference(x, gamma, mr, rr, dy)
    for g, w in zip(got, want):
        assert g.dtype == np.float64 and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-11)


def _loss(x, gamma, beta, R, eps):
    return float((K.layernorm_forward(x, gamma, beta, eps)[0] * R).sum())


@pytest.mark.parametrize("rows,D", [(1, 1), (1, 5), (3, 7), (2, 11)])
def test_central_differences(rng, rows, D):
    """Every element of dx, dgamma, dbeta against float64 central differences of sum(y R)."""
    eps = 1e-3                         # a visible eps, so D=1 (var 0) has a nonzero rstd
    x, gamma, beta, R = _inputs(rng, rows, D)
    _, mean, rstd = K.layernorm_forward(x, gamma, beta, eps)
    dx, dgamma, dbeta = K.layernorm_backward(x, gamma, mean, rstd, R)
    h = 1e-6
    for arr, grad in ((x, dx), (gamma, dgamma), (beta, dbeta)):
        num = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + h
            up = _loss(x, gamma, beta, R, eps)
            arr[i] = old - h
            down = _loss(x, gamma, beta, R, eps)
            arr[i] = old
            num[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_d1_normalises_to_beta(rng, dtype):
    x, gamma, beta, dy = _inputs(rng, 6, 1, dtype)
    y, mean, rstd = K.layernorm_forward(x, gamma, beta, 1e-5)
    np.testing.assert_array_equal(y[:, 0], np.full(6, beta[0]))
    dx = K.layernorm_backward(x, gamma, mean, rstd, dy)[0]
    np.testing.assert_array_equal(dx, np.zeros_like(dx))


@pytest.mark.parametrize("rows,D", [(3, 13), (257, 131)])
def test_float32_agrees_with_float64(rng, rows, D):
    x, gamma, beta, dy = _inputs(rng, rows, D, shift=100.0)     # a large mean: two passes
    x32, g32, b32, dy32 = (a.astype(np.float32) for a in (x, gamma, beta, dy))
    want = K.layernorm_forward(x32.astype(np.float64), g32.astype(np.float64),
                               b32.astype(np.float64), 1e-5)
    got = K.layernorm_forward(x32, g32, b32, 1e-5)
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5 * np.abs(w).max())
    want_b = K.layernorm_backward(x32.astype(np.float64), g32.astype(np.float64), want[1],
                                  want[2], dy32.astype(np.float64))
    got_b = K.layernorm_backward(x32, g32, got[1], got[2], dy32)
    for g, w in zip(got_b, want_b):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())


def test_non_contiguous_and_read_only(rng):
    x, gamma, beta, dy = _inputs(rng, 40, 30)
    want = K.layernorm_forward(x[::2, ::3], gamma[::3], beta[::3], 1e-5)
    xs, gs, bs = (np.ascontiguousarray(a) for a in (x[::2, ::3], gamma[::3], beta[::3]))
    for g, w in zip(want, K.layernorm_forward(xs, gs, bs, 1e-5)):
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-13)   # other vector code
    ro = [a.copy() for a in (xs, gs, bs)]
    for a in ro:
        a.flags.writeable = False
    for g, w in zip(K.layernorm_forward(*ro, 1e-5), K.layernorm_forward(xs, gs, bs, 1e-5)):
        np.testing.assert_array_equal(g, w)
    mean, rstd = want[1], want[2]
    ref = K.layernorm_backward(xs, gs, mean, rstd, np.ascontiguousarray(dy[::2, ::3]))
    got = K.layernorm_backward(x[::2, ::3], gamma[::3], mean, rstd, dy[::2, ::3])
    for g, w in zip(got, ref):
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-13)
    dyr = np.ascontiguousarray(dy[::2, ::3])
    dyr.flags.writeable = False
    for g, w in zip(K.layernorm_backward(ro[0], ro[1], mean, rstd, dyr), ref):
        np.testing.assert_array_equal(g, w)
    assert ro[0].tobytes() == xs.tobytes()          # inputs untouched


def _run(x, gamma, beta, dy):
    y, mean, rstd = K.layernorm_forward(x, gamma, beta, 1e-5)
    return (y, mean, rstd) + tuple(K.layernorm_backward(x, gamma, mean, rstd, dy))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bit_identical_across_runs_and_threads(rng, dtype):
    x, gamma, beta, dy = _inputs(rng, 1031, 67, dtype)
    assert x.size >= K.GRAIN and K._n_chunks(1031, 67) > 1
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        first = _run(x, gamma, beta, dy)
        again = _run(x, gamma, beta, dy)
        numba.set_num_threads(1)
        one = _run(x, gamma, beta, dy)
    finally:
        numba.set_num_threads(old)
    serial = (K.layernorm_forward.serial(x, gamma, beta, 1e-5),)
    for a, b, c in zip(first, again, one):
        assert a.tobytes() == b.tobytes() == c.tobytes()
    for a, b in zip(first[:3], serial[0]):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("rows,D", [(1, 1), (6, 9), (64, 256)])
def test_agrees_with_torch(rng, rows, D):
    torch = need("torch")
    x, gamma, beta, dy = _inputs(rng, rows, D, shift=1.0)
    xt, gt, bt = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, gamma, beta))
    yt = torch.nn.functional.layer_norm(xt, (D,), gt, bt, 1e-5)
    yt.backward(torch.from_numpy(dy))
    y, mean, rstd = K.layernorm_forward(x, gamma, beta, 1e-5)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    got = K.layernorm_backward(x, gamma, mean, rstd, dy)
    for g, w in zip(got, (xt.grad, gt.grad, bt.grad)):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-9, atol=1e-9)
