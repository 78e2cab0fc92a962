"""BatchNorm through the API: layer-level finite differences in train and eval mode, PyTorch's
BatchNorm1d / BatchNorm2d (forward, backward, running statistics), the state contract (eval
returns the state it was given, training never mutates it) and every validation error."""
import numpy as np
import pytest

import dlkit
from conftest import need
from dlkit import random
from dlkit.layers.base import StatefulLayer
from dlkit.layers.batchnorm import BatchNorm


def _setup(rng, shape, dtype=np.float64):
    C = shape[1]
    params = {"gamma": rng.standard_normal(C).astype(dtype),
              "beta": rng.standard_normal(C).astype(dtype)}
    state = {"mean": rng.standard_normal(C).astype(dtype),
             "var": rng.uniform(0.5, 2.0, C).astype(dtype)}
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    return params, state, x


@pytest.mark.parametrize("in_shape", [(3,), (2, 4, 5)])
def test_init(in_shape):
    layer = BatchNorm()
    assert isinstance(layer, StatefulLayer)
    out_shape, params, state = layer.init(random.key(0), in_shape)
    assert out_shape == in_shape
    C = in_shape[0]
    for a, v in ((params["gamma"], 1), (params["beta"], 0), (state["mean"], 0),
                 (state["var"], 1)):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, np.full(C, v, np.float32))
    x = np.random.default_rng(0).standard_normal((3, *in_shape)).astype(np.float32)
    y, _, new = layer.forward(params, x, state=state, train=True)
    assert y.shape == x.shape and y.dtype == np.float32 and set(new) == {"mean", "var"}


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("shape", [(4, 3), (2, 2, 3, 2), (1, 2, 2, 3)])
def test_finite_differences(rng, shape, train, activation):
    params, state, x = _setup(rng, shape)
    errs = dlkit.gradcheck(BatchNorm(activation=activation), params, x, state=state,
                           train=train, tol=1e-6)
    assert set(errs) == {"dx", "gamma", "beta"}


def test_eval_returns_the_same_state_and_training_never_mutates(rng):
    layer = BatchNorm(momentum=0.3)
    params, state, x = _setup(rng, (5, 3, 2, 2), np.float32)
    copy = {k: v.copy() for k, v in state.items()}
    y, _, same = layer.forward(params, x, state=state, train=False)
    assert same is state
    for _ in range(3):
        _, _, new = layer.forward(params, x, state=state, train=True)
        assert new is not state and new["mean"] is not state["mean"]
        assert new["var"] is not state["var"]
    for k in state:
        np.testing.assert_array_equal(state[k], copy[k])
    assert not np.allclose(new["mean"], state["mean"])


def _torch_bn(torch, shape, params, momentum, eps):
    bn = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(
        shape[1], eps=eps, momentum=momentum).double()
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(params["gamma"]))
        bn.bias.copy_(torch.from_numpy(params["beta"]))
    return bn


def _same_step(torch, layer, bn, act, params, state, x, dy, train):
    """One forward+backward of the dlkit layer and of torch's bn (followed by act), checked
    to agree; returns dlkit's new state."""
    y, cache, new = layer.forward(params, x, state=state, train=train)
    dx, grads = layer.backward(params, cache, dy)
    bn.train(train)
    bn.zero_grad()
    xt = torch.from_numpy(x).requires_grad_()
    yt = act(bn(xt))
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(grads["gamma"], bn.weight.grad.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(grads["beta"], bn.bias.grad.numpy(), rtol=1e-9, atol=1e-9)
    return new


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 5, 6)])
def test_agrees_with_torch(rng, shape, activation):
    torch = need("torch")
    momentum, eps = 0.1, 1e-5
    layer = BatchNorm(momentum=momentum, eps=eps, activation=activation)
    params, _, _ = _setup(rng, shape)
    _, _, state = layer.init(None, shape[1:], np.float64)
    bn = _torch_bn(torch, shape, params, momentum, eps)
    act = torch.relu if activation else (lambda t: t)
    for step in range(4):                       # training steps: outputs, grads, running stats
        x = rng.standard_normal(shape) * (step + 1) + step
        dy = rng.standard_normal(shape)
        state = _same_step(torch, layer, bn, act, params, state, x, dy, True)
        np.testing.assert_allclose(state["mean"], bn.running_mean.numpy(), rtol=1e-10,
                                   atol=1e-12)
        np.testing.assert_allclose(state["var"], bn.running_var.numpy(), rtol=1e-9)
    x = rng.standard_normal(shape)                # eval mode with the running statistics
    dy = rng.standard_normal(shape)
    assert _same_step(torch, layer, bn, act, params, state, x, dy, False) is state


