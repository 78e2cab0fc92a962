"""Data: IDX reading, lookup order, verified downloads (against a local HTTP server on
127.0.0.1 that can drop the connection mid-file), batching."""
import gzip
import hashlib
import http.server
import struct
import threading

import numpy as np
import pytest

from dlkit import data, random


def write_idx(path, arr):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[arr.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


def test_read_idx_roundtrip(tmp_path, rng):
    a = rng.integers(0, 256, (5, 3, 4)).astype(np.uint8)
    write_idx(tmp_path / "a.gz", a)
    assert np.array_equal(data.read_idx(tmp_path / "a.gz"), a)
    b = rng.integers(-1000, 1000, (7,)).astype(">i4")
    write_idx(tmp_path / "b.gz", b)
    got = data.read_idx(tmp_path / "b.gz")
    assert got.dtype == np.dtype("int32") and np.array_equal(got, b)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad")


def test_load_fashion_mnist(data_dir):
    (x, y), (xt, yt) = data.load_mnist("fashion-mnist", data_dir=data_dir)
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8
    assert xt.shape == (10000, 28, 28) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [6000] * 10 and np.bincount(yt).tolist() == [1000] * 10


class _Server:
    """Serves one payload at /f; with ``drop`` set it sends half and closes the connection."""

    def __init__(self, payload):
        self.payload, self.drop, self.hits = payload, False, 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(outer.payload)))
                self.end_headers()
                body = outer.payload[:len(outer.payload) // 2] if outer.drop else outer.payload
                self.wfile.write(body)
                self.wfile.flush()
                if outer.drop:
                    self.connection.close()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/f"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server(np.random.default_rng(0).bytes(300_000))
    yield s
    s.close()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.delenv("DLKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data.store, "SYSTEM_DIR", tmp_path / "system")
    return tmp_path


def test_interrupted_download_leaves_nothing_and_retry_succeeds(server, isolated):
    sha = hashlib.sha256(server.payload).hexdigest()
    target = isolated / "cache" / "dlkit" / "toy" / "f.bin"
    server.drop = True
    with pytest.raises(data.DataNotFoundError, match="connection dropped|IncompleteRead|failed"):
        data.fetch("toy", "f.bin", urls=[server.url], sha256=sha, progress=False)
    assert not target.exists() and not target.with_name("f.bin.part").exists()
    server.drop = False
    path = data.fetch("toy", "f.bin", urls=[server.url], sha256=sha, progress=False)
    assert path == target and path.read_bytes() == server.payload


def test_checksum_mismatch_is_rejected(server, isolated):
    with pytest.raises(data.DataNotFoundError, match="sha256 .* expected 0000"):
        data.fetch("toy", "f.bin", urls=[server.url], sha256="0" * 64, progress=False)
    assert not (isolated / "cache" / "dlkit" / "toy" / "f.bin").exists()


def test_corrupt_cached_file_is_fetched_again(server, isolated):
    sha = hashlib.sha256(server.payload).hexdigest()
    cached = isolated / "cache" / "dlkit" / "toy" / "f.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"garbage")
    path = data.fetch("toy", "f.bin", urls=[server.url], sha256=sha, progress=False)
    assert path.read_bytes() == server.payload and server.hits == 1


def test_lookup_order_and_missing_message(isolated, monkeypatch):
    payload = b"abc"
    md5 = hashlib.md5(payload).hexdigest()
    env = isolated / "env"
    (env / "toy").mkdir(parents=True)
    (env / "toy" / "f.bin").write_bytes(payload)
    monkeypatch.setenv("DLKIT_DATA", str(env))
    assert data.fetch("toy", "f.bin", md5=md5) == env / "toy" / "f.bin"
    with pytest.raises(data.DataNotFoundError) as e:
        data.fetch("toy", "other.bin", download_ok=False)
    msg = str(e.value)
    for place in (env, isolated / "cache" / "dlkit", isolated / "system"):
        assert str(place / "toy" / "other.bin") in msg
    assert "DLKIT_DATA" in msg and "data_dir=FOLDER" in msg and "--data-dir" not in msg


def test_batches_are_seeded_and_resumable():
    X, Y = np.arange(103), np.arange(103) * 2
    k = random.key(4)
    full = list(data.batches(X, Y, 10, key=k))
    assert len(full) == 11 and len(full[-1][0]) == 3
    order = np.concatenate([b[0] for b in full])
    assert np.array_equal(np.sort(order), X)                 # every example exactly once
    # shuffled: the order is the key's permutation, not the input order, and batches mix the
    # whole range (a skipped shuffle, or one within batches only, fails here)
    assert np.array_equal(order, data.permutation(k, 103))
    assert not np.array_equal(order, X)
    assert np.mean(order[1:] > order[:-1]) < 0.8
    assert not all(np.array_equal(np.sort(b[0]), X[i * 10:(i + 1) * 10])
                   for i, b in enumerate(full))
    other = np.concatenate([b[0] for b in data.batches(X, Y, 10, key=random.key(5))])
    assert not np.array_equal(order, other)                  # another key, another order
    plain = list(data.batches(X, Y, 10))                     # no key: in order
    assert np.array_equal(np.concatenate([b[0] for b in plain]), X)
    again = list(data.batches(X, Y, 10, key=k))
    assert len(again) == len(full)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(full, again, strict=True))
    tail = list(data.batches(X, Y, 10, key=k, start=4))
    assert len(tail) == 7
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(full[4:], tail, strict=True))
    assert all(np.array_equal(a[1], 2 * a[0]) for a in full)
    assert len(list(data.batches(X, Y, 10, key=k, drop_last=True))) == 10
    (xtr, ytr), (xva, yva) = data.train_val_split(X, Y, 0.2, k)
    assert len(xva) == 21 and len(np.intersect1d(xtr, xva)) == 0
    with pytest.raises(ValueError, match="same length"):
        next(data.batches(X, Y[:5], 10))
