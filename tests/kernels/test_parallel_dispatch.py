"""Kernels built with parallel_above give the same bits from their serial and parallel builds,
so where the size threshold falls never changes a result."""
import numpy as np
import pytest

from kernels.cpu import activations as A
from kernels.cpu import dense as D
from kernels.cpu import losses as Ls
from kernels.cpu import optim as O


def both(kernel, *args):
    return kernel.serial(*args), kernel.parallel(*args)


def same(a, b):
    if isinstance(a, tuple):
        return all(same(x, y) for x, y in zip(a, b))
    return np.asarray(a).tobytes() == np.asarray(b).tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_serial_and_parallel_builds_agree_bitwise(dtype, rng):
    x = rng.standard_normal((300, 70)).astype(dtype)
    W = rng.standard_normal((70, 50)).astype(dtype)
    b = rng.standard_normal(50).astype(dtype)
    y = D.dense_forward(x, W, b, D.ACT_SIGMOID)
    dy = rng.standard_normal(y.shape).astype(dtype)
    flat = rng.standard_normal(100_003).astype(dtype)
    keep = (rng.random(flat.size) > 0.5).astype(np.uint8)
    labels = rng.integers(0, 50, 300)
    cases = [(D.dense_forward, x, W, b, D.ACT_SIGMOID),
             (D.dense_backward, x, W, y, dy, D.ACT_SIGMOID, True),
             (A.activation_forward, flat, A.TANH, 0.0),
             (A.activation_backward, flat, flat, flat, A.LEAKY_RELU, 0.1),
             (A.softmax_forward, y, True), (A.softmax_backward, y, dy, False),
             (A.dropout_forward, flat, keep, 2.0),
             (Ls.softmax_cross_entropy, y, labels),
             (Ls.sigmoid_binary_cross_entropy, flat, np.abs(np.tanh(flat))),
             (Ls.mean_squared_error, flat, flat[::-1].copy()),
             (O.adam_update, flat, flat, flat, flat, 1e-3, 0.9, 0.999, 1e-8, 3, 0.01, 0.0, 0.0),
             (O.sgd_update, flat, flat, flat, 0.1, 0.9, True, 1e-4, 1e-5),
             (O.rmsprop_update, flat, flat, flat, flat, 0.01, 0.99, 1e-8, 0.9, 0.0, 0.0)]
    for kernel, *args in cases:
        assert same(*both(kernel, *args)), kernel.__name__
