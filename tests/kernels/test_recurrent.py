"""Recurrent kernels (RNN, LSTM, GRU): float64 finite differences for every input and weight
(with and without initial state, ragged pre/post lengths, T=1, B=1, reverse, serial and
parallel builds), a plain-NumPy forward + BPTT reference, PyTorch's nn.RNN/LSTM/GRU with the
same weights (when torch is installed), float32 vs float64, padded steps, bit-identical
repeats across builds and thread counts, the float32 transcendentals and the FTZ guard."""
import platform

import numba
import numpy as np
import pytest

from kernels.cpu import recurrent as K

CELLS = ("rnn", "lstm", "gru")
# "rnn_relu": the SimpleRNN with act=relu (K.ACT_RELU), checked like the others (finite
# differences, the NumPy reference, PyTorch's nn.RNN(nonlinearity="relu"))
ALL_CELLS = CELLS + ("rnn_relu",)
GATES = {"rnn": 1, "lstm": 4, "gru": 3, "rnn_relu": 1}


# ------------------------------------------------------------------ plain-NumPy reference
def _sig(v):
    return 1 / (1 + np.exp(-v))


def ref_forward(cell, x, p, h0, c0, t0, t1, reverse):
    """-> y, hT, cT, tape (what ref_backward needs)."""
    B, T, _ = x.shape
    H = p["U"].shape[0]
    h, c = h0.copy(), (None if c0 is None else c0.copy())
    y = np.zeros((B, T, H))
    tape = []
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        m = ((t0 <= t) & (t < t1))[:, None]
        hp, cp = h, c
        if cell == "rnn":
            hn = np.tanh(x[:, t] @ p["W"] + hp @ p["U"] + p["b"])
            rec = (hn,)
        elif cell == "rnn_relu":
            hn = np.maximum(x[:, t] @ p["W"] + hp @ p["U"] + p["b"], 0)
            rec = (hn,)
        elif cell == "lstm":
            a = x[:, t] @ p["W"] + hp @ p["U"] + p["b"]
            i, f, g, o = _sig(a[:, :H]), _sig(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), \
                _sig(a[:, 3 * H:])
            cn = f * cp + i * g
            hn = o * np.tanh(cn)
            c = np.where(m, cn, cp)
            rec = (i, f, g, o, cn)
        else:
            a = x[:, t] @ p["W"] + p["b"]
            u = hp @ p["U"] + p["bh"]
            r, z = _sig(a[:, :H] + u[:, :H]), _sig(a[:, H:2 * H] + u[:, H:2 * H])
            n = np.tanh(a[:, 2 * H:] + r * u[:, 2 * H:])
            hn = (1 - z) * n + z * hp
            rec = (r, z, n, u[:, 2 * H:])
        h = np.where(m, hn, hp)
        y[:, t] = np.where(m, hn, 0)
        tape.append((t, m, hp, cp, rec))
    return y, h, c, tape


def ref_backward(cell, x, p, tape, dy, dhT, dcT):
    """Plain BPTT over the tape -> dict of gradients (x, W, U, b, [bh], h0, [c0])."""
    g = {k: np.zeros_like(v) for k, v in p.items()}
    dx = np.zeros_like(x)
    dh, dc = dhT.copy(), (None if dcT is None else dcT.copy())
    for t, m, hp, cp, rec in reversed(tape):
        gh = dh + dy[:, t]
        if cell == "rnn":
            (hn,) = rec
            da = m * gh * (1 - hn ** 2)
            dr = da
            dh_direct = 0
        elif cell == "rnn_relu":
            (hn,) = rec
            da = m * gh * (hn > 0)
            dr = da
            dh_direct = 0
        elif cell == "lstm":
            i, f, gg, o, cn = rec
            tc = np.tanh(cn)
            dcn = dc + gh * o * (1 - tc ** 2)
            da = m * np.concatenate([dcn * gg * i * (1 - i), dcn * cp * f * (1 - f),
                                     dcn * i * (1 - gg ** 2), gh * tc * o * (1 - o)], axis=1)
            dr = da
            dc = np.where(m, dcn * f, dc)
            dh_direct = 0
        else:
            r, z, n, un = rec
            dan = gh * (1 - z) * (1 - n ** 2)
            dar = dan * un * r * (1 - r)
            daz = gh * (hp - n) * z * (1 - z)
            da = m * np.concatenate([dar, daz, dan], axis=1)
            dr = m * np.concatenate([dar, daz, dan * r], axis=1)
            dh_direct = gh * z
        g["W"] += x[:, t].T @ da
        g["U"] += hp.T @ dr
        g["b"] += da.sum(0)
        if cell == "gru":
            g["bh"] += dr.sum(0)
        dx[:, t] = da @ p["W"].T
        dh = np.where(m, dr @ p["U"].T + dh_direct, dh)
    g.update(x=dx, h0=dh)
    if cell == "lstm":
        g["c0"] = dc
    return g


