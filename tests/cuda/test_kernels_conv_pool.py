"""kernels.cuda.{conv, pool} against their kernels.cpu twins (float32, 1e-5 relative, dtypes
asserted, no host transfers inside a launcher), and a whole CNN training step on device arrays
against the same step on the CPU."""
import numpy as np
import pytest

from dlkit import device

OK, WHY = device.available()
if not OK:
    pytest.skip(WHY, allow_module_level=True)

from numba import cuda  # noqa: E402

from dlkit import layers as L  # noqa: E402
from dlkit import losses, optim, random, tree  # noqa: E402
from kernels.cpu import conv as CC  # noqa: E402
from kernels.cpu import pool as CP  # noqa: E402
from kernels.cuda import conv as GC  # noqa: E402
from kernels.cuda import pool as GP  # noqa: E402

F32 = np.float32


def dev(*arrays):
    return tuple(cuda.to_device(np.ascontiguousarray(a)) for a in arrays)


def close(got, want, rtol=1e-5, dtype=F32):
    g = got.copy_to_host()
    assert g.dtype == np.dtype(dtype) and g.shape == want.shape, (g.dtype, g.shape, want.shape)
    scale = max(float(np.max(np.abs(want))), 1e-30) if want.size else 1.0
    np.testing.assert_allclose(g, want, rtol=rtol, atol=rtol * scale)


def out_size(n, k, s, p0, p1, d=1):
    return (n + p0 + p1 - d * (k - 1) - 1) // s + 1


# (N, C, H, W, C_out, KH, KW, sh, sw, pt, pl, pb, pr, dh, dw, groups, act)
CONV = [
    (1, 1, 5, 5, 1, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1, CC.ACT_NONE),          # batch 1, 1 channel
    (2, 3, 6, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, CC.ACT_RELU),          # "same", > 1 K slice
    (2, 4, 7, 6, 6, 3, 2, 2, 1, 1, 0, 1, 0, 1, 2, 2, CC.ACT_TANH),          # groups, dilation
    (1, 3, 5, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3, CC.ACT_SIGMOID),       # depthwise
    (3, 2, 9, 8, 5, 3, 3, 2, 2, 1, 1, 0, 2, 1, 1, 1, CC.ACT_RELU),          # stride 2, asymmetric
    (1, 2, 5, 3, 70, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, CC.ACT_NONE),         # > 64 channels, 1x1
]


