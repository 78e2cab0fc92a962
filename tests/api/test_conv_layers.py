"""Conv2D, MaxPool2D, AvgPool2D and GlobalAvgPool2D through the layer API: init shapes agree
with real outputs, bad input raises clear errors before any kernel runs, non-contiguous and
read-only inputs, He initialisation, and a small CNN end to end."""
import warnings

import numpy as np
import pytest

from dlkit import gradcheck, nn, random
from dlkit import layers as L


def conv_cases():
    return [
        (L.Conv2D(4, 3), (1, 28, 28)),
        (L.Conv2D(4, 3, padding="same"), (2, 9, 7)),
        (L.Conv2D(4, (2, 4), padding="same"), (2, 9, 7)),          # even kernel: asymmetric
        (L.Conv2D(4, 3, stride=2, padding="same"), (2, 9, 8)),     # TF rule: ceil(H / s)
        (L.Conv2D(6, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(2, 1)), (3, 11, 9)),
        (L.Conv2D(6, 3, groups=3, padding=1), (3, 5, 5)),           # depthwise x2
        (L.Conv2D(2, 3, padding=((0, 2), (1, 0))), (1, 6, 5)),
        (L.Conv2D(3, (5, 7), padding="valid"), (2, 5, 7)),          # 1x1 output
        (L.Conv2D(3, 1, use_bias=False, activation="relu"), (2, 4, 4)),
    ]


def pool_cases():
    return [
        (L.MaxPool2D(2), (3, 26, 26)),
        (L.MaxPool2D(2), (3, 7, 9)),
        (L.MaxPool2D((3, 2), stride=(2, 1), padding=1), (2, 8, 7)),
        (L.AvgPool2D(3, stride=2, padding=1), (2, 9, 9)),
        (L.AvgPool2D(2, count_include_pad=False), (1, 5, 5)),
        (L.GlobalAvgPool2D(), (4, 5, 3)),
    ]


@pytest.mark.parametrize("case", range(len(conv_cases()) + len(pool_cases())))
def test_init_shape_agrees_with_output(case):
    layer, in_shape = (conv_cases() + pool_cases())[case]
    out_shape, params = layer.init(random.key(case), in_shape)
    x = np.random.default_rng(case).standard_normal((2,) + in_shape).astype(np.float32)
    y, cache = layer.forward(params, x)
    assert y.shape == (2,) + tuple(out_shape) and y.dtype == np.float32
    dx, grads = layer.backward(params, cache, np.ones_like(y))
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert {k: (v.shape, v.dtype) for k, v in grads.items()} == \
        {k: (v.shape, v.dtype) for k, v in params.items()}


def test_same_padding_matches_pytorch_at_stride_1(need):
    torch = need("torch")
    rng = np.random.default_rng(0)
    for k, d in ((3, 1), ((2, 4), 1), (3, 2), ((4, 5), (2, 1))):
        layer = L.Conv2D(3, k, padding="same", dilation=d)
        _, params = layer.init(random.key(1), (2, 9, 8), np.float64)
        x = rng.standard_normal((2, 2, 9, 8))
        y, _ = layer.forward(params, x)
        with warnings.catch_warnings():           # "same" with even kernels: a padded copy
            warnings.simplefilter("ignore", UserWarning)
            yt = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(params["W"]),
                                            torch.tensor(params["b"]), padding="same",
                                            dilation=d)
        np.testing.assert_allclose(y, yt.numpy(), rtol=1e-10, atol=1e-10)


def test_he_uniform_init_and_fans():
    _, p = L.Conv2D(64, 3, groups=2).init(random.key(0), (32, 10, 10))
    W = p["W"]
    assert W.shape == (64, 16, 3, 3) and W.dtype == np.float32
    limit = np.sqrt(6.0 / (16 * 9))                  # fan_in = C_in/groups * KH * KW
    assert np.abs(W).max() <= limit and np.abs(W).max() > 0.9 * limit
    assert abs(W.std() - limit / np.sqrt(3)) < 0.05 * limit
    np.testing.assert_array_equal(p["b"], 0)
    _, p2 = L.Conv2D(64, 3, groups=2).init(random.key(0), (32, 10, 10))
    np.testing.assert_array_equal(p2["W"], W)         # same key, same weights