# ------------------------------------------------------------------ kernel plumbing
def make(cell, B, T, I, H, rng, dtype=np.float64, ragged=False, state=True, scale=0.5):
    G = GATES[cell]
    p = {"W": rng.standard_normal((I, G * H)) * scale, "U": rng.standard_normal((H, G * H)) * scale,
         "b": rng.standard_normal(G * H) * 0.2}
    if cell == "gru":
        p["bh"] = rng.standard_normal(G * H) * 0.2
    x = rng.standard_normal((B, T, I))
    h0 = rng.standard_normal((B, H)) * 0.5 if state else np.zeros((B, H))
    c0 = (rng.standard_normal((B, H)) * 0.5 if state else np.zeros((B, H))) \
        if cell == "lstm" else None
    if ragged:
        L = rng.integers(1, T + 1, B)
        L[0] = T
        pre = rng.random(B) < 0.5
        t0, t1 = np.where(pre, T - L, 0), np.where(pre, T, L)
    else:
        t0, t1 = np.zeros(B), np.full(B, T)
    cast = (lambda a: None if a is None else np.ascontiguousarray(a, dtype=dtype))
    return (cast(x), {k: cast(v) for k, v in p.items()}, cast(h0), cast(c0),
            t0.astype(np.int64), t1.astype(np.int64))


def run_forward(cell, x, p, h0, c0, t0, t1, reverse, build=None):
    f = {"rnn": K.rnn_forward, "lstm": K.lstm_forward, "gru": K.gru_forward,
         "rnn_relu": K.rnn_forward}[cell]
    f = getattr(f, build) if build else f
    if cell in ("rnn", "rnn_relu"):
        act = K.ACT_RELU if cell == "rnn_relu" else K.ACT_TANH
        y, hT, *cache = f(x, p["W"], p["U"], p["b"], h0, t0, t1, reverse, act)
        return y, hT, None, cache
    if cell == "lstm":
        y, hT, cT, *cache = f(x, p["W"], p["U"], p["b"], h0, c0, t0, t1, reverse)
        return y, hT, cT, cache
    y, hT, *cache = f(x, p["W"], p["U"], p["b"], p["bh"], h0, t0, t1, reverse)
    return y, hT, None, cache


def run_backward(cell, p, t0, t1, reverse, cache, dy, dhT, dcT, need_dx=True, build=None):
    f = {"rnn": K.rnn_backward, "lstm": K.lstm_backward, "gru": K.gru_backward,
         "rnn_relu": K.rnn_backward}[cell]
    f = getattr(f, build) if build else f
    if cell in ("rnn", "rnn_relu"):
        act = K.ACT_RELU if cell == "rnn_relu" else K.ACT_TANH
        dx, dW, dU, db, dh0 = f(p["W"], p["U"], t0, t1, reverse, act, *cache, dy, dhT,
                                need_dx)
        return dict(x=dx, W=dW, U=dU, b=db, h0=dh0)
    if cell == "lstm":
        dx, dW, dU, db, dh0, dc0 = f(p["W"], p["U"], t0, t1, reverse, *cache, dy, dhT, dcT,
                                     need_dx)
        return dict(x=dx, W=dW, U=dU, b=db, h0=dh0, c0=dc0)
    dx, dW, dU, db, dbh, dh0 = f(p["W"], p["U"], t0, t1, reverse, *cache, dy, dhT, need_dx)
    return dict(x=dx, W=dW, U=dU, b=db, bh=dbh, h0=dh0)


