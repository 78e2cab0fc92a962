"""compare_torch cases for the foundation: dense, softmax cross-entropy, Adam, the MLP."""
import numpy as np

from .compare_torch import Case


def _np_data(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((128, 784)).astype(np.float32),
            (rng.standard_normal((784, 128)) * 0.05).astype(np.float32),
            rng.standard_normal(128).astype(np.float32),
            rng.standard_normal((128, 128)).astype(np.float32))


def dense_dlkit():
    from dlkit import layers as L
    x, W, b, dy = _np_data()
    layer = L.Dense(128)
    params = {"W": W, "b": b}

    def run():
        _, cache = layer.forward(params, x)
        layer.backward(params, cache, dy)
    return run


def dense_torch(setting):
    import torch
    x, W, b, dy = (torch.from_numpy(a) for a in _np_data())
    x.requires_grad_(True)
    Wt = W.T.contiguous().requires_grad_(True)   # torch's Linear layout (out, in)
    b.requires_grad_(True)

    def run():
        x.grad = Wt.grad = b.grad = None
        torch.nn.functional.linear(x, Wt, b).backward(dy)
    return run


def sce_dlkit():
    from dlkit import losses
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((128, 10)).astype(np.float32), rng.integers(0, 10, 128)
    return lambda: losses.softmax_cross_entropy(z, y)


def sce_torch(setting):
    import torch
    rng = np.random.default_rng(0)
    z = torch.from_numpy(rng.standard_normal((128, 10)).astype(np.float32)).requires_grad_(True)
    y = torch.from_numpy(rng.integers(0, 10, 128))

    def run():
        z.grad = None
        torch.nn.functional.cross_entropy(z, y).backward()
    return run


def _mlp_dlkit():
    from dlkit import optim, random
    from dlkit.zoo import mlp
    model, prepare, in_shape = mlp()
    _, params = model.init(random.key(0), in_shape)
    return model, prepare, params, optim.adam(1e-3)


def _mlp_torch():
    import torch
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(),
                                torch.nn.Dropout(0.2), torch.nn.Linear(128, 10))
    return model, torch.optim.Adam(model.parameters(), 1e-3)


def adam_dlkit():
    from dlkit import optim, tree
    _, _, params, opt = _mlp_dlkit()
    grads = tree.map(lambda a: np.full_like(a, 1e-3), params)
    state = opt.init(params)

    def run():
        u, _ = opt.update(grads, state, params)
        optim.apply_updates(params, u)
    return run


def adam_torch(setting):
    import torch
    model, opt = _mlp_torch()
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e-3)
    return opt.step


def _batch():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (128, 28, 28)).astype(np.uint8), rng.integers(0, 10, 128)


def step_dlkit():
    from dlkit import losses, nn, optim, random
    model, prepare, params, opt = _mlp_dlkit()
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
    model, opt = _mlp_torch()
    xb, yb = _batch()
    x, y = torch.from_numpy(xb), torch.from_numpy(yb)

    def run():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x.float() / 255), y).backward()
        opt.step()
    return run


def _fashion():
    from dlkit import data
    (x, y), _ = data.load_mnist("fashion-mnist")
    return x, y


def epoch_dlkit():
    from dlkit import random, train
    model, prepare, params, opt = _mlp_dlkit()
    x, y = _fashion()
    return lambda: train.fit(model, params, opt, (x, y), key=random.key(0), epochs=1,
                             batch_size=128, prepare=prepare, progress=False, log=lambda m: None)


def epoch_torch(setting):
    import torch
    model, opt = _mlp_torch()
    x, y = _fashion()
    X, Y = torch.from_numpy(x), torch.from_numpy(y)

    def run():
        perm = torch.randperm(len(X))
        for i in range(0, len(X), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X[idx].float() / 255), Y[idx]).backward()
            opt.step()
    return run


CASES = {
    "dense_128x784x128": Case("Dense fwd+bwd (dx, dW, db), x[128,784] @ W[784,128]",
                              dense_dlkit, dense_torch, repeat=200),
    "softmax_ce_128x10": Case("softmax cross-entropy loss + dlogits, (128, 10)",
                              sce_dlkit, sce_torch, repeat=200),
    "adam_mlp": Case("Adam update of the 784-128-10 MLP's params", adam_dlkit, adam_torch,
                     repeat=200),
    "mlp_step": Case("MLP training step, batch 128 (fwd, loss, bwd, Adam)", step_dlkit,
                     step_torch, repeat=200),
    "mlp_epoch_fashion": Case("MLP training epoch on Fashion-MNIST (60k, batch 128)",
                              epoch_dlkit, epoch_torch, repeat=3, needs_data=True),
}
