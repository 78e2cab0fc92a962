"""Checkpoints: round trip, keep-K, and every way a checkpoint can be broken (issue: nothing
lost, nothing silent).  Each broken case must give CheckpointError naming path and reason."""
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from dlkit import checkpoint as C
from dlkit import optim, tree


def state(seed=0, n=50):
    rng = np.random.default_rng(seed)
    params = {"fc1": {"W": rng.standard_normal((n, 7)).astype(np.float32),
                      "b": np.zeros(7, np.float32)}}
    opt = optim.adam(1e-3)
    return params, opt.init(params)


def test_round_trip_and_keep(tmp_path):
    params, st = state()
    for step in (1, 2, 3, 4):
        C.save(tmp_path, step, params, st, meta={"epoch": step, "key": (1, 2)}, keep=2)
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["step-000000003", "step-000000004"]
    assert (tmp_path / "LATEST").read_text() == "step-000000004"
    c = C.load(tmp_path, like=params)
    assert c.step == 4 and c.meta == {"epoch": 4, "key": [1, 2]}
    assert tree.equal(c.params, params) and tree.equal(c.opt_state, st)
    m = json.loads((c.path / "manifest.json").read_text())
    assert m["format"] == "dlkit-checkpoint" and set(m["versions"]) == {"dlkit", "numpy", "numba"}
    assert m["arrays"]["params/fc1/W"] == {"dtype": "<f4", "shape": [50, 7]}


def test_refuses_non_finite(tmp_path):
    params, st = state()
    C.save(tmp_path, 1, params, st)
    params["fc1"]["W"][3, 2] = np.nan
    with pytest.raises(FloatingPointError, match="'params/fc1/W' holds NaN"):
        C.save(tmp_path, 2, params, st)
    assert C.restore(tmp_path).step == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "step-000000001"]


def _rewrite_npz(path, arrays, fix_hash=True):
    with open(path / "arrays.npz", "wb") as f:
        np.savez(f, **arrays)
    if fix_hash:
        m = json.loads((path / "manifest.json").read_text())
        m["sha256"] = hashlib.sha256((path / "arrays.npz").read_bytes()).hexdigest()
        m["manifest_sha256"] = hashlib.sha256(C._canonical(m)).hexdigest()
        (path / "manifest.json").write_text(json.dumps(m))


