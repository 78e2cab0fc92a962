"""Checkpoints probed as a hostile user would (issue 14, class 2): the manifest's own content is
verified, restore falls back to the newest valid checkpoint on any defect of any file of the
root (or raises CheckpointError, never another exception), nothing is read or written through a
symlink or outside the root, concurrent saves are safe, LATEST never moves backwards, colliding
names are refused, checkpoints are ordered by step number."""
import hashlib
import json
import os
import shutil
import zipfile

import numpy as np
import pytest

from dlkit import checkpoint as C
from dlkit import optim, tree


def state(seed=0):
    rng = np.random.default_rng(seed)
    params = {"fc1": {"W": rng.standard_normal((6, 5)).astype(np.float32),
                      "b": rng.standard_normal(5).astype(np.float32)}}
    return params, optim.adam(1e-3).init(params)


def three(root):
    """Checkpoints 1, 2, 3 under root; returns {step: params}."""
    saved = {}
    for step in (1, 2, 3):
        params, st = state(step)
        C.save(root, step, params, st, meta={"epoch": 0, "batch": 10 * step, "key": [0, 1]},
               keep=0)
        saved[step] = params
    return saved


def refresh_digest(folder):
    m = json.loads((folder / "manifest.json").read_text())
    m["manifest_sha256"] = hashlib.sha256(C._canonical(m)).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(m))


def test_one_flipped_digit_in_the_manifest_is_detected(tmp_path):
    saved = three(tmp_path)
    mpath = tmp_path / "step-000000003" / "manifest.json"
    text = mpath.read_text()
    assert '"batch": 30' in text
    mpath.write_text(text.replace('"batch": 30', '"batch": 31'))     # '0' -> '1': one bit
    with pytest.raises(C.CheckpointError, match="manifest.json content SHA-256 .* does not "
                                                "match its recorded"):
        C.load(tmp_path / "step-000000003")
    c = C.restore(tmp_path)
    assert c.step == 2 and c.meta["batch"] == 20 and tree.equal(c.params, saved[2])


def test_every_bit_position_of_the_manifest(tmp_path):
    """One bit flipped at each byte of the manifest (bit = position mod 8): load either
    raises CheckpointError or returns exactly what was saved."""
    saved = three(tmp_path)
    folder = tmp_path / "step-000000003"
    raw = (folder / "manifest.json").read_bytes()
    want = C.load(folder)
    for i in range(len(raw)):
        bad = bytearray(raw)
        bad[i] ^= 1 << (i % 8)
        (folder / "manifest.json").write_bytes(bytes(bad))
        try:
            c = C.load(folder)
        except C.CheckpointError:
            continue
        assert c.step == 3 and c.meta == want.meta and tree.equal(c.params, saved[3]), i


WRONG_KIND = [b"[]", b"null", b"1", b'"step-000000003"', b"{}", b'{"format": 1}',
              b'{"format": "dlkit-checkpoint", "version": 2}',
              b'{"format": "dlkit-checkpoint", "version": 2, "step": "3"}',
              b"\xff\xfe not utf-8", b"[" * 100000]


@pytest.mark.parametrize("content", WRONG_KIND, ids=range(len(WRONG_KIND)))
def test_manifest_of_the_wrong_shape(tmp_path, content):
    three(tmp_path)
    (tmp_path / "step-000000003" / "manifest.json").write_bytes(content)
    with pytest.raises(C.CheckpointError, match="manifest.json"):
        C.load(tmp_path / "step-000000003")
    assert C.restore(tmp_path).step == 2


def test_wrong_kinds_inside_a_manifest_with_a_fixed_digest(tmp_path):
    three(tmp_path)
    folder = tmp_path / "step-000000003"
    m = json.loads((folder / "manifest.json").read_text())
    cases = [("meta", []), ("arrays", {"params/fc1/W": {"dtype": "<f4", "shape": [-1]}}),
             ("arrays", {"params/fc1/W": {"dtype": "object", "shape": [30]}}),
             ("arrays", {"elsewhere/W": {"dtype": "<f4", "shape": [6, 5]}}),
             ("step", True), ("sha256", "not hex")]
    for key, value in cases:
        (folder / "manifest.json").write_text(json.dumps({**m, key: value}))
        refresh_digest(folder)
        with pytest.raises(C.CheckpointError):
            C.load(folder)
        assert C.restore(tmp_path).step == 2


def test_version_1_is_refused_with_a_reason(tmp_path):
    three(tmp_path)
    folder = tmp_path / "step-000000003"
    m = json.loads((folder / "manifest.json").read_text())
    del m["manifest_sha256"]
    (folder / "manifest.json").write_text(json.dumps({**m, "version": 1}))
    with pytest.raises(C.CheckpointError, match="version 1 manifests carry no digest"):
        C.load(folder)


