"""kernels.cuda.norm against its kernels.cpu twin, and LayerNorm on device arrays.

Small shapes (the simulator runs every CUDA thread as a Python thread) that cross the 32-lane
row groups, the 4-row blocks, the 256-thread column blocks and the 64-row dgamma/dbeta chunks;
D = 1 and one row included.  Every launcher is checked to make no host transfer.
"""
import numpy as np
import pytest

from dlkit import device

OK, WHY = device.available()
if not OK:
    pytest.skip(WHY, allow_module_level=True)

from numba import cuda  # noqa: E402

from dlkit import layers as L  # noqa: E402
from kernels.cpu import norm as CN  # noqa: E402
from kernels.cuda import norm as GN  # noqa: E402

SHAPES = [(1, 1), (1, 37), (5, 1), (7, 33), (70, 3), (2, 260)]


def _data(rng, rows, D, dtype):
    x = rng.standard_normal((rows, D)) * 2 + 3
    return tuple(a.astype(dtype) for a in (x, rng.standard_normal(D), rng.standard_normal(D),
                                           rng.standard_normal((rows, D))))


def _close(got, want, rtol):
    g = got.copy_to_host()
    assert g.dtype == want.dtype and g.shape == want.shape, (g.dtype, g.shape, want.shape)
    scale = float(np.max(np.abs(want))) if want.size else 1.0
    np.testing.assert_allclose(g, want, rtol=rtol, atol=rtol * max(scale, 1e-30))


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("rows,D", SHAPES)
def test_matches_cpu(rng, transfers, rows, D, dtype, rtol):
    x, gamma, beta, dy = _data(rng, rows, D, dtype)
    want = CN.layernorm_forward(x, gamma, beta, 1e-5)
    dev = [cuda.to_device(a) for a in (x, gamma, beta, dy)]
    transfers.reset()
    got = GN.layernorm_forward(dev[0], dev[1], dev[2], 1e-5)
    for g, w in zip(got, want):
        _close(g, w, rtol)
    want_b = CN.layernorm_backward(x, gamma, want[1], want[2], dy)
    transfers.reset()
    got_b = GN.layernorm_backward(dev[0], dev[1], got[1], got[2], dev[3])
    assert (transfers.h2d, transfers.d2h, transfers.implicit) == (0, 0, 0), transfers
    for g, w in zip(got_b, want_b):
        _close(g, w, rtol * 10)


def test_deterministic(rng):
    x, gamma, beta, dy = (cuda.to_device(a) for a in _data(rng, 70, 5, np.float32))

    def run():
        y, m, r = GN.layernorm_forward(x, gamma, beta, 1e-5)
        return [a.copy_to_host() for a in (y, m, r, *GN.layernorm_backward(x, gamma, m, r, dy))]
    for a, b in zip(run(), run()):
        assert a.tobytes() == b.tobytes()


def test_layer_on_device(rng):
    layer = L.LayerNorm()
    _, params = layer.init(None, (4, 6))
    params = {k: v + rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
    x = rng.standard_normal((2, 4, 6)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y, cache = layer.forward(params, x)
    dx, grads = layer.backward(params, cache, dy)
    pd, xd = device.to_device(params), cuda.to_device(x)
    yd, cd = layer.forward(pd, xd)
    _close(yd, y, 1e-5)
    dxd, gd = layer.backward(pd, cd, cuda.to_device(dy))
    _close(dxd, dx, 1e-4)
    for k in grads:
        _close(gd[k], grads[k], 1e-4)
    with pytest.raises(TypeError, match="mixed host"):
        layer.forward(params, xd)
