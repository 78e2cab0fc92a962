"""Durable checkpoints: nothing lost, nothing pickled, everything verified on load.

Layout of a checkpoint root folder::

    runs/mlp/
      step-000000469/            one folder per checkpoint
        arrays.npz               params, optimizer state and model state ("params/fc1/W",
                                 "opt_state/m/fc1/W", "state/bn1/mean")
        manifest.json            written last: format, version, library versions, step, meta
                                 (epoch, batch, key, optimizer, hyperparams, best metric, ...),
                                 each array's dtype and shape, SHA-256 of arrays.npz, and
                                 "manifest_sha256": the SHA-256 of the manifest's own canonical
                                 JSON (sorted keys, no spaces, without that field)
      LATEST                     the name of the newest checkpoint folder

The model state of a StatefulLayer (BatchNorm's running statistics, ``save(..., state=)``) is
a third tree beside params and optimizer state, under ``state/`` in arrays.npz, hashed and
verified like them; the manifest's ``"state": true`` says it was saved (an empty state comes
back as ``{}``).  Checkpoints without it (older ones, stateless models) load with
``state=None``.

``save`` refuses non-finite arrays and parameter names that would not survive the round trip
(non-string names, names holding "/", which would flatten onto another name's key).  It holds
an exclusive ``flock`` on the root folder for the whole save, so concurrent savers into one root
take turns; writes everything into a uniquely named ``.tmp-*`` folder, fsyncs each file and the
folder, renames it into place, fsyncs the root, then moves ``LATEST`` forward the same way
(never backwards: a save of a lower step than LATEST's leaves LATEST alone) and prunes all but
the newest ``keep`` by step, never the one LATEST names.  A crash at any point leaves the
previous checkpoint intact and ``LATEST`` pointing at it.

``load`` checks the manifest's shape, format version and own digest, the folder's step, the
arrays' hash, keys, shapes, dtypes and finiteness; it reads the npz without pickle and with
memory bounded by the file's size, and raises ``CheckpointError(path, reason)`` for every
defect.  ``restore`` tries LATEST, then every checkpoint by step number, newest first, and
returns the first valid one; it raises CheckpointError when there are checkpoints but none is
valid.  It removes stray ``.tmp-*`` entries left by interrupted saves (unless a save is under
way).

Every file and folder inside the root is opened relative to the root's descriptor with
``O_NOFOLLOW``: a symlink planted in the root (a step folder, LATEST, a file of a checkpoint) is
a defect, never followed, and LATEST must hold a plain ``step-<n>`` name, so nothing outside the
root is read or written.  Format version 1 (no manifest digest) is refused with a clear message.
"""
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import uuid
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import tree

FORMAT, VERSION = "dlkit-checkpoint", 2
ARRAYS, MANIFEST, LATEST = "arrays.npz", "manifest.json", "LATEST"
MAX_MANIFEST_BYTES = 64 << 20          # a manifest is a few kB; history of a long run < 1 MB
MAX_NPY_HEADER = 10000                 # numpy's own default limit
_STEP = re.compile(r"step-(\d{1,20})")
_MANIFEST_TYPES = {"format": str, "version": int, "versions": dict, "step": int, "meta": dict,
                   "arrays": dict, "sha256": str, "manifest_sha256": str}
_HEX64 = re.compile(r"[0-9a-f]{64}")


class CheckpointError(Exception):
    """A checkpoint that cannot be saved or loaded: ``path`` names it, ``reason`` says what
    is wrong (a missing file, a digest mismatch, a symlink, a shape that does not match
    ``like``...); ``str(e)`` is ``"<path>: <reason>"``."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


class Checkpoint(NamedTuple):
    """A loaded checkpoint: its folder, step, params and optimizer state (trees of numpy
    arrays, as saved), ``meta``, the JSON dict given to ``save``, and ``state``, the model
    state saved with it (a tree of numpy arrays; None when none was saved)."""

    path: Path
    step: int
    params: dict
    opt_state: dict
    meta: dict
    state: dict | None = None


# ------------------------------------------------------------------ files under a root fd
def _open_dir(name, dir_fd=None, follow=False):
    """A descriptor of folder ``name`` (relative to dir_fd); no symlink unless ``follow``."""
    flags = os.O_RDONLY | os.O_DIRECTORY | (0 if follow else os.O_NOFOLLOW)
    return os.open(name, flags, dir_fd=dir_fd)


def _open_file(dir_fd, name, where):
    """Regular file ``name`` of dir_fd opened for reading: no symlink followed, no FIFO
    blocking; CheckpointError(where, ...) otherwise."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as e:
        why = f"{name} is a symlink (never followed)" if e.errno == errno.ELOOP else \
            f"missing {name} (incomplete or not a checkpoint)" if e.errno == errno.ENOENT \
            else f"{name} cannot be opened: {e.strerror}"
        raise CheckpointError(where, why) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CheckpointError(where, f"{name} is not a regular file")
    return os.fdopen(fd, "rb")


