"""Helpers over parameter trees: nested dicts of ndarrays, e.g. ``{"fc1": {"W": ..., "b": ...}}``.

    flatten(tree)        -> {"fc1/W": array, ...}     (sorted keys; the checkpoint layout)
    unflatten(flat)      -> nested dict
    map(fn, *trees)      -> tree of fn(leaf, ...)     (trees of the same structure)
    leaves(tree)         -> list of arrays in flatten order
    size(tree)           -> total number of elements
    copy(tree)           -> deep copy of the arrays
    equal(a, b)          -> True if same structure, dtypes, shapes and bits
    digest(tree)         -> SHA-256 hex over names, dtypes, shapes and bytes (compare runs)
"""
from __future__ import annotations

import builtins
import hashlib
from typing import Any, Callable, TypeAlias

import numpy as np

Tree: TypeAlias = dict[str, Any]
"""A parameter tree: a dict whose values are arrays or, recursively, such dicts."""

SEP = "/"


def flatten(tree: Tree, prefix: str = "") -> dict[str, Any]:
    """The leaves of a nested dict under ``"/"``-joined names, in sorted key order.

    This is the layout checkpoints use (``fc1/W``).  The arrays are not copied.

    Args:
        tree: nested dict of arrays (any depth; leaves are anything that is not a dict).
        prefix: prepended to every name.

    Returns:
        A flat dict ``{"a/b": leaf}`` with keys sorted at every level.

    Example:
        >>> import numpy as np
        >>> from dlkit import tree
        >>> t = {"fc2": {"b": np.zeros(2)}, "fc1": {"W": np.ones((3, 2)), "b": np.zeros(2)}}
        >>> list(tree.flatten(t))
        ['fc1/W', 'fc1/b', 'fc2/b']
    """
    out = {}
    for k in sorted(tree):
        v = tree[k]
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + SEP))
        else:
            out[name] = v
    return out


def unflatten(flat: dict[str, Any]) -> Tree:
    """The nested dict that ``flatten`` came from: splits each name at ``"/"``.

    Args:
        flat: ``{"a/b": leaf}`` names and leaves.

    Returns:
        The nested dict; leaves are not copied.

    Example:
        >>> from dlkit import tree
        >>> tree.unflatten({"fc1/W": 1, "fc1/b": 2, "step": 3})
        {'fc1': {'W': 1, 'b': 2}, 'step': 3}
    """
    tree = {}
    for name, v in flat.items():
        node = tree
        *path, last = name.split(SEP)
        for p in path:
            node = node.setdefault(p, {})
        node[last] = v
    return tree


def map(fn: Callable[..., Any], tree: Tree, *rest: Tree) -> Tree:  # noqa: A001 (as jax.tree.map)
    """A tree of the same structure with ``fn(leaf, *matching_leaves_of_rest)`` at each leaf.

    Args:
        fn: called once per leaf, with the leaf of ``tree`` and those at the same place in
            each of ``rest``.
        tree: nested dict of arrays.
        *rest: trees with (at least) the keys of ``tree``.

    Returns:
        A new nested dict of ``fn``'s results.

    Raises:
        KeyError: a tree in ``rest`` lacks a key of ``tree``.

    Example:
        >>> import numpy as np
        >>> from dlkit import tree
        >>> p = {"fc": {"W": np.ones(2), "b": np.zeros(2)}}
        >>> g = {"fc": {"W": np.full(2, 0.5), "b": np.ones(2)}}
        >>> tree.map(lambda w, dw: w - 0.1 * dw, p, g)["fc"]["W"]
        array([0.95, 0.95])
    """
    if isinstance(tree, dict):
        return {k: map(fn, tree[k], *(r[k] for r in rest)) for k in tree}
    return fn(tree, *rest)


def leaves(tree: Tree) -> list[Any]:
    """The leaves of ``tree`` as a list, in ``flatten`` order (sorted names).

    Example:
        >>> from dlkit import tree
        >>> tree.leaves({"b": 2, "a": {"y": 1, "x": 0}})
        [0, 1, 2]
    """
    return list(flatten(tree).values())


def size(tree: Tree) -> int:
    """The total number of elements over every leaf (the parameter count of a model).

    Example:
        >>> import numpy as np
        >>> from dlkit import tree
        >>> tree.size({"fc1": {"W": np.zeros((784, 128)), "b": np.zeros(128)}})
        100480
    """
    return builtins.sum(int(np.size(v)) for v in leaves(tree))


def copy(tree: Tree) -> Tree:
    """A deep copy: the same structure with every leaf copied into a new numpy array.

    Example:
        >>> import numpy as np
        >>> from dlkit import tree
        >>> p = {"W": np.zeros(2)}
        >>> q = tree.copy(p); q["W"][0] = 1.0
        >>> p["W"]
        array([0., 0.])
    """
    return map(lambda a: np.array(a, copy=True), tree)


def equal(a: Tree, b: Tree) -> bool:
    """True if two trees have the same names, and each pair of leaves the same dtype, shape
    and bits (so NaNs in the same places compare equal, and -0.0 differs from 0.0).

    Args:
        a, b: nested dicts of numpy arrays.

    Example:
        >>> import numpy as np
        >>> from dlkit import tree
        >>> a = {"W": np.array([0.0, np.nan])}
        >>> tree.equal(a, tree.copy(a)), tree.equal(a, {"W": a["W"].astype(np.float32)})
        (True, False)
    """
    fa, fb = flatten(a), flatten(b)
    if fa.keys() != fb.keys():
        return False
    return all(x.dtype == y.dtype and x.shape == y.shape
               and np.array_equal(x.view(np.uint8), y.view(np.uint8))
               for x, y in ((np.ascontiguousarray(fa[k]), np.ascontiguousarray(fb[k])) for k in fa))


def digest(tree: Tree) -> str:
    """A SHA-256 hex digest of the names, dtypes, shapes and bytes of every leaf: two runs
    that should be bit-identical give the same digest.

    Example:
        >>> import numpy as np
        >>> from dlkit import tree
        >>> d = tree.digest({"W": np.zeros((2, 2), np.float32)})
        >>> len(d), d == tree.digest({"W": np.zeros((2, 2), np.float64)})
        (64, False)
    """
    h = hashlib.sha256()
    for k, a in flatten(tree).items():
        a = np.ascontiguousarray(a)
        h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()
