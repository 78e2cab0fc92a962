"""kernels.cuda.{dense, activations, losses, optim} against their kernels.cpu twins.

Small shapes (the simulator runs every CUDA thread as a Python thread), chosen to cross every
tile and block boundary: batch 1, sizes that are not multiples of the GEMM tile (64x64, K
slices of 16), of the 32-lane row groups or of the 256-thread blocks, and one elementwise size
beyond the simulator's grid (16 blocks x 256) so the grid-stride loops wrap.  float32 unless
stated, 1e-5 relative; output dtypes asserted explicitly (the simulator does not check them);
every launcher is also checked to make no host transfer.
"""
import numpy as np
import pytest

from dlkit import device

OK, WHY = device.available()
if not OK:
    pytest.skip(WHY, allow_module_level=True)

from numba import cuda  # noqa: E402

from kernels.cpu import activations as CA  # noqa: E402
from kernels.cpu import dense as CD  # noqa: E402
from kernels.cpu import losses as CL  # noqa: E402
from kernels.cpu import optim as CO  # noqa: E402
from kernels.cuda import activations as GA  # noqa: E402
from kernels.cuda import dense as GD  # noqa: E402
from kernels.cuda import losses as GL  # noqa: E402
from kernels.cuda import optim as GO  # noqa: E402

F32 = np.float32


def dev(*arrays):
    out = tuple(cuda.to_device(np.ascontiguousarray(a)) for a in arrays)
    return out if len(out) > 1 else out[0]


def host(a):
    return a.copy_to_host()


def close(got, want, rtol=1e-5, dtype=F32):
    """got (device) equals want (CPU kernel) to rtol, relative to want's scale; dtypes exact."""
    g = host(got) if device.is_device_array(got) else np.asarray(got)
    assert g.dtype == np.dtype(dtype), (g.dtype, dtype)
    assert g.shape == want.shape, (g.shape, want.shape)
    scale = float(np.max(np.abs(want))) if want.size else 1.0
    np.testing.assert_allclose(g, want, rtol=rtol, atol=rtol * max(scale, 1e-30))


def launch(transfers, fn, *args):
    """Run a launcher on device args, checking it moves nothing between host and device."""
    transfers.reset()
    out = fn(*args)
    assert (transfers.h2d, transfers.d2h, transfers.implicit) == (0, 0, 0), transfers
    return out


def randn(rng, *shape, dtype=F32):
    return rng.standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------------------ dense
DENSE_SHAPES = [(1, 1, 1), (1, 5, 3), (3, 17, 70), (67, 20, 9)]     # (N, I, O)


DENSE_CASES = [(s, a) for s in DENSE_SHAPES[:-1]
               for a in (CD.ACT_NONE, CD.ACT_RELU, CD.ACT_SIGMOID, CD.ACT_TANH)] \
    + [(DENSE_SHAPES[-1], CD.ACT_RELU)]          # the biggest shape once (simulator time)


@pytest.mark.parametrize("shape,act", DENSE_CASES)
def test_dense_forward_backward(rng, transfers, shape, act):
    N, I, O = shape
    x, W, b, dy = randn(rng, N, I), randn(rng, I, O), randn(rng, O), randn(rng, N, O)
    y = CD.dense_forward(x, W, b, act)
    xd, Wd, bd, dyd = dev(x, W, b, dy)
    yd = launch(transfers, GD.dense_forward, xd, Wd, bd, act)
    close(yd, y)
    want = CD.dense_backward(x, W, y, dy, act, True)
    got = launch(transfers, GD.dense_backward, xd, Wd, dev(y), dyd, act, True)
    for g, w in zip(got, want):
        close(g, w)


def test_dense_backward_without_dx(rng, transfers):
    x, W, dy = randn(rng, 2, 3), randn(rng, 3, 4), randn(rng, 2, 4)
    y = CD.dense_forward(x, W, np.zeros(4, F32), CD.ACT_TANH)
    dx, dW, db = launch(transfers, GD.dense_backward, *dev(x, W, y, dy), CD.ACT_TANH, False)
    assert dx.shape == (0, 3) and dx.dtype == F32
    want = CD.dense_backward(x, W, y, dy, CD.ACT_TANH, False)
    close(dW, want[1])
    close(db, want[2])


def test_dense_float64(rng):
    x, W, b = randn(rng, 5, 19, dtype=np.float64), randn(rng, 19, 3, dtype=np.float64), \
        randn(rng, 3, dtype=np.float64)
    y = CD.dense_forward(x, W, b, CD.ACT_SIGMOID)
    close(GD.dense_forward(*dev(x, W, b), CD.ACT_SIGMOID), y, rtol=1e-12, dtype=np.float64)
    dy = randn(rng, 5, 3, dtype=np.float64)
    got = GD.dense_backward(*dev(x, W, y, dy), CD.ACT_SIGMOID, True)
    for g, w in zip(got, CD.dense_backward(x, W, y, dy, CD.ACT_SIGMOID, True)):
        close(g, w, rtol=1e-12, dtype=np.float64)


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_transposes(rng, ta, tb):
    """Every operand layout of the tiled GEMM, with more than one 16-deep K slice."""
    M, K, N = 3, 37, 5
    A = randn(rng, K, M) if ta else randn(rng, M, K)
    B = randn(rng, N, K) if tb else randn(rng, K, N)
    want = (A.T if ta else A) @ (B.T if tb else B)
    close(GD.gemm(*dev(A, B), ta=ta, tb=tb), want.astype(F32))