# ------------------------------------------------------------------ gradients
GRAD_CASES = [
    # B, T, I, H, ragged, initial state, reverse, loss uses every output (else final state)
    (1, 1, 3, 2, False, False, False, True),        # T = 1, batch 1
    (1, 6, 2, 3, False, True, True, True),          # batch 1 with initial state, reversed
    (3, 5, 4, 3, True, True, False, True),          # ragged pre/post with initial state
    (3, 4, 2, 5, True, False, True, False),         # ragged, only the final state is used
    (34, 3, 2, 2, True, True, False, True),         # two blocks: the parallel build
]


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("B,T,I,H,ragged,state,reverse,seq", GRAD_CASES)
def test_gradcheck(cell, B, T, I, H, ragged, state, reverse, seq):
    rng = np.random.default_rng(B * 100 + T * 10 + H)
    x, p, h0, c0, t0, t1 = make(cell, B, T, I, H, rng, ragged=ragged, state=state)
    Ry = rng.standard_normal((B, T, H)) if seq else np.zeros((B, 0, H))
    Rh, Rc = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    inputs = dict(x=x, h0=h0, **p)
    if cell == "lstm":
        inputs["c0"] = c0

    def loss():
        y, hT, cT, _ = run_forward(cell, x, p, h0, c0, t0, t1, reverse)
        v = np.sum(hT * Rh) + (np.sum(y * Ry) if seq else 0.0)
        return v + (np.sum(cT * Rc) if cell == "lstm" else 0.0)

    _, _, _, cache = run_forward(cell, x, p, h0, c0, t0, t1, reverse)
    grads = run_backward(cell, p, t0, t1, reverse, cache, Ry, Rh, Rc)
    assert set(grads) == set(inputs)
    eps = 1e-6
    for name, arr in inputs.items():
        g = grads[name]
        assert g.shape == arr.shape and g.dtype == np.float64, name
        flat = np.arange(arr.size)
        if arr.size > 20:
            flat = rng.choice(arr.size, 20, replace=False)
        for f in flat:
            idx = np.unravel_index(f, arr.shape)
            old = arr[idx]
            arr[idx] = old + eps
            lp = loss()
            arr[idx] = old - eps
            lm = loss()
            arr[idx] = old
            num = (lp - lm) / (2 * eps)
            assert abs(num - g[idx]) <= 1e-6 * max(1.0, abs(num)), (name, idx, num, g[idx])


# ------------------------------------------------------------------ references
@pytest.mark.parametrize("cell", ALL_CELLS)
# (130, 12): two blocks of 65 rows, so the kernels run 7-step time chunks (_CHUNK_ROWS = 512),
# the first one partial
@pytest.mark.parametrize("B,T,reverse", [(2, 6, False), (37, 6, True), (130, 12, False)])
def test_matches_numpy_reference(cell, B, T, reverse):
    rng = np.random.default_rng(7)
    I, H = 5, 4
    nb = B // K._n_blocks(B)
    assert (K._chunk(nb, T) < T) == (B == 130)      # the case above does cover chunking
    x, p, h0, c0, t0, t1 = make(cell, B, T, I, H, rng, ragged=True)
    y, hT, cT, cache = run_forward(cell, x, p, h0, c0, t0, t1, reverse)
    yr, hr, cr, tape = ref_forward(cell, x, p, h0, c0, t0, t1, reverse)
    if cell == "rnn_relu":      # both sides of the kink are exercised
        live = yr[(np.arange(T) >= t0[:, None]) & (np.arange(T) < t1[:, None])]
        assert 0.2 < np.mean(live > 0) < 0.8
    np.testing.assert_allclose(y, yr, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hT, hr, rtol=1e-12, atol=1e-12)
    if cell == "lstm":
        np.testing.assert_allclose(cT, cr, rtol=1e-12, atol=1e-12)
    dy, dhT = rng.standard_normal((B, T, H)), rng.standard_normal((B, H))
    dcT = rng.standard_normal((B, H)) if cell == "lstm" else None
    got = run_backward(cell, p, t0, t1, reverse, cache, dy, dhT, dcT)
    want = ref_backward(cell, x, p, tape, dy, dhT, dcT)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-11, atol=1e-11, err_msg=k)

    # float32 agrees with the float64 reference
    x32, h032 = x.astype(np.float32), h0.astype(np.float32)
    c032 = None if c0 is None else c0.astype(np.float32)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    y32, h32, _, cache32 = run_forward(cell, x32, p32, h032, c032, t0, t1, reverse)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, yr, rtol=1e-5, atol=1e-5)
    got32 = run_backward(cell, p32, t0, t1, reverse, cache32, dy.astype(np.float32),
                         dhT.astype(np.float32), None if dcT is None else dcT.astype(np.float32))
    for k in want:
        assert got32[k].dtype == np.float32
        np.testing.assert_allclose(got32[k], want[k], rtol=1e-4, atol=1e-4, err_msg=k)