def test_float32_agrees_with_torch_channels_last(rng):
    torch = need("torch")
    shape = (16, 8, 7, 9)
    layer = BatchNorm()
    params, state, x = _setup(rng, shape, np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    y, cache, new = layer.forward(params, x, state=state, train=True)
    dx, grads = layer.backward(params, cache, dy)
    bn = torch.nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(params["gamma"]))
        bn.bias.copy_(torch.from_numpy(params["beta"]))
        bn.running_mean.copy_(torch.from_numpy(state["mean"]))
        bn.running_var.copy_(torch.from_numpy(state["var"]))
    xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last).requires_grad_()
    yt = bn(xt)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(grads["gamma"], bn.weight.grad.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(new["var"], bn.running_var.numpy(), rtol=1e-5)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("kwargs,match", [
    ({"momentum": 1.5}, r"momentum must be a number in \[0, 1\].*got 1.5"),
    ({"momentum": float("nan")}, r"momentum .* got nan"),
    ({"eps": 0}, r"eps must be a finite number > 0, got 0"),
    ({"eps": -1e-5}, r"eps must be .* got -1e-05"),
    ({"activation": "tanh"}, r"activation must be None or 'relu', got 'tanh'"),
])
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchNorm(**kwargs)


@pytest.mark.parametrize("in_shape", [(), (3, 4), (0,), (2, 3, 4, 5)])
def test_init_errors(in_shape):
    with pytest.raises(ValueError, match=r"expected an input shape \(C,\) or \(C, H, W\).*got"):
        BatchNorm().init(None, in_shape)


def test_forward_errors(rng):
    layer = BatchNorm()
    params, state, x = _setup(rng, (4, 3, 2, 2))
    fwd = layer.forward
    with pytest.raises(ValueError, match=r"expected an input of shape \(N, C\) or \(N, C, H, W\)"
                                         r".*got shape \(4, 3, 4\)"):
        fwd(params, x.reshape(4, 3, 4), state=state, train=True)
    with pytest.raises(ValueError, match=r"expected params 'gamma' of shape \(2,\).*got shape "
                                         r"\(3,\)"):
        fwd(params, x[:, :2], state=state)
    with pytest.raises(TypeError, match=r"expected dtype float32 or float64, got int64"):
        fwd(params, x.astype(np.int64), state=state)
    with pytest.raises(TypeError, match=r"mixed dtypes \(x.dtype=float32, params 'gamma' "
                                        r"dtype=float64\)"):
        fwd(params, x.astype(np.float32), state=state)
    with pytest.raises(ValueError, match=r"params keys \['beta'\] do not match the expected"):
        fwd({"beta": params["beta"]}, x, state=state)
    with pytest.raises(ValueError, match=r"state keys \['mean'\] do not match the expected "
                                         r"\['mean', 'var'\]"):
        fwd(params, x, state={"mean": state["mean"]})
    with pytest.raises(TypeError, match=r"state must be a dict .*got list"):
        fwd(params, x, state=[state["mean"], state["var"]])
    with pytest.raises(ValueError, match=r"expected state 'var' of shape \(3,\).*got shape "
                                         r"\(4,\)"):
        fwd(params, x, state={"mean": state["mean"], "var": np.ones(4)})
    with pytest.raises(TypeError, match=r"mixed dtypes \(x.dtype=float64, state 'mean' "
                                        r"dtype=float32\)"):
        fwd(params, x, state={"mean": state["mean"].astype(np.float32), "var": state["var"]})
    with pytest.raises(TypeError, match=r"state 'var' must be a float32/float64 array, got"):
        fwd(params, x, state={"mean": state["mean"], "var": [1.0, 1.0, 1.0]})
    with pytest.raises(ValueError, match=r"expected N \* H \* W >= 2, got input shape "
                                         r"\(1, 3, 1, 1\)"):
        fwd(params, x[:1, :, :1, :1], state=state, train=True)
    with pytest.raises(ValueError, match=r"expected N \* H \* W >= 2, got input shape \(1, 3\)"):
        fwd(params, x[:1, :, 0, 0], state=state, train=True)
    y, _, same = fwd(params, x[:1, :, 0, 0], state=state, train=False)   # eval: fine
    assert same is state and y.shape == (1, 3)


def test_backward_errors(rng):
    layer = BatchNorm()
    params, state, x = _setup(rng, (4, 3, 2, 2))
    _, cache, _ = layer.forward(params, x, state=state, train=True)
    dy = np.ones_like(x)
    bwd = layer.backward
    with pytest.raises(TypeError, match=r"expected the cache its forward returned \(a tuple of "
                                        r"6\), got a tuple of 2"):
        bwd(params, cache[:2], dy)
    with pytest.raises(ValueError, match=r"dy must match the forward output \(4, 3, 2, 2\) "
                                         r"float64, got \(4, 3, 2\) float64"):
        bwd(params, cache, dy[..., 0])
    with pytest.raises(ValueError, match=r"dy must match .* got \(4, 3, 2, 2\) float32"):
        bwd(params, cache, dy.astype(np.float32))
    with pytest.raises(ValueError, match=r"cache mean: expected shape \(3,\) .* got shape "
                                         r"\(2,\)"):
        bwd(params, cache[:2] + (cache[2][:2],) + cache[3:], dy)
    with pytest.raises(ValueError, match=r"cache must hold the input shape and the mode"):
        bwd(params, cache[:4] + ((4, 3, 2),) + cache[5:], dy)
    with pytest.raises(ValueError, match=r"cache must hold the input shape and the mode.*'yes'"):
        bwd(params, cache[:5] + ("yes",), dy)
    with pytest.raises(ValueError, match=r"expected params 'gamma' of shape \(3,\).*got shape "
                                         r"\(4,\)"):
        bwd({"gamma": np.ones(4), "beta": np.ones(4)}, cache, dy)
    with pytest.raises(ValueError, match=r"cache x: expected shape \(4, 3, 4\) .* got shape "
                                         r"\(4, 3, 3\)"):
        bwd(params, (cache[0][..., :3],) + cache[1:], dy)
