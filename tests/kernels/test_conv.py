"""Convolution kernels (kernels.cpu.conv) against a plain-NumPy float64 reference, finite
differences, each other (direct vs im2col), float32 vs float64, PyTorch (when installed), and
themselves (bit-identical repeats, across thread counts)."""
import itertools

import numba
import numpy as np
import pytest

from dlkit import gradcheck
from dlkit import layers as L
from dlkit import random
from kernels.cpu import conv as K

ACTS = {"none": K.ACT_NONE, "relu": K.ACT_RELU, "sigmoid": K.ACT_SIGMOID, "tanh": K.ACT_TANH}


# ------------------------------------------------------------------ plain-NumPy reference

def out_size(n, k, s, p0, p1, d):
    return (n + p0 + p1 - d * (k - 1) - 1) // s + 1


def _act(z, act):
    if act == "relu":
        return np.maximum(z, 0)
    if act == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if act == "tanh":
        return np.tanh(z)
    return z


def _act_grad(y, act):
    if act == "relu":
        return (y > 0).astype(y.dtype)
    if act == "sigmoid":
        return y * (1 - y)
    if act == "tanh":
        return 1 - y * y
    return np.ones_like(y)


def _windows(xp, kh, kw, s, d, OH, OW):
    """The slice of the padded input that tap (kh, kw) reads for every output position."""
    (sh, sw), (dh, dw) = s, d
    return (slice(None), slice(None), slice(kh * dh, kh * dh + sh * (OH - 1) + 1, sh),
            slice(kw * dw, kw * dw + sw * (OW - 1) + 1, sw))


def ref_conv(x, W, b, s, pads, d, groups, act="none"):
    """y = act(conv(x, W) + b) in float64 by explicit tap loops; pads = (top, bottom, left,
    right)."""
    x, W, b = (np.asarray(a, np.float64) for a in (x, W, b))
    pt, pb, pl, pr = pads
    N, C, H, Wd = x.shape
    Co, Cg, KH, KW = W.shape
    OH = out_size(H, KH, s[0], pt, pb, d[0])
    OW = out_size(Wd, KW, s[1], pl, pr, d[1])
    xp = np.zeros((N, C, H + pt + pb, Wd + pl + pr))
    xp[:, :, pt:pt + H, pl:pl + Wd] = x
    z = np.zeros((N, Co, OH, OW)) + b[None, :, None, None]
    og = Co // groups
    for g in range(groups):
        xg = xp[:, g * Cg:(g + 1) * Cg]
        for kh in range(KH):
            for kw in range(KW):
                patch = xg[_windows(xg, kh, kw, s, d, OH, OW)]
                z[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch,
                                                       W[g * og:(g + 1) * og, :, kh, kw])
    return _act(z, act)


def ref_conv_grads(x, W, y, dy, s, pads, d, groups, act="none"):
    """(dx, dW, db) of ref_conv by the adjoint tap loops, float64."""
    x, W, y, dy = (np.asarray(a, np.float64) for a in (x, W, y, dy))
    pt, pb, pl, pr = pads
    N, C, H, Wd = x.shape
    Co, Cg, KH, KW = W.shape
    OH, OW = dy.shape[2:]
    g_ = dy * _act_grad(y, act)
    xp = np.zeros((N, C, H + pt + pb, Wd + pl + pr))
    xp[:, :, pt:pt + H, pl:pl + Wd] = x
    dxp = np.zeros_like(xp)
    dW = np.zeros(W.shape)
    og = Co // groups
    for g in range(groups):
        cs = slice(g * Cg, (g + 1) * Cg)
        gg = g_[:, g * og:(g + 1) * og]
        for kh in range(KH):
            for kw in range(KW):
                win = _windows(xp, kh, kw, s, d, OH, OW)
                dW[g * og:(g + 1) * og, :, kh, kw] = np.einsum("nchw,nohw->oc", xp[:, cs][win], gg)
                sub = dxp[:, cs]
                sub[win] += np.einsum("nohw,oc->nchw", gg, W[g * og:(g + 1) * og, :, kh, kw])
    return dxp[:, :, pt:pt + H, pl:pl + Wd], dW, g_.sum(axis=(0, 2, 3))


