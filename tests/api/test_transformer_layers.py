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


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("heads,T", [(1, 1), (2, 5), (3, 9)])
def test_multihead_attention_gradcheck(causal, heads, T, rng):
    layer = L.MultiHeadAttention(heads, causal=causal)
    _, params = layer.init(random.key(0), (T, 2 * heads), np.float64)
    params = {k: v + rng.standard_normal(v.shape) * 0.3 for k, v in params.items()}
    x = rng.standard_normal((2, T, 2 * heads))
    errs = dlkit.gradcheck(layer, params, x, tol=1e-6)
    assert set(errs) == {"dx", "Wqkv", "bqkv", "Wo", "bo"}


def test_multihead_attention_dropout_is_a_function_of_the_key(rng):
    layer = L.MultiHeadAttention(2, dropout=0.3)
    _, params = layer.init(random.key(0), (6, 4), np.float64)
    params = {k: v + rng.standard_normal(v.shape) * 0.3 for k, v in params.items()}
    x = rng.standard_normal((2, 6, 4))
    y1, _ = layer.forward(params, x, key=random.key(3), train=True)
    y2, _ = layer.forward(params, x, key=random.key(3), train=True)
    y3, _ = layer.forward(params, x, key=random.key(4), train=True)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(y1, y3)
    y_eval, _ = layer.forward(params, x)
    assert not np.array_equal(y1, y_eval)
    dlkit.gradcheck(layer, params, x, key=random.key(3), tol=1e-6)
    with pytest.raises(ValueError, match="needs a key"):
        layer.forward(params, x, train=True)


def test_multihead_attention_matches_torch(rng, need):
    torch = need("torch")
    B, T, C, H = 3, 11, 12, 3
    layer = L.MultiHeadAttention(H)
    _, params = layer.init(random.key(0), (T, C), np.float64)
    params = {k: v + rng.standard_normal(v.shape) * 0.2 for k, v in params.items()}
    x = rng.standard_normal((B, T, C))
    dy = rng.standard_normal((B, T, C))
    y, cache = layer.forward(params, x)
    dx, grads = layer.backward(params, cache, dy)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tx = torch.tensor(x, requires_grad=True)
    q, k, v = (t.reshape(B, T, H, C // H).transpose(1, 2)
               for t in (tx @ tp["Wqkv"] + tp["bqkv"]).split(C, dim=2))
    o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    ty = o.transpose(1, 2).reshape(B, T, C) @ tp["Wo"] + tp["bo"]
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name in params:
        np.testing.assert_allclose(grads[name], tp[name].grad.numpy(), rtol=1e-10, atol=1e-12)


def test_multihead_attention_bad_input():
    layer = L.MultiHeadAttention(4)
    with pytest.raises(ValueError, match="multiple of 4 heads"):
        layer.init(random.key(0), (5, 10))
    _, params = layer.init(random.key(0), (5, 8))
    with pytest.raises(ValueError, match="batch, time, features"):
        layer.forward(params, np.zeros((5, 8), np.float32))
    with pytest.raises(ValueError, match="Wqkv"):
        layer.forward(params, np.zeros((1, 5, 12), np.float32))
    with pytest.raises(ValueError, match="heads"):
        L.MultiHeadAttention(0)
    y, cache = layer.forward(params, np.zeros((1, 5, 8), np.float32))
    with pytest.raises(ValueError, match="dy must have shape"):
        layer.backward(params, cache, np.zeros((1, 4, 8), np.float32))


def test_transformer_block_gradcheck_and_names(rng):
    block = L.TransformerBlock(8, 2, mlp_ratio=2, dropout=0.1, n_blocks=2)
    _, params = block.init(random.key(0), (5, 8), np.float64)
    assert sorted(dlkit.tree.flatten(params)) == sorted(
        f"{a}/{b}" for a, b in [("attn", "ln/gamma"), ("attn", "ln/beta"), ("attn", "mha/Wqkv"),
                                ("attn", "mha/bqkv"), ("attn", "mha/Wo"), ("attn", "mha/bo"),
                                ("mlp", "ln/gamma"), ("mlp", "ln/beta"), ("mlp", "fc/W"),
                                ("mlp", "fc/b"), ("mlp", "proj/W"), ("mlp", "proj/b")])
    assert params["mlp"]["proj"]["W"].std() < params["mlp"]["fc"]["W"].std()   # scaled init
    x = rng.standard_normal((2, 5, 8))
    dlkit.gradcheck(block, params, x, key=random.key(1), tol=1e-6)
