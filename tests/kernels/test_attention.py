"""Attention kernels (kernels.cpu.attention) against their NumPy references, central
differences (with and without dropout), PyTorch's scaled_dot_product_attention, the dropout
mask contract, determinism, and linear peak memory at T = 2048."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from finite_differences import central_differences
from kernels.cpu import activations
from kernels.cpu import attention as K

# (B, H, T, D): T = 1; odd D; T not a multiple of the block (67, 130, 131); one head and
# several; B = 1 and 2; the last is big enough to run the parallel build
SHAPES = [(1, 1, 1, 5), (1, 1, 2, 3), (2, 3, 67, 5), (1, 2, 130, 16), (2, 1, 64, 8),
          (2, 2, 131, 16)]


def _inputs(rng, shape, dtype=np.float64):
    return tuple(rng.standard_normal(shape).astype(dtype) for _ in range(4))


def _scale(shape):
    return 1.0 / np.sqrt(shape[-1])


def _lse_reference(q, k, causal, scale):
    s = K._scores_reference(q, k, causal, scale)
    m = s.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(s - m).sum(axis=-1, keepdims=True)))[..., 0]


def test_parallel_build_is_exercised():
    assert K._work(np.empty(SHAPES[-1])) >= K.GRAIN > K._work(np.empty(SHAPES[-2]))
    assert SHAPES[-1][2] > 2 * K.BQ and SHAPES[-1][2] % K.BQ and K.BQ == K.BK


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference_float64(rng, shape, causal):
    q, k, v, do = _inputs(rng, shape)
    s = _scale(shape)
    out, lse = K.attention_forward(q, k, v, causal, s, 0.0, 0)
    assert out.dtype == lse.dtype == np.float64
    assert out.shape == shape and lse.shape == shape[:3]
    np.testing.assert_allclose(out, K.attention_forward_reference(q, k, v, causal, s),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lse, _lse_reference(q, k, causal, s), rtol=1e-12, atol=1e-12)
    got = K.attention_backward(q, k, v, out, lse, do, causal, s, 0.0, 0)
    want = K.attention_backward_reference(q, k, v, do, causal, s)
    for g, w in zip(got, want):
        assert g.dtype == np.float64 and g.shape == shape
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference_float32(rng, shape, causal):
    q, k, v, do = _inputs(rng, shape, np.float32)
    s = _scale(shape)
    out, lse = K.attention_forward(q, k, v, causal, s, 0.0, 0)
    assert out.dtype == lse.dtype == np.float32
    np.testing.assert_allclose(out, K.attention_forward_reference(q, k, v, causal, s),
                               rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(lse, _lse_reference(q, k, causal, s), rtol=1e-5, atol=1e-5)
    got = K.attention_backward(q, k, v, out, lse, do, causal, s, 0.0, 0)
    want = K.attention_backward_reference(q, k, v, do, causal, s)
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=5e-5)


def test_large_scores_are_stable(rng):
    """Scores of +-1000 (the running max must carry the softmax): no overflow, no NaN."""
    shape = (1, 2, 130, 4)
    q, k, v, do = _inputs(rng, shape)
    q *= 300.0
    for causal in (False, True):
        for dt, tol in ((np.float64, 1e-9), (np.float32, 2e-3)):
            out, lse = K.attention_forward(*(a.astype(dt) for a in (q, k, v)), causal, 1.0,
                                           0.0, 0)
            assert np.isfinite(out).all() and np.isfinite(lse).all()
            np.testing.assert_allclose(out, K.attention_forward_reference(q, k, v, causal, 1.0),
                                       rtol=tol, atol=tol)


FD_SHAPES = [(1, 1, 1, 3), (1, 2, 5, 3), (2, 1, 7, 2), (1, 1, 67, 2)]


@pytest.mark.parametrize("dropout_p", [0.0, 0.3])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", FD_SHAPES)
def test_central_differences(rng, shape, causal, dropout_p):
    q, k, v, R = _inputs(rng, shape)
    s, seed = 0.7, 1234
    out, lse = K.attention_forward(q, k, v, causal, s, dropout_p, seed)
    got = K.attention_backward(q, k, v, out, lse, R, causal, s, dropout_p, seed)
    fd = central_differences(lambda q, k, v: K.attention_forward(q, k, v, causal, s, dropout_p, seed)[0],
                   [q, k, v], R)
    for g, w in zip(got, fd):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1, 5), (2, 3, 67, 5), (2, 4, 130, 32)])
def test_matches_torch(need, rng, shape, causal, dtype, tol):
    torch = need("torch")
    F = torch.nn.functional
    q, k, v, do = _inputs(rng, shape, dtype)
    s = _scale(shape)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    tout = F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal, scale=s)
    tout.backward(torch.tensor(do))
    out, lse = K.attention_forward(q, k, v, causal, s, 0.0, 0)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=tol, atol=tol)
    got = K.attention_backward(q, k, v, out, lse, do, causal, s, 0.0, 0)
    for g, t in zip(got, (tq, tk, tv)):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("causal", [False, True])
def test_dropout_mask_contract(rng, causal):
    """With dropout the output is the reference weights times the keep mask that
    activations.dropout_mask draws over a flat (B, H, T, T) array from the same seed, / (1-p)."""
    shape, p, seed = (2, 3, 67, 5), 0.3, 987654321
    q, k, v, do = _inputs(rng, shape)
    thr = np.uint64(round(p * 2 ** 32))
    keep = activations.dropout_mask(np.uint64(seed), 2 * 3 * 67 * 67, thr).reshape(2, 3, 67, 67)
    w = K._softmax_reference(K._scores_reference(q, k, causal, 0.5)) * keep / (1 - p)
    out, lse = K.attention_forward(q, k, v, causal, 0.5, p, seed)
    np.testing.assert_allclose(out, w @ v, rtol=1e-12, atol=1e-12)
    # the normaliser is over the undropped weights
    np.testing.assert_allclose(lse, _lse_reference(q, k, causal, 0.5), rtol=1e-12, atol=1e-12)


def test_dropout_seeds_and_rate(rng):
    shape = (2, 2, 130, 16)
    q, k, v, do = _inputs(rng, shape, np.float32)
    plain = K.attention_forward(q, k, v, True, 0.25, 0.0, 0)
    for seed in (0, 5):   # p = 0: no dropout, whatever the seed
        for a, b in zip(plain, K.attention_forward(q, k, v, True, 0.25, 0.0, seed)):
            np.testing.assert_array_equal(a, b)
    a = K.attention_forward(q, k, v, True, 0.25, 0.3, 11)
    b = K.attention_forward(q, k, v, True, 0.25, 0.3, 11)
    c = K.attention_forward(q, k, v, True, 0.25, 0.3, 12)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    np.testing.assert_array_equal(a[1], plain[1])
    ga = K.attention_backward(q, k, v, a[0], a[1], do, True, 0.25, 0.3, 11)
    gb = K.attention_backward(q, k, v, b[0], b[1], do, True, 0.25, 0.3, 11)
    for x, y in zip(ga, gb):
        np.testing.assert_array_equal(x, y)
    # v = identity (D = T): out is the dropped weight matrix itself
    T = 64
    qq, kk = (rng.standard_normal((2, 2, T, T)) for _ in range(2))
    eye = np.broadcast_to(np.eye(T), (2, 2, T, T)).copy()
    w, _ = K.attention_forward(qq, kk, eye, False, 0.3, 0.3, 3)
    assert abs((w == 0).mean() - 0.3) < 0.02
    np.testing.assert_allclose(w.sum(axis=-1).mean(), 1.0, atol=0.03)


@pytest.mark.parametrize("dropout_p", [0.0, 0.2])
@pytest.mark.parametrize("causal", [False, True])
def test_deterministic_and_thread_independent(rng, causal, dropout_p):
    import numba
    shape = SHAPES[-1]
    q, k, v, do = _inputs(rng, shape, np.float32)
    args = (q, k, v, causal, 0.25, dropout_p, 7)
    first = K.attention_forward(*args)
    g1 = K.attention_backward(q, k, v, *first, do, causal, 0.25, dropout_p, 7)
    for _ in range(2):
        for a, b in zip(first, K.attention_forward(*args)):
            np.testing.assert_array_equal(a, b)
    serial = K.attention_forward.serial(*args)
    for a, b in zip(first, serial):
        np.testing.assert_array_equal(a, b)
    g2 = K.attention_backward.serial(q, k, v, *first, do, causal, 0.25, dropout_p, 7)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = K.attention_forward(*args)
        g3 = K.attention_backward(q, k, v, *first, do, causal, 0.25, dropout_p, 7)
    finally:
        numba.set_num_threads(old)
    for a, b in zip(first, one):
        np.testing.assert_array_equal(a, b)
    for x, y, z in zip(g1, g2, g3):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)


_MEMORY_SCRIPT = textwrap.dedent("""
    import numpy as np
    import dlkit  # noqa: F401
    from kernels.cpu import attention as K

    def hwm():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024

    rng = np.random.default_rng(0)
    def inputs(T):
        return [rng.standard_normal((1, 1, T, 64)).astype(np.float32) for _ in range(4)]
    for T in (256, 2048):                  # compile / load both builds, grow the heap once
        q, k, v, do = inputs(T)
        o, l = K.attention_forward(q, k, v, True, 0.125, 0.0, 0)
        K.attention_backward(q, k, v, o, l, do, True, 0.125, 0.0, 0)
    q, k, v, do = inputs(2048)
    h0 = hwm()
    o, l = K.attention_forward(q, k, v, True, 0.125, 0.0, 0)
    h1 = hwm()
    K.attention_backward(q, k, v, o, l, do, True, 0.125, 0.0, 0)
    h2 = hwm()
    s = q[0, 0] @ k[0, 0].T                # control: one (T, T) float32 matrix is seen
    s += 1
    h3 = hwm()
    print(h1 - h0, h2 - h1, h3 - h2)
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc VmHWM")
def test_peak_memory_is_linear_in_T():
    """At T = 2048 (B = H = 1, D = 64, float32) a (T, T) float32 matrix is 16 MB; the peak
    resident memory (VmHWM, in a fresh process, after a warm-up run) grows by far less
    during the forward and the backward, while the control (T, T) product shows up."""
    res = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT], capture_output=True,
                         text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert res.returncode == 0, res.stderr
    fwd, bwd, control = map(int, res.stdout.split())
    TT = 2048 * 2048 * 4
    assert control >= TT // 2, (fwd, bwd, control)
    assert fwd < TT // 8 and bwd < TT // 8, (fwd, bwd, control)
