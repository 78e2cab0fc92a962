"""Pooling kernels (kernels.cpu.pool) against plain-NumPy float64 references, finite
differences, float32 vs float64, PyTorch (when installed), the documented tie and NaN rules,
and bit-identical repeats."""
import numba
import numpy as np
import pytest

from dlkit import gradcheck
from dlkit import layers as L
from kernels.cpu import pool as P


# ------------------------------------------------------------------ plain-NumPy reference

def _padded(x, p, fill):
    N, C, H, W = x.shape
    xp = np.full((N, C, H + 2 * p[0], W + 2 * p[1]), fill)
    xp[:, :, p[0]:p[0] + H, p[1]:p[1] + W] = x
    return xp


def _out(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def ref_maxpool(x, k, s, p):
    """(y, arg, dx_fn): window maxima, window-local first-argmax, and the backward."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    OH, OW = _out(H, k[0], s[0], p[0]), _out(W, k[1], s[1], p[1])
    xp = _padded(x, p, -np.inf)
    y = np.empty((N, C, OH, OW))
    arg = np.empty((N, C, OH, OW), np.int64)
    for oh in range(OH):
        for ow in range(OW):
            win = xp[:, :, oh * s[0]:oh * s[0] + k[0], ow * s[1]:ow * s[1] + k[1]]
            flat = win.reshape(N, C, -1)
            a = flat.argmax(axis=2)                # numpy: the first maximum (or first NaN)
            arg[:, :, oh, ow] = a
            y[:, :, oh, ow] = np.take_along_axis(flat, a[..., None], 2)[..., 0]

    def backward(dy):
        dxp = np.zeros_like(xp)
        for oh in range(OH):
            for ow in range(OW):
                kh, kw = np.divmod(arg[:, :, oh, ow], k[1])
                for n in range(N):
                    for c in range(C):
                        dxp[n, c, oh * s[0] + kh[n, c], ow * s[1] + kw[n, c]] += dy[n, c, oh, ow]
        return dxp[:, :, p[0]:p[0] + H, p[1]:p[1] + W]

    return y, arg, backward


def ref_avgpool(x, k, s, p, include_pad):
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    OH, OW = _out(H, k[0], s[0], p[0]), _out(W, k[1], s[1], p[1])
    xp = _padded(x, p, 0.0)
    ones = _padded(np.ones((1, 1, H, W)), p, 0.0)
    y = np.empty((N, C, OH, OW))
    div = np.empty((OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            sl = (slice(None), slice(None), slice(oh * s[0], oh * s[0] + k[0]),
                  slice(ow * s[1], ow * s[1] + k[1]))
            div[oh, ow] = k[0] * k[1] if include_pad else ones[sl].sum()
            y[:, :, oh, ow] = xp[sl].sum(axis=(2, 3)) / div[oh, ow]

    def backward(dy):
        dxp = np.zeros_like(xp)
        for oh in range(OH):
            for ow in range(OW):
                dxp[:, :, oh * s[0]:oh * s[0] + k[0], ow * s[1]:ow * s[1] + k[1]] += \
                    (dy[:, :, oh, ow] / div[oh, ow])[:, :, None, None]
        return dxp[:, :, p[0]:p[0] + H, p[1]:p[1] + W]

    return y, backward


def rel_err(a, r):
    return float(np.max(np.abs(np.asarray(a, np.float64) - r)) / max(1e-30, np.max(np.abs(r))))


def distinct(rng, shape):
    """Values at least 0.01 apart (finite differences never flip an argmax)."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 - 1.0)


def configs(rng, n):
    out = [((2, 2), (2, 2), (0, 0), (3, 4, 26, 26)),      # the fast path, even sizes
           ((2, 2), (2, 2), (0, 0), (2, 3, 7, 9)),        # fast path, odd sizes (last row/col)
           ((3, 3), (2, 2), (1, 1), (2, 2, 9, 7)),        # overlapping, padded
           ((3, 2), (1, 2), (1, 0), (1, 3, 5, 8)),        # unequal window / stride
           ((1, 1), (1, 1), (0, 0), (2, 2, 3, 3))]
    for _ in range(n):
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        p = (int(rng.integers(0, k[0] // 2 + 1)), int(rng.integers(0, k[1] // 2 + 1)))
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 4)),
                 int(rng.integers(max(1, k[0] - 2 * p[0]), 12)),
                 int(rng.integers(max(1, k[1] - 2 * p[1]), 12)))
        out.append((k, s, p, shape))
    return out


def run_max(x, k, s, p, dy=None):
    H, W = x.shape[2:]
    OH, OW = _out(H, k[0], s[0], p[0]), _out(W, k[1], s[1], p[1])
    arg = np.empty((x.shape[0], x.shape[1], OH, OW), np.uint8 if k[0] * k[1] <= 256 else np.int32)
    y = P.maxpool2d_forward(x, k[0], k[1], s[0], s[1], p[0], p[1], OH, OW, arg)
    if dy is None:
        return y, arg
    return y, arg, P.maxpool2d_backward(dy, arg, k[0], k[1], s[0], s[1], p[0], p[1], H, W)


def run_avg(x, k, s, p, cip, dy=None):
    H, W = x.shape[2:]
    OH, OW = _out(H, k[0], s[0], p[0]), _out(W, k[1], s[1], p[1])
    y = P.avgpool2d_forward(x, k[0], k[1], s[0], s[1], p[0], p[1], OH, OW, cip)
    if dy is None:
        return y
    return y, P.avgpool2d_backward(dy, k[0], k[1], s[0], s[1], p[0], p[1], H, W, cip)


# ------------------------------------------------------------------------------- tests

def test_maxpool_matches_reference():
    rng = np.random.default_rng(0)
    for k, s, p, shape in configs(rng, 25):
        x = distinct(rng, shape)
        y_ref, arg_ref, bwd = ref_maxpool(x, k, s, p)
        dy = rng.standard_normal(y_ref.shape)
        dx_ref = bwd(dy)
        for dtype, tol in ((np.float64, 0.0), (np.float32, 1e-6)):
            y, arg, dx = run_max(x.astype(dtype), k, s, p, dy.astype(dtype))
            np.testing.assert_array_equal(arg, arg_ref, err_msg=f"{k} {s} {p} {shape}")
            assert rel_err(y, y_ref) <= tol and rel_err(dx, dx_ref) <= tol, (k, s, p, shape)


@pytest.mark.parametrize("include_pad", [True, False])
def test_avgpool_matches_reference(include_pad):
    rng = np.random.default_rng(1)
    for k, s, p, shape in configs(rng, 20):
        x = rng.standard_normal(shape)
        y_ref, bwd = ref_avgpool(x, k, s, p, include_pad)
        dy = rng.standard_normal(y_ref.shape)
        dx_ref = bwd(dy)
        for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
            y, dx = run_avg(x.astype(dtype), k, s, p, include_pad, dy.astype(dtype))
            assert y.dtype == dx.dtype == dtype
            assert rel_err(y, y_ref) < tol and rel_err(dx, dx_ref) < tol, (k, s, p, shape)


def test_global_avgpool_matches_reference():
    rng = np.random.default_rng(2)
    for shape in ((1, 1, 1, 1), (3, 5, 7, 9), (2, 4, 13, 13)):
        x = rng.standard_normal(shape)
        dy = rng.standard_normal(shape[:2])
        for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
            y = P.global_avgpool2d_forward(x.astype(dtype))
            dx = P.global_avgpool2d_backward(dy.astype(dtype), shape[2], shape[3])
            assert rel_err(y, x.mean(axis=(2, 3))) < tol
            ref = np.broadcast_to(dy[:, :, None, None] / (shape[2] * shape[3]), shape)
            assert rel_err(dx, ref) < tol


def test_max_tie_rule_first_maximum_in_row_major_order():
    """Ties go to the first maximum in row-major order within the window (documented)."""
    x = np.array([[[[5., 5., 1., 7.],
                    [5., 5., 7., 7.],
                    [0., 2., 3., 3.],
                    [2., 1., 3., 1.]]]])
    for dtype in (np.float64, np.float32):
        dy = np.array([[[[1., 2.], [3., 4.]]]], dtype)
        y, arg, dx = run_max(x.astype(dtype), (2, 2), (2, 2), (0, 0), dy)
        np.testing.assert_array_equal(y[0, 0], [[5, 7], [2, 3]])
        np.testing.assert_array_equal(arg[0, 0], [[0, 1], [1, 0]])
        np.testing.assert_array_equal(dx[0, 0], [[1, 0, 0, 2],
                                                 [0, 0, 0, 0],
                                                 [0, 3, 4, 0],
                                                 [0, 0, 0, 0]])
    # the general path (overlapping windows) follows the same rule ...
    y, arg, dx = run_max(np.ones((1, 1, 3, 3)), (2, 2), (1, 1), (0, 0), np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(arg[0, 0], [[0, 0], [0, 0]])
    np.testing.assert_array_equal(dx[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    # ... and an input that is the argmax of several windows gathers all their gradients
    x = np.ones((1, 1, 3, 3))
    x[0, 0, 1, 1] = 9
    y, arg, dx = run_max(x, (2, 2), (1, 1), (0, 0), np.array([[[[1., 2.], [3., 4.]]]]))
    np.testing.assert_array_equal(arg[0, 0], [[3, 2], [1, 0]])
    np.testing.assert_array_equal(dx[0, 0], [[0, 0, 0], [0, 10, 0], [0, 0, 0]])


def test_max_nan_propagates_first_nan_wins():
    x = np.array([[[[1., np.nan, 3., 0.],
                    [np.nan, 2., 5., np.nan],
                    [0., 0., 9., 9.],
                    [0., 1., 1., 0.]]]])
    for k, s in (((2, 2), (2, 2)), ((3, 3), (1, 1))):
        y, arg = run_max(x, k, s, (0, 0))
        y_ref, arg_ref, _ = ref_maxpool(x, k, s, (0, 0))
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(arg, arg_ref)
    y, arg = run_max(x, (2, 2), (2, 2), (0, 0))
    assert np.isnan(y[0, 0, 0, 0]) and arg[0, 0, 0, 0] == 1


def test_maxpool_wide_window_uses_int32_indices():
    rng = np.random.default_rng(5)
    x = distinct(rng, (2, 2, 19, 18))
    y_ref, arg_ref, bwd = ref_maxpool(x, (17, 16), (2, 1), (0, 0))
    dy = rng.standard_normal(y_ref.shape)
    y, arg, dx = run_max(x, (17, 16), (2, 1), (0, 0), dy)
    assert arg.dtype == np.int32
    np.testing.assert_array_equal(arg, arg_ref)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_allclose(dx, bwd(dy), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["max", "avg", "avg_exclude_pad", "global"])
def test_gradcheck(kind):
    """float64 central differences through the layers, batch 1, odd sizes, stride/padding
    combinations; max pooling on inputs with distinct values."""
    rng = np.random.default_rng(6)
    cases = [((2, 2), None, 0, (3, 7, 9)), ((3, 3), (2, 2), 1, (2, 9, 7)),
             ((3, 2), (1, 3), (1, 1), (1, 5, 7)), ((2, 3), (3, 1), (1, 0), (2, 7, 5)),
             ((5, 5), 1, 2, (1, 5, 5)), ((3, 3), 3, 0, (1, 3, 3))]
    for k, s, p, in_shape in cases:
        if kind == "max":
            layer = L.MaxPool2D(k, s, p)
        elif kind == "global":
            layer = L.GlobalAvgPool2D()
        else:
            layer = L.AvgPool2D(k, s, p, count_include_pad=(kind == "avg"))
        x = distinct(rng, (1,) + in_shape)
        errs = gradcheck(layer, {}, x, tol=1e-7, max_elems=40)
        assert set(errs) == {"dx"}


def test_bit_identical_repeats_and_thread_counts():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((16, 8, 26, 26)).astype(np.float32)
    before = numba.get_num_threads()
    for k, s, p in (((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1))):
        y, _ = run_max(x, k, s, p)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        outs = [run_max(x, k, s, p, dy) + run_avg(x, k, s, p, False, dy) for _ in range(2)]
        try:
            numba.set_num_threads(1)
            outs.append(run_max(x, k, s, p, dy) + run_avg(x, k, s, p, False, dy))
        finally:
            numba.set_num_threads(before)
        for o in outs[1:]:
            for a, b in zip(outs[0], o):
                assert a.tobytes() == b.tobytes()


def test_matches_pytorch(need):
    torch = need("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(9)
    for k, s, p, shape in configs(rng, 12):
        x = distinct(rng, shape)
        dy = None
        xt = torch.tensor(x, requires_grad=True)
        yt = F.max_pool2d(xt, k, s, p)
        dy = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.tensor(dy))
        y, _, dx = run_max(x, k, s, p, dy)
        np.testing.assert_array_equal(y, yt.detach().numpy())
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
        for cip in (True, False):
            xt = torch.tensor(x, requires_grad=True)
            yt = F.avg_pool2d(xt, k, s, p, count_include_pad=cip)
            yt.backward(torch.tensor(dy))
            y, dx = run_avg(x, k, s, p, cip, dy)
            np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