def test_noncontiguous_and_readonly_inputs():
    rng = np.random.default_rng(3)
    big = rng.standard_normal((4, 6, 11, 14)).astype(np.float32)
    x_nc = big[:, ::2, :, ::2]                        # strided view, shape (4, 3, 11, 7)
    assert not x_nc.flags.c_contiguous
    x_c = np.ascontiguousarray(x_nc)
    x_ro = x_c.copy()
    x_ro.flags.writeable = False
    for layer, in_shape in [(L.Conv2D(4, 3, padding=1), (3, 11, 7)),
                            (L.Conv2D(4, 3, stride=2), (3, 11, 7)),
                            (L.Conv2D(3, 3, groups=3), (3, 11, 7)),
                            (L.MaxPool2D(2), (3, 11, 7)), (L.AvgPool2D(3, 2, 1), (3, 11, 7)),
                            (L.GlobalAvgPool2D(), (3, 11, 7))]:
        _, params = layer.init(random.key(0), in_shape)
        ro_params = {}
        for k, v in params.items():
            ro_params[k] = v.copy()
            ro_params[k].flags.writeable = False
        y, cache = layer.forward(params, x_c)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx, grads = layer.backward(params, cache, dy)
        for xin, pin in ((x_nc, params), (x_ro, ro_params)):
            y2, cache2 = layer.forward(pin, xin)
            dy_t = np.asfortranarray(dy)                # a non-C-contiguous dy too
            dx2, grads2 = layer.backward(pin, cache2, dy_t)
            np.testing.assert_array_equal(y2, y)
            np.testing.assert_array_equal(dx2, dx)
            for k in grads:
                np.testing.assert_array_equal(grads2[k], grads[k])
    assert not x_ro.flags.writeable                   # inputs are left as they were


def test_need_dx_false_returns_none():
    layer = L.Conv2D(2, 3)
    _, params = layer.init(random.key(0), (1, 6, 6))
    y, cache = layer.forward(params, np.ones((2, 1, 6, 6), np.float32))
    dx, grads = layer.backward(params, cache, np.ones_like(y), need_dx=False)
    assert dx is None and set(grads) == {"W", "b"}


