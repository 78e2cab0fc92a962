"""Transformer layers: PositionEmbedding, MultiHeadAttention, TransformerBlock (gradients by
float64 finite differences, agreement with PyTorch, bad input)."""
import numpy as np
import pytest

import dlkit
from dlkit import layers as L
from dlkit import random


@pytest.mark.parametrize("kind", ["learned", "sinusoidal"])
def test_position_embedding_gradcheck(kind, rng):
    layer = L.PositionEmbedding(7, kind=kind)
    _, params = layer.init(random.key(0), (5, 3), np.float64)
    x = rng.standard_normal((2, 5, 3))
    errs = dlkit.gradcheck(layer, params, x, tol=1e-7)
    assert set(errs) == ({"dx", "P"} if kind == "learned" else {"dx"})
    y, cache = layer.forward(params, x)
    table = params["P"] if kind == "learned" else L.embedding.sinusoidal_table(7, 3, np.float64)
    np.testing.assert_array_equal(y, x + table[:5])
    if kind == "learned":
        dP = layer.backward(params, cache, np.ones_like(x))[1]["P"]
        np.testing.assert_array_equal(dP, np.r_[np.full((5, 3), 2.0), np.zeros((2, 3))])


def test_sinusoidal_table_matches_the_formula():
    P = L.embedding.sinusoidal_table(50, 6, np.float64)
    t, i = 37, 2
    assert P[t, 2 * i] == pytest.approx(np.sin(t / 10000 ** (2 * i / 6)))
    assert P[t, 2 * i + 1] == pytest.approx(np.cos(t / 10000 ** (2 * i / 6)))
    assert L.embedding.sinusoidal_table(4, 5).shape == (4, 5)


def test_position_embedding_bad_input():
    layer = L.PositionEmbedding(4)
    _, params = layer.init(random.key(0), (4, 3))
    with pytest.raises(ValueError, match="5 steps, more than max_len 4"):
        layer.forward(params, np.zeros((1, 5, 3), np.float32))
    with pytest.raises(ValueError, match="P"):
        layer.forward(params, np.zeros((1, 4, 2), np.float32))
    with pytest.raises(ValueError, match="time <= 4"):
        layer.init(random.key(0), (6, 3))
    with pytest.raises(ValueError, match="kind"):
        L.PositionEmbedding(4, kind="rotary")