def _read(dir_fd, name, limit, where):
    """The bytes of regular file ``name`` of dir_fd, at most ``limit`` of them."""
    with _open_file(dir_fd, name, where) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise CheckpointError(where, f"{name} is {size} bytes, more than the {limit} it "
                                         "can be")
        try:
            return f.read(limit + 1)
        except OSError as e:
            raise CheckpointError(where, f"{name} cannot be read: {e.strerror}") from None


def _write(dir_fd, name, write):
    """Create file ``name`` in dir_fd (it must not exist; no symlink followed), let
    ``write(f)`` fill it, fsync; returns the SHA-256 of what was written."""
    fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
    with os.fdopen(fd, "w+b") as f:
        write(f)
        f.flush()
        os.fsync(fd)
        f.seek(0)
        return _sha256(f)


def _sha256(f):
    h = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def _remove(dir_fd, folder, name):
    """Remove entry ``name`` of ``folder`` (open as dir_fd): a real folder with its contents
    (rmtree never follows symlinks), anything else (a symlink included, never its target)
    unlinked."""
    if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
        shutil.rmtree(folder / name)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _step_names(root_fd):
    """Names of the step-<n> entries of the root (whatever their kind), oldest step first."""
    steps = []
    for name in os.listdir(root_fd):
        m = _STEP.fullmatch(name)
        if m:
            steps.append((int(m.group(1)), name))
    return [name for _, name in sorted(steps)]


def _is_real_dir(root_fd, name):
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=root_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _latest(root_fd, where):
    """The checkpoint name LATEST holds; CheckpointError if it is missing or malformed."""
    raw = _read(root_fd, LATEST, 64, where)
    try:
        name = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        name = None
    if name is None or not _STEP.fullmatch(name):
        raise CheckpointError(where, f"{LATEST} holds {raw[:40]!r}, expected a name like "
                                     "'step-000000123'")
    return name


