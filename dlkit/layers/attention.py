"""Attention layers (kernels: kernels.cpu.attention, kernels.cpu.dense; their CUDA twins).

    MultiHeadAttention(heads, causal=True, dropout=0.0)
        x (B, T, C) -> y (B, T, C): q, k, v = x Wqkv + bqkv split into ``heads`` heads of
        D = C / heads features; o = softmax(q k^T / sqrt(D) [+ causal mask]) v per head (the
        fused kernel: the (T, T) weights are never stored); y = o Wo + bo with the heads
        concatenated.  params Wqkv (C, 3C) (q, k, v columns in that order, each head-major),
        bqkv (3C,), Wo (C, C), bo (C,).  Dropout on the attention weights, in training.
    TransformerBlock(dim, heads, mlp_ratio=4, dropout=0.0, causal=True, n_blocks=1)
        The pre-norm block of GPT-2, written with the combinators of dlkit.nn:
        x + attn(ln(x)), then h + mlp(ln(h)), mlp = Dense(mlp_ratio dim), GELU, Dense(dim),
        dropout.  params ``attn/ln``, ``attn/mha``, ``mlp/ln``, ``mlp/fc``, ``mlp/proj``.

Layout: q, k, v live in the kernels' (B, heads, T, D) layout between the projections; the
head split and merge are kernel copies (``heads_split`` / ``heads_merge``), so the same code
runs on numpy arrays and on CUDA device arrays.
"""
from __future__ import annotations

import math

import numpy as np

from kernels.cpu import dense as D

from .. import _check as chk
from .. import device
from .. import init as initializers
from ..init import Initializer
from ..random import _seed, split
from .base import Layer, _register


