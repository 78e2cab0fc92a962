"""kernels.cuda.recurrent against kernels.cpu.recurrent: RNN (tanh, relu), LSTM and GRU
forward and full BPTT with ragged validity ranges (post- and pre-padding), reverse
processing, initial states, with and without per-step output gradients, with and without dx;
batch 1 and a batch the CPU splits into two blocks.  float32, 1e-5 relative; dtypes asserted;
no host transfers; the caches equal the CPU's where the layouts coincide (B < 32)."""
import numpy as np
import pytest

from dlkit import device

OK, WHY = device.available()
if not OK:
    pytest.skip(WHY, allow_module_level=True)

from numba import cuda  # noqa: E402

from kernels.cpu import recurrent as CR  # noqa: E402
from kernels.cuda import recurrent as GR  # noqa: E402

F32 = np.float32


def dev(*arrays):
    return tuple(cuda.to_device(np.ascontiguousarray(a)) for a in arrays)


def close(got, want, rtol=1e-5, what=""):
    g = got.copy_to_host()
    assert g.dtype == want.dtype == F32 and g.shape == want.shape, (what, g.shape, want.shape)
    scale = max(float(np.max(np.abs(want))), 1e-30) if want.size else 1.0
    np.testing.assert_allclose(g, want, rtol=rtol, atol=rtol * scale, err_msg=what)


def setup(rng, B, T, I, H, G, ragged):
    x = rng.standard_normal((B, T, I)).astype(F32)
    W = (rng.standard_normal((I, G * H)) * 0.5).astype(F32)
    U = (rng.standard_normal((H, G * H)) * 0.5).astype(F32)
    b = (rng.standard_normal(G * H) * 0.1).astype(F32)
    h0 = (rng.standard_normal((B, H)) * 0.5).astype(F32)
    c0 = (rng.standard_normal((B, H)) * 0.5).astype(F32)
    t0, t1 = np.zeros(B, np.int64), np.full(B, T, np.int64)
    if ragged and B > 1:
        t1[0] = T - 2                    # post-padding
        t0[1] = 1                        # pre-padding
    return x, W, U, b, h0, c0, t0, t1


CASES = [  # (B, T, I, H, reverse, ragged, has_dy, need_dx)
    (1, 3, 2, 3, False, False, True, True),
    (3, 4, 5, 4, True, True, True, True),
    (3, 4, 3, 5, False, True, False, False),
]
IDS = [str(i) for i in range(len(CASES))]


def _dy(rng, B, T, H, has_dy):
    return rng.standard_normal((B, T if has_dy else 0, H)).astype(F32)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("act", [CR.ACT_TANH, CR.ACT_RELU])
def test_rnn(rng, transfers, case, act):
    B, T, I, H, reverse, ragged, has_dy, need_dx = case
    x, W, U, b, h0, _, t0, t1 = setup(rng, B, T, I, H, 1, ragged)
    want = CR.rnn_forward(x, W, U, b, h0, t0, t1, reverse, act)
    dy, dhT = _dy(rng, B, T, H, has_dy), rng.standard_normal((B, H)).astype(F32)
    xd, Wd, Ud, bd, h0d, t0d, t1d, dyd, dhTd = dev(x, W, U, b, h0, t0, t1, dy, dhT)
    transfers.reset()
    got = GR.rnn_forward(xd, Wd, Ud, bd, h0d, t0d, t1d, reverse, act)
    gb = GR.rnn_backward(Wd, Ud, t0d, t1d, reverse, act, got[2], got[3], dyd, dhTd, need_dx)
    assert (transfers.h2d, transfers.d2h, transfers.implicit) == (0, 0, 0), transfers
    for name, g, w in zip(("y", "hT", "xs", "hs"), got, want):
        close(g, w, what=name)
    wb = CR.rnn_backward(W, U, t0, t1, reverse, act, want[2], want[3], dy, dhT, need_dx)
    for name, g, w in zip(("dx", "dW", "dU", "db", "dh0"), gb, wb):
        close(g, w, what=name)