def rel_err(a, r):
    return float(np.max(np.abs(np.asarray(a, np.float64) - r)) / max(1e-30, np.max(np.abs(r))))


# ----------------------------------------------------------------------- random configs

def random_config(rng, stride1=False):
    groups = int(rng.choice([1, 1, 2, 3]))
    cg, og = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    if rng.random() < 0.2:                       # depthwise
        cg, og = 1, 1
    KH, KW = (int(v) for v in rng.integers(1, 4, 2))
    s = (1, 1) if stride1 else tuple(int(v) for v in rng.integers(1, 4, 2))
    d = tuple(int(v) for v in rng.integers(1, 3, 2))
    pads = tuple(int(v) for v in rng.integers(0, 3, 4))
    while True:
        H, Wd = (int(v) for v in rng.integers(3, 12, 2))
        if (out_size(H, KH, s[0], pads[0], pads[1], d[0]) >= 1
                and out_size(Wd, KW, s[1], pads[2], pads[3], d[1]) >= 1):
            break
    N = int(rng.integers(1, 5))
    return dict(N=N, C=cg * groups, Co=og * groups, H=H, W=Wd, k=(KH, KW), s=s, d=d,
                pads=pads, groups=groups, act=str(rng.choice(list(ACTS))))


def run_kernels(cfg, x, W, b, algo, dy=None):
    pt, pb, pl, pr = cfg["pads"]
    s, d = cfg["s"], cfg["d"]
    OH = out_size(cfg["H"], cfg["k"][0], s[0], pt, pb, d[0])
    OW = out_size(cfg["W"], cfg["k"][1], s[1], pl, pr, d[1])
    act = ACTS[cfg["act"]]
    y = K.conv2d_forward(x, W, b, s[0], s[1], pt, pl, d[0], d[1], cfg["groups"], OH, OW, act,
                         algo)
    if dy is None:
        return y
    dx, dW, db = K.conv2d_backward(x, W, y, dy, s[0], s[1], pt, pl, d[0], d[1], cfg["groups"],
                                   act, True, algo)
    return y, dx, dW, db


def make_inputs(rng, cfg, dtype):
    x = rng.standard_normal((cfg["N"], cfg["C"], cfg["H"], cfg["W"]))
    W = rng.standard_normal((cfg["Co"], cfg["C"] // cfg["groups"]) + cfg["k"]) * 0.5
    b = rng.standard_normal(cfg["Co"]) * 0.1
    return tuple(a.astype(dtype) for a in (x, W, b))


def algos_for(cfg):
    """Every algorithm that handles cfg: im2col always, direct at stride 1, Winograd for 3x3,
    stride 1, dilation 1, one group."""
    algos = [K.ALGO_IM2COL]
    if cfg["s"] == (1, 1):
        algos.append(K.ALGO_DIRECT)
        if cfg["k"] == (3, 3) and cfg["d"] == (1, 1) and cfg["groups"] == 1:
            algos.append(K.ALGO_WINOGRAD)
    return algos


# ------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("seed", range(3))
def test_matches_numpy_reference_float64_and_float32(seed):
    """Forward and backward of both algorithms against the float64 reference on seeded random
    configurations: float64 to 1e-10, float32 to 1e-5 relative (per tensor, max-normalised)."""
    rng = np.random.default_rng(100 + seed)
    for i in range(12):
        cfg = random_config(rng, stride1=(i % 2 == 0))
        x, W, b = make_inputs(rng, cfg, np.float64)
        y_ref = ref_conv(x, W, b, cfg["s"], cfg["pads"], cfg["d"], cfg["groups"], cfg["act"])
        dy = rng.standard_normal(y_ref.shape)
        grads_ref = ref_conv_grads(x, W, y_ref, dy, cfg["s"], cfg["pads"], cfg["d"],
                                   cfg["groups"], cfg["act"])
        for algo in algos_for(cfg):
            for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-5)):
                xs, Ws, bs, dys = (a.astype(dtype) for a in (x, W, b, dy))
                out = run_kernels(cfg, xs, Ws, bs, algo, dys)
                names = ("y", "dx", "dW", "db")
                for name, got, ref in zip(names, out, (y_ref,) + grads_ref):
                    assert got.dtype == dtype and got.shape == ref.shape, (name, cfg)
                    err = rel_err(got, ref)
                    assert err < tol, f"{name} {np.dtype(dtype)} algo={algo} {cfg}: {err:.3g}"


