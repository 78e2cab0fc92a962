"""Embedding and spatial-dropout kernels: gather, deterministic row-partitioned backward
(bit-identical to summing each row's positions in order, across builds and thread counts),
padding row, float32/float64, the channel mask."""
import numba
import numpy as np
import pytest

from kernels.cpu import embedding as K


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N,V,D", [(1, 1, 1), (7, 3, 5), (12800, 10000, 128)])
def test_forward_is_a_gather(dtype, N, V, D, rng):
    E = rng.standard_normal((V, D)).astype(dtype)
    ids = rng.integers(0, V, N)
    y = K.embedding_forward(ids, E)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, E[ids])


def _ordered_reference(ids, dy, V, pad):
    """Each row's positions summed one by one in increasing position (the kernel's order)."""
    dE = np.zeros((V, dy.shape[1]), dy.dtype)
    for i, v in enumerate(ids):
        if v != pad:
            dE[v] += dy[i]
    return dE


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pad", [-1, 0, 3])
def test_backward_sums_rows_in_order(dtype, pad, rng):
    V, D, N = 11, 6, 300
    ids = rng.integers(0, V, N)
    ids[ids == 7] = 5                                   # a row that never occurs
    dy = rng.standard_normal((N, D)).astype(dtype)
    dE = K.embedding_backward(ids, dy, V, pad)
    assert dE.dtype == dtype and dE.shape == (V, D)
    want = _ordered_reference(ids, dy, V, pad)
    assert dE.tobytes() == want.tobytes()               # same order, same bits
    scatter = np.zeros((V, D))
    np.add.at(scatter, ids, dy.astype(np.float64))
    if pad >= 0:
        scatter[pad] = 0
    np.testing.assert_allclose(dE, scatter, rtol=1e-5, atol=1e-5)
    assert np.all(dE[7] == 0)
    if pad >= 0:
        assert np.all(dE[pad] == 0)


def test_backward_bit_identical_across_builds_and_threads(rng):
    V, D, N = 10000, 128, 12800                          # big enough for the parallel build
    ids = rng.integers(0, V, N)
    dy = rng.standard_normal((N, D)).astype(np.float32)
    want = K.embedding_backward(ids, dy, V, -1)
    threads = numba.get_num_threads()
    try:
        for build, n in (("parallel", 1), ("serial", 1), ("parallel", threads)):
            numba.set_num_threads(n)
            got = getattr(K.embedding_backward, build)(ids, dy, V, -1)
            assert got.tobytes() == want.tobytes()
    finally:
        numba.set_num_threads(threads)


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 4), (64, 200, 128)])
def test_spatial_dropout_drops_whole_channels(shape, rng):
    B, T, D = shape
    x = rng.standard_normal(shape).astype(np.float32)
    keep = (rng.random((B, D)) > 0.4).astype(np.uint8)
    y = K.spatial_dropout_forward(x, keep, 1 / 0.6)
    np.testing.assert_allclose(y, x * keep[:, None, :] * np.float32(1 / 0.6), rtol=1e-6)
    assert np.all(y[np.broadcast_to(keep[:, None, :] == 0, shape)] == 0)
    dy = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(K.spatial_dropout_backward(dy, keep, 1 / 0.6),
                                  K.spatial_dropout_forward(dy, keep, 1 / 0.6))
