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
what was expected and what was received before any kernel runs.  So does every backward: its
cache, params and dy are checked against each other and against the layer's settings (shapes,
dtypes, and the range of every integer array a kernel indexes with: token ids, pooling
argmax, step ranges, dropout masks), because Numba does not bounds-check and a cache or params
of another shape would read or write out of bounds.  Sizes above 2**31 - 1 elements per array
are refused (32-bit BLAS dimensions and CUDA indices).

The cache holds references, not copies, of the arrays forward was given and made (x for
Dense and Conv2D, y for the activations and Softmax): modifying them in place between forward
and backward changes the gradients, as in any NumPy-level code.  What is cheap to keep is
kept as a snapshot or made by dlkit (token ids are copied; dropout masks, argmax and step
ranges are dlkit's own arrays) and checked again in backward.

Layers with state.  Some layers carry values that are not trained but change as training runs
(BatchNorm's running mean and variance).  Such a layer is a ``StatefulLayer``, a NamedTuple of
the same three fields whose functions also take and return that state, explicitly, as a value:

    init(key, in_shape, dtype=np.float32) -> (out_shape, params, state)
    forward(params, x, *, state, key=None, train=False) -> (y, cache, new_state)
    backward(params, cache, dy, *, need_dx=True) -> (dx, grads)

state is a dict of arrays like params ({name: ndarray}; a combinator's is {child_name:
child_state} for its children that have state, so saved keys read ``bn1/mean``).  forward never
modifies the state it is given: in training mode it returns new arrays, in eval mode
(train=False) it returns the very object it was given, unchanged.  Optimizers, weight decay,
gradient clipping and the finiteness checks never see state: grads hold params' keys only.
A combinator with at least one stateful child is itself a StatefulLayer; one without is a
plain Layer, so stateless models and the code that uses them are exactly as before.  This is
haiku's ``transform_with_state`` and flax's ``batch_stats`` collection, spelled as a second
value beside params (docs/internals.md, "State").

Layers are pure functions: several Python threads may call them at once (Numba's omp and tbb
threading layers are threadsafe).  Under Numba's workqueue layer, which is not, a kernel call
made while another thread is inside one raises RuntimeError instead of aborting the process.
"""
import weakref
from typing import Any, Callable, NamedTuple

import numpy as np
from numpy.typing import DTypeLike


class Layer(NamedTuple):
    """A layer: the NamedTuple ``(init, forward, backward)`` of pure functions (see the module
    docstring for their signatures).  Every constructor in ``dlkit.layers`` and every
    combinator in ``dlkit.nn`` returns one; unpack it or use the fields.

    Example:
        >>> import numpy as np
        >>> from dlkit import layers as L, random
        >>> init, forward, backward = L.Relu()
        >>> init(random.key(0), (3,))                     # (out_shape, params)
        ((3,), {})
        >>> y, cache = forward({}, np.array([[-1.0, 0.5, 2.0]]))
        >>> y
        array([[0. , 0.5, 2. ]])
        >>> backward({}, cache, np.ones((1, 3)))[0]       # (dx, grads)
        array([[0., 1., 1.]])
    """

    init: Callable
    forward: Callable
    backward: Callable


class StatefulLayer(NamedTuple):
    """A layer with non-trainable state: the NamedTuple ``(init, forward, backward)`` whose
    init also returns the initial state and whose forward takes ``state=`` and returns the
    new state (see the module docstring for the signatures).  Combinators accept it wherever
    they accept a ``Layer``; ``is_stateful`` tells them apart.

    Example:
        >>> from dlkit.layers.base import Layer, StatefulLayer, is_stateful
        >>> is_stateful(StatefulLayer(None, None, None)), is_stateful(Layer(None, None, None))
        (True, False)
    """

    init: Callable
    forward: Callable
    backward: Callable


def is_stateful(layer: Any) -> bool:
    """Whether ``layer`` is a ``StatefulLayer`` (its init returns state, its forward takes and
    returns it).

    Example:
        >>> from dlkit import layers as L
        >>> from dlkit.layers.base import is_stateful
        >>> is_stateful(L.Dense(3))
        False
    """
    return isinstance(layer, StatefulLayer)


def is_layer(layer: Any) -> bool:
    """Whether ``layer`` is a ``Layer`` or a ``StatefulLayer``.

    Example:
        >>> from dlkit import layers as L
        >>> from dlkit.layers.base import is_layer
        >>> is_layer(L.Relu()), is_layer(print)
        (True, False)
    """
    return isinstance(layer, (Layer, StatefulLayer))


def no_params(key: Any, in_shape: tuple[int, ...],
              dtype: DTypeLike = np.float32) -> tuple[tuple[int, ...], dict]:
    """The ``init`` of layers that keep the shape and have no params: ``(in_shape, {})``.

    Example:
        >>> from dlkit.layers.base import no_params
        >>> no_params(None, [3, 4])
        ((3, 4), {})
    """
    return tuple(in_shape), {}


# What nn.summary knows of a layer it did not build itself: the constructors and combinators
# record, keyed (weakly) by the layer's forward function, (kind, macs, children).  kind names
# the layer ("Dense"); macs(in_shape, out_shape, params) -> multiply-adds per example (None:
# unknown); children is a combinator's [(name, layer)] (None for a leaf).  The Layer tuples
# keep their three fields; a layer built by hand is simply absent (its MACs are unknown).
_INFO: "weakref.WeakKeyDictionary[Callable, tuple]" = weakref.WeakKeyDictionary()


def _register(layer: Any, kind: str, macs: Callable | None = None,
              children: list | None = None) -> Any:
    """Record ``layer``'s kind and multiply-add rule (or a combinator's children) for
    ``nn.summary``; returns ``layer`` unchanged."""
    _INFO[layer.forward] = (kind, macs, children)
    return layer


def _info(layer: Any) -> tuple | None:
    """``(kind, macs, children)`` recorded for ``layer``, or None (a layer built by hand)."""
    try:
        return _INFO.get(layer.forward)
    except TypeError:               # a forward that takes no weak reference: not ours
        return None


def _zero_macs(in_shape: Any, out_shape: Any, params: Any) -> int:
    """The multiply-add rule of layers that do none (activations, pooling, reshapes)."""
    return 0