@pytest.mark.parametrize("act", sorted(ACTS))
def test_direct_3x3_single_channel_path_matches_reference(act):
    """The direct algorithm's nine-tap path (a 3x3 filter on one input channel per group:
    shifted copies of the input plane, output and gradient planes in place), in place on x and
    on a padded copy, dilated, depthwise, float64 and float32."""
    rng = np.random.default_rng(31)
    for C, Co, groups, pads, d in ((1, 5, 1, (0, 0, 0, 0), (1, 1)), (1, 4, 1, (2, 0, 1, 2), (2, 1)),
                                   (3, 6, 3, (1, 1, 1, 1), (1, 2))):
        cfg = dict(N=3, C=C, Co=Co, H=11, W=9, k=(3, 3), s=(1, 1), d=d, pads=pads,
                   groups=groups, act=act)
        x, W, b = make_inputs(rng, cfg, np.float64)
        y_ref = ref_conv(x, W, b, cfg["s"], pads, d, groups, act)
        dy = rng.standard_normal(y_ref.shape)
        grads_ref = ref_conv_grads(x, W, y_ref, dy, cfg["s"], pads, d, groups, act)
        for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
            out = run_kernels(cfg, *(a.astype(dtype) for a in (x, W, b)), K.ALGO_DIRECT,
                              dy.astype(dtype))
            for name, got, ref in zip(("y", "dx", "dW", "db"), out, (y_ref,) + grads_ref):
                assert rel_err(got, ref) < tol, (name, np.dtype(dtype), cfg, rel_err(got, ref))


def test_float32_agrees_with_float64_on_a_training_sized_layer():
    """A layer of realistic size (several batch chunks, sub-batched columns) in float32 agrees
    with the same computation in float64."""
    rng = np.random.default_rng(7)
    for cfg in (dict(N=24, C=1, Co=8, H=28, W=28, k=(3, 3), s=(1, 1), d=(1, 1),
                     pads=(0, 0, 0, 0), groups=1, act="relu"),
                dict(N=24, C=8, Co=16, H=14, W=14, k=(3, 3), s=(1, 1), d=(1, 1),
                     pads=(1, 1, 1, 1), groups=1, act="none")):
        x, W, b = make_inputs(rng, cfg, np.float64)
        for algo in algos_for(cfg):
            y64 = run_kernels(cfg, x, W, b, algo)
            dy = rng.standard_normal(y64.shape)
            out64 = run_kernels(cfg, x, W, b, algo, dy)
            out32 = run_kernels(cfg, *(a.astype(np.float32) for a in (x, W, b)), algo,
                                dy.astype(np.float32))
            for name, a, r in zip(("y", "dx", "dW", "db"), out32, out64):
                assert rel_err(a, r) < 1e-5, (name, algo, rel_err(a, r))


def test_direct_and_im2col_agree():
    rng = np.random.default_rng(3)
    for _ in range(8):
        cfg = random_config(rng, stride1=True)
        x, W, b = make_inputs(rng, cfg, np.float64)
        y = run_kernels(cfg, x, W, b, K.ALGO_DIRECT)
        dy = rng.standard_normal(y.shape)
        a = run_kernels(cfg, x, W, b, K.ALGO_DIRECT, dy)
        c = run_kernels(cfg, x, W, b, K.ALGO_IM2COL, dy)
        for u, v in zip(a, c):
            np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-10)


