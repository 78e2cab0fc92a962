"""Data readers given hostile files (issue 14, class 5): the IDX reader never overflows or
raises a raw struct/zlib/gzip error and inflates at most what its header implies; the IMDb
folder reader ignores symlinks as the archive reader does; a data_dir that does not exist is an
error in every loader, not a silent fall-back."""
import gzip
import struct
import tracemalloc

import numpy as np
import pytest

from dlkit import data
from dlkit.data import text


def idx_bytes(dims, payload, dtype_code=0x08):
    return bytes([0, 0, dtype_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


@pytest.mark.parametrize("dims", [(2 ** 32 - 1,) * 3, (2 ** 16,) * 4, (2 ** 32 - 1, 2 ** 31)],
                         ids=["3x(2^32-1)", "2^64 wraps to 0", "2^63"])
def test_idx_huge_header_dims(tmp_path, dims):
    p = tmp_path / "huge-idx1-ubyte"
    p.write_bytes(idx_bytes(dims, b""))
    with pytest.raises(ValueError, match=r"header says .* bytes\), more than the 4294967296 "
                                         r"an IDX file may hold"):
        data.read_idx(p)


@pytest.mark.parametrize("raw", [idx_bytes((3, 4), b"")[:9], bytes([0, 0, 8, 3, 0, 0])],
                         ids=["dims cut", "dims missing"])
def test_idx_truncated_header_is_a_value_error(tmp_path, raw):
    p = tmp_path / "cut-idx"
    p.write_bytes(raw)
    with pytest.raises(ValueError, match=r"truncated IDX header: \d dimensions need \d+ bytes, "
                                         r"the file holds \d"):
        data.read_idx(p)


def test_idx_size_mismatch(tmp_path):
    p = tmp_path / "short-idx"
    p.write_bytes(idx_bytes((3, 4), bytes(11)))
    with pytest.raises(ValueError, match=r"header says \(3, 4\) = 12 items \(12 bytes\), the "
                                         r"file holds 11 bytes"):
        data.read_idx(p)
    p.write_bytes(idx_bytes((3, 4), bytes(13)))
    with pytest.raises(ValueError, match=r"the file holds more"):
        data.read_idx(p)
    p.write_bytes(idx_bytes((3, 4), bytes(range(12))))
    assert data.read_idx(p).tolist() == np.arange(12).reshape(3, 4).tolist()


def test_gzip_inflation_is_bounded_by_the_header(tmp_path):
    """A gzip file whose header claims 10 bytes but that inflates to 64 MB: refused after
    reading at most 11 bytes of payload, with little memory."""
    p = tmp_path / "bomb-idx1-ubyte.gz"
    with gzip.open(p, "wb") as f:
        f.write(idx_bytes((10,), b""))
        for _ in range(64):
            f.write(bytes(1 << 20))
    assert p.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"header says \(10,\) = 10 items \(10 bytes\), "
                                             r"the file holds more"):
            data.read_idx(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak} bytes allocated for a 10-byte IDX file"


def test_corrupt_gzip_is_a_value_error(tmp_path):
    p = tmp_path / "bad-idx1-ubyte.gz"
    good = gzip.compress(idx_bytes((4,), bytes(4)))
    for raw in (b"not gzip at all", good[:-6], good[:12] + bytes(len(good) - 12)):
        p.write_bytes(raw)
        with pytest.raises(ValueError, match="bad-idx1-ubyte.gz: "):
            data.read_idx(p)


def test_imdb_folder_reader_ignores_symlinks(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET outside the data set")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "5_9.txt").write_text("SECRET folder")
    root = tmp_path / "aclImdb"
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            d = root / split / label
            d.mkdir(parents=True)
            (d / f"1_{8 if label == 'pos' else 2}.txt").write_text(f"a {label} review")
    (root / "train" / "pos" / "2_9.txt").symlink_to(secret)
    (root / "test" / "pos").rename(tmp_path / "real-test-pos")
    (root / "test" / "pos").symlink_to(outside)
    d = text.read_imdb_folder(root)
    texts = d["train"][0] + d["test"][0]
    assert not any("SECRET" in t for t in texts)
    assert d["train"][0] == ["a neg review", "a pos review"] and d["test"][0] == ["a neg review"]


@pytest.mark.parametrize("loader", ["mnist", "imdb", "char"])
def test_missing_data_dir_is_an_error(tmp_path, monkeypatch, loader):
    monkeypatch.setenv("DLKIT_DATA", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    missing = tmp_path / "no-such-folder"
    txt = tmp_path / "corpus.txt"
    txt.write_text("some text to train on")
    call = {"mnist": lambda: data.load_mnist("mnist", data_dir=missing, download=False),
            "imdb": lambda: data.load_imdb(missing, download_ok=False),
            "char": lambda: data.load_char_corpus(str(txt), data_dir=missing)}[loader]
    with pytest.raises(data.DataNotFoundError, match=r"data_dir '.*no-such-folder' is not an "
                                                     r"existing folder"):
        call()
    assert not missing.exists()
