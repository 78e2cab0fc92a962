"""Bit-identical results across thread counts: every kernel family runs in two fresh processes,
NUMBA_NUM_THREADS=1 and 2, and the SHA-256 of all its outputs must match.  Sizes are big enough
for the parallel builds to run (see kernels.cpu._parallel)."""
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import hashlib, numpy as np, numba
    from dlkit import layers as L, losses, optim, random, tree
    rng = np.random.default_rng(0)
    h = hashlib.sha256()
    def feed(*arrays):
        for a in arrays:
            h.update(np.ascontiguousarray(a).tobytes())

    def layer_roundtrip(layer, in_shape, batch):
        _, params = layer.init(random.key(1), in_shape)
        x = rng.standard_normal((batch, *in_shape)).astype(np.float32)
        y, cache = layer.forward(params, x, key=random.key(2), train=True)
        dx, g = layer.backward(params, cache, rng.standard_normal(y.shape).astype(np.float32))
        feed(y, dx, *tree.leaves(g))

    layer_roundtrip(L.Dense(300, activation="relu"), (500,), 257)
    layer_roundtrip(L.Tanh(), (300,), 257)
    layer_roundtrip(L.Dropout(0.3), (300,), 257)
    z = rng.standard_normal((5000, 10)).astype(np.float32)
    feed(*losses.softmax_cross_entropy(z, rng.integers(0, 10, 5000)))
    p = {"W": rng.standard_normal((700, 300)).astype(np.float32)}
    for opt in (optim.adam(1e-3), optim.sgd(0.1, 0.9, nesterov=True), optim.rmsprop(1e-3)):
        u, s = opt.update(p, opt.init(p), p)
        feed(*tree.leaves(u), *tree.leaves(s))
    EXTRA
    print(numba.get_num_threads(), h.hexdigest())
""")

FAMILIES = {"foundation": ""}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_same_bits_with_one_and_two_threads(family):
    code = SCRIPT.replace("EXTRA", FAMILIES[family])
    out = {}
    for n in ("1", "2"):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=dict(os.environ, NUMBA_NUM_THREADS=n), timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        threads, digest = r.stdout.split()[-2:]
        assert threads == n
        out[n] = digest
    assert out["1"] == out["2"]
