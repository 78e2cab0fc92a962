"""kernels.cuda.attention against its kernels.cpu twin and a float64 NumPy reference.

Small shapes (the simulator runs every CUDA thread as a Python thread): T = 1, T not a multiple
of the tiles, causal and not, with and without dropout (the CUDA mask must be the CPU's: same
out for the same seed), float32 and float64; with the default 64-row blocks / 32-row tiles and
with tiny tiles (8-row blocks, 4-row tiles) so that several query and key tiles, partial last
tiles and the causal tile skipping all run.  Every launcher is checked to make no host
transfer; repeat runs are bit-identical; the head split / merge copies match the CPU's.
"""
import inspect

import numpy as np
import pytest

from dlkit import device

OK, WHY = device.available()
if not OK:
    pytest.skip(WHY, allow_module_level=True)

from numba import cuda  # noqa: E402

from kernels.cpu import activations as CACT  # noqa: E402
from kernels.cpu import attention as CA  # noqa: E402
from kernels.cuda import attention as GA  # noqa: E402

# The simulator runs the uint64 dropout hash as numpy scalars, which warn on the (intended)
# wrap-around; on a GPU and in the CPU's njit code it wraps silently.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

NAMES = ("attention_forward", "attention_backward", "heads_split", "heads_merge")


def _data(rng, shape, dtype):
    return tuple(rng.standard_normal(shape).astype(dtype) for _ in range(4))


def _dev(*arrays):
    return tuple(cuda.to_device(np.ascontiguousarray(a)) for a in arrays)


def _close(got, want, rtol):
    g = got.copy_to_host()
    assert g.dtype == want.dtype and g.shape == want.shape, (g.dtype, g.shape, want.shape)
    # atol against the inputs' scale (1): a gradient that is 0 in exact arithmetic (T = 1)
    # comes out as rounding noise
    scale = float(np.max(np.abs(want))) if want.size else 1.0
    np.testing.assert_allclose(g, want, rtol=rtol, atol=rtol * max(scale, 1.0))


def _mask(shape, p, seed):
    """Z (B, H, T, T) float64: the CPU's dropout mask (activations.dropout_mask over the flat
    (B, H, T, T) array) over 1 - p."""
    B, H, T, _ = shape
    if p == 0:
        return np.ones((B, H, T, T))
    keep = CACT.dropout_mask(np.uint64(seed), B * H * T * T, np.uint64(int(p * 2.0 ** 32 + 0.5)))
    return keep.reshape(B, H, T, T) / (1.0 - p)


def _reference(q, k, v, do, causal, scale, p, seed):
    """float64 out, lse, dq, dk, dv with the whole (T, T) matrices, dropout included."""
    q, k, v, do = (a.astype(np.float64) for a in (q, k, v, do))
    s = CA._scores_reference(q, k, causal, scale)
    m = s.max(axis=-1, keepdims=True)
    lse = m + np.log(np.exp(s - m).sum(axis=-1, keepdims=True))
    P = np.exp(s - lse)
    Z = _mask(q.shape, p, seed)
    out = (P * Z) @ v
    dv = (P * Z).swapaxes(-1, -2) @ do
    dp = Z * (do @ v.swapaxes(-1, -2))
    ds = P * (dp - (do * out).sum(axis=-1, keepdims=True))
    return out, lse[..., 0], scale * ds @ k, scale * ds.swapaxes(-1, -2) @ q, dv


def _run(shape, dtype, causal, p, seed, rng, transfers):
    q, k, v, do = _data(rng, shape, dtype)
    sc = 1.0 / np.sqrt(shape[-1])
    qd, kd, vd, dod = _dev(q, k, v, do)
    transfers.reset()
    out, lse = GA.attention_forward(qd, kd, vd, causal, sc, p, seed)
    grads = GA.attention_backward(qd, kd, vd, out, lse, dod, causal, sc, p, seed)
    assert (transfers.h2d, transfers.d2h, transfers.implicit) == (0, 0, 0), transfers
    return (q, k, v, do, sc), (out, lse, *grads)


# (B, H, T, D): T = 1; T = 2; T = 37 and 40 (not / multiples of 4 and 8, not of 32 or 64).
# Every (causal, dropout) case runs at T = 37, the others a selection (the simulator is slow:
# a tiny-tile case takes about 10 s).
ALL = [(False, 0.0), (True, 0.0), (False, 0.3), (True, 0.25)]
RUNS = ([((2, 1, 37, 5), "default", c, p) for c, p in ALL]
        + [((1, 1, 1, 4), "default", False, 0.0), ((1, 1, 1, 4), "default", True, 0.25),
           ((1, 2, 2, 3), "default", True, 0.0), ((1, 2, 2, 3), "default", False, 0.3),
           ((1, 2, 40, 8), "default", True, 0.25),
           ((2, 1, 37, 5), "tiny", True, 0.25), ((2, 1, 37, 5), "tiny", False, 0.3),
           ((1, 2, 40, 8), "tiny", True, 0.0)])


