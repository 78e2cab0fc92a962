"""Text tools: tokenizer, vocabulary, pad_sequences, the IMDb reader (archive and folder, with
hostile archives), lookup, the real IMDb archive, character corpora and windows."""
import io
import os
import tarfile

import numpy as np
import pytest

from dlkit import data, random
from dlkit.data import text


# ------------------------------------------------------------------ tokenizer and vocabulary
def test_tokenize():
    s = "This movie<br /><br />was GREAT!! Don't miss it -- 10/10, rated R.<BR>Café crème"
    assert data.tokenize(s) == ["this", "movie", "was", "great", "don't", "miss", "it", "10",
                                "10", "rated", "r", "café", "crème"]
    assert data.tokenize("") == []
    with pytest.raises(TypeError):
        data.tokenize(b"bytes")


def test_vocabulary_order_size_oov_and_roundtrip(tmp_path):
    docs = [["b", "a", "c", "a"], ["c", "a", "d"], ["b", "e"]]
    v = data.Vocabulary.build(docs)
    assert v.itos == ["<pad>", "<unk>", "a", "b", "c", "d", "e"]   # by count, ties A-Z
    assert (v.pad_id, v.oov_id) == (0, 1) and len(v) == 7
    small = data.Vocabulary.build(docs, max_size=4)                  # specials included
    assert small.itos == ["<pad>", "<unk>", "a", "b"] and len(small) == 4
    ids = small.encode(["a", "zzz", "c", "b"])
    assert ids.dtype == np.int64 and ids.tolist() == [2, 1, 1, 3]
    assert small.decode([2, 1, 0, 99]) == ["a", "<unk>", "<pad>", "<unk>"]
    assert small.encode("A b, c!").tolist() == [2, 3, 1]             # a str is tokenized
    assert data.Vocabulary.build(docs, min_count=2).itos[2:] == ["a", "b", "c"]
    v.save(tmp_path / "v.json")
    assert data.Vocabulary.load(tmp_path / "v.json").itos == v.itos
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a dlkit vocabulary"):
        data.Vocabulary.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="max_size"):
        data.Vocabulary.build(docs, max_size=1)


@pytest.mark.parametrize("padding,truncating,want", [
    ("pre", "pre", [[0, 0, 1, 2], [4, 5, 6, 7], [0, 0, 0, 0]]),
    ("post", "pre", [[1, 2, 0, 0], [4, 5, 6, 7], [0, 0, 0, 0]]),
    ("pre", "post", [[0, 0, 1, 2], [3, 4, 5, 6], [0, 0, 0, 0]]),
    ("post", "post", [[1, 2, 0, 0], [3, 4, 5, 6], [0, 0, 0, 0]]),
])
def test_pad_sequences(padding, truncating, want):
    seqs = [[1, 2], [3, 4, 5, 6, 7], []]
    x, lengths = data.pad_sequences(seqs, 4, padding=padding, truncating=truncating)
    assert x.dtype == np.int64 and x.tolist() == want and lengths.tolist() == [2, 4, 0]


def test_pad_sequences_defaults_and_errors():
    x, lengths = data.pad_sequences([np.array([5]), np.array([1, 2, 3])])
    assert x.tolist() == [[0, 0, 5], [1, 2, 3]] and lengths.tolist() == [1, 3]
    x, _ = data.pad_sequences([[1]], 3, value=-1)
    assert x.tolist() == [[-1, -1, 1]]
    with pytest.raises(ValueError, match="padding must be"):
        data.pad_sequences([[1]], 2, padding="middle")
    with pytest.raises(ValueError, match="maxlen"):
        data.pad_sequences([[1]], 0)
    with pytest.raises(ValueError, match="not 1-D"):
        data.pad_sequences([[[1, 2]]], 2)


# ------------------------------------------------------------------ IMDb reader
REVIEWS = {"aclImdb/train/pos/0_9.txt": "Great fun.<br />Loved it",
           "aclImdb/train/pos/12_7.txt": "Good",
           "aclImdb/train/neg/3_1.txt": "Awful.",
           "aclImdb/test/neg/1_2.txt": "Boring",
           "aclImdb/test/pos/2_10.txt": "Superb"}