def test_dense_backward_is_deterministic(rng):
    x, W, dy = randn(rng, 40, 6), randn(rng, 6, 3), randn(rng, 40, 3)
    y = CD.dense_forward(x, W, np.zeros(3, F32), CD.ACT_NONE)
    args = dev(x, W, y, dy)
    a = [host(t) for t in GD.dense_backward(*args, CD.ACT_NONE, True)]
    b = [host(t) for t in GD.dense_backward(*args, CD.ACT_NONE, True)]
    for u, v in zip(a, b):
        assert np.array_equal(u.view(np.uint32), v.view(np.uint32))


# ------------------------------------------------------------------------------ activations
ACTS = [CA.RELU, CA.SIGMOID, CA.TANH, CA.LEAKY_RELU]


@pytest.mark.parametrize("n", [1, 300])
@pytest.mark.parametrize("act", ACTS)
def test_activation(rng, transfers, n, act):
    x, dy = randn(rng, n), randn(rng, n)
    y = CA.activation_forward(x, act, 0.1)
    xd, dyd = dev(x, dy)
    yd = launch(transfers, GA.activation_forward, xd, act, 0.1)
    close(yd, y)
    dx = launch(transfers, GA.activation_backward, xd, yd, dyd, act, 0.1)
    close(dx, CA.activation_backward(x, y, dy, act, 0.1))


@pytest.mark.parametrize("n", [1, 300])
def test_gelu(rng, transfers, n):
    x, dy = randn(rng, n), randn(rng, n)
    xd, dyd = dev(x, dy)
    close(launch(transfers, GA.gelu_forward, xd), CA.gelu_forward(x))
    close(launch(transfers, GA.gelu_backward, xd, dyd), CA.gelu_backward(x, dy))


def test_activation_grid_stride(rng):
    """More elements than the simulator's grid holds (16 blocks x 256): the loop wraps."""
    n = 16 * 256 + 77
    x = randn(rng, n)
    close(GA.activation_forward(dev(x), CA.TANH, 0.0), CA.activation_forward(x, CA.TANH, 0.0))


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (9, 45), (70, 2)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax(rng, transfers, shape, log):
    x, dy = randn(rng, *shape), randn(rng, *shape)
    y = CA.softmax_forward(x, log)
    xd, dyd = dev(x, dy)
    yd = launch(transfers, GA.softmax_forward, xd, log)
    close(yd, y)
    close(launch(transfers, GA.softmax_backward, yd, dyd, log), CA.softmax_backward(y, dy, log))


@pytest.mark.parametrize("n", [1, 300])
def test_dropout(rng, transfers, n):
    x = randn(rng, n)
    keep = (rng.random(n) >= 0.3).astype(np.uint8)
    y = launch(transfers, GA.dropout_forward, *dev(x, keep), 1 / 0.7)
    close(y, CA.dropout_forward(x, keep, 1 / 0.7))
    assert GA.dropout_backward is GA.dropout_forward


# ------------------------------------------------------------------------------ losses
def _loss_close(stats, loss):
    s = host(stats)
    assert s.dtype == np.float64 and s.shape == (2,)
    assert s[1] == -1
    np.testing.assert_allclose(s[0], loss, rtol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (70, 37)])
@pytest.mark.parametrize("ldtype", [np.int64, np.int32])
def test_softmax_cross_entropy(rng, transfers, shape, ldtype):
    N, C = shape
    z = randn(rng, N, C)
    lab = rng.integers(0, C, N).astype(ldtype)
    loss, d = CL.softmax_cross_entropy(z, lab.astype(np.int64))
    stats, dd = launch(transfers, GL.softmax_cross_entropy, *dev(z, lab))
    _loss_close(stats, loss)
    close(dd, d)


def test_softmax_cross_entropy_flags_first_bad_label(rng):
    z = randn(rng, 6, 4)
    lab = np.array([0, 3, 4, 1, -1, 2])
    stats, d = GL.softmax_cross_entropy(*dev(z, lab))
    assert host(stats)[1] == 2
    assert np.all(host(d)[[2, 4]] == 0)        # never used as an index


