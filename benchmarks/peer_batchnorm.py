"""compare_torch cases for batch normalisation: BatchNorm2d forward+backward in training mode.

    python -m benchmarks.compare_torch -k batchnorm

Both sides do the same work: the training forward (batch statistics, running-statistics
update), then the backward from a given dy, including dx, dgamma and dbeta.  PyTorch runs
``torch.nn.BatchNorm2d`` in train mode on NCHW ("default") or channels-last tensors;
compare_torch adds the malloc-tuned variant of each setting.
"""
import numpy as np

from .compare_torch import Case

SHAPE = (128, 32, 28, 28)       # the first conv block of a small CNN on MNIST-sized images


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(SHAPE).astype(np.float32),
            rng.standard_normal(SHAPE).astype(np.float32))


def batchnorm_dlkit():
    from dlkit import random
    from dlkit.layers.batchnorm import BatchNorm
    x, dy = _data()
    layer = BatchNorm()
    _, params, state = layer.init(random.key(0), SHAPE[1:])

    def run():
        _, cache, _ = layer.forward(params, x, state=state, train=True)
        layer.backward(params, cache, dy)
    return run


def batchnorm_torch(setting):
    import torch
    mf = torch.channels_last if setting == "channels_last" else torch.contiguous_format
    x, dy = (torch.from_numpy(a).contiguous(memory_format=mf) for a in _data())
    x.requires_grad_(True)
    bn = torch.nn.BatchNorm2d(SHAPE[1]).to(memory_format=mf)
    bn.train()

    def run():
        bn.weight.grad = bn.bias.grad = x.grad = None
        bn(x).backward(dy)
    return run


CASES = {
    "batchnorm2d_128x32x28x28": Case(
        "BatchNorm2d train fwd+bwd (dx, dgamma, dbeta, running stats), x[128,32,28,28]",
        batchnorm_dlkit, batchnorm_torch, settings=("default", "channels_last"), repeat=50),
}
