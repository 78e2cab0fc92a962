"""kernels.cuda.batchnorm against its kernels.cpu twin, and BatchNorm on device arrays.

Small shapes (the simulator runs every CUDA thread as a Python thread): (N, C) inputs (S = 1),
batch 1 with S > 1, and a channel of more than 256 values (several per thread).  Every launcher
is checked to make no host transfer.
"""
import numpy as np
import pytest

from dlkit import device

OK, WHY = device.available()
if not OK:
    pytest.skip(WHY, allow_module_level=True)

from numba import cuda  # noqa: E402

from dlkit.layers.batchnorm import BatchNorm  # noqa: E402
from kernels.cpu import batchnorm as CB  # noqa: E402
from kernels.cuda import batchnorm as GB  # noqa: E402

SHAPES = [(3, 2, 1), (1, 3, 5), (5, 2, 61)]
EPS = 1e-5


def _data(rng, shape, dtype):
    C = shape[1]
    x = rng.standard_normal(shape) * 2 + 3
    return tuple(a.astype(dtype) for a in (
        x, rng.standard_normal(C), rng.standard_normal(C), rng.standard_normal(shape),
        rng.standard_normal(C), rng.uniform(0.5, 2.0, C)))


def _close(got, want, rtol):
    g = got.copy_to_host()
    assert g.dtype == want.dtype and g.shape == want.shape, (g.dtype, g.shape, want.shape)
    scale = float(np.max(np.abs(want))) if want.size else 1.0
    np.testing.assert_allclose(g, want, rtol=rtol, atol=rtol * max(scale, 1e-30))


@pytest.mark.parametrize("act", [CB.NONE, CB.RELU])
@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_cpu(rng, transfers, shape, dtype, rtol, act):
    x, gamma, beta, dy, rm, rv = host = _data(rng, shape, dtype)
    dev = [cuda.to_device(a) for a in host]
    transfers.reset()
    y, mean, invstd = GB.batchnorm_forward_train(dev[0], dev[1], dev[2], EPS, act)
    back = GB.batchnorm_backward(dev[0], y, dev[1], mean, invstd, dev[3], act)
    ye = GB.batchnorm_forward_eval(dev[0], dev[1], dev[2], dev[4], dev[5], EPS, act)
    back_e = GB.batchnorm_backward_eval(dev[0], ye, dev[1], dev[4], dev[5], EPS, dev[3], act)
    stats = GB.batchnorm_running_stats(dev[4], dev[5], mean, invstd, EPS, 0.1,
                                       shape[0] * shape[2])
    assert (transfers.h2d, transfers.d2h, transfers.implicit) == (0, 0, 0), transfers
    want = CB.batchnorm_forward_train(x, gamma, beta, EPS, act)
    for g, w in zip((y, mean, invstd), want):
        _close(g, w, rtol)
    want_b = CB.batchnorm_backward(x, want[0], gamma, want[1], want[2], dy, act)
    for g, w in zip(back, want_b):
        _close(g, w, rtol * 10)
    want_e = CB.batchnorm_forward_eval(x, gamma, beta, rm, rv, EPS, act)
    _close(ye, want_e, rtol)
    for g, w in zip(back_e, CB.batchnorm_backward_eval(x, want_e, gamma, rm, rv, EPS, dy, act)):
        _close(g, w, rtol * 10)
    for g, w in zip(stats, CB.batchnorm_running_stats(rm, rv, want[1], want[2], EPS, 0.1,
                                                      shape[0] * shape[2])):
        _close(g, w, rtol * 10)


def test_deterministic(rng):
    x, gamma, beta, dy, _, _ = (cuda.to_device(a) for a in _data(rng, (4, 2, 70), np.float32))

    def run():
        y, m, r = GB.batchnorm_forward_train(x, gamma, beta, EPS, CB.RELU)
        out = (y, m, r) + GB.batchnorm_backward(x, y, gamma, m, r, dy, CB.RELU)
        return [a.copy_to_host().tobytes() for a in out]

    assert run() == run()


def test_layer_on_device(rng):
    layer = BatchNorm(activation="relu")
    x, gamma, beta, dy, rm, rv = _data(rng, (3, 2, 2, 3), np.float32)
    params, state = {"gamma": gamma, "beta": beta}, {"mean": rm, "var": rv}
    y, cache, new = layer.forward(params, x, state=state, train=True)
    dx, grads = layer.backward(params, cache, dy)
    dparams, dstate = device.to_device(params), device.to_device(state)
    gy, gcache, gnew = layer.forward(dparams, cuda.to_device(x), state=dstate, train=True)
    gdx, ggrads = layer.backward(dparams, gcache, cuda.to_device(dy))
    _close(gy, y, 1e-5)
    _close(gdx, dx, 1e-4)
    for k in grads:
        _close(ggrads[k], grads[k], 1e-4)
    for k in new:
        _close(gnew[k], new[k], 1e-5)
    ye, _, same = layer.forward(dparams, cuda.to_device(x), state=dstate, train=False)
    assert same is dstate