def _add(tf, name, payload=b"", kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, len(payload)
    tf.addfile(info, io.BytesIO(payload) if kind == tarfile.REGTYPE else None)


def _archive(path, hostile=True, big=False):
    with tarfile.open(path, "w:gz") as tf:
        _add(tf, "aclImdb/train/pos", kind=tarfile.DIRTYPE)
        for name, body in REVIEWS.items():
            _add(tf, name, body.encode())
        if hostile:                              # none of these may be read or written
            _add(tf, "../escape.txt", b"x")
            _add(tf, "/tmp/aclImdb/train/pos/5_5.txt", b"absolute")
            _add(tf, "aclImdb/train/pos/../../../x/6_6.txt", b"dots")
            _add(tf, "aclImdb/train/pos/7_7.txt", kind=tarfile.SYMTYPE, linkname="/etc/passwd")
            _add(tf, "aclImdb/train/neg/8_8.txt", kind=tarfile.LNKTYPE,
                 linkname="aclImdb/train/pos/0_9.txt")
            _add(tf, "aclImdb/test/pos/9_9.txt", kind=tarfile.CHRTYPE)
            _add(tf, "aclImdb/train/unsup/10_0.txt", b"unlabelled")
            _add(tf, "aclImdb/imdb.vocab", b"the\nand\n")
        if big:
            _add(tf, "aclImdb/train/neg/11_1.txt", b"x" * (text.MAX_REVIEW_BYTES + 1))
    return path


def test_read_imdb_archive_reads_only_reviews_in_memory(tmp_path, monkeypatch):
    arch = _archive(tmp_path / "aclImdb_v1.tar.gz")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = sorted(os.listdir(tmp_path))
    d = text.read_imdb_archive(arch)
    assert d["train"][0] == ["Awful.", "Great fun.<br />Loved it", "Good"]   # (label, id) order
    assert d["train"][1].tolist() == [0, 1, 1]
    assert d["test"][0] == ["Boring", "Superb"] and d["test"][1].tolist() == [0, 1]
    assert sorted(os.listdir(tmp_path)) == before and os.listdir(work) == []  # nothing written
    with pytest.raises(ValueError, match="refusing"):
        text.read_imdb_archive(_archive(tmp_path / "big.tar.gz", hostile=False, big=True))


def test_read_imdb_folder(tmp_path):
    for name, body in REVIEWS.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(body)
    (tmp_path / "aclImdb/train/pos/notes.md").write_text("not a review")
    d = text.read_imdb_folder(tmp_path / "aclImdb")
    assert d["train"][0] == ["Awful.", "Great fun.<br />Loved it", "Good"]
    assert d["test"][1].tolist() == [0, 1]


def test_find_imdb_lookup_and_checksums(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DLKIT_DATA", raising=False)
    monkeypatch.setattr(text, "search_roots", lambda d=None: [tmp_path / "store"])
    (tmp_path / "store").mkdir()
    # an archive whose checksum matches no known IMDb archive is skipped, with the reason
    _archive(tmp_path / "store" / "aclImdb.tar.gz")
    with pytest.raises(data.DataNotFoundError, match="matches no known IMDb archive"):
        text.find_imdb(download_ok=False)
    # an extracted folder is used as it is
    for name, body in REVIEWS.items():
        p = tmp_path / "store" / "imdb" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(body)
    assert text.find_imdb(download_ok=False) == tmp_path / "store" / "imdb" / "aclImdb"
    (train_x, train_y), (test_x, test_y) = data.load_imdb(download_ok=False)
    assert len(train_x) == 3 and test_y.tolist() == [0, 1]


@pytest.mark.slow
def test_real_imdb_archive(data_dir):
    (xtr, ytr), (xte, yte) = data.load_imdb(data_dir, download_ok=False)
    assert len(xtr) == len(xte) == 25000
    assert ytr.sum() == yte.sum() == 12500 and ytr.dtype == np.int64
    assert all(isinstance(t, str) and t for t in xtr[:100])
    toks = data.tokenize(xtr[0])
    assert len(toks) > 10 and "<br" not in " ".join(toks)


# ------------------------------------------------------------------ character corpora
def test_char_corpus_split_encode_decode(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("hello world\n" * 10)
    c = data.load_char_corpus(str(p), val_fraction=0.25)
    assert c.chars == "\n dehlorw" and len(c) == 9
    assert len(c.train) == 90 and len(c.val) == 30
    assert c.decode(c.train[:5]) == "hello"
    assert c.decode(c.encode("low")) == "low"
    with pytest.raises(ValueError, match=r"\['z'\]"):
        c.encode("zoo")
    with pytest.raises(data.DataNotFoundError):
        data.load_char_corpus(str(tmp_path / "missing.txt"))


def test_windows():
    ids = np.arange(50)
    x, y = data.random_windows(ids, 4, 10, random.key(0))
    assert x.shape == y.shape == (4, 10) and np.all(y == x + 1)
    x2, _ = data.random_windows(ids, 4, 10, random.key(0))
    assert np.array_equal(x, x2)
    x, y = data.sequential_windows(ids, 10)
    assert x.shape == (4, 10) and x[1, 0] == 10 and y[-1, -1] == 40
    with pytest.raises(ValueError):
        data.random_windows(ids, 4, 50, random.key(0))


def test_tiny_shakespeare(data_dir):
    c = data.load_char_corpus("tinyshakespeare", data_dir=data_dir, download_ok=False)
    assert len(c.train) + len(c.val) == 1115394 and len(c) == 65
    assert c.decode(c.train[:14]) == "First Citizen:"