@pytest.mark.parametrize("case", CASES + [(33, 2, 2, 3, False, True, True, True)],
                         ids=IDS + ["two-cpu-blocks"])
def test_lstm(rng, transfers, case):
    B, T, I, H, reverse, ragged, has_dy, need_dx = case
    x, W, U, b, h0, c0, t0, t1 = setup(rng, B, T, I, H, 4, ragged)
    want = CR.lstm_forward(x, W, U, b, h0, c0, t0, t1, reverse)
    dy, dhT, dcT = (_dy(rng, B, T, H, has_dy), rng.standard_normal((B, H)).astype(F32),
                    rng.standard_normal((B, H)).astype(F32))
    args = dev(x, W, U, b, h0, c0, t0, t1)
    dyd, dhTd, dcTd = dev(dy, dhT, dcT)
    transfers.reset()
    got = GR.lstm_forward(*args, reverse)
    gb = GR.lstm_backward(args[1], args[2], args[6], args[7], reverse, *got[3:], dyd, dhTd,
                          dcTd, need_dx)
    assert (transfers.h2d, transfers.d2h, transfers.implicit) == (0, 0, 0), transfers
    n_out = 7 if B < 32 else 3                         # caches share a layout when B < 32
    for name, g, w in list(zip(("y", "hT", "cT", "xs", "acts", "hs", "cs"), got, want))[:n_out]:
        close(g, w, what=name)
    wb = CR.lstm_backward(W, U, t0, t1, reverse, *want[3:], dy, dhT, dcT, need_dx)
    for name, g, w in zip(("dx", "dW", "dU", "db", "dh0", "dc0"), gb, wb):
        close(g, w, what=name)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gru(rng, transfers, case):
    B, T, I, H, reverse, ragged, has_dy, need_dx = case
    x, W, U, b, h0, _, t0, t1 = setup(rng, B, T, I, H, 3, ragged)
    bh = (rng.standard_normal(3 * H) * 0.1).astype(F32)
    want = CR.gru_forward(x, W, U, b, bh, h0, t0, t1, reverse)
    dy, dhT = _dy(rng, B, T, H, has_dy), rng.standard_normal((B, H)).astype(F32)
    xd, Wd, Ud, bd, bhd, h0d, t0d, t1d, dyd, dhTd = dev(x, W, U, b, bh, h0, t0, t1, dy, dhT)
    transfers.reset()
    got = GR.gru_forward(xd, Wd, Ud, bd, bhd, h0d, t0d, t1d, reverse)
    gb = GR.gru_backward(Wd, Ud, t0d, t1d, reverse, *got[2:], dyd, dhTd, need_dx)
    assert (transfers.h2d, transfers.d2h, transfers.implicit) == (0, 0, 0), transfers
    for name, g, w in zip(("y", "hT", "xs", "acts", "un", "hs"), got, want):
        close(g, w, what=name)
    wb = CR.gru_backward(W, U, t0, t1, reverse, *want[2:], dy, dhT, need_dx)
    for name, g, w in zip(("dx", "dW", "dU", "db", "dbh", "dh0"), gb, wb):
        close(g, w, what=name)


def test_cell_functions_and_names(rng):
    import inspect
    x = (rng.standard_normal(300) * 4).astype(F32)
    close(GR.sigmoid(*dev(x)), CR.sigmoid(x))
    close(GR.tanh(*dev(x)), CR.tanh(x))
    for name in ("rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward",
                 "gru_backward", "sigmoid", "tanh"):
        f = getattr(CR, name)
        pf = getattr(f, "__wrapped__", getattr(f, "py_func", f))
        assert (list(inspect.signature(pf).parameters)
                == list(inspect.signature(getattr(GR, name)).parameters)), name
    assert (GR.ACT_TANH, GR.ACT_RELU) == (CR.ACT_TANH, CR.ACT_RELU)