def _torch_module(torch, cell, I, H, p, reverse_p=None):
    """A float64 batch_first torch module holding p (and the reverse direction's params)."""
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU,
           "rnn_relu": torch.nn.RNN}[cell]
    kw = {"nonlinearity": "relu"} if cell == "rnn_relu" else {}
    m = cls(I, H, batch_first=True, bidirectional=reverse_p is not None, **kw).double()
    with torch.no_grad():
        for sfx, q in (("", p), ("_reverse", reverse_p)):
            if q is None:
                continue
            getattr(m, "weight_ih_l0" + sfx).copy_(torch.from_numpy(q["W"].T.copy()))
            getattr(m, "weight_hh_l0" + sfx).copy_(torch.from_numpy(q["U"].T.copy()))
            getattr(m, "bias_ih_l0" + sfx).copy_(torch.from_numpy(q["b"]))
            getattr(m, "bias_hh_l0" + sfx).copy_(torch.from_numpy(
                q["bh"] if cell == "gru" else np.zeros_like(q["b"])))
    return m


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_matches_torch(cell, need):
    """Both directions of a bidirectional torch module, ragged (packed) batch, initial state:
    outputs, final states and every gradient."""
    torch = need("torch")
    rng = np.random.default_rng(3)
    B, T, I, H = 5, 7, 4, 3
    x, pf, h0f, c0f, _, _ = make(cell, B, T, I, H, rng)
    _, pb, h0b, c0b, _, _ = make(cell, B, T, I, H, rng)
    L = np.array([7, 3, 1, 5, 7])
    t0, t1 = np.zeros(B, np.int64), L.astype(np.int64)
    m = _torch_module(torch, cell, I, H, pf, pb)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    h0t = torch.from_numpy(np.stack([h0f, h0b])).requires_grad_(True)
    st = h0t
    if cell == "lstm":
        c0t = torch.from_numpy(np.stack([c0f, c0b])).requires_grad_(True)
        st = (h0t, c0t)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.from_numpy(L),
                                                      batch_first=True, enforce_sorted=False)
    out, hn = m(packed, st)
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    cn = None
    if cell == "lstm":
        hn, cn = hn
    Ry, Rh = rng.standard_normal((B, T, 2 * H)), rng.standard_normal((2, B, H))
    Rc = rng.standard_normal((2, B, H))
    loss = (yt * torch.from_numpy(Ry)).sum() + (hn * torch.from_numpy(Rh)).sum()
    if cell == "lstm":
        loss = loss + (cn * torch.from_numpy(Rc)).sum()
    loss.backward()

    dx = np.zeros_like(x)
    for d, (p, h0, c0, rev) in enumerate(((pf, h0f, c0f, False), (pb, h0b, c0b, True))):
        y, hT, cT, cache = run_forward(cell, x, p, h0, c0, t0, t1, rev)
        np.testing.assert_allclose(y, yt.detach().numpy()[:, :, d * H:(d + 1) * H], atol=1e-12)
        np.testing.assert_allclose(hT, hn.detach().numpy()[d], atol=1e-12)
        if cell == "lstm":
            np.testing.assert_allclose(cT, cn.detach().numpy()[d], atol=1e-12)
        dyd = np.ascontiguousarray(Ry[:, :, d * H:(d + 1) * H])
        g = run_backward(cell, p, t0, t1, rev, cache, dyd, Rh[d], Rc[d] if cell == "lstm" else None)
        sfx = "_reverse" if rev else ""
        np.testing.assert_allclose(g["W"], getattr(m, "weight_ih_l0" + sfx).grad.numpy().T,
                                   atol=1e-10)
        np.testing.assert_allclose(g["U"], getattr(m, "weight_hh_l0" + sfx).grad.numpy().T,
                                   atol=1e-10)
        if cell == "gru":
            np.testing.assert_allclose(g["b"], getattr(m, "bias_ih_l0" + sfx).grad.numpy(),
                                       atol=1e-10)
            np.testing.assert_allclose(g["bh"], getattr(m, "bias_hh_l0" + sfx).grad.numpy(),
                                       atol=1e-10)
        else:   # b stands for b_ih + b_hh: both receive the same gradient
            np.testing.assert_allclose(g["b"], getattr(m, "bias_ih_l0" + sfx).grad.numpy(),
                                       atol=1e-10)
        np.testing.assert_allclose(g["h0"], h0t.grad.numpy()[d], atol=1e-10)
        if cell == "lstm":
            np.testing.assert_allclose(g["c0"], c0t.grad.numpy()[d], atol=1e-10)
        dx += g["x"]
    np.testing.assert_allclose(dx, xt.grad.numpy(), atol=1e-10)