@pytest.mark.parametrize("shape,tiles,causal,p", RUNS)
def test_matches_cpu_and_reference_float32(rng, transfers, monkeypatch, shape, tiles, causal,
                                           p):
    if tiles == "tiny":
        monkeypatch.setattr(GA, "BQ", 8)
        monkeypatch.setattr(GA, "BK", 4)
    seed = 12345 + shape[2]
    (q, k, v, do, sc), got = _run(shape, np.float32, causal, p, seed, rng, transfers)
    out, lse = CA.attention_forward(q, k, v, causal, sc, p, seed)
    want = (out, lse, *CA.attention_backward(q, k, v, out, lse, do, causal, sc, p, seed))
    ref = _reference(q, k, v, do, causal, sc, p, seed)
    for name, g, w, r in zip(("out", "lse", "dq", "dk", "dv"), got, want, ref):
        _close(g, w, 1e-4 if name in ("out", "lse") else 3e-4)
        _close(g, r.astype(np.float32), 1e-4 if name in ("out", "lse") else 3e-4)


@pytest.mark.parametrize("causal,p", [(False, 0.0), (True, 0.2)])
@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (2, 2, 13, 3)])
def test_float64_matches_reference(rng, transfers, monkeypatch, shape, causal, p):
    monkeypatch.setattr(GA, "BQ", 8)
    monkeypatch.setattr(GA, "BK", 4)
    seed = np.uint64(2 ** 63 + 99)             # a seed past int64 works as on the CPU
    (q, k, v, do, sc), got = _run(shape, np.float64, causal, p, seed, rng, transfers)
    out, lse = CA.attention_forward(q, k, v, causal, sc, p, seed)
    want = (out, lse, *CA.attention_backward(q, k, v, out, lse, do, causal, sc, p, seed))
    for g, w, r in zip(got, want, _reference(q, k, v, do, causal, sc, p, seed)):
        _close(g, w, 1e-12)
        _close(g, r, 1e-12)


def test_dropout_mask_is_the_cpus(rng, transfers):
    """With V = I (T = D) out is the dropped weight matrix itself: the kept / dropped pattern
    must be the CPU's exactly, and dropout must actually drop."""
    T = 8
    q, k, _, _ = _data(rng, (1, 2, T, T), np.float32)
    v = np.broadcast_to(np.eye(T, dtype=np.float32), (1, 2, T, T)).copy()
    qd, kd, vd = _dev(q, k, v)
    for seed in (0, 7):
        got = GA.attention_forward(qd, kd, vd, False, 0.5, 0.4, seed)[0].copy_to_host()
        want = CA.attention_forward(q, k, v, False, 0.5, 0.4, seed)[0]
        np.testing.assert_array_equal(got == 0, want == 0)
        assert 0 < np.mean(got == 0) < 1


def test_deterministic(rng):
    q, k, v, do = _dev(*_data(rng, (1, 2, 37, 5), np.float32))

    def run():
        out, lse = GA.attention_forward(q, k, v, True, 0.4, 0.1, 3)
        grads = GA.attention_backward(q, k, v, out, lse, do, True, 0.4, 0.1, 3)
        return [a.copy_to_host() for a in (out, lse, *grads)]
    for a, b in zip(run(), run()):
        assert a.tobytes() == b.tobytes()


def test_tiles_fit_shared_memory():
    """Wide float64 rows shrink the staged key / query tile so the shared tiles fit."""
    for dtype, D in ((np.float32, 5), (np.float32, 128), (np.float64, 64), (np.float64, 200)):
        dmax, bk = GA._tiles(dtype, D)
        assert dmax >= D and dmax % 8 == 0
        assert (2 * bk * (dmax + 1) + 2 * bk) * np.dtype(dtype).itemsize <= GA.SMEM_BYTES
        assert bk >= 8
    assert GA._tiles(np.float32, 64)[1] == GA.BK
    assert GA._tiles(np.float64, 200)[1] < GA.BK


@pytest.mark.parametrize("B,T,P,H,D", [(1, 1, 1, 1, 1), (2, 5, 3, 2, 4), (1, 7, 2, 3, 3)])
def test_heads_split_merge(rng, transfers, B, T, P, H, D):
    x = rng.standard_normal((B, T, P * H * D)).astype(np.float32)
    (xd,) = _dev(x)
    transfers.reset()
    parts = GA.heads_split(xd, P, H)
    back = GA.heads_merge(tuple(parts[p] for p in range(P)))
    assert (transfers.h2d, transfers.d2h, transfers.implicit) == (0, 0, 0), transfers
    want = x.reshape(B, T, P, H, D).transpose(2, 0, 3, 1, 4)
    got = parts.copy_to_host()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, CA.heads_split(x, P, H))
    np.testing.assert_array_equal(back.copy_to_host(), x)
    np.testing.assert_array_equal(back.copy_to_host(),
                                  CA.heads_merge(tuple(np.ascontiguousarray(w) for w in want)))


def test_names_match():
    for name in NAMES:
        f = getattr(CA, name)
        pf = getattr(f, "__wrapped__", f)
        assert (list(inspect.signature(pf).parameters)
                == list(inspect.signature(getattr(GA, name)).parameters)), name