def test_algorithm_choice():
    # one input channel or depthwise at stride 1: direct; 3x3 stride 1 with enough channels:
    # Winograd; otherwise im2col
    assert K.conv2d_algorithm(1, 3, 3, 1, 1, 1) == K.ALGO_DIRECT
    assert K.conv2d_algorithm(32, 3, 3, 1, 1, 32) == K.ALGO_DIRECT
    assert K.conv2d_algorithm(32, 3, 3, 1, 1, 1, 1, 1, 64) == K.ALGO_WINOGRAD
    assert K.conv2d_algorithm(32, 3, 3, 1, 1, 1, 2, 2, 64) == K.ALGO_IM2COL     # dilated
    assert K.conv2d_algorithm(32, 5, 5, 1, 1, 1, 1, 1, 64) == K.ALGO_IM2COL
    assert K.conv2d_algorithm(1, 3, 3, 2, 2, 1) == K.ALGO_IM2COL


def test_winograd_large_padding_and_odd_sizes():
    """Winograd's dx runs the forward with offsets 2 - padding, negative beyond padding 2;
    odd output sizes leave half tiles at the bottom and right edges."""
    rng = np.random.default_rng(13)
    for pads, hw in (((3, 0, 0, 3), (5, 6)), ((0, 0, 0, 0), (3, 3)), ((2, 1, 1, 2), (7, 4)),
                     ((1, 1, 1, 1), (1, 1))):
        cfg = dict(N=2, C=9, Co=8, H=hw[0], W=hw[1], k=(3, 3), s=(1, 1), d=(1, 1), pads=pads,
                   groups=1, act="relu")
        x, W, b = make_inputs(rng, cfg, np.float64)
        y_ref = ref_conv(x, W, b, (1, 1), pads, (1, 1), 1, "relu")
        dy = rng.standard_normal(y_ref.shape)
        refs = (y_ref,) + ref_conv_grads(x, W, y_ref, dy, (1, 1), pads, (1, 1), 1, "relu")
        for got, ref in zip(run_kernels(cfg, x, W, b, K.ALGO_WINOGRAD, dy), refs):
            assert rel_err(got, ref) < 1e-12, (pads, hw)


def test_need_dx_false_skips_dx_and_keeps_param_grads():
    rng = np.random.default_rng(4)
    cfg = dict(N=3, C=2, Co=3, H=7, W=9, k=(3, 3), s=(1, 1), d=(1, 1), pads=(1, 1, 1, 1),
               groups=1, act="tanh")
    x, W, b = make_inputs(rng, cfg, np.float64)
    for algo in algos_for(cfg):
        y = run_kernels(cfg, x, W, b, algo)
        dy = rng.standard_normal(y.shape)
        _, _, dW, db = run_kernels(cfg, x, W, b, algo, dy)
        dx0, dW0, db0 = K.conv2d_backward(x, W, y, dy, 1, 1, 1, 1, 1, 1, 1, K.ACT_TANH, False,
                                          algo)
        assert dx0.shape == (0, 2, 7, 9)
        np.testing.assert_array_equal(dW0, dW, err_msg=f"algo {algo}")
        np.testing.assert_array_equal(db0, db, err_msg=f"algo {algo}")


# ------------------------------------------------------------- finite-difference grid

def _grid():
    """The issue's grid, sampled: every (stride, padding, dilation) combination below, with
    channels/groups, kernel and odd input sizes cycling through their values; plus kernels the
    size of the padded input (1x1 output)."""
    strides = [1, 2, 3, (1, 2), (3, 1)]
    paddings = [0, 1, 2, "same", (0, 2)]
    dilations = [1, 2, (1, 2)]
    chans = [(1, 1, 1), (2, 3, 1), (3, 2, 1), (1, 3, 1), (3, 1, 1), (2, 2, 2), (3, 3, 3),
             (2, 2, 1), (1, 2, 1)]               # (C_in, C_out, groups); (3, 3, 3) depthwise
    kernels = [3, 2, (2, 3), 1, (3, 1)]
    sizes = [(5, 7), (7, 5), (9, 9), (5, 5), (7, 9)]
    cases = []
    for i, (st, pd, dl) in enumerate(itertools.product(strides, paddings, dilations)):
        cin, cout, g = chans[i % len(chans)]
        cases.append(dict(cin=cin, cout=cout, groups=g, k=kernels[i % len(kernels)], stride=st,
                          padding=pd, dilation=dl, hw=sizes[i % len(sizes)],
                          act=("none", "tanh", "sigmoid")[i % 3]))
    # kernel as large as the padded input: one output pixel
    cases += [dict(cin=2, cout=3, groups=1, k=(7, 9), stride=1, padding=1, dilation=1,
                   hw=(5, 7), act="none"),
              dict(cin=3, cout=3, groups=3, k=3, stride=(2, 3), padding=0, dilation=(2, 3),
                   hw=(5, 7), act="none"),
              dict(cin=1, cout=2, groups=1, k=(5, 5), stride=3, padding=0, dilation=1,
                   hw=(5, 5), act="none")]
    return cases