@pytest.mark.parametrize("n", [1, 300])
def test_sigmoid_binary_cross_entropy(rng, transfers, n):
    z, t = randn(rng, n) * 3, rng.random(n).astype(F32)
    loss, d = CL.sigmoid_binary_cross_entropy(z, t)
    stats, dd = launch(transfers, GL.sigmoid_binary_cross_entropy, *dev(z, t))
    _loss_close(stats, loss)
    close(dd, d)
    t[min(5, n - 1)] = np.nan
    assert host(GL.sigmoid_binary_cross_entropy(*dev(z, t))[0])[1] == min(5, n - 1)


@pytest.mark.parametrize("n", [1, 300])
def test_mean_squared_error(rng, transfers, n):
    p, t = randn(rng, n), randn(rng, n)
    loss, d = CL.mean_squared_error(p, t)
    stats, dd = launch(transfers, GL.mean_squared_error, *dev(p, t))
    _loss_close(stats, loss)
    close(dd, d)


# ------------------------------------------------------------------------------ optimizers
PEN = [(0.0, 0.0), (0.01, 0.003)]       # (l2, l1)


@pytest.mark.parametrize("n", [1, 300])
@pytest.mark.parametrize("pen", PEN)
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("apply", [False, True])
def test_sgd_update(rng, transfers, n, pen, nesterov, apply):
    g, p, v = randn(rng, n), randn(rng, n), randn(rng, n)
    p[0] = 0.0                           # sign(0) = 0 under the l1 penalty
    want = CO.sgd_update(g, p, v, 0.1, 0.9, nesterov, *pen, apply)
    got = launch(transfers, GO.sgd_update, *dev(g, p, v), 0.1, 0.9, nesterov, *pen, apply)
    for a, b in zip(got, want):
        close(a, b)


@pytest.mark.parametrize("n", [1, 300])
@pytest.mark.parametrize("pen", PEN)
@pytest.mark.parametrize("wd", [0.0, 0.01])
@pytest.mark.parametrize("apply", [False, True])
def test_adam_update(rng, transfers, n, pen, wd, apply):
    g, p, m, v = randn(rng, n), randn(rng, n), randn(rng, n), np.abs(randn(rng, n))
    want = CO.adam_update(g, p, m, v, 1e-3, 0.9, 0.999, 1e-8, 3, wd, *pen, apply)
    got = launch(transfers, GO.adam_update, *dev(g, p, m, v), 1e-3, 0.9, 0.999, 1e-8, 3, wd,
                 *pen, apply)
    for a, b in zip(got, want):
        close(a, b)


@pytest.mark.parametrize("n", [1, 300])
@pytest.mark.parametrize("pen", PEN)
@pytest.mark.parametrize("apply", [False, True])
def test_rmsprop_update(rng, transfers, n, pen, apply):
    g, p, s, b = randn(rng, n), randn(rng, n), np.abs(randn(rng, n)), randn(rng, n)
    want = CO.rmsprop_update(g, p, s, b, 1e-2, 0.99, 1e-8, 0.5, *pen, apply)
    got = launch(transfers, GO.rmsprop_update, *dev(g, p, s, b), 1e-2, 0.99, 1e-8, 0.5, *pen,
                 apply)
    for a, c in zip(got, want):
        close(a, c)


def test_apply_update_and_zeros(rng, transfers):
    p, u = randn(rng, 300), randn(rng, 300)
    close(launch(transfers, GO.apply_update, *dev(p, u)), p + u)
    z = launch(transfers, GO.zeros, (3, 5), F32)
    assert z.shape == (3, 5)
    close(z, np.zeros((3, 5), F32))


def test_nonfinite_flag(transfers):
    arrays = [np.ones((2, 3), F32), np.zeros(5, F32)]
    assert GO.nonfinite_flag(dev(*arrays)).copy_to_host()[0] == 0
    for bad in (np.nan, np.inf, -np.inf):
        a = np.ones(300, F32)
        a[257] = bad
        transfers.reset()
        flag = GO.nonfinite_flag([*dev(*arrays), dev(a)])
        assert transfers.d2h == 0
        got = flag.copy_to_host()
        assert got.dtype == np.uint8 and got[0] == 1


def test_every_cpu_kernel_has_a_cuda_twin():
    """Mirror check for the foundation families: same public names, same parameters."""
    import inspect
    for cpu, gpu in ((CD, GD), (CA, GA), (CL, GL), (CO, GO)):
        for name in dir(cpu):
            f = getattr(cpu, name)
            if name.startswith("_") or not (name.endswith(("_forward", "_backward", "_update"))
                                            or name in ("softmax_cross_entropy",
                                                        "sigmoid_binary_cross_entropy",
                                                        "mean_squared_error")):
                continue
            assert hasattr(gpu, name), f"{gpu.__name__} lacks {name}"
            pf = getattr(f, "py_func", getattr(f, "__wrapped__", f))
            assert (list(inspect.signature(pf).parameters)
                    == list(inspect.signature(getattr(gpu, name)).parameters)), name
        for const in [c for c in dir(cpu) if c.isupper() and not c.startswith("_")
                      and c not in ("GRAIN",)]:
            assert getattr(gpu, const, None) == getattr(cpu, const), (gpu.__name__, const)