def test_use_bias_false_and_algorithm_option():
    """Every algorithm gives the same results through the layer; "auto" picks direct for a
    depthwise layer and Winograd for a 3x3 layer with 9 input channels."""
    rng = np.random.default_rng(4)
    for cout, groups, in_shape, algos in ((3, 3, (3, 8, 8), ("auto", "direct", "im2col")),
                                          (8, 1, (9, 6, 7), ("auto", "winograd", "direct",
                                                             "im2col"))):
        x = rng.standard_normal((2,) + in_shape)
        outs = []
        for algo in algos:
            layer = L.Conv2D(cout, 3, padding="same", groups=groups, use_bias=False,
                             algorithm=algo)
            _, params = layer.init(random.key(0), in_shape, np.float64)
            assert set(params) == {"W"}
            y, cache = layer.forward(params, x)
            outs.append((y,) + layer.backward(params, cache, np.ones_like(y)))
        for y, dx, g in outs[1:]:
            np.testing.assert_allclose(y, outs[0][0], rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(dx, outs[0][1], rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(g["W"], outs[0][2]["W"], rtol=1e-12, atol=1e-12)


def test_small_cnn_end_to_end_gradcheck_and_flatten():
    model = nn.serial(("conv1", L.Conv2D(3, 3, activation="tanh", padding="same")),
                      ("pool1", L.MaxPool2D(2)),
                      ("conv2", L.Conv2D(4, 3, stride=2, activation="sigmoid")),
                      ("gap", L.AvgPool2D(2, count_include_pad=False, padding=1)),
                      ("flat", L.Flatten()), ("fc", L.Dense(3)))
    out_shape, params = model.init(random.key(0), (2, 11, 13), np.float64)
    x = np.random.default_rng(5).standard_normal((1, 2, 11, 13))
    y, _ = model.forward(params, x)
    assert y.shape == (1,) + out_shape == (1, 3)
    errs = gradcheck(model, params, x, tol=1e-6, max_elems=30)
    assert {"dx", "conv1/W", "conv1/b", "conv2/W", "fc/W"} <= set(errs)
    # Flatten on NCHW is channel-major, as in PyTorch
    f = L.Flatten()
    z = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(f.forward({}, z)[0], z.reshape(2, 60))


# ------------------------------------------------------------------------- bad input

def _raises(exc, fn, *match):
    with pytest.raises(exc) as e:
        fn()
    msg = str(e.value)
    for m in match:
        assert m in msg, f"{m!r} not in {msg!r}"
    return msg


def test_bad_constructor_arguments():
    _raises(ValueError, lambda: L.Conv2D(4, 3, stride=0), "stride", ">= 1", "0")
    _raises(ValueError, lambda: L.Conv2D(4, 3, stride=(1, -2)), "stride")
    _raises(ValueError, lambda: L.Conv2D(4, 3, padding=-1), "padding", ">= 0", "-1")
    _raises(ValueError, lambda: L.Conv2D(4, 3, padding=((0, -1), (0, 0))), "padding")
    _raises(ValueError, lambda: L.Conv2D(4, 3, padding="full"), "valid", "same", "full")
    _raises(ValueError, lambda: L.Conv2D(4, 0), "kernel_size")
    _raises(ValueError, lambda: L.Conv2D(4, 3, dilation=0), "dilation")
    _raises(ValueError, lambda: L.Conv2D(0, 3), "filters")
    _raises(ValueError, lambda: L.Conv2D(4, 3, groups=3), "divisible by groups")
    _raises(ValueError, lambda: L.Conv2D(4, 3, activation="gelu"), "activation", "gelu")
    _raises(ValueError, lambda: L.Conv2D(4, 3, stride=2, algorithm="direct"), "stride 1")
    _raises(ValueError, lambda: L.Conv2D(4, 5, algorithm="winograd"), "3x3", "(5, 5)")
    _raises(ValueError, lambda: L.Conv2D(4, 3, algorithm="fft"), "algorithm", "fft")
    _raises(ValueError, lambda: L.MaxPool2D(0), "pool_size")
    _raises(ValueError, lambda: L.MaxPool2D(2, stride=0), "stride")
    _raises(ValueError, lambda: L.MaxPool2D(2, padding=-1), "padding")
    _raises(ValueError, lambda: L.MaxPool2D(2, padding=2), "at most half the window")
    _raises(ValueError, lambda: L.AvgPool2D(3, padding="same"), "padding")


def test_bad_inputs_raise_before_any_kernel_runs():
    conv = L.Conv2D(4, 3, padding=1)
    _, params = conv.init(random.key(0), (3, 8, 8))
    saved = {k: v.copy() for k, v in params.items()}
    good = np.zeros((2, 3, 8, 8), np.float32)
    m = _raises(ValueError, lambda: conv.forward(params, np.zeros((3, 8, 8), np.float32)),
                "4-D", "N, C, H, W", "(3, 8, 8)")
    assert "expected" in m
    _raises(ValueError, lambda: conv.forward(params, np.zeros((2, 1, 8, 8), np.float32)),
            "input has 1 channels", "W expects 3")
    _raises(TypeError, lambda: conv.forward(params, good.astype(np.float64)), "mixed dtypes")
    _raises(TypeError, lambda: conv.forward(params, good.astype(np.int32)), "float32 or float64")
    _raises(TypeError, lambda: conv.forward(params, [[1.0]]), "numpy array")
    _raises(ValueError, lambda: conv.forward({"W": params["W"]}, good), "missing ['b']")
    _raises(ValueError, lambda: conv.forward({**params, "W": params["W"][:, :, :2]}, good),
            "expected W of shape")
    _raises(ValueError, lambda: conv.forward({**params, "b": params["b"][:2]}, good),
            "expected b of shape (4,)")
    big = L.Conv2D(2, 5)
    _, bp = big.init(random.key(0), (1, 6, 6))
    _raises(ValueError, lambda: big.forward(bp, np.zeros((1, 1, 4, 6), np.float32)),
            "larger than the padded input", "(4, 6)", "output would be empty")
    _raises(ValueError, lambda: L.Conv2D(2, 3, dilation=3).init(random.key(0), (1, 6, 6)),
            "larger than the padded input", "dilation", "output would be empty")
    _raises(ValueError, lambda: conv.init(random.key(0), (8, 8)), "(C, H, W)")
    _raises(ValueError, lambda: conv.forward(params, np.zeros((2, 3, 0, 8), np.float32)),
            "non-empty")
    y, cache = conv.forward(params, good)
    _raises(ValueError, lambda: conv.backward(params, cache, y[:, :2]), "dy must match",
            str(y.shape))
    for k in params:                                  # nothing was changed
        np.testing.assert_array_equal(params[k], saved[k])


def test_pool_bad_inputs():
    pool = L.MaxPool2D(3)
    _raises(ValueError, lambda: pool.forward({}, np.zeros((1, 2, 2, 5), np.float32)),
            "pooling window (3, 3) is larger than the input (2, 5)")
    _raises(ValueError, lambda: pool.init(random.key(0), (1, 2, 5)), "larger than the input")
    _raises(ValueError, lambda: pool.forward({}, np.zeros((2, 5, 5), np.float32)),
            "4-D", "N, C, H, W")
    _raises(ValueError, lambda: L.AvgPool2D(2).forward({}, np.zeros((1, 1, 1, 1))),
            "larger than the input")
    _raises(ValueError, lambda: L.GlobalAvgPool2D().forward({}, np.zeros((4, 4))), "4-D")
    _raises(ValueError, lambda: pool.forward({"W": np.zeros(1)}, np.zeros((1, 1, 3, 3))),
            "params keys")