def MultiHeadAttention(heads: int, causal: bool = True, dropout: float = 0.0,
                       W_init: str | Initializer | None = None,
                       out_init: str | Initializer | None = None) -> Layer:
    """Multi-head scaled-dot-product self-attention over x (B, T, C).

    Args:
        heads: H, the number of heads; C must be a multiple of it (head size D = C / H).
        causal: position t attends to positions <= t only (a language model's mask).
        dropout: the rate of dropout on the attention weights, in training (the kernels draw
            the mask from the forward's key; the backward recomputes it).
        W_init: initialiser of Wqkv; default N(0, 0.02^2) (GPT-2's).
        out_init: initialiser of Wo; default W_init's (GPT-2 scales it by 1 / sqrt(2 layers):
            ``TransformerBlock`` does).

    Returns:
        A ``Layer``: input shape ``(T, C)``, output the same; float32 (float64 for gradient
        checks).  params ``Wqkv`` (C, 3C), ``bqkv`` (3C,), ``Wo`` (C, C), ``bo`` (C,).

    Raises:
        ValueError: bad heads or dropout here; C not a multiple of heads in init; in forward,
            an input that is not (B, T, C), params of the wrong shapes, train=True with dropout
            and no key.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, random
        >>> mha = L.MultiHeadAttention(4)
        >>> out_shape, params = mha.init(random.key(0), (10, 32))
        >>> out_shape, params["Wqkv"].shape, params["Wo"].shape
        ((10, 32), (32, 96), (32, 32))
        >>> x = np.random.default_rng(0).standard_normal((2, 10, 32)).astype(np.float32)
        >>> y, cache = mha.forward(params, x)
        >>> y2, _ = mha.forward(params, x[:, :4])      # causal: a prefix sees only itself
        >>> bool(np.allclose(y[:, :4], y2, atol=1e-6))
        True
    """
    H = chk.positive_int(heads, "MultiHeadAttention heads")
    rate = chk.rate(dropout, "MultiHeadAttention dropout")
    causal = bool(causal)
    w_init = initializers.normal(0.02) if W_init is None else initializers.get(W_init)
    o_init = w_init if out_init is None else initializers.get(out_init)
    what = f"MultiHeadAttention({H}{', causal' if causal else ''})"

    def init(key, in_shape, dtype=np.float32):
        in_shape = tuple(in_shape)
        if len(in_shape) != 2 or in_shape[1] % H:
            raise ValueError(f"{what}: expected an input shape (time, features) with features "
                             f"a multiple of {H} heads, got {in_shape}")
        C = in_shape[1]
        kq, ko = split(key)
        return in_shape, {"Wqkv": w_init(kq, (C, 3 * C), dtype), "bqkv": np.zeros(3 * C, dtype),
                          "Wo": o_init(ko, (C, C), dtype), "bo": np.zeros(C, dtype)}

    def _params(params, C, dtype, where):
        chk.params(params, ("Wqkv", "bqkv", "Wo", "bo"), what)
        return (chk.array(params["Wqkv"], (C, 3 * C), dtype, f"{where} Wqkv"),
                chk.array(params["bqkv"], (3 * C,), dtype, f"{where} bqkv"),
                chk.array(params["Wo"], (C, C), dtype, f"{where} Wo"),
                chk.array(params["bo"], (C,), dtype, f"{where} bo"))

    def forward(params, x, *, key=None, train=False):
        x = chk.kernel_array(chk.floating(x, f"{what} input"), f"{what} input")
        chk.ndim(x, 3, f"{what} input", "batch, time, features")
        B, T, C = x.shape
        if C % H:
            raise ValueError(f"{what}: the input has {C} features, not a multiple of {H} "
                             f"heads (x.shape={x.shape})")
        Wqkv, bqkv, Wo, bo = _params(params, C, x.dtype, what)
        drop = rate if train else 0.0
        if drop and key is None:
            raise ValueError(f"{what}: training mode with dropout needs a key "
                             "(forward(..., key=k, train=True)) to draw the mask")
        seed = _seed(key) if drop else np.uint64(0)
        chk.elements((B, T, 3 * C), f"{what} q, k, v")
        K = device.kernels("dense", x, Wqkv, bqkv, Wo, bo, what=what)
        A = device.kernels("attention", x, what=what)
        x2 = x.reshape(B * T, C)
        qkv = A.heads_split(K.dense_forward(x2, Wqkv, bqkv, D.ACT_NONE).reshape(B, T, 3 * C),
                            3, H)                            # (3, B, H, T, D)
        o, lse = A.attention_forward(qkv[0], qkv[1], qkv[2], causal, 1.0 / math.sqrt(C // H),
                                     drop, seed)
        o2 = A.heads_merge((o,)).reshape(B * T, C)
        y = K.dense_forward(o2, Wo, bo, D.ACT_NONE)
        return y.reshape(B, T, C), (x2, qkv, o, lse, o2, drop, seed)

    def backward(params, cache, dy, *, need_dx=True):
        x2, qkv, o, lse, o2, drop, seed = chk.cache(cache, 7, what)
        x2 = chk.floating(x2, f"{what} backward cache x")
        chk.ndim(x2, 2, f"{what} backward cache x", "batch * time, features")
        N, C = x2.shape
        dt = x2.dtype
        if getattr(qkv, "ndim", 0) != 5 or qkv.shape[0] != 3 or qkv.shape[2] != H or \
                qkv.shape[1] * qkv.shape[3] != N or qkv.shape[2] * qkv.shape[4] != C:
            raise ValueError(f"{what} backward: the cache's q, k, v {chk.describe(qkv)} do "
                             f"not match its input {x2.shape}")
        B, T = qkv.shape[1], qkv.shape[3]
        chk.array(qkv, qkv.shape, dt, f"{what} backward cache q, k, v")
        chk.array(o, qkv.shape[1:], dt, f"{what} backward cache o")
        chk.array(o2, (N, C), dt, f"{what} backward cache o2")
        Wqkv, _, Wo, _ = _params(params, C, dt, f"{what} backward")
        dy = chk.kernel_array(chk.floating(dy, f"{what} backward dy"), f"{what} backward dy")
        if dy.shape != (B, T, C) or dy.dtype != dt:
            raise ValueError(f"{what} backward: dy must have shape {(B, T, C)} and dtype {dt}, "
                             f"got {dy.shape} {dy.dtype}")
        K = device.kernels("dense", x2, Wqkv, Wo, dy, what=what)
        A = device.kernels("attention", dy, what=what)
        dy2 = dy.reshape(N, C)
        # linear projections: dense_backward does not read its y argument (pass dy's shape)
        do2, dWo, dbo = K.dense_backward(o2, Wo, dy2, dy2, D.ACT_NONE, True)
        do = A.heads_split(do2.reshape(B, T, C), 1, H)[0]
        dq, dk, dv = A.attention_backward(qkv[0], qkv[1], qkv[2], o, lse, do, causal,
                                          1.0 / math.sqrt(C // H), drop, seed)
        dqkv = A.heads_merge((dq, dk, dv)).reshape(N, 3 * C)
        dx2, dWqkv, dbqkv = K.dense_backward(x2, Wqkv, dqkv, dqkv, D.ACT_NONE, bool(need_dx))
        grads = {"Wqkv": dWqkv, "bqkv": dbqkv, "Wo": dWo, "bo": dbo}
        return (dx2.reshape(B, T, C) if need_dx else None), grads

    def macs(in_shape, out_shape, params):      # per sample: projections + q k^T + p v
        T, C = in_shape
        pairs = T * (T + 1) // 2 if causal else T * T
        return 4 * T * C * C + 2 * pairs * C

    return _register(Layer(init, forward, backward), "MultiHeadAttention", macs)


def TransformerBlock(dim: int, heads: int, mlp_ratio: int = 4, dropout: float = 0.0,
                     causal: bool = True, n_blocks: int = 1) -> Layer:
    """GPT-2's pre-norm transformer block, from the combinators of ``dlkit.nn``::

        h = x + Dropout(MultiHeadAttention(LayerNorm(x)))
        y = h + Dropout(Dense(dim)(GELU(Dense(mlp_ratio * dim)(LayerNorm(h)))))

    Args:
        dim: C, the model width (the input's last axis).
        heads: attention heads (C a multiple of it).
        mlp_ratio: the MLP's hidden width over C.
        dropout: on the attention weights and on each branch's output, in training.
        causal: the attention's mask.
        n_blocks: how many blocks the model stacks: the two output projections start at
            N(0, (0.02 / sqrt(2 n_blocks))^2), GPT-2's scaled init; the rest N(0, 0.02^2).

    Returns:
        A ``Layer`` (B, T, C) -> (B, T, C) with params ``attn/ln``, ``attn/mha``, ``mlp/ln``,
        ``mlp/fc``, ``mlp/proj`` (and nothing else: Dropout and GELU have none).

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, random, tree
        >>> block = L.TransformerBlock(32, 4)
        >>> out_shape, params = block.init(random.key(0), (10, 32))
        >>> out_shape, sorted(params), tree.size(params)
        ((10, 32), ['attn', 'mlp'], 12704)
    """
    from .. import nn
    from .core import Dense, Dropout, Gelu
    from .norm import LayerNorm
    from .recurrent import TimeDistributed
    C = chk.positive_int(dim, "TransformerBlock dim")
    hidden = chk.positive_int(mlp_ratio, "TransformerBlock mlp_ratio") * C
    rate = chk.rate(dropout, "TransformerBlock dropout")
    n = chk.positive_int(n_blocks, "TransformerBlock n_blocks")
    small, proj = initializers.normal(0.02), initializers.normal(0.02 / math.sqrt(2 * n))
    attn = [("ln", LayerNorm()), ("mha", MultiHeadAttention(heads, causal, rate, small, proj))]
    mlp = [("ln", LayerNorm()), ("fc", TimeDistributed(Dense(hidden, W_init=small))),
           ("gelu", Gelu()), ("proj", TimeDistributed(Dense(C, W_init=proj)))]
    if rate:
        attn.append(("drop", Dropout(rate)))
        mlp.append(("drop", Dropout(rate)))
    return nn.serial(("attn", nn.residual(*attn)), ("mlp", nn.residual(*mlp)))
