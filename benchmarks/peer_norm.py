"""compare_torch cases for normalisation: LayerNorm forward+backward over the last axis.

    python -m benchmarks.compare_torch -k layernorm

Both sides do the same work: the forward, then the backward from a given dy, including dx,
dgamma and dbeta.  PyTorch runs ``torch.nn.functional.layer_norm`` (its fused CPU kernel);
compare_torch adds the malloc-tuned variant of its default setting.
"""
import numpy as np

from .compare_torch import Case

SHAPE = (64 * 64, 256)          # batch 64 x 64 tokens, width 256


def _data(seed=0):
    rng = np.random.default_rng(seed)
    rows, D = SHAPE
    return (rng.standard_normal(SHAPE).astype(np.float32),
            rng.standard_normal(D).astype(np.float32),
            rng.standard_normal(D).astype(np.float32),
            rng.standard_normal(SHAPE).astype(np.float32))


def layernorm_dlkit():
    from dlkit import layers as L
    x, gamma, beta, dy = _data()
    _, forward, backward = L.LayerNorm()
    params = {"gamma": gamma, "beta": beta}
    return lambda: backward(params, forward(params, x)[1], dy)


def layernorm_torch(setting):
    import torch
    x, gamma, beta, dy = (torch.from_numpy(a) for a in _data())
    leaves = [t.requires_grad_(True) for t in (x, gamma, beta)]
    D = SHAPE[1]

    def run():
        for t in leaves:
            t.grad = None
        y = torch.nn.functional.layer_norm(x, (D,), gamma, beta, 1e-5)
        y.backward(dy)
    return run


CASES = {
    "layernorm_4096x256": Case("LayerNorm fwd+bwd (dx, dgamma, dbeta), x[4096,256]",
                               layernorm_dlkit, layernorm_torch, repeat=100),
}
