"""Durable checkpoints: nothing lost, nothing pickled, everything verified on load.

Layout of a checkpoint root folder::

    runs/mlp/
      step-000000469/            one folder per checkpoint
        arrays.npz               params and optimizer state ("params/fc1/W", "opt_state/m/fc1/W")
        manifest.json            written last: format, version, library versions, step, meta
                                 (epoch, batch, key, optimizer, hyperparams, best metric, ...),
                                 each array's dtype and shape, SHA-256 of arrays.npz
      LATEST                     the name of the newest checkpoint folder

``save`` refuses non-finite arrays, writes everything into ``.tmp-*`` beside the target, fsyncs
each file and the folder, renames it into place, fsyncs the root, then replaces ``LATEST`` the
same way and prunes all but the newest ``keep``.  A crash at any point leaves the previous
checkpoint intact and ``LATEST`` pointing at it.  ``load`` checks manifest, format version,
hash, keys, shapes, dtypes and finiteness, reads the npz with ``allow_pickle=False`` and raises
``CheckpointError(path, reason)``.  ``restore`` falls back to the newest valid checkpoint when
``LATEST`` is missing or broken, and removes stray ``.tmp-*`` folders.
"""
import hashlib
import json
import os
import shutil
import uuid
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import tree

FORMAT, VERSION = "dlkit-checkpoint", 1
ARRAYS, MANIFEST, LATEST = "arrays.npz", "manifest.json", "LATEST"


class CheckpointError(Exception):
    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


class Checkpoint(NamedTuple):
    path: Path
    step: int
    params: dict
    opt_state: dict
    meta: dict


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _versions():
    import numba

    from . import __version__
    return {"dlkit": __version__, "numpy": np.__version__, "numba": numba.__version__}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def _write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save(root, step, params, opt_state=None, meta=None, keep=3):
    """Write checkpoint ``step`` under ``root`` atomically; returns its folder."""
    root = Path(root)
    arrays = tree.flatten({"params": params, "opt_state": opt_state or {}})
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype.hasobject:
            raise TypeError(f"checkpoint: {name!r} must be a numeric ndarray, got "
                            f"{type(a).__name__} {getattr(a, 'dtype', '')}")
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise FloatingPointError(f"checkpoint: refusing to save step {step}: {name!r} "
                                     "holds NaN or Inf")
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{int(step):09d}"
    tmp = root / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        with open(tmp / ARRAYS, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        manifest = {
            "format": FORMAT, "version": VERSION, "versions": _versions(), "step": int(step),
            "meta": _jsonable(meta or {}),
            "arrays": {k: {"dtype": a.dtype.str, "shape": list(a.shape)}
                       for k, a in arrays.items()},
            "sha256": _sha256(tmp / ARRAYS),
        }
        _write_file(tmp / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
        _write_file(root / (LATEST + ".tmp"), final.name.encode())
        os.replace(root / (LATEST + ".tmp"), root / LATEST)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        (root / (LATEST + ".tmp")).unlink(missing_ok=True)
        raise
    for old in list_checkpoints(root)[:-keep] if keep else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root):
    """Checkpoint folders under root, oldest first (by step)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))


def load(path, like=None):
    """Load and verify one checkpoint folder (or a root: its LATEST).  ``like``: an optional
    params template whose keys, shapes and dtypes the checkpoint's params must match."""
    path = Path(path)
    if (path / LATEST).is_file():
        path = path / (path / LATEST).read_text().strip()
    mpath, apath = path / MANIFEST, path / ARRAYS
    if not mpath.is_file():
        raise CheckpointError(path, f"missing {MANIFEST} (incomplete or not a checkpoint)")
    try:
        manifest = json.loads(mpath.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(path, f"{MANIFEST} is not valid JSON: {e}") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise CheckpointError(path, f"format {manifest.get('format')!r} version "
                                    f"{manifest.get('version')!r}, expected {FORMAT!r} "
                                    f"version {VERSION}")
    if not apath.is_file():
        raise CheckpointError(path, f"missing {ARRAYS}")
    digest = _sha256(apath)
    if digest != manifest.get("sha256"):
        raise CheckpointError(path, f"{ARRAYS} SHA-256 {digest} does not match the manifest's "
                                    f"{manifest.get('sha256')} (corrupt or truncated)")
    try:
        with np.load(apath, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(path, f"cannot read {ARRAYS} without pickle: {e}") from None
    expected = manifest.get("arrays", {})
    if set(arrays) != set(expected):
        raise CheckpointError(path, f"arrays {sorted(set(arrays) ^ set(expected))} differ "
                                    "between the npz and the manifest")
    for k, a in arrays.items():
        spec = expected[k]
        if a.dtype.str != spec["dtype"] or list(a.shape) != spec["shape"]:
            raise CheckpointError(path, f"array {k!r} is {a.dtype.str} {list(a.shape)}, the "
                                        f"manifest says {spec['dtype']} {spec['shape']}")
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise CheckpointError(path, f"array {k!r} holds NaN or Inf")
    nested = tree.unflatten(arrays)
    params, opt_state = nested.get("params", {}), nested.get("opt_state", {})
    if like is not None:
        want, got = tree.flatten(like), tree.flatten(params)
        for k in sorted(set(want) | set(got)):
            if k not in got or k not in want or got[k].shape != want[k].shape \
                    or got[k].dtype != want[k].dtype:
                def desc(d):
                    return f"{d[k].dtype} {d[k].shape}" if k in d else "absent"
                raise CheckpointError(path, f"param {k!r} is {desc(got)} in the checkpoint, "
                                            f"the model expects {desc(want)}")
    return Checkpoint(path, int(manifest["step"]), params, opt_state, manifest.get("meta", {}))


def restore(root, like=None):
    """The newest valid checkpoint under ``root`` (LATEST first, then by step); None if there
    is no checkpoint at all, CheckpointError if there are some but none is valid.  Removes
    stray temporary folders left by interrupted saves."""
    root = Path(root)
    if not root.is_dir():
        return None
    for stray in root.glob(".tmp-*"):
        shutil.rmtree(stray, ignore_errors=True)
    (root / (LATEST + ".tmp")).unlink(missing_ok=True)
    candidates = list(reversed(list_checkpoints(root)))
    if (root / LATEST).is_file():
        first = root / (root / LATEST).read_text().strip()
        candidates = [first] + [c for c in candidates if c != first]
    errors = []
    for c in candidates:
        try:
            return load(c, like)
        except CheckpointError as e:
            errors.append(str(e))
    if errors:
        raise CheckpointError(root, "no valid checkpoint: " + "; ".join(errors))
    return None
