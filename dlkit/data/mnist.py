"""MNIST-format image sets (IDX files): MNIST, Fashion-MNIST, Kuzushiji-MNIST.

    load_mnist(dataset="mnist", data_dir=None) -> (x_train, y_train), (x_test, y_test)
        x: uint8 (N, 28, 28), y: int64 (N,).  Files are found or downloaded by dlkit.data.store.
    read_idx(path) -> ndarray          any IDX file, gzipped or not (ValueError if malformed)
    CLASS_NAMES[dataset]               the class names, index = label
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib

import os

import numpy as np
from numpy.typing import NDArray

from .store import fetch

_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
          "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

SPECS = {
    "mnist": dict(
        urls=("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        md5=("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
             "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")),
    "fashion-mnist": dict(
        urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        sha256=("b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05")),
    "kmnist": dict(
        urls=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        md5=("bdb82020997e1d708af4cf47b453dcf7", "e144d726b3acfaa3e44228e80efcd344",
             "5c965bf0a639b31b8f53240b1b52f4d7", "7320c461ea6c1c855c0b718fb2a4b134")),
}

CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                      "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "kmnist": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
}

MAX_IDX_BYTES = 1 << 32            # 4 GiB: the largest MNIST-style file is ~47 MB
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> NDArray:
    """Read an IDX file (magic 0x00 0x00 <type> <ndim>, big-endian dims, then the data),
    gzipped or not.  At most the header-implied size + 1 bytes are read (inflated), in blocks,
    so memory stays bounded by the smaller of what the header says and what the file holds;
    a header implying more than MAX_IDX_BYTES, a truncated header and a size mismatch are
    ValueErrors.

    Returns:
        An array of the header's shape and dtype (uint8 for MNIST images (N, 28, 28) and
        labels (N,)), in native byte order.

    Example:
        >>> import struct, tempfile, os
        >>> from dlkit import data
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = os.path.join(d, "labels-idx1-ubyte")
        ...     with open(p, "wb") as f:
        ...         _ = f.write(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 3) + bytes([7, 2, 1]))
        ...     data.read_idx(p)
        array([7, 2, 1], dtype=uint8)
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _DTYPES:
                raise ValueError(f"{path}: not an IDX file (header {head!r}, expected "
                                 "0x00 0x00 <type> <ndim>)")
            ndim = head[3]
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) != 4 * ndim:
                raise ValueError(f"{path}: truncated IDX header: {ndim} dimensions need "
                                 f"{4 * ndim} bytes, the file holds {len(raw_dims)}")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            dtype = np.dtype(_DTYPES[head[2]])
            count = math.prod(dims)                     # Python ints: no overflow
            nbytes = count * dtype.itemsize
            if nbytes > MAX_IDX_BYTES:
                raise ValueError(f"{path}: header says {dims} = {count} items ({nbytes} "
                                 f"bytes), more than the {MAX_IDX_BYTES} an IDX file may hold")
            data = bytearray()
            while len(data) <= nbytes:
                block = f.read(min(1 << 20, nbytes + 1 - len(data)))
                if not block:
                    break
                data += block
    except (OSError, EOFError, zlib.error) as e:        # gzip: BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot read the IDX file: {e}") from None
    if len(data) != nbytes:
        held = "more" if len(data) > nbytes else f"{len(data)} bytes"
        raise ValueError(f"{path}: header says {dims} = {count} items ({nbytes} bytes), the "
                         f"file holds {held}")
    return np.frombuffer(data, dtype).reshape(dims).astype(dtype.newbyteorder("="))


def load_mnist(dataset: str = "mnist", data_dir: str | os.PathLike | None = None,
               download: bool = True, progress: bool = True
               ) -> tuple[tuple[NDArray[np.uint8], NDArray[np.int64]],
                          tuple[NDArray[np.uint8], NDArray[np.int64]]]:
    """An MNIST-format data set: 60,000 training and 10,000 test images of 28x28 pixels.

    Files are found (``data_dir``, ``$DLKIT_DATA``, ``~/.cache/dlkit``,
    ``/usr/share/datasets``) or downloaded and verified by ``dlkit.data.fetch``.

    Args:
        dataset: "mnist", "fashion-mnist" or "kmnist" (Kuzushiji-MNIST); class names in
            ``CLASS_NAMES[dataset]``.
        data_dir: a folder holding ``<dataset>/``, searched first.
        download: download the files if no verified copy is found.
        progress: show a progress bar while downloading.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: x uint8 (N, 28, 28) with values 0-255,
        y int64 (N,) labels 0-9.  Scale x to float32 yourself (e.g. ``x / 255``).

    Raises:
        ValueError: an unknown dataset, or a malformed file.
        DataNotFoundError: no verified copy found or downloaded (the message says where it
            looked and how to provide the files).

    Example:
        >>> from dlkit import data
        >>> (x, y), (xt, yt) = data.load_mnist("fashion-mnist")   # doctest: +SKIP
        >>> x.shape, x.dtype, yt.shape                             # doctest: +SKIP
        ((60000, 28, 28), dtype('uint8'), (10000,))
    """
    if dataset not in SPECS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(SPECS)}")
    spec = SPECS[dataset]
    arrays = []
    for i, fname in enumerate(_FILES):
        path = fetch(dataset, fname, urls=[u + fname for u in spec["urls"]],
                     sha256=spec.get("sha256", (None,) * 4)[i],
                     md5=spec.get("md5", (None,) * 4)[i],
                     data_dir=data_dir, download_ok=download, progress=progress)
        arrays.append(read_idx(path))
    xtr, ytr, xte, yte = arrays
    return (xtr, ytr.astype(np.int64)), (xte, yte.astype(np.int64))
