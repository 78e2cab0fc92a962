"""compare_torch cases for convolution and pooling (issue 3): the two conv shapes, max pooling,
a CNN training step and a CNN epoch on Fashion-MNIST.

PyTorch gets its NCHW default and channels-last (each also with the malloc tuning that
compare_torch adds); its fastest setting is the reference.  dlkit runs through the layer API
(host validation included), NCHW.
"""
import numpy as np

from .compare_torch import Case

_CL = ("default", "channels_last")


def _fmt(torch, setting):
    return torch.channels_last if setting == "channels_last" else torch.contiguous_format


def _rand(shape, seed, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


# ------------------------------------------------------------------------------ conv shapes

def _conv_case(cin, cout, hw, padding, need_dx):
    shape = (128, cin, hw, hw)
    out_hw = hw + 2 * padding - 2

    def dlkit_fn():
        from dlkit import layers as L
        from dlkit import random
        layer = L.Conv2D(cout, 3, padding=padding)
        _, params = layer.init(random.key(0), shape[1:])
        x = _rand(shape, 1)
        dy = _rand((128, cout, out_hw, out_hw), 2)

        def run():
            _, cache = layer.forward(params, x)
            layer.backward(params, cache, dy, need_dx=need_dx)
        return run

    def torch_fn(setting):
        import torch
        mf = _fmt(torch, setting)
        x = torch.from_numpy(_rand(shape, 1)).contiguous(memory_format=mf)
        x.requires_grad_(need_dx)
        conv = torch.nn.Conv2d(cin, cout, 3, padding=padding).to(memory_format=mf)
        dy = torch.from_numpy(_rand((128, cout, out_hw, out_hw), 2)).contiguous(memory_format=mf)

        def run():
            conv.weight.grad = conv.bias.grad = x.grad = None
            conv(x).backward(dy)
        return run

    return dlkit_fn, torch_fn


_c1 = _conv_case(1, 32, 28, 0, need_dx=False)
_c2 = _conv_case(32, 64, 14, 1, need_dx=True)


# ---------------------------------------------------------------------------------- pooling

def pool_dlkit():
    from dlkit import layers as L
    layer = L.MaxPool2D(2)
    x, dy = _rand((128, 32, 26, 26), 1), _rand((128, 32, 13, 13), 2)

    def run():
        _, cache = layer.forward({}, x)
        layer.backward({}, cache, dy)
    return run


def pool_torch(setting):
    import torch
    mf = _fmt(torch, setting)
    x = torch.from_numpy(_rand((128, 32, 26, 26), 1)).contiguous(memory_format=mf)
    x.requires_grad_(True)
    dy = torch.from_numpy(_rand((128, 32, 13, 13), 2)).contiguous(memory_format=mf)

    def run():
        x.grad = None
        torch.nn.functional.max_pool2d(x, 2).backward(dy)
    return run


# --------------------------------------------------------------------------------- the CNN

def _cnn_dlkit(name="cnn"):
    from dlkit import optim, random
    from dlkit.zoo import MODELS
    model, prepare, in_shape = MODELS[name]()
    _, params = model.init(random.key(0), in_shape)
    return model, prepare, params, optim.adam(1e-3)


def _cnn_torch(setting):
    import torch
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(32 * 13 * 13, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    model = model.to(memory_format=_fmt(torch, setting))
    return model, torch.optim.Adam(model.parameters(), 1e-3)


def _batch():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (128, 28, 28)).astype(np.uint8), rng.integers(0, 10, 128)


def step_dlkit():
    from dlkit import losses, nn, optim, random
    model, prepare, params, opt = _cnn_dlkit()
    state = opt.init(params)
    xb, yb = _batch()
    f = nn.value_and_grad(model, losses.softmax_cross_entropy)

    def run():
        _, _, g = f(params, prepare(xb), yb, key=random.key(1))
        u, _ = opt.update(g, state, params)
        optim.apply_updates(params, u)
    return run


def step_torch(setting):
    import torch
    model, opt = _cnn_torch(setting)
    xb, yb = _batch()
    x, y = torch.from_numpy(xb), torch.from_numpy(yb)
    mf = _fmt(torch, setting)

    def run():
        opt.zero_grad()
        xin = (x.float() / 255).unsqueeze(1).contiguous(memory_format=mf)
        torch.nn.functional.cross_entropy(model(xin), y).backward()
        opt.step()
    return run


def _fashion():
    from dlkit import data
    (x, y), _ = data.load_mnist("fashion-mnist")
    return x, y


def epoch_dlkit():
    from dlkit import random, train
    model, prepare, params, opt = _cnn_dlkit()
    x, y = _fashion()
    return lambda: train.fit(model, params, opt, (x, y), key=random.key(0), epochs=1,
                             batch_size=128, prepare=prepare, progress=False, log=lambda m: None)


def epoch_torch(setting):
    import torch
    model, opt = _cnn_torch(setting)
    x, y = _fashion()
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    mf = _fmt(torch, setting)

    def run():
        perm = torch.randperm(len(X))
        for i in range(0, len(X), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            xin = (X[idx].float() / 255).unsqueeze(1).contiguous(memory_format=mf)
            torch.nn.functional.cross_entropy(model(xin), Y[idx]).backward()
            opt.step()
    return run


CASES = {
    "conv_1x32_3x3_params_bwd": Case(
        "Conv 1->32 3x3 on (128,1,28,28): fwd + params-only bwd (a first layer)",
        *_c1, settings=_CL, repeat=30),
    "conv_32x64_3x3_pad1": Case(
        "Conv 32->64 3x3 pad 1 on (128,32,14,14): fwd + bwd (dx, dW, db)",
        *_c2, settings=_CL, repeat=20),
    "maxpool_2x2_128x32x26x26": Case(
        "MaxPool 2x2 on (128,32,26,26): fwd + bwd", pool_dlkit, pool_torch, settings=_CL,
        repeat=30),
    "cnn_step": Case(
        "CNN training step, batch 128 (Conv32 3x3 relu, MaxPool 2, Dense 128, Dense 10; Adam)",
        step_dlkit, step_torch, settings=_CL, repeat=30),
    "cnn_epoch_fashion": Case(
        "CNN training epoch on Fashion-MNIST (60k, batch 128)", epoch_dlkit, epoch_torch,
        settings=_CL, repeat=2, needs_data=True),
}
