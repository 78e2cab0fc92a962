"""Seeded augmentation of float image batches, drawn on the host from the caller's key.

    random_crop(x, key, padding, fill=0)
                                   pad each side by ``padding`` pixels of ``fill``, crop back
                                   to H x W at a random offset per example
    random_flip(x, key)            mirror each example left-right with probability 0.5
    crop_and_flip(padding=2, fill=0)
                                   -> fn(x, key): both, with keys split from ``key``

``fill`` is the value of the padded pixels: the background, in the units of x.  For images
scaled to [0, 1] that is 0 (black); for standardized images it is the standardized value of a
black pixel, -mean / std (torchvision pads before it normalizes, which gives the same).
Padding a standardized image with 0 would frame it in mid-grey, a border no test image has.

x is float (N, C, H, W) or (N, H, W); the result is a new array of the same shape and dtype.
The same key gives the same batch bit for bit, another key another draw.  ``fit(...,
augment=crop_and_flip(2))`` applies such a function to each training batch.  The offsets and
flips are drawn with ``dlkit.random.generator``; one Numba kernel copies each pixel once
(crop and flip fused, ``fill`` outside the image, no padded copy): crop_and_flip takes about
0.1 ms for a (128, 1, 28, 28) batch, 1.4% of the zoo CNN's 7.7 ms forward and backward pass
(NumPy fancy indexing took 0.65 ms, 8.6%).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from numba import njit
from numpy.typing import NDArray

from ..random import Key, _check, generator, split


def _check_images(x, what):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{what}: x must be a numpy array, got {type(x).__name__}")
    if x.ndim not in (3, 4):
        raise ValueError(f"{what}: x must be (N, C, H, W) or (N, H, W) images, got shape "
                         f"{x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"{what}: x must be a float array (prepare the images first), got "
                        f"{x.dtype}")


def _check_padding(padding, what):
    if not isinstance(padding, (int, np.integer)) or isinstance(padding, bool) or padding < 0:
        raise ValueError(f"{what}: padding must be an int >= 0, got {padding!r}")


@njit(cache=True, nogil=True)
def _shift_flip(x, dy, dx, flip, fill, out):
    """out[n, c, i, j] = x[n, c, i + dy[n], j' + dx[n]] (``fill`` outside x), where j' is j,
    or W - 1 - j when flip[n]: a crop of x padded with ``fill``, then a mirror."""
    n, ch, h, w = x.shape
    fill = x.dtype.type(fill)
    for e in range(n):
        oy, ox = dy[e], dx[e]
        for c in range(ch):
            for i in range(h):
                si = i + oy
                if si < 0 or si >= h:
                    for j in range(w):
                        out[e, c, i, j] = fill
                    continue
                for j in range(w):
                    sj = (w - 1 - j if flip[e] else j) + ox
                    out[e, c, i, j] = x[e, c, si, sj] if 0 <= sj < w else fill


def _check_fill(fill, what):
    if isinstance(fill, bool) or not isinstance(fill, (int, float, np.integer, np.floating)) \
            or not np.isfinite(fill):
        raise ValueError(f"{what}: fill must be a finite number, got {fill!r}")
    return float(fill)


def _apply(x, dy, dx, flip, fill=0.0):
    x4 = x[:, None] if x.ndim == 3 else x
    out = np.empty(x4.shape, x.dtype)
    _shift_flip(x4, dy.astype(np.int64), dx.astype(np.int64), flip.astype(np.bool_), fill, out)
    return out.reshape(x.shape)


def random_crop(x: NDArray, key: Key, padding: int, fill: float = 0.0) -> NDArray:
    """Pad each image with ``padding`` pixels of ``fill`` (the background: see the module
    docstring) on every side, then crop it back to its H x W at an offset drawn per example
    (uniform over the 2 * padding + 1 positions in each axis).

    Raises:
        TypeError: x not a float numpy array, or ``key`` not a key.
        ValueError: x not 3-D or 4-D, padding not an int >= 0, or fill not a finite number.

    Example:
        >>> import numpy as np
        >>> from dlkit import data, random
        >>> x = np.ones((2, 1, 4, 4), np.float32)
        >>> y = data.random_crop(x, random.key(0), 1)
        >>> y.shape, bool((y == data.random_crop(x, random.key(0), 1)).all())
        ((2, 1, 4, 4), True)
    """
    _check_images(x, "random_crop")
    _check_padding(padding, "random_crop")
    fill = _check_fill(fill, "random_crop")
    _check(key)
    if padding == 0 or len(x) == 0:
        return x.copy()
    shift = generator(key).integers(0, 2 * padding + 1, size=(len(x), 2)) - padding
    return _apply(x, shift[:, 0], shift[:, 1], np.zeros(len(x), np.bool_), fill)


def random_flip(x: NDArray, key: Key) -> NDArray:
    """Mirror each image left-right (the last axis) with probability 0.5, drawn per example.

    Raises:
        TypeError: x not a float numpy array, or ``key`` not a key.
        ValueError: x not 3-D or 4-D.

    Example:
        >>> import numpy as np
        >>> from dlkit import data, random
        >>> x = np.arange(64, dtype=np.float32).reshape(16, 1, 1, 4)
        >>> y = data.random_flip(x, random.key(0))
        >>> flipped = (y[:, 0, 0] == x[:, 0, 0, ::-1]).all(1)
        >>> bool(((y == x).all((1, 2, 3)) | flipped).all()), bool(0 < flipped.sum() < 16)
        (True, True)
    """
    _check_images(x, "random_flip")
    _check(key)
    flip = generator(key).random(len(x)) < 0.5
    zero = np.zeros(len(x), np.int64)
    return _apply(x, zero, zero, flip)


def crop_and_flip(padding: int = 2, fill: float = 0.0) -> Callable[[NDArray, Key], NDArray]:
    """fn(x, key) -> x: ``random_crop(x, k1, padding, fill)`` then ``random_flip(., k2)``,
    with ``k1, k2 = split(key)``: the usual augmentation for small images, for ``fit(...,
    augment=...)``.

    Raises:
        ValueError: padding not an int >= 0, or fill not a finite number (at once, not at the
            first batch).

    Example:
        >>> import numpy as np
        >>> from dlkit import data, random
        >>> aug = data.crop_and_flip(2)
        >>> x = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)
        >>> a, b = aug(x, random.key(0)), aug(x, random.key(1))
        >>> a.shape, bool((a == aug(x, random.key(0))).all()), bool((a != b).any())
        ((8, 1, 28, 28), True, True)
    """
    _check_padding(padding, "crop_and_flip")
    fill = _check_fill(fill, "crop_and_flip")

    def crop_flip(x: NDArray, key: Key) -> NDArray:
        _check_images(x, "crop_and_flip")
        _check(key)
        k_crop, k_flip = split(key)     # the draws of random_crop(k_crop), random_flip(k_flip)
        shift = generator(k_crop).integers(0, 2 * padding + 1, size=(len(x), 2)) - padding
        flip = generator(k_flip).random(len(x)) < 0.5
        return _apply(x, shift[:, 0], shift[:, 1], flip, fill)
    return crop_flip
