"""The layer contract (DESIGN.md, "The functional API").

A layer is a ``Layer``: a NamedTuple of three pure functions, so ``init, forward, backward =
layer`` unpacks it.

    init(key, in_shape, dtype=np.float32) -> (out_shape, params)
        in_shape and out_shape exclude the batch axis; params is {name: ndarray} ({} if none).
    forward(params, x, *, key=None, train=False) -> (y, cache)
        key feeds the layer's randomness (dropout); train switches training behaviour.
    backward(params, cache, dy, *, need_dx=True) -> (dx, grads)
        grads has the keys, shapes and dtypes of params and holds dLoss/dparam.  With
        need_dx=False a layer may skip the input gradient and return dx=None (the first layer
        of a model needs none).

Every forward validates params and input on the host and raises ValueError/TypeError naming
what was expected and what was received before any kernel runs.
"""
from typing import Callable, NamedTuple

import numpy as np


class Layer(NamedTuple):
    init: Callable
    forward: Callable
    backward: Callable


def no_params(key, in_shape, dtype=np.float32):
    """init for layers that keep the shape and have no params."""
    return tuple(in_shape), {}