class Evil:
    """Unpickling this would create a file: proof that no code runs on load."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def corrupt_truncate(p, tmp):
    raw = (p / "arrays.npz").read_bytes()
    (p / "arrays.npz").write_bytes(raw[:len(raw) // 2])


def corrupt_flip(p, tmp):
    raw = bytearray((p / "arrays.npz").read_bytes())
    raw[len(raw) // 3] ^= 0x40
    (p / "arrays.npz").write_bytes(bytes(raw))


def corrupt_manifest_missing(p, tmp):
    (p / "manifest.json").unlink()


def corrupt_version(p, tmp):
    m = json.loads((p / "manifest.json").read_text())
    m["version"] = 99
    (p / "manifest.json").write_text(json.dumps(m))


def corrupt_shape(p, tmp):
    with np.load(p / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["params/fc1/W"] = arrays["params/fc1/W"][:10]
    _rewrite_npz(p, arrays)


def corrupt_pickle(p, tmp):
    with np.load(p / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    evil = np.empty(1, dtype=object)
    evil[0] = Evil(str(tmp / "PWNED"))
    arrays["params/fc1/W"] = evil
    _rewrite_npz(p, arrays)


CORRUPTIONS = [(corrupt_truncate, "SHA-256"), (corrupt_flip, "SHA-256"),
               (corrupt_manifest_missing, "missing manifest.json"),
               (corrupt_version, "version 99, expected 'dlkit-checkpoint' version 2"),
               (corrupt_shape, r"'params/fc1/W' is <f4 \[10, 7\], the manifest says <f4 \[50, 7\]"),
               (corrupt_pickle, "without pickle")]


@pytest.mark.parametrize("corrupt,reason", CORRUPTIONS, ids=[c[0].__name__ for c in CORRUPTIONS])
def test_corrupt_checkpoint_is_detected_and_restore_falls_back(tmp_path, corrupt, reason):
    params, st = state()
    root = tmp_path / "ck"
    C.save(root, 1, params, st)
    good = tree.copy(params)
    params["fc1"]["W"] += 1
    newest = C.save(root, 2, params, st)
    corrupt(newest, tmp_path)
    with pytest.raises(C.CheckpointError, match=reason) as e:
        C.load(newest)
    assert e.value.path == str(newest)
    c = C.restore(root)                       # falls back to the previous, valid one
    assert c.step == 1 and tree.equal(c.params, good)
    assert not (tmp_path / "PWNED").exists()


def test_pickle_in_npz_without_hash_fix_never_executes(tmp_path):
    params, st = state()
    p = C.save(tmp_path, 1, params, st)
    evil = np.empty(1, dtype=object)
    evil[0] = Evil(str(tmp_path / "PWNED"))
    with zipfile.ZipFile(p / "arrays.npz", "a") as z:
        with z.open("params/fc1/x.npy", "w") as f:
            np.lib.format.write_array(f, evil, allow_pickle=True)
    with pytest.raises(C.CheckpointError):
        C.load(p)
    assert not (tmp_path / "PWNED").exists()


def test_like_template_mismatch(tmp_path):
    params, st = state(n=50)
    C.save(tmp_path, 1, params, st)
    other, _ = state(n=51)
    with pytest.raises(C.CheckpointError, match=r"'fc1/W' is float32 \(50, 7\) in the checkpoint, "
                                                r"the model expects float32 \(51, 7\)"):
        C.load(tmp_path, like=other)


def test_no_valid_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    params, st = state()
    p = C.save(tmp_path, 1, params, st)
    (p / "manifest.json").unlink()
    with pytest.raises(C.CheckpointError, match="no valid checkpoint"):
        C.restore(tmp_path)
    assert C.restore(tmp_path / "nothing-here") is None


def test_disk_full_injected_enospc(tmp_path, monkeypatch):
    params, st = state()
    C.save(tmp_path, 1, params, st)
    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        C.save(tmp_path, 2, params, st)
    monkeypatch.setattr(os, "fsync", real)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "step-000000001"]
    assert C.restore(tmp_path).step == 1


SCRIPT = textwrap.dedent("""
    import sys, resource, signal, numpy as np
    from dlkit import checkpoint as C
    root, mode = sys.argv[1], sys.argv[2]
    params = {"fc": {"W": np.ones((300, 300), np.float32)}}
    C.save(root, 1, params)
    if mode == "fsize":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
        try:
            C.save(root, 2, params)
        except OSError as e:
            print("ERROR", e.errno, e)
            sys.exit(3)
    else:
        real = np.savez
        def slow(f, **arrays):
            f.write(b"PK partial")
            f.flush()
            print("WRITING", flush=True)
            import time; time.sleep(60)
        np.savez = slow
        C.save(root, 2, params)
""")


def test_disk_full_file_size_limit(tmp_path):
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), "fsize"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and "ERROR 27" in r.stdout, r.stderr   # EFBIG reaches the caller
    assert not list(tmp_path.glob(".tmp-*")) and not (tmp_path / "step-000000002").exists()
    assert C.restore(tmp_path).step == 1


def test_kill_during_save_keeps_previous_latest(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path), "kill"],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "WRITING"
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert list(tmp_path.glob(".tmp-*"))                  # the interrupted save's debris
    assert (tmp_path / "LATEST").read_text() == "step-000000001"
    c = C.restore(tmp_path)
    assert c.step == 1 and not list(tmp_path.glob(".tmp-*"))