GRID = _grid()


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def _empty_output(c):
    """Independently of the layer: would this case's output have no pixels?  ("same" padding
    never empties; otherwise out = (H + 2p - d (k - 1) - 1) // s + 1 per axis.)"""
    if c["padding"] == "same":
        return False
    return any((n + 2 * p - d * (k - 1) - 1) // s + 1 <= 0 for n, p, d, k, s in
               zip(c["hw"], _pair(c["padding"]), _pair(c["dilation"]), _pair(c["k"]),
                   _pair(c["stride"])))


# the cases the grid skips by design; every other case must build and run (asserted)
EMPTY = [i for i, c in enumerate(GRID) if _empty_output(c)]


def _layer_and_params(c, algorithm):
    layer = L.Conv2D(c["cout"], c["k"], stride=c["stride"], padding=c["padding"],
                     dilation=c["dilation"], groups=c["groups"],
                     activation=None if c["act"] == "none" else c["act"], algorithm=algorithm)
    in_shape = (c["cin"],) + c["hw"]
    try:
        out_shape, params = layer.init(random.key(0), in_shape, np.float64)
    except ValueError:
        return None
    params["b"] = np.linspace(-0.3, 0.3, c["cout"])
    return layer, params, in_shape, out_shape


def test_gradcheck_grid_covers_the_issue():
    """The sampled grid really holds every value the issue names."""
    def norm(v):
        return v if isinstance(v, tuple) else (v, v)
    runnable = [c for c in GRID if _layer_and_params(c, "auto") is not None]
    assert {norm(c["stride"]) for c in runnable} >= {(1, 1), (2, 2), (3, 3), (1, 2), (3, 1)}
    assert {str(c["padding"]) for c in runnable} >= {"0", "1", "2", "same"}
    assert {norm(c["dilation"]) for c in runnable} >= {(1, 1), (2, 2)}
    assert {c["groups"] for c in runnable} >= {1, 2, 3}
    assert {c["cin"] for c in runnable} == {1, 2, 3} and {c["cout"] for c in runnable} == {1, 2, 3}
    assert any(c["groups"] == c["cin"] == c["cout"] > 1 for c in runnable)       # depthwise
    assert all(h % 2 and w % 2 for h, w in (c["hw"] for c in runnable))           # odd sizes
    ones = [c for c in runnable if _layer_and_params(c, "auto")[3][1:] == (1, 1)]
    assert len(ones) >= 3                                                         # 1x1 output
    assert len(runnable) == len(GRID) - len(EMPTY) and len(GRID) == 78, (len(runnable), EMPTY)


