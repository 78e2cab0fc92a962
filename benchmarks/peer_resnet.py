"""compare_torch case for the zoo's small residual CNN with BatchNorm (issue 19): one training
step at batch 128 (forward in training mode, BatchNorm running statistics updated, softmax
cross-entropy, backward, Adam).

PyTorch runs exactly the same model (3x3 "same" convolutions without bias, BatchNorm2d with
momentum 0.1 and eps 1e-5, max-pooling, global average pooling, dropout 0.3, dense 10) in its
NCHW default and channels-last (each also with compare_torch's malloc tuning); its fastest
setting is the reference.
"""
from .compare_torch import Case
from .peer_conv import _batch, _fmt


def step_dlkit():
    from dlkit import losses, nn, optim, random
    from dlkit.zoo import resnet
    model, prepare, in_shape = resnet()
    _, params, state = model.init(random.key(0), in_shape)
    opt = optim.adam(2e-3)
    box = [params, opt.init(params), state]
    xb, yb = _batch()
    grad = nn.value_and_grad(model, losses.softmax_cross_entropy)

    def run():
        params, opt_state, state = box
        _, _, g, state = grad(params, prepare(xb), yb, state=state, key=random.key(1))
        box[:] = (*opt.step(g, opt_state, params), state)
    return run


def torch_resnet():
    """The zoo's resnet in PyTorch (an nn.Module)."""
    import torch
    from torch import nn

    def conv_bn(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(*conv_bn(c, c), nn.ReLU(), *conv_bn(c, c))

        def forward(self, x):
            return torch.relu(x + self.body(x))

    return nn.Sequential(*conv_bn(1, 32), nn.ReLU(), Block(32), nn.MaxPool2d(2),
                         *conv_bn(32, 64), nn.ReLU(), Block(64), nn.MaxPool2d(2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3),
                         nn.Linear(64, 10))


def step_torch(setting):
    import torch
    from dlkit.zoo import standardizer
    torch.manual_seed(0)
    mf = _fmt(torch, setting)
    model = torch_resnet().to(memory_format=mf)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    xb, yb = _batch()
    x = torch.from_numpy(standardizer()(xb)).unsqueeze(1).contiguous(memory_format=mf)
    y = torch.from_numpy(yb)
    model.train()

    def run():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return run


CASES = {
    "resnet_step": Case(
        "Residual CNN with BatchNorm (zoo resnet, 112k params) training step, batch 128 (Adam)",
        step_dlkit, step_torch, settings=("default", "channels_last"), repeat=10),
}