# ------------------------------------------------------------------ padding, determinism
@pytest.mark.parametrize("cell", CELLS)
def test_padded_steps_are_inert(cell):
    """Padded steps: output 0, state passes through, no input gradient; a pre-padded sequence
    gives the same final state and gradients as the same sequence unpadded."""
    rng = np.random.default_rng(11)
    T, I, H = 6, 3, 4
    x, p, h0, c0, _, _ = make(cell, 2, T, I, H, rng)
    x[1, 2:] = x[0, :4]                       # sequence 1 = sequence 0's first 4 steps, pre-padded
    x[1, :2] = 99.0                           # garbage in the padding
    h0[1], c0 = h0[0], (None if c0 is None else np.stack([c0[0], c0[0]]))
    t0, t1 = np.array([0, 2]), np.array([4, 6])
    y, hT, cT, cache = run_forward(cell, x, p, h0, c0, t0, t1, False)
    assert np.all(y[0, 4:] == 0) and np.all(y[1, :2] == 0)
    np.testing.assert_array_equal(y[1, 2:], y[0, :4])
    np.testing.assert_array_equal(hT[1], hT[0])
    dy = rng.standard_normal((2, T, H))
    dy[1, 2:] = dy[0, :4]
    dhT = np.stack([rng.standard_normal(H)] * 2)
    dcT = dhT * 0.5 if cell == "lstm" else None
    g = run_backward(cell, p, t0, t1, False, cache, dy, dhT, dcT)
    assert np.all(g["x"][0, 4:] == 0) and np.all(g["x"][1, :2] == 0)
    np.testing.assert_allclose(g["x"][1, 2:], g["x"][0, :4], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(g["h0"][1], g["h0"][0], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("cell", CELLS)
def test_bit_identical_across_runs_builds_and_threads(cell):
    rng = np.random.default_rng(5)
    B, T, I, H = 70, 20, 6, 8                  # 2 blocks: the parallel build is used;
    #                                            time chunks of 14 steps (_CHUNK_ROWS)
    assert K._n_blocks(B) == 2 and K._chunk(B // 2, T) < T
    x, p, h0, c0, t0, t1 = make(cell, B, T, I, H, rng, np.float32, ragged=True)
    dy, dhT = (rng.standard_normal(s).astype(np.float32) for s in ((B, T, H), (B, H)))
    dcT = dhT * np.float32(0.5) if cell == "lstm" else None

    def run(build):
        y, hT, cT, cache = run_forward(cell, x, p, h0, c0, t0, t1, True, build)
        g = run_backward(cell, p, t0, t1, True, cache, dy, dhT, dcT, build=build)
        return [y, hT] + ([cT] if cT is not None else []) + [g[k] for k in sorted(g)]

    want = run(None)
    threads = numba.get_num_threads()
    try:
        for build, n in (("parallel", threads), ("serial", 1), ("parallel", 1), (None, threads)):
            numba.set_num_threads(n)
            for a, b in zip(want, run(build)):
                assert a.tobytes() == b.tobytes()
    finally:
        numba.set_num_threads(threads)


@pytest.mark.parametrize("cell", CELLS)
def test_per_step_products_cut_into_pieces(cell):
    """The per-step GEMMs cut for OpenBLAS's small-matrix kernels (_blas.small_mnk, set on
    AVX-512 builds only) give the same results as one call each, and the same on every run."""
    from kernels.cpu import _blas
    rng = np.random.default_rng(11)
    B, T, I, H = 64, 5, 3, 72                   # 2 blocks of 32 rows; U (72, G*72)
    assert _blas.pieces(32, 4 * H, H, 20000) != (1, 1)
    x, p, h0, c0, t0, t1 = make(cell, B, T, I, H, rng, ragged=True)
    dy, dhT = rng.standard_normal((B, T, H)), rng.standard_normal((B, H))
    dcT = 0.5 * dhT if cell == "lstm" else None

    def run():
        y, hT, cT, cache = run_forward(cell, x, p, h0, c0, t0, t1, False)
        g = run_backward(cell, p, t0, t1, False, cache, dy, dhT, dcT)
        return [y, hT] + [g[k] for k in sorted(g)]

    old = _blas.small_mnk(0)
    try:
        whole = run()
        _blas.small_mnk(20000)
        cut, again = run(), run()
    finally:
        _blas.small_mnk(old)
    for a, b, c in zip(whole, cut, again):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
        assert b.tobytes() == c.tobytes()


def test_need_dx_false_and_final_state_only():
    rng = np.random.default_rng(2)
    x, p, h0, c0, t0, t1 = make("lstm", 4, 5, 3, 2, rng, ragged=True)
    y, hT, cT, cache = run_forward("lstm", x, p, h0, c0, t0, t1, False)
    dhT, dcT = rng.standard_normal((4, 2)), np.zeros((4, 2))
    full = run_backward("lstm", p, t0, t1, False, cache, np.zeros((4, 5, 2)), dhT, dcT)
    short = run_backward("lstm", p, t0, t1, False, cache, np.zeros((4, 0, 2)), dhT, dcT, False)
    assert short["x"].shape == (0, 5, 3)
    for k in ("W", "U", "b", "h0", "c0"):
        np.testing.assert_array_equal(short[k], full[k])


# ------------------------------------------------------------------ float32 math, denormals
def test_float32_transcendentals_match_libm():
    x = np.concatenate([np.linspace(-90, 90, 400001), np.linspace(-1e-3, 1e-3, 2001),
                        [0.0, -0.0, np.inf, -np.inf]]).astype(np.float32)
    x64 = x.astype(np.float64)
    s, t = K.sigmoid(x), K.tanh(x)
    assert s.dtype == t.dtype == np.float32
    ref_s, ref_t = 1 / (1 + np.exp(-x64)), np.tanh(x64)
    # relative accuracy, except that the argument is clamped to [-80, 80] so that no result
    # is subnormal: sigmoid(-90) gives sigmoid(-80) = 1.8e-35 instead of 8e-40
    assert np.all(np.abs(s - ref_s) <= np.maximum(2.5e-7 * ref_s, 2e-35))
    assert np.all(s >= 0) and np.all(s <= 1) and np.all(s[ref_s > 0] >= 1.8e-35)
    assert np.all(np.abs(t - ref_t) <= 2.5e-7 * np.maximum(np.abs(ref_t), 1e-30))
    assert t[-2] == 1 and t[-1] == -1 and s[-2] == 1
    assert np.isnan(K.tanh(np.array([np.nan], np.float32))[0])
    assert np.isnan(K.sigmoid(np.array([np.nan], np.float32))[0])


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="FTZ/DAZ are set through x86's MXCSR")
def test_denormals_flushed_inside_kernels_only():
    """A subnormal pre-activation (1e-20 * 1e-20) is flushed to 0 inside the kernel (relu keeps
    it otherwise), while the caller's own arithmetic still produces subnormals afterwards."""
    tiny = np.float32(1e-20)
    x = np.full((1, 1, 1), tiny, np.float32)
    W = np.full((1, 1), tiny, np.float32)
    U, b, h0 = np.zeros((1, 1), np.float32), np.zeros(1, np.float32), np.zeros((1, 1),
                                                                                np.float32)
    t0, t1 = np.zeros(1, np.int64), np.ones(1, np.int64)
    y, hT, _, _ = K.rnn_forward(x, W, U, b, h0, t0, t1, False, K.ACT_RELU)
    assert y[0, 0, 0] == 0 and hT[0, 0] == 0
    assert (np.array([tiny]) * np.array([tiny]))[0] > 0      # the caller's MXCSR is untouched