def test_huge_npy_header_and_compressed_member(tmp_path):
    three(tmp_path)
    folder = tmp_path / "step-000000003"
    with np.load(folder / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    for variant in ("header", "deflated"):
        with zipfile.ZipFile(folder / "arrays.npz", "w",
                             zipfile.ZIP_DEFLATED if variant == "deflated" else
                             zipfile.ZIP_STORED) as z:
            for k, a in arrays.items():
                with z.open(k + ".npy", "w") as f:
                    if variant == "header" and k == "params/fc1/W":
                        header = ("{'descr': '<f4', 'fortran_order': False, 'shape': (6, 5), "
                                  + " " * 20000 + "}").encode() + b"\n"
                        f.write(b"\x93NUMPY\x02\x00" + len(header).to_bytes(4, "little")
                                + header + a.tobytes())
                    else:
                        np.lib.format.write_array(f, a)
        m = json.loads((folder / "manifest.json").read_text())
        m["sha256"] = hashlib.sha256((folder / "arrays.npz").read_bytes()).hexdigest()
        (folder / "manifest.json").write_text(json.dumps(m))
        refresh_digest(folder)
        with pytest.raises(C.CheckpointError, match="arrays.npz|uncompressed"):
            C.load(folder)
        assert C.restore(tmp_path).step == 2


# ------------------------------------------------------------------ the corpus of damaged roots
def truncate_empty(p, outside):
    p.write_bytes(b"")


def truncate_half(p, outside):
    p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2])


def bit_flip(p, outside):
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    p.write_bytes(bytes(raw))


def wrong_kind_json(p, outside):
    p.write_text('{"format": "dlkit-checkpoint", "version": 2, "step": [3]}')


def symlink_to_a_valid_copy(p, outside):
    """The same bytes, outside the root, reached through a symlink: must not be followed."""
    copy = outside / f"copy-{p.parent.name}-{p.name}"
    if p.is_dir():
        shutil.copytree(p, copy)
        shutil.rmtree(p)
    else:
        shutil.copy(p, copy)
        p.unlink()
    p.symlink_to(copy)


def unreadable(p, outside):
    """Tests run as root, so chmod 000 does not stop reads: the file is replaced by a folder
    (open() works on it, read() fails with EISDIR) to simulate a file that cannot be read."""
    if p.is_dir():
        shutil.rmtree(p)
        p.write_text("a file where a folder should be")
    else:
        p.unlink()
        p.mkdir()


def fifo(p, outside):
    """A FIFO where a file should be: opening it must not block."""
    if p.is_dir():
        shutil.rmtree(p)
    else:
        p.unlink()
    os.mkfifo(p)


def removed(p, outside):
    shutil.rmtree(p) if p.is_dir() else p.unlink()


DAMAGES = [truncate_empty, truncate_half, bit_flip, wrong_kind_json, symlink_to_a_valid_copy,
           unreadable, fifo, removed]
TARGETS = ["LATEST", "step-000000003", "step-000000003/manifest.json",
           "step-000000003/arrays.npz"]


@pytest.mark.parametrize("damage", DAMAGES, ids=[d.__name__ for d in DAMAGES])
def test_corpus_of_damaged_roots(tmp_path, damage):
    """Every file of the root damaged in every way: restore returns the newest valid
    checkpoint (the same bits as saved), or CheckpointError when none is valid; never another
    exception, and nothing outside the root is read."""
    outside = tmp_path / "outside"
    outside.mkdir()
    for target in TARGETS:
        root = tmp_path / target.replace("/", "_")
        saved = three(root)
        p = root / target
        if p.is_dir() and damage in (truncate_empty, truncate_half, bit_flip, wrong_kind_json):
            continue                                    # file damages: files only
        damage(p, outside)
        c = C.restore(root)
        expected = 3 if target == "LATEST" else 2
        assert c.step == expected, (target, c.path)
        assert tree.equal(c.params, saved[expected]), target
        # now every checkpoint damaged the same way: a clear error, nothing else
        for step in (1, 2):
            q = root / target.replace("000000003", f"00000000{step}")
            if target != "LATEST" and not (q.is_dir() and damage in (
                    truncate_empty, truncate_half, bit_flip, wrong_kind_json)):
                damage(q, outside)
        if target != "LATEST":
            with pytest.raises(C.CheckpointError, match="no valid checkpoint"):
                C.restore(root)


