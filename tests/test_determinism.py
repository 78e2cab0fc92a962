"""Bit-identical results across thread counts: every kernel family (foundation: dense,
activations, dropout, losses, optimizers; conv: direct, im2col and Winograd; pool; recurrent:
RNN tanh/relu, LSTM, GRU, bidirectional; embedding; transformer: attention with dropout,
GELU, LayerNorm, positions, the block; RBM: CD, PCD, the fused SGD fit, inference)
runs forward and backward in two fresh processes, NUMBA_NUM_THREADS=1 and 2, and the SHA-256 of
each family's outputs must match.  Sizes are big enough for the parallel builds to run (see
kernels.cpu._parallel).  The two processes run once for all families (module fixture), so the
cost is two interpreter starts, not two per family."""
import os
import subprocess
import sys
import textwrap

import pytest

PRELUDE = textwrap.dedent("""
    import hashlib, numpy as np, numba
    from dlkit import layers as L, losses, optim, random, rbm, tree
    rng = np.random.default_rng(0)
    h = None
    def feed(*arrays):
        for a in arrays:
            h.update(np.ascontiguousarray(a).tobytes())

    def layer_roundtrip(layer, in_shape, batch, x=None):
        _, params = layer.init(random.key(1), in_shape)
        if x is None:
            x = rng.standard_normal((batch, *in_shape)).astype(np.float32)
        y, cache = layer.forward(params, x, key=random.key(2), train=True)
        yv = getattr(y, "values", y)
        dy = rng.standard_normal(yv.shape).astype(np.float32)
        dx, g = layer.backward(params, cache, type(y)(dy, y.lengths) if yv is not y else dy)
        feed(yv, *tree.leaves(g))
        if dx is not None:
            feed(getattr(dx, "values", dx))
""")

FAMILIES = {
    "foundation": """
        layer_roundtrip(L.Dense(300, activation="relu"), (500,), 257)
        layer_roundtrip(L.Tanh(), (300,), 257)
        layer_roundtrip(L.Dropout(0.3), (300,), 257)
        z = rng.standard_normal((5000, 10)).astype(np.float32)
        feed(*losses.softmax_cross_entropy(z, rng.integers(0, 10, 5000)))
        p = {"W": rng.standard_normal((700, 300)).astype(np.float32)}
        for opt in (optim.adam(1e-3, l1=1e-4), optim.sgd(0.1, 0.9, nesterov=True),
                    optim.rmsprop(1e-3)):
            u, s = opt.update(p, opt.init(p), p)
            feed(*tree.leaves(u), *tree.leaves(s))
    """,
    "conv": """
        for algo in ("direct", "im2col", "winograd"):
            layer_roundtrip(L.Conv2D(24, 3, padding=1, activation="relu", algorithm=algo),
                            (8, 20, 20), 32)
        layer_roundtrip(L.Conv2D(16, 5, stride=2, padding=2), (3, 28, 28), 64)
        layer_roundtrip(L.Conv2D(16, 3, padding="same", groups=16), (16, 14, 14), 64)
        layer_roundtrip(L.Conv2D(32, 3, padding=1, activation="relu"), (1, 28, 28), 128)
    """,
    "pool": """
        layer_roundtrip(L.MaxPool2D(2), (16, 24, 24), 64)
        layer_roundtrip(L.MaxPool2D(3, stride=2, padding=1), (16, 24, 24), 64)
        layer_roundtrip(L.AvgPool2D(3, stride=2, padding=1), (16, 24, 24), 64)
        layer_roundtrip(L.AvgPool2D(3, stride=2, padding=1, count_include_pad=False),
                        (16, 24, 24), 64)
        layer_roundtrip(L.GlobalAvgPool2D(), (16, 24, 24), 64)
    """,
    "recurrent": """
        for layer in (L.SimpleRNN(32, return_sequences=True),
                      L.SimpleRNN(32, activation="relu", return_sequences=True),
                      L.LSTM(32, return_sequences=True), L.GRU(32, return_sequences=True),
                      L.Bidirectional(L.LSTM(16))):
            layer_roundtrip(layer, (12, 20), 130)
        x = rng.standard_normal((130, 12, 20)).astype(np.float32)
        layer_roundtrip(L.LSTM(32, return_sequences=True), (12, 20), 130,
                        x=L.Padded(x, rng.integers(1, 13, 130)))
    """,
    "embedding": """
        ids = rng.integers(0, 5000, (256, 40))
        layer_roundtrip(L.Embedding(5000, 64), (40,), 256, x=ids)
        layer_roundtrip(L.Embedding(5000, 64, padding_idx=0), (40,), 256, x=ids)
        layer_roundtrip(L.SpatialDropout1D(0.3), (40, 64), 256)
    """,
    "transformer": """
        layer_roundtrip(L.MultiHeadAttention(4, dropout=0.2), (96, 64), 24)
        layer_roundtrip(L.MultiHeadAttention(2, causal=False), (70, 32), 24)
        layer_roundtrip(L.Gelu(), (96, 512), 24)
        layer_roundtrip(L.LayerNorm(), (96, 256), 24)
        layer_roundtrip(L.PositionEmbedding(128), (96, 256), 24)
        layer_roundtrip(L.TransformerBlock(64, 4, dropout=0.1), (64, 64), 24)
    """,
    "rbm": """
        X = (rng.random((600, 784)) < 0.3).astype(np.float32)
        p = rbm.init(random.key(3), 784, 256, data=X)
        g, chain, stats = rbm.cd_grads(p, X[:500], random.key(4), k=2)
        feed(*tree.leaves(g))
        ch = rbm.init_chain(p, X[:500], random.key(5))
        g, chain, _ = rbm.cd_grads(p, X[:500], random.key(6), k=1, chain=ch)
        feed(*tree.leaves(g), chain)
        r = rbm.fit(p, X, random.key(7), epochs=2, batch_size=100)
        feed(*tree.leaves(r.params), *tree.leaves(r.opt_state))
        feed(rbm.transform(p, X), rbm.reconstruct(p, X), rbm.free_energy(p, X),
             *tree.leaves(rbm.free_energy_grad(p, X)), rbm.pseudo_likelihood(p, X, random.key(8)))
        feed(*rbm.gibbs(p, X[:64], random.key(9), n_steps=3)[:2])
    """,
}

SCRIPT = PRELUDE + "".join(
    f"\nh = hashlib.sha256()\n{textwrap.dedent(body)}\nprint('{name}', h.hexdigest())\n"
    for name, body in FAMILIES.items()) + "print('threads', numba.get_num_threads())\n"


@pytest.fixture(scope="module")
def digests():
    out = {}
    for n in ("1", "2"):
        r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                           env=dict(os.environ, NUMBA_NUM_THREADS=n), timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        lines = dict(line.split() for line in r.stdout.splitlines() if line.count(" ") == 1)
        assert lines.pop("threads") == n
        out[n] = lines
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_same_bits_with_one_and_two_threads(family, digests):
    assert family in digests["1"] and family in digests["2"], digests
    assert digests["1"][family] == digests["2"][family], family