@pytest.mark.parametrize("start", range(0, len(GRID), 26))
def test_gradcheck_grid(start):
    """float64 central differences, batch 1, for dx, W and b, with every applicable algorithm."""
    rng = np.random.default_rng(start)
    ran = 0
    for i, c in enumerate(GRID[start:start + 26], start):
        made = _layer_and_params(c, "auto")
        if made is None:                          # output would be empty: skipped by design
            assert i in EMPTY, ("case rejected by the layer but its output is not empty", c)
            continue
        assert i not in EMPTY, ("the layer accepted a case with an empty output", c)
        _, params, in_shape, _ = made
        x = rng.standard_normal((1,) + in_shape)
        s = c["stride"] if isinstance(c["stride"], tuple) else (c["stride"],) * 2
        algos = ["direct", "im2col"] if s == (1, 1) else ["im2col"]
        if s == (1, 1) and c["k"] == 3 and c["dilation"] == 1 and c["groups"] == 1:
            algos.append("winograd")
        for algo in algos:
            layer, params, _, _ = _layer_and_params(c, algo)
            errs = gradcheck(layer, params, x, tol=1e-6, max_elems=24, seed=start)
            assert set(errs) == {"dx", "W", "b"}, errs
        ran += 1
    chunk = range(start, min(start + 26, len(GRID)))
    assert ran == len(chunk) - len(set(chunk) & set(EMPTY)) > 0, (ran, EMPTY)


# ---------------------------------------------------------- determinism and PyTorch

def _big_case(rng, dtype):
    cases = []
    for cfg in (dict(N=40, C=1, Co=16, H=20, W=20, k=(3, 3), s=(1, 1), d=(1, 1),
                     pads=(0, 0, 0, 0), groups=1, act="relu"),
                dict(N=40, C=6, Co=8, H=12, W=12, k=(3, 3), s=(1, 1), d=(1, 1),
                     pads=(1, 1, 1, 1), groups=1, act="none"),
                dict(N=40, C=8, Co=8, H=9, W=9, k=(3, 3), s=(2, 1), d=(1, 1),
                     pads=(1, 1, 0, 0), groups=2, act="tanh")):
        x, W, b = make_inputs(rng, cfg, dtype)
        y = run_kernels(cfg, x, W, b, K.ALGO_IM2COL)
        cases.append((cfg, x, W, b, rng.standard_normal(y.shape).astype(dtype)))
    return cases


def shifted(a, k):
    """A C-contiguous copy of a that starts k elements into a fresh buffer (other alignment)."""
    buf = np.empty(a.size + k, a.dtype)
    out = buf[k:].reshape(a.shape)
    out[...] = a
    return out


def test_bit_identical_repeats_thread_counts_and_alignments():
    """Same bits on a repeat, with one thread, and with every input at another address and
    alignment (vectorised loops must not change their summation order with the addresses)."""
    rng = np.random.default_rng(11)
    before = numba.get_num_threads()
    for cfg, x, W, b, dy in _big_case(rng, np.float32):
        for algo in algos_for(cfg):
            first = run_kernels(cfg, x, W, b, algo, dy)
            runs = [run_kernels(cfg, x, W, b, algo, dy)]
            for k in (1, 2, 3):
                runs.append(run_kernels(cfg, shifted(x, k), shifted(W, k), shifted(b, k), algo,
                                        shifted(dy, k)))
            try:
                numba.set_num_threads(1)
                runs.append(run_kernels(cfg, x, W, b, algo, dy))
            finally:
                numba.set_num_threads(before)
            for run in runs:
                for name, a, r in zip(("y", "dx", "dW", "db"), first, run):
                    assert a.tobytes() == r.tobytes(), (name, algo, cfg)


def test_matches_pytorch(need):
    torch = need("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(12)
    for i in range(10):
        cfg = random_config(rng, stride1=(i % 2 == 0))
        cfg["act"] = "none"
        x, W, b = make_inputs(rng, cfg, np.float64)
        pt, pb, pl, pr = cfg["pads"]
        xt = torch.tensor(x, requires_grad=True)
        Wt = torch.tensor(W, requires_grad=True)
        bt = torch.tensor(b, requires_grad=True)
        yt = F.conv2d(F.pad(xt, (pl, pr, pt, pb)), Wt, bt, stride=cfg["s"], dilation=cfg["d"],
                      groups=cfg["groups"])
        dy = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.tensor(dy))
        for algo in algos_for(cfg):
            y, dx, dW, db = run_kernels(cfg, x, W, b, algo, dy)
            for got, ref in ((y, yt), (dx, xt.grad), (dW, Wt.grad), (db, bt.grad)):
                np.testing.assert_allclose(got, ref.detach().numpy(), rtol=1e-9, atol=1e-9)