# ------------------------------------------------------------------ manifest
def _canonical(manifest):
    """The bytes the manifest's own digest covers: all fields but the digest, sorted keys,
    no spaces."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}")
    return dict(pairs)


def _parse_manifest(raw, path):
    """The verified manifest dict from its bytes; CheckpointError for any defect."""
    try:
        m = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(path, f"{MANIFEST} is not valid JSON: {e}") from None
    if not isinstance(m, dict):
        raise CheckpointError(path, f"{MANIFEST} holds a JSON {type(m).__name__}, expected an "
                                    "object")
    if m.get("format") != FORMAT or m.get("version") != VERSION:
        hint = (" (version 1 manifests carry no digest of their own, so their step, epoch "
                "and batch cannot be verified: resume that run with the dlkit that wrote it, "
                "or start a new one)") if m.get("version") == 1 else ""
        raise CheckpointError(path, f"{MANIFEST}: format {m.get('format')!r} version "
                                    f"{m.get('version')!r}"
                                    f", expected {FORMAT!r} version {VERSION}{hint}")
    for key, kind in _MANIFEST_TYPES.items():
        if key not in m:
            raise CheckpointError(path, f"{MANIFEST} lacks the key {key!r}")
        if not isinstance(m[key], kind) or isinstance(m[key], bool):
            raise CheckpointError(path, f"{MANIFEST}: {key!r} is {type(m[key]).__name__} "
                                        f"{m[key]!r:.60}, expected {kind.__name__}")
    digest = hashlib.sha256(_canonical(m)).hexdigest()
    if digest != m["manifest_sha256"]:
        raise CheckpointError(path, f"{MANIFEST} content SHA-256 {digest} does not match its "
                                    f"recorded {m['manifest_sha256']!r:.70} (the manifest was "
                                    "altered or corrupted)")
    if m["step"] < 0 or not _HEX64.fullmatch(m["sha256"]):
        raise CheckpointError(path, f"{MANIFEST}: step {m['step']} or sha256 "
                                    f"{m['sha256']!r:.70} is malformed")
    if not isinstance(m.get("state", False), bool):
        raise CheckpointError(path, f"{MANIFEST}: 'state' is {m['state']!r:.60}, expected "
                                    "true or false")
    tops = ("params", "opt_state", "state") if m.get("state") else ("params", "opt_state")
    for k, spec in m["arrays"].items():
        if k.split("/")[0] not in tops or not isinstance(spec, dict) \
                or set(spec) != {"dtype", "shape"} or not isinstance(spec["dtype"], str) \
                or not isinstance(spec["shape"], list) \
                or not all(type(d) is int and d >= 0 for d in spec["shape"]):
            raise CheckpointError(path, f"{MANIFEST}: array entry {k!r}: {spec!r:.80} is "
                                        "malformed, expected {'dtype': str, 'shape': [int]} "
                                        "under params/ or opt_state/ (or state/ with "
                                        "\"state\": true)")
        try:
            dtype = np.dtype(spec["dtype"])
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind not in "biufc":
            raise CheckpointError(path, f"{MANIFEST}: array {k!r} has dtype "
                                        f"{spec['dtype']!r:.40}, expected a numeric dtype")
    return m


# ------------------------------------------------------------------ arrays
def _read_arrays(dir_fd, path, specs, sha256):
    """The arrays of arrays.npz, checked against the manifest's hash and specs.  Memory is
    bounded by the file's size: members must be stored uncompressed (as np.savez writes
    them) and each npy header must match the manifest before its data is read."""
    with _open_file(dir_fd, ARRAYS, path) as f:
        digest = _sha256(f)
        if digest != sha256:
            raise CheckpointError(path, f"{ARRAYS} SHA-256 {digest} does not match the "
                                        f"manifest's {sha256} (corrupt or truncated)")
        f.seek(0)
        # zipfile and numpy raise many types on damaged input (BadZipFile, ValueError,
        # EOFError, NotImplementedError, RuntimeError, zlib.error, ...): any is a defect
        try:
            return _read_members(zipfile.ZipFile(f), path, specs)
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 - see above
            raise CheckpointError(path, f"cannot read {ARRAYS} without pickle: "
                                        f"{type(e).__name__}: {e}") from None


def _read_members(z, path, specs):
    members = sorted(z.namelist())
    if members != sorted(k + ".npy" for k in specs):
        got = {n[:-4] if n.endswith(".npy") else n for n in members}
        raise CheckpointError(path, f"arrays {sorted(got ^ set(specs))} differ between the npz "
                                    f"and the manifest (or appear twice)")
    arrays = {}
    for k, spec in specs.items():
        info = z.getinfo(k + ".npy")
        with z.open(info) as m:
            version = np.lib.format.read_magic(m)
            if version != (1, 0) and version != (2, 0):
                raise CheckpointError(path, f"array {k!r}: npy format {version}, expected "
                                            "(1, 0) or (2, 0)")
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(m, max_header_size=MAX_NPY_HEADER)
            if dtype.hasobject:
                raise CheckpointError(path, f"array {k!r} holds Python objects, which cannot "
                                            "be read without pickle (refused)")
            if dtype.str != spec["dtype"] or list(shape) != spec["shape"]:
                raise CheckpointError(path, f"array {k!r} is {dtype.str} {list(shape)}, the "
                                            f"manifest says {spec['dtype']} {spec['shape']}")
            nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if info.compress_type != zipfile.ZIP_STORED or nbytes > info.file_size:
                raise CheckpointError(path, f"array {k!r}: {nbytes} bytes of data in a member "
                                            f"of {info.file_size} bytes stored with method "
                                            f"{info.compress_type}, expected uncompressed")
            raw = m.read(nbytes)
            if len(raw) != nbytes or m.read(1):
                raise CheckpointError(path, f"array {k!r}: {len(raw)} bytes of data, expected "
                                            f"{nbytes}")
        a = np.frombuffer(raw, dtype).reshape(shape, order="F" if fortran else "C").copy(
            order="K")
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise CheckpointError(path, f"array {k!r} holds NaN or Inf")
        arrays[k] = a
    return arrays


def _match(path, what, want, got):
    """CheckpointError unless the trees ``got`` (loaded) and ``want`` have the same keys,
    shapes and dtypes."""
    want, got = tree.flatten(want), tree.flatten(got)
    for k in sorted(set(want) | set(got)):
        if k not in got or k not in want or got[k].shape != want[k].shape \
                or got[k].dtype != want[k].dtype:
            def desc(d):
                return f"{d[k].dtype} {d[k].shape}" if k in d else "absent"
            raise CheckpointError(path, f"{what} {k!r} is {desc(got)} in the checkpoint, "
                                        f"the model expects {desc(want)}")


def _load_dir(dir_fd, path, like, like_state=None):
    """Load and verify the checkpoint folder open as ``dir_fd`` (shown as ``path``)."""
    m = _parse_manifest(_read(dir_fd, MANIFEST, MAX_MANIFEST_BYTES, path), path)
    named = _STEP.fullmatch(path.name)
    if named and int(named.group(1)) != m["step"]:
        raise CheckpointError(path, f"the folder is named for step {int(named.group(1))}, its "
                                    f"manifest says step {m['step']}")
    arrays = _read_arrays(dir_fd, path, m["arrays"], m["sha256"])
    nested = tree.unflatten(arrays)
    params, opt_state = nested.get("params", {}), nested.get("opt_state", {})
    state = nested.get("state", {}) if m.get("state") else None
    if like is not None:
        _match(path, "param", like, params)
    if like_state is not None:
        if state is None:
            raise CheckpointError(path, "holds no model state, the model expects state "
                                        f"{sorted(tree.flatten(like_state))}")
        _match(path, "state", like_state, state)
    return Checkpoint(path, m["step"], params, opt_state, m["meta"], state)


def _load_child(root_fd, root, name, like, like_state=None):
    path = root / name
    try:
        fd = _open_dir(name, root_fd)
    except OSError as e:
        why = "is a symlink (never followed)" if e.errno == errno.ELOOP else \
            "is not a folder" if e.errno == errno.ENOTDIR else \
            "is missing" if e.errno == errno.ENOENT else f"cannot be opened: {e.strerror}"
        raise CheckpointError(path, f"the checkpoint folder {why}") from None
    try:
        return _load_dir(fd, path, like, like_state)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ public API
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


def _flatten(node, prefix, out):
    """tree.flatten, refusing names that would not come back as they went in."""
    for k, v in node.items():
        if not isinstance(k, str) or not k or tree.SEP in k:
            raise ValueError(f"checkpoint: the name {k!r} under {prefix or 'the top'!r} must "
                             f"be a non-empty string without {tree.SEP!r} (it would flatten "
                             f"onto another name's key), got {type(k).__name__} {k!r}")
        if isinstance(v, dict):
            _flatten(v, prefix + k + tree.SEP, out)
        else:
            out[prefix + k] = v
    return out


def save(root: str | os.PathLike, step: int, params: dict, opt_state: dict | None = None,
         meta: dict | None = None, keep: int | None = 3, *, state: dict | None = None) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically; returns its folder.

    Args:
        root: the checkpoint root folder (created if needed).
        step: a non-negative int, the folder's name ``step-<step>``.
        params: a tree of finite numpy arrays (device arrays: ``dlkit.device.to_host`` first).
        opt_state: the optimizer state tree (``opt.init``'s layout), or None.
        meta: a JSON-serialisable dict (epoch, key, settings...), returned by ``load``.
        keep: how many checkpoints to keep (newest by step, plus the one LATEST names);
            0 or None: all.
        state: the model state of a StatefulLayer model (a tree of finite numpy arrays), or
            None (none saved; ``load`` gives ``state=None``).

    Raises:
        ValueError: a bad step, or a name that would not round-trip (not a str, or with "/").
        TypeError: a leaf that is not a numeric numpy array.
        FloatingPointError: a non-finite array (nothing is written).
        OSError: the root cannot be created or written (the previous checkpoints stay intact).

    Example:
        >>> import tempfile, numpy as np
        >>> from dlkit import checkpoint
        >>> with tempfile.TemporaryDirectory() as root:
        ...     folder = checkpoint.save(root, 100, {"fc": {"W": np.eye(2, dtype=np.float32)}},
        ...                              meta={"epoch": 3})
        ...     ck = checkpoint.restore(root)
        ...     print(folder.name, ck.step, ck.meta["epoch"], ck.params["fc"]["W"].dtype)
        step-000000100 100 3 float32
    """
    if not isinstance(step, (int, np.integer)) or isinstance(step, bool) or step < 0:
        raise ValueError(f"checkpoint: step must be a non-negative int, got {step!r}")
    step = int(step)
    if state is not None and not isinstance(state, dict):
        raise TypeError(f"checkpoint: state must be a dict of arrays or None, got "
                        f"{type(state).__name__}")
    trees = {"params": params, "opt_state": opt_state or {}}
    if state is not None:
        trees["state"] = state
    arrays = _flatten(trees, "", {})
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype.hasobject:
            raise TypeError(f"checkpoint: {name!r} must be a numeric ndarray, got "
                            f"{type(a).__name__} {getattr(a, 'dtype', '')}")
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise FloatingPointError(f"checkpoint: refusing to save step {step}: {name!r} "
                                     "holds NaN or Inf")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    root_fd = _open_dir(root, follow=True)
    try:
        fcntl.flock(root_fd, fcntl.LOCK_EX)             # released when root_fd is closed
        name = f"step-{step:09d}"
        tmp = f".tmp-{name}-{uuid.uuid4().hex}"
        os.mkdir(tmp, dir_fd=root_fd)
        try:
            tmp_fd = _open_dir(tmp, root_fd)
            try:
                manifest = {
                    "format": FORMAT, "version": VERSION, "versions": _versions(),
                    "step": step, "meta": _jsonable(meta or {}),
                    "arrays": {k: {"dtype": a.dtype.str, "shape": list(a.shape)}
                               for k, a in arrays.items()},
                    "sha256": _write(tmp_fd, ARRAYS, lambda f: np.savez(f, **arrays))}
                if state is not None:
                    manifest["state"] = True
                manifest["manifest_sha256"] = hashlib.sha256(_canonical(manifest)).hexdigest()
                text = json.dumps(manifest, indent=1, sort_keys=True).encode()
                _write(tmp_fd, MANIFEST, lambda f: f.write(text))
                os.fsync(tmp_fd)
            finally:
                os.close(tmp_fd)
            if os.path.lexists(root / name):
                old = f".tmp-old-{name}-{uuid.uuid4().hex}"
                os.rename(name, old, src_dir_fd=root_fd, dst_dir_fd=root_fd)
                os.rename(tmp, name, src_dir_fd=root_fd, dst_dir_fd=root_fd)
                _remove(root_fd, root, old)
            else:
                os.rename(tmp, name, src_dir_fd=root_fd, dst_dir_fd=root_fd)
            os.fsync(root_fd)
        except BaseException:
            if os.path.lexists(root / tmp):
                _remove(root_fd, root, tmp)
            raise
        try:
            latest = _latest(root_fd, root)
        except CheckpointError:
            latest = None
        if latest is None or not _is_real_dir(root_fd, latest) or \
                step >= int(_STEP.fullmatch(latest).group(1)):
            tmp = f".tmp-{LATEST}-{uuid.uuid4().hex}"
            try:
                _write(root_fd, tmp, lambda f: f.write(name.encode()))
                os.replace(tmp, LATEST, src_dir_fd=root_fd, dst_dir_fd=root_fd)
            except BaseException:
                if os.path.lexists(root / tmp):
                    os.unlink(tmp, dir_fd=root_fd)
                raise
            os.fsync(root_fd)
            latest = name
        if keep:
            for old in [n for n in _step_names(root_fd) if _is_real_dir(root_fd, n)][:-keep]:
                if old != latest:
                    _remove(root_fd, root, old)
    finally:
        os.close(root_fd)
    return root / name


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Checkpoint folders under root (real folders named step-<n>, no symlinks), oldest
    first by step number ([] if root does not exist).

    Example:
        >>> import tempfile, numpy as np
        >>> from dlkit import checkpoint
        >>> with tempfile.TemporaryDirectory() as root:
        ...     for step in (1, 2):
        ...         _ = checkpoint.save(root, step, {"W": np.zeros(2)})
        ...     [p.name for p in checkpoint.list_checkpoints(root)]
        ['step-000000001', 'step-000000002']
    """
    root = Path(root)
    try:
        root_fd = _open_dir(root, follow=True)
    except OSError:
        return []
    try:
        return [root / n for n in _step_names(root_fd) if _is_real_dir(root_fd, n)]
    finally:
        os.close(root_fd)


def load(path: str | os.PathLike, like: dict | None = None, *,
         like_state: dict | None = None) -> Checkpoint:
    """Load and verify one checkpoint folder (or a root: its LATEST).

    Args:
        path: a ``step-<n>`` folder, or a root folder (its LATEST is loaded).
        like: an optional params template whose keys, shapes and dtypes the checkpoint's
            params must match (e.g. the params of a freshly initialised model).
        like_state: the same for the model state (a checkpoint without state then fails).

    Raises:
        CheckpointError: any defect (missing, corrupt, tampered, or not matching ``like``).

    Example:
        >>> import tempfile, numpy as np
        >>> from dlkit import checkpoint
        >>> with tempfile.TemporaryDirectory() as root:
        ...     folder = checkpoint.save(root, 7, {"W": np.zeros(2)})
        ...     checkpoint.load(folder, like={"W": np.zeros(3)})
        Traceback (most recent call last):
        ...
        dlkit.checkpoint.CheckpointError: ...
    """
    path = Path(path)
    try:
        fd = _open_dir(path, follow=True)
    except OSError as e:
        raise CheckpointError(path, f"cannot open the folder: {e.strerror}") from None
    try:
        if os.path.lexists(path / LATEST):
            return _load_child(fd, path, _latest(fd, path), like, like_state)
        return _load_dir(fd, path, like, like_state)
    finally:
        os.close(fd)


def restore(root: str | os.PathLike, like: dict | None = None, *,
            like_state: dict | None = None) -> Checkpoint | None:
    """The newest valid checkpoint under ``root`` (LATEST first, then by step number, newest
    first); None if there is no checkpoint at all, CheckpointError if there are some but none
    is valid.  Removes stray temporary entries left by interrupted saves, unless a save holds
    the root.  ``like`` and ``like_state`` as for ``load``.

    Example:
        >>> import tempfile
        >>> from dlkit import checkpoint
        >>> with tempfile.TemporaryDirectory() as root:
        ...     print(checkpoint.restore(root))             # a fresh run: nothing to resume
        None
    """
    root = Path(root)
    try:
        root_fd = _open_dir(root, follow=True)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CheckpointError(root, f"cannot open the checkpoint root: {e.strerror}") from None
    try:
        try:
            fcntl.flock(root_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            for stray in os.listdir(root_fd):
                if stray.startswith(".tmp-") or stray == LATEST + ".tmp":
                    _remove(root_fd, root, stray)
            fcntl.flock(root_fd, fcntl.LOCK_UN)
        except BlockingIOError:
            pass                                        # a save is under way: leave its files
        errors, candidates = [], list(reversed(_step_names(root_fd)))
        if os.path.lexists(root / LATEST):
            try:
                first = _latest(root_fd, root)
                candidates = [first] + [c for c in candidates if c != first]
            except CheckpointError as e:
                errors.append(str(e))
        for name in candidates:
            try:
                return _load_child(root_fd, root, name, like, like_state)
            except CheckpointError as e:
                errors.append(str(e))
    finally:
        os.close(root_fd)
    if errors:
        raise CheckpointError(root, "no valid checkpoint: " + "; ".join(errors))
    return None
