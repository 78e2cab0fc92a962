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
import builtins
import hashlib

import numpy as np

SEP = "/"


def flatten(tree, prefix=""):
    out = {}
    for k in sorted(tree):
        v = tree[k]
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + SEP))
        else:
            out[name] = v
    return out


def unflatten(flat):
    tree = {}
    for name, v in flat.items():
        node = tree
        *path, last = name.split(SEP)
        for p in path:
            node = node.setdefault(p, {})
        node[last] = v
    return tree


def map(fn, tree, *rest):  # noqa: A001 - the natural name, as in jax.tree.map
    if isinstance(tree, dict):
        return {k: map(fn, tree[k], *(r[k] for r in rest)) for k in tree}
    return fn(tree, *rest)


def leaves(tree):
    return list(flatten(tree).values())


def size(tree):
    return builtins.sum(int(np.size(v)) for v in leaves(tree))


def copy(tree):
    return map(lambda a: np.array(a, copy=True), tree)


def equal(a, b):
    fa, fb = flatten(a), flatten(b)
    if fa.keys() != fb.keys():
        return False
    return all(x.dtype == y.dtype and x.shape == y.shape
               and np.array_equal(x.view(np.uint8), y.view(np.uint8))
               for x, y in ((np.ascontiguousarray(fa[k]), np.ascontiguousarray(fb[k])) for k in fa))


def digest(tree):
    h = hashlib.sha256()
    for k, a in flatten(tree).items():
        a = np.ascontiguousarray(a)
        h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()