@pytest.mark.parametrize("case", CONV, ids=[str(i) for i in range(len(CONV))])
def test_conv2d(rng, transfers, case):
    N, C, H, W, Co, KH, KW, sh, sw, pt, pl, pb, pr, dh, dw, groups, act = case
    OH, OW = out_size(H, KH, sh, pt, pb, dh), out_size(W, KW, sw, pl, pr, dw)
    x = rng.standard_normal((N, C, H, W)).astype(F32)
    Wt = rng.standard_normal((Co, C // groups, KH, KW)).astype(F32)
    b = rng.standard_normal(Co).astype(F32)
    y = CC.conv2d_forward(x, Wt, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act)
    dy = rng.standard_normal(y.shape).astype(F32)
    xd, Wd, bd, yd_cpu, dyd = dev(x, Wt, b, y, dy)
    transfers.reset()
    yd = GC.conv2d_forward(xd, Wd, bd, sh, sw, pt, pl, dh, dw, groups, OH, OW, act)
    got = GC.conv2d_backward(xd, Wd, yd_cpu, dyd, sh, sw, pt, pl, dh, dw, groups, act, True)
    assert (transfers.h2d, transfers.d2h, transfers.implicit) == (0, 0, 0), transfers
    close(yd, y)
    want = CC.conv2d_backward(x, Wt, y, dy, sh, sw, pt, pl, dh, dw, groups, act, True)
    for g, w in zip(got, want):
        close(g, w)


def test_conv2d_entry_points_and_no_dx(rng):
    x = rng.standard_normal((2, 2, 4, 4)).astype(F32)
    Wt = rng.standard_normal((3, 2, 2, 2)).astype(F32)
    b = np.zeros(3, F32)
    y = CC.conv2d_forward(x, Wt, b, 1, 1, 0, 0, 1, 1, 1, 3, 3, CC.ACT_NONE)
    args = dev(x, Wt, b)
    for f in (GC.conv2d_forward_direct, GC.conv2d_forward_im2col):
        close(f(*args, 1, 1, 0, 0, 1, 1, 1, 3, 3, CC.ACT_NONE), y)
    dy = rng.standard_normal(y.shape).astype(F32)
    want = CC.conv2d_backward(x, Wt, y, dy, 1, 1, 0, 0, 1, 1, 1, CC.ACT_NONE, False)
    for f in (GC.conv2d_backward, GC.conv2d_backward_direct, GC.conv2d_backward_im2col):
        dx, dW, db = f(*dev(x, Wt, y, dy), 1, 1, 0, 0, 1, 1, 1, CC.ACT_NONE, False)
        assert dx.shape == (0, 2, 4, 4) and dx.dtype == F32
        close(dW, want[1])
        close(db, want[2])
    assert GC.conv2d_algorithm(1, 3, 3, 1, 1, 1) == CC.conv2d_algorithm(1, 3, 3, 1, 1, 1)


# (N, C, H, W, KH, KW, sh, sw, pt, pl, pb, pr)
POOL = [
    (1, 1, 5, 5, 2, 2, 2, 2, 0, 0, 0, 0),       # 2x2/2 on an odd size: a row and column left out
    (2, 3, 7, 6, 3, 3, 2, 2, 1, 1, 1, 1),       # padded, overlapping windows
    (1, 2, 5, 7, 3, 2, 1, 2, 1, 0, 1, 1),       # asymmetric
]


@pytest.mark.parametrize("case", POOL, ids=[str(i) for i in range(len(POOL))])
def test_maxpool2d(rng, transfers, case):
    N, C, H, W, KH, KW, sh, sw, pt, pl, pb, pr = case
    OH, OW = out_size(H, KH, sh, pt, pb), out_size(W, KW, sw, pl, pr)
    x = rng.integers(-2, 3, (N, C, H, W)).astype(F32)      # many ties: first max must win
    x.reshape(-1)[[3, 10]] = np.nan                           # the first NaN wins
    arg = np.empty((N, C, OH, OW), np.uint8)
    y = CP.maxpool2d_forward(x, KH, KW, sh, sw, pt, pl, OH, OW, arg)
    dy = rng.standard_normal(y.shape).astype(F32)
    xd, dyd = dev(x, dy)
    argd = cuda.device_array(arg.shape, np.uint8)
    transfers.reset()
    yd = GP.maxpool2d_forward(xd, KH, KW, sh, sw, pt, pl, OH, OW, argd)
    dx = GP.maxpool2d_backward(dyd, argd, KH, KW, sh, sw, pt, pl, H, W)
    assert (transfers.h2d, transfers.d2h, transfers.implicit) == (0, 0, 0), transfers
    g = yd.copy_to_host()
    assert g.dtype == F32
    np.testing.assert_array_equal(g, y)                      # NaN positions included
    a = argd.copy_to_host()
    assert a.dtype == np.uint8
    np.testing.assert_array_equal(a, arg)
    close(dx, CP.maxpool2d_backward(dy, arg, KH, KW, sh, sw, pt, pl, H, W))


def test_maxpool2d_int32_argmax(rng):
    x = rng.standard_normal((1, 1, 17, 16)).astype(F32)
    arg = np.empty((1, 1, 1, 1), np.int32)
    y = CP.maxpool2d_forward(x, 17, 16, 1, 1, 0, 0, 1, 1, arg)
    argd = cuda.device_array((1, 1, 1, 1), np.int32)
    close(GP.maxpool2d_forward(*dev(x), 17, 16, 1, 1, 0, 0, 1, 1, argd), y)
    a = argd.copy_to_host()
    assert a.dtype == np.int32 and a[0, 0, 0, 0] == arg[0, 0, 0, 0]


@pytest.mark.parametrize("case", POOL, ids=[str(i) for i in range(len(POOL))])
@pytest.mark.parametrize("include_pad", [True, False])
def test_avgpool2d(rng, transfers, case, include_pad):
    N, C, H, W, KH, KW, sh, sw, pt, pl, pb, pr = case
    OH, OW = out_size(H, KH, sh, pt, pb), out_size(W, KW, sw, pl, pr)
    x = rng.standard_normal((N, C, H, W)).astype(F32)
    y = CP.avgpool2d_forward(x, KH, KW, sh, sw, pt, pl, OH, OW, include_pad)
    dy = rng.standard_normal(y.shape).astype(F32)
    xd, dyd = dev(x, dy)
    transfers.reset()
    yd = GP.avgpool2d_forward(xd, KH, KW, sh, sw, pt, pl, OH, OW, include_pad)
    dx = GP.avgpool2d_backward(dyd, KH, KW, sh, sw, pt, pl, H, W, include_pad)
    assert (transfers.h2d, transfers.d2h, transfers.implicit) == (0, 0, 0), transfers
    close(yd, y)
    close(dx, CP.avgpool2d_backward(dy, KH, KW, sh, sw, pt, pl, H, W, include_pad))


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 5, 6, 7)])
def test_global_avgpool2d(rng, transfers, shape):
    x = rng.standard_normal(shape).astype(F32)
    dy = rng.standard_normal(shape[:2]).astype(F32)
    xd, dyd = dev(x, dy)
    transfers.reset()
    y = GP.global_avgpool2d_forward(xd)
    dx = GP.global_avgpool2d_backward(dyd, shape[2], shape[3])
    assert (transfers.h2d, transfers.d2h, transfers.implicit) == (0, 0, 0), transfers
    close(y, CP.global_avgpool2d_forward(x))
    close(dx, CP.global_avgpool2d_backward(dy, shape[2], shape[3]))