def test_latest_naming_a_folder_outside_the_root(tmp_path):
    root, elsewhere = tmp_path / "ckpt", tmp_path / "elsewhere"
    three(root)
    params, st = state(9)
    C.save(elsewhere, 9, params, st)
    (root / "LATEST").write_text("../elsewhere/step-000000009")
    assert C.restore(root).step == 3
    with pytest.raises(C.CheckpointError, match="expected a name like 'step-000000123'"):
        C.load(root)


def test_step_folder_symlink_is_neither_loaded_nor_pruned(tmp_path):
    root, elsewhere = tmp_path / "ckpt", tmp_path / "elsewhere"
    three(root)
    params, st = state(9)
    target = C.save(elsewhere, 99, params, st)
    (root / "step-000000099").symlink_to(target)
    assert C.restore(root).step == 3
    assert [p.name for p in C.list_checkpoints(root)] == [
        "step-000000001", "step-000000002", "step-000000003"]
    C.save(root, 4, params, st, keep=1)
    assert target.is_dir() and C.load(target).step == 99        # the outside copy is intact
    assert C.restore(root).step == 4


def test_stale_latest_tmp_symlink_is_not_written_through(tmp_path):
    root, victim = tmp_path / "ckpt", tmp_path / "victim.txt"
    victim.write_text("precious")
    root.mkdir()
    (root / "LATEST.tmp").symlink_to(victim)
    params, st = state()
    C.save(root, 1, params, st)
    assert victim.read_text() == "precious"
    assert (root / "LATEST").read_text() == "step-000000001"
    assert not (root / "LATEST").is_symlink()
    C.restore(root)                                       # removes the stale link, not its target
    assert not os.path.lexists(root / "LATEST.tmp") and victim.read_text() == "precious"


def test_latest_never_moves_backwards_and_pruning_keeps_it(tmp_path):
    params, st = state()
    C.save(tmp_path, 10, params, st)
    C.save(tmp_path, 5, params, st)
    assert (tmp_path / "LATEST").read_text() == "step-000000010"
    assert C.restore(tmp_path).step == 10
    # a step folder that did not come from save (copied in): LATEST names the saved one
    other = tmp_path / "other"
    C.save(other, 1, params, st)
    C.save(other, 2, params, st)
    shutil.copytree(other / "step-000000001", other / "step-000000050")
    C.save(other, 3, params, st, keep=1)
    assert (other / "LATEST").read_text() == "step-000000003"
    assert (other / "step-000000003").is_dir()


def test_concurrent_saves_into_one_root(tmp_path, run_threads):
    params, st = state()
    def writer(first):
        for step in range(first, 40, 4):
            C.save(tmp_path, step, params, st, meta={"writer": first}, keep=0)

    errors = run_threads(writer, range(4))
    assert not errors
    assert (tmp_path / "LATEST").read_text() == "step-000000039"
    assert len(C.list_checkpoints(tmp_path)) == 40
    assert all(C.load(p).step == int(p.name[5:]) for p in C.list_checkpoints(tmp_path))
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


@pytest.mark.parametrize("params", [{"a/b": np.ones(2)},
                                    {"a/b": np.ones(2), "a": {"b": np.ones(2)}},
                                    {1: np.ones(2), "1": np.ones(2)}, {"": np.ones(2)}],
                         ids=["slash", "collision", "int-key", "empty"])
def test_names_that_would_collide_are_refused(tmp_path, params):
    with pytest.raises(ValueError, match="must be a non-empty string without '/'"):
        C.save(tmp_path, 1, params)
    assert not os.listdir(tmp_path) if tmp_path.exists() else True


def test_ordered_by_step_number_at_any_step_count(tmp_path):
    params, st = state()
    for step in (999, 10 ** 7, 2 * 10 ** 8, 10 ** 9, 10 ** 10):
        C.save(tmp_path, step, params, st, keep=0)
    names = [p.name for p in C.list_checkpoints(tmp_path)]
    assert names == ["step-000000999", "step-010000000", "step-200000000", "step-1000000000",
                     "step-10000000000"]     # by name, step-1000000000 sorts before step-2...
    (tmp_path / "LATEST").unlink()
    assert C.restore(tmp_path).step == 10 ** 10
    C.save(tmp_path, 10 ** 10 + 1, params, st, keep=2)
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["step-10000000000",
                                                               "step-10000000001"]


def test_folder_renamed_to_another_step(tmp_path):
    three(tmp_path)
    os.rename(tmp_path / "step-000000002", tmp_path / "step-000000007")
    with pytest.raises(C.CheckpointError, match="named for step 7, its manifest says step 2"):
        C.load(tmp_path / "step-000000007")
    assert C.restore(tmp_path).step == 3