def test_cpu_and_cuda_conv_pool_names_match():
    import inspect
    for cpu, gpu in ((CC, GC), (CP, GP)):
        for name in dir(cpu):
            if name.startswith("_") or not callable(getattr(cpu, name)) or \
                    name in ("njit", "prange"):
                continue
            f = getattr(cpu, name)
            if not (name.endswith(("_forward", "_backward", "_direct", "_im2col", "_winograd"))
                    or name == "conv2d_algorithm"):
                continue
            assert hasattr(gpu, name), f"{gpu.__name__} lacks {name}"
            pf = getattr(f, "py_func", f)
            assert (list(inspect.signature(pf).parameters)
                    == list(inspect.signature(getattr(gpu, name)).parameters)), name


# ------------------------------------------------------------------ a whole CNN training step
def _cnn_step(params, state, x, y, opt, arg_alloc):
    """conv 3x3 (fused relu, "same") -> maxpool 2x2 -> flatten -> Dense -> softmax CE -> Adam,
    each kernel module taken from device.kernels, so the same code runs on either backend."""
    Wc, bc = params["conv"]["W"], params["conv"]["b"]
    N, C, H, W = x.shape
    KC = device.kernels("conv", x, Wc, bc)
    KP = device.kernels("pool", x)
    a = KC.conv2d_forward(x, Wc, bc, 1, 1, 1, 1, 1, 1, 1, H, W, CC.ACT_RELU)
    arg = arg_alloc((N, Wc.shape[0], H // 2, W // 2))
    p = KP.maxpool2d_forward(a, 2, 2, 2, 2, 0, 0, H // 2, W // 2, arg)
    flat = p.reshape(N, -1)
    dense = L.Dense(params["fc"]["b"].shape[0])
    logits, cache = dense.forward(params["fc"], flat)
    loss, dlogits = losses.softmax_cross_entropy(logits, y)
    dflat, gfc = dense.backward(params["fc"], cache, dlogits)
    dp = KP.maxpool2d_backward(dflat.reshape(p.shape), arg, 2, 2, 2, 2, 0, 0, H, W)
    _, dWc, dbc = KC.conv2d_backward(x, Wc, a, dp, 1, 1, 1, 1, 1, 1, 1, CC.ACT_RELU, False)
    grads = {"conv": {"W": dWc, "b": dbc}, "fc": gfc}
    updates, state = opt.update(grads, state, params)
    return optim.apply_updates(params, updates), state, loss


def test_cnn_step_matches_cpu_without_host_copies(rng, transfers):
    N, C, H, W, F, classes = 3, 2, 6, 6, 4, 5
    params = {"conv": {"W": (rng.standard_normal((F, C, 3, 3)) * 0.3).astype(F32),
                       "b": (rng.standard_normal(F) * 0.1).astype(F32)},
              "fc": L.Dense(classes).init(random.key(3), (F * 9,))[1]}
    opt = optim.adam(1e-2)
    batches = [(rng.standard_normal((N, C, H, W)).astype(F32), rng.integers(0, classes, N))
               for _ in range(1)]       # two steps through the layers: test_layers.py
    want, state = params, opt.init(params)
    want_loss = []
    for x, y in batches:
        want, state, loss = _cnn_step(want, state, x, y, opt,
                                      lambda s: np.empty(s, np.uint8))
        want_loss.append(loss)
    got = device.to_device(params)
    state = opt.init(got)
    got_loss = []
    for x, y in batches:
        xd, yd = device.to_device((x, y))
        transfers.reset()
        got, state, loss = _cnn_step(got, state, xd, yd, opt,
                                     lambda s: cuda.device_array(s, np.uint8))
        assert (transfers.h2d, transfers.d2h, transfers.implicit) == (0, 1, 0), transfers
        got_loss.append(loss)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    host = device.to_host(got)
    for k, w in tree.flatten(want).items():
        g = tree.flatten(host)[k]
        assert g.dtype == F32
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * np.abs(w).max(), err_msg=k)
