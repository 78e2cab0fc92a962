"""Text: a tokenizer, a vocabulary, padding, the IMDb reviews and character corpora.

    tokenize(text) -> [str]
        lowercase, HTML line breaks (<br />) removed, words = runs of letters/digits with inner
        apostrophes ("don't", "1950s"); punctuation dropped.
    Vocabulary.build(token_lists, max_size=None, min_count=1) -> Vocabulary
        id 0 = padding ("<pad>"), id 1 = out of vocabulary ("<unk>"), then the words by
        decreasing count (ties alphabetical); max_size counts the two special ids, so
        ``Embedding(max_size, ...)`` fits.  encode(tokens) -> int64 ids, decode(ids) -> tokens,
        save(path) / Vocabulary.load(path) (JSON).
    pad_sequences(seqs, maxlen=None, padding="pre", truncating="pre", value=0)
        -> (x (N, maxlen) int64, lengths (N,) int64)           (Keras' defaults: keep the last
        maxlen tokens, pad at the front); lengths count the real tokens of each row.
    load_imdb(data_dir=None) -> (train_texts, train_labels), (test_texts, test_labels)
        the Large Movie Review Dataset (25,000 + 25,000 reviews, labels 1 = positive).  Reads an
        ``aclImdb/`` folder or the ``aclImdb_v1.tar.gz`` / ``aclImdb.tar.gz`` archive directly,
        in memory: only regular-file members named aclImdb/{train,test}/{pos,neg}/<id>_<r>.txt
        are read, nothing is extracted, so no member can write outside anything (absolute
        names, "..", links and devices are ignored).  Looked for like every data set (data_dir,
        $DLKIT_DATA, ~/.cache/dlkit, /usr/share/datasets; also in an ``imdb/`` subfolder), then
        downloaded from Stanford with an MD5 check.
    load_char_corpus(source="tinyshakespeare", val_fraction=0.1) -> CharCorpus
        a text file (a path, or the name of a data set) as character ids, split into the first
        (1 - val_fraction) for training and the rest for validation.
    random_windows(ids, batch_size, seq_len, key) -> (x, y)   y = x shifted by one character
    sequential_windows(ids, seq_len) -> (x, y)                non-overlapping, in order
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import tarfile
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from ..random import Key, generator
from .store import DataNotFoundError, cache_dir, check_data_dir, download, fetch, search_roots

# ------------------------------------------------------------------ tokens and vocabulary
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text: str) -> list[str]:
    """Lowercased words of ``text``, HTML line breaks removed (see the module docstring).

    Raises:
        TypeError: ``text`` is not a str.

    Example:
        >>> from dlkit import data
        >>> data.tokenize("It's <br />GREAT, isn't it?")
        ["it's", 'great', "isn't", 'it']
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize: expected a str, got {type(text).__name__}")
    return _WORD.findall(_BR.sub(" ", text).lower())


class Vocabulary:
    """Token <-> id map: 0 padding, 1 out-of-vocabulary, then words by decreasing count.

    ``Vocabulary(words)`` takes the words in id order (from 2); ``Vocabulary.build`` counts
    them.  ``len(vocab)`` counts the ids, specials included; ``itos`` is the id -> token list
    and ``stoi`` the token -> id dict.

    Example:
        >>> from dlkit import data
        >>> vocab = data.Vocabulary.build([["a", "b", "a"], ["c", "a"]], max_size=4)
        >>> vocab.itos
        ['<pad>', '<unk>', 'a', 'b']
        >>> vocab.encode(["a", "c"]), vocab.decode([3, 2])
        (array([2, 1]), ['b', 'a'])
    """
    PAD, OOV = "<pad>", "<unk>"
    pad_id, oov_id = 0, 1
    FORMAT = "dlkit-vocabulary"

    def __init__(self, words):
        self.itos = [self.PAD, self.OOV] + [str(w) for w in words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("Vocabulary: duplicate tokens")

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], max_size: int | None = None,
              min_count: int = 1) -> "Vocabulary":
        """From an iterable of token lists; at most ``max_size`` ids (specials included),
        words seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
        if max_size is not None and (not isinstance(max_size, (int, np.integer))
                                     or max_size < 2):
            raise ValueError(f"Vocabulary: max_size must be an int >= 2 (padding and OOV "
                             f"ids included), got {max_size!r}")
        counts = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        for special in (cls.PAD, cls.OOV):
            counts.pop(special, None)
        ranked = sorted((w for w, c in counts.items() if c >= min_count),
                        key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[:max_size - 2]
        return cls(ranked)

    def __len__(self):
        return len(self.itos)

    def __contains__(self, token):
        return token in self.stoi

    def encode(self, tokens: str | Sequence[str]) -> NDArray[np.int64]:
        """Token list (or a str, tokenized first) -> int64 ids; unknown tokens -> oov_id."""
        if isinstance(tokens, str):
            tokens = tokenize(tokens)
        get = self.stoi.get
        return np.fromiter((get(t, 1) for t in tokens), dtype=np.int64, count=len(tokens))

    def decode(self, ids: ArrayLike) -> list[str]:
        """Ids -> tokens; ids outside the vocabulary decode to ``"<unk>"``."""
        n = len(self.itos)
        return [self.itos[i] if 0 <= i < n else self.OOV for i in np.asarray(ids).tolist()]

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON (atomically: via a .tmp file and a rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"format": self.FORMAT, "version": 1,
                                   "tokens": self.itos[2:]}), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        """Read a vocabulary ``save`` wrote (ValueError for any other file)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != cls.FORMAT:
            raise ValueError(f"{path}: not a dlkit vocabulary file")
        return cls(data["tokens"])


def pad_sequences(seqs: Iterable[ArrayLike], maxlen: int | None = None, padding: str = "pre",
                  truncating: str = "pre", value: int = 0,
                  dtype: DTypeLike = np.int64) -> tuple[NDArray, NDArray[np.int64]]:
    """Pad/truncate integer sequences to one length (Keras' pad_sequences, with the lengths).

    Args:
        seqs: N 1-D sequences of ids.
        maxlen: the length T (default: the longest sequence).
        padding: "pre" (pad before, Keras' default) or "post".
        truncating: drop the start ("pre") or the end ("post") of longer sequences.
        value: the padding id.
        dtype: the output dtype.

    Returns:
        ``(x, lengths)``: x (N, T) of ``dtype``, lengths (N,) int64, the real steps of each
        row, ready for ``layers.Padded(x, lengths, padding)``.

    Raises:
        ValueError: bad padding/truncating/maxlen, or a sequence that is not 1-D.

    Example:
        >>> from dlkit import data
        >>> x, lengths = data.pad_sequences([[5, 6, 7], [8]], maxlen=2)
        >>> x, lengths
        (array([[6, 7],
               [0, 8]]), array([2, 1]))
    """
    for name, v in (("padding", padding), ("truncating", truncating)):
        if v not in ("pre", "post"):
            raise ValueError(f"pad_sequences: {name} must be 'pre' or 'post', got {v!r}")
    seqs = [np.asarray(s) for s in seqs]
    for i, s in enumerate(seqs):
        if s.ndim != 1:
            raise ValueError(f"pad_sequences: sequence {i} is not 1-D (shape {s.shape})")
    if maxlen is None:
        maxlen = max((len(s) for s in seqs), default=0)
    elif not isinstance(maxlen, (int, np.integer)) or maxlen < 1:
        raise ValueError(f"pad_sequences: maxlen must be a positive int or None, got {maxlen!r}")
    x = np.full((len(seqs), maxlen), value, dtype=dtype)
    lengths = np.empty(len(seqs), np.int64)
    for i, s in enumerate(seqs):
        s = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        n = len(s)
        lengths[i] = n
        if n:
            if padding == "pre":
                x[i, maxlen - n:] = s
            else:
                x[i, :n] = s
    return x, lengths


# ------------------------------------------------------------------ IMDb
IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"          # the published aclImdb_v1.tar.gz
#: digests of archives accepted when found locally: the published one, and the copy in this
#: project's shared data folder (a handful of reviews replaced; see its README)
IMDB_KNOWN = {("md5", IMDB_MD5),
              ("sha256", "4c413896c4d384fde9e0c60c36f021c5d65b6108e4b679eb7cfd6f13d67a8c8b")}
IMDB_ARCHIVES = ("aclImdb_v1.tar.gz", "aclImdb.tar.gz")
MAX_REVIEW_BYTES = 1 << 20        # the longest review is ~14 kB; anything bigger is refused
_MEMBER = re.compile(r"^(?:\./)?aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")


def _digests(path):
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            md5.update(block)
            sha.update(block)
    return {("md5", md5.hexdigest()), ("sha256", sha.hexdigest())}


def _collect(items):
    """{(split, label, id): text} -> {"train": (texts, labels), "test": ...}, sorted by
    (label, id)."""
    out = {}
    for split in ("train", "test"):
        keys = sorted(k for k in items if k[0] == split)
        out[split] = ([items[k] for k in keys], np.array([k[1] for k in keys], np.int64))
    return out


def _decode(raw, name):
    if len(raw) > MAX_REVIEW_BYTES:
        raise ValueError(f"IMDb: member {name} is {len(raw)} bytes, more than a review can be "
                         f"({MAX_REVIEW_BYTES}); refusing the archive")
    return raw.decode("utf-8", errors="replace")


def read_imdb_archive(path):
    """Reviews from an aclImdb tar.gz, read member by member in memory (nothing extracted).
    -> {"train": (texts, labels), "test": (texts, labels)}."""
    items = {}
    with tarfile.open(path, "r:gz") as tf:
        for m in tf:
            match = _MEMBER.match(m.name)
            if match is None or not m.isfile():
                continue                         # directories, links, devices, other names
            if m.size > MAX_REVIEW_BYTES:
                raise ValueError(f"IMDb: member {m.name} is {m.size} bytes, more than a review "
                                 f"can be ({MAX_REVIEW_BYTES}); refusing the archive")
            raw = tf.extractfile(m).read(MAX_REVIEW_BYTES + 1)
            split, label, rid, _ = match.groups()
            items[(split, int(label == "pos"), int(rid))] = _decode(raw, m.name)
    return _collect(items)


def read_imdb_folder(root):
    """Reviews from an extracted ``aclImdb`` folder (the one holding train/ and test/).  As
    in the archive, only regular files are read: symlinks (to files or folders) are ignored."""
    root = Path(root)
    items = {}
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            d = root / split / label
            if d.is_symlink() or (root / split).is_symlink() or not d.is_dir():
                continue                         # as in the archive: links are ignored
            for p in os.scandir(d):
                match = _MEMBER.match(f"aclImdb/{split}/{label}/{p.name}")
                if match is None or not p.is_file(follow_symlinks=False):
                    continue                     # other names, links, folders, devices
                fd = os.open(p.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                with os.fdopen(fd, "rb") as f:
                    raw = f.read(MAX_REVIEW_BYTES + 1)
                items[(split, int(label == "pos"), int(match.group(3)))] = _decode(raw, p.path)
    return _collect(items)


def find_imdb(data_dir=None, download_ok=True, progress=True):
    """Path of an aclImdb folder or verified archive (see load_imdb); downloads if needed."""
    problems = []
    searched = []
    for root in search_roots(data_dir):
        for base in (root, root / "imdb"):
            folder = base / "aclImdb"
            searched.append(str(folder) + "/")
            if (folder / "train").is_dir() and (folder / "test").is_dir():
                return folder
            for name in IMDB_ARCHIVES:
                path = base / name
                searched.append(str(path))
                if path.is_file():
                    if _digests(path) & IMDB_KNOWN:
                        return path
                    problems.append(f"{path}: checksum matches no known IMDb archive, skipped")
    if download_ok:
        dest = (Path(data_dir) if data_dir else cache_dir()) / "imdb" / IMDB_ARCHIVES[0]
        try:
            return download(IMDB_URL, dest, md5=IMDB_MD5, progress=progress)
        except Exception as e:  # noqa: BLE001 - reported below with the places searched
            problems.append(f"download from {IMDB_URL} failed: {e}")
    raise DataNotFoundError.worded(
        lambda arg, given: "cannot find the IMDb reviews (aclImdb/ or aclImdb_v1.tar.gz)."
        "\nSearched:\n  " + "\n  ".join(searched) + "\nProblems:\n  "
        + ("\n  ".join(problems) or "no copy found and no download attempted")
        + f"\nSet DLKIT_DATA to a folder holding aclImdb_v1.tar.gz, pass {given} (a folder "
        "holding it), or put the archive in " + str(cache_dir() / "imdb"))


def load_imdb(data_dir: str | os.PathLike | None = None, download_ok: bool = True,
              progress: bool = True) -> tuple[tuple[list[str], NDArray[np.int64]],
                                              tuple[list[str], NDArray[np.int64]]]:
    """The IMDb movie reviews (Maas et al. 2011): 25,000 for training, 25,000 for testing.

    Args:
        data_dir: a folder holding ``imdb/`` (the extracted ``aclImdb/`` or its archive),
            searched first (see ``search_roots``).
        download_ok: download the published archive (84 MB) if no copy is found.
        progress: show a progress bar while downloading.

    Returns:
        ``(train_texts, train_labels), (test_texts, test_labels)``: lists of str and (N,)
        int64 labels, 1 = positive.

    Raises:
        DataNotFoundError: no copy found or downloaded.
        ValueError: a malformed archive or folder.

    Example:
        >>> from dlkit import data
        >>> (texts, labels), _ = data.load_imdb()          # doctest: +SKIP
        >>> len(texts), labels.dtype, int(labels.sum())    # doctest: +SKIP
        (25000, dtype('int64'), 12500)
    """
    path = find_imdb(data_dir, download_ok, progress)
    d = read_imdb_folder(path) if path.is_dir() else read_imdb_archive(path)
    for split in ("train", "test"):
        if len(d[split][0]) == 0:
            raise ValueError(f"{path}: no {split} reviews found")
    return d["train"], d["test"]


# ------------------------------------------------------------------ character corpora
CHAR_CORPORA = {
    "tinyshakespeare": dict(
        filename="input.txt",
        urls=("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
              "tinyshakespeare/input.txt",),
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
}


class CharCorpus:
    """A text as character ids: ``chars`` (the sorted alphabet), ``train`` and ``val``
    (int64 ids), ``encode(str)``, ``decode(ids)``, ``source``.

    ``CharCorpus(text, val_fraction=0.1)`` keeps the last ``val_fraction`` of the text for
    validation; ``len(corpus)`` is the alphabet size.

    Example:
        >>> from dlkit import data
        >>> corpus = data.CharCorpus("hello world", val_fraction=0.2)
        >>> corpus.chars, len(corpus.train), len(corpus.val)
        (' dehlorw', 9, 2)
        >>> corpus.decode(corpus.encode("low"))
        'low'
    """

    def __init__(self, text, val_fraction=0.1, source=None, chars=None):
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        self.chars = "".join(sorted(set(text))) if chars is None else chars
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.source = source
        ids = self.encode(text)
        n_val = int(round(len(ids) * val_fraction))
        self.train, self.val = ids[:len(ids) - n_val], ids[len(ids) - n_val:]

    def __len__(self):
        return len(self.chars)

    def encode(self, text: str) -> NDArray[np.int64]:
        """Characters -> int64 ids (ValueError naming characters outside the alphabet)."""
        bad = [c for c in set(text) if c not in self.stoi]
        if bad:
            raise ValueError(f"characters {sorted(bad)!r} are not in the corpus alphabet "
                             f"({len(self.chars)} characters)")
        return np.array([self.stoi[c] for c in text], dtype=np.int64)

    def decode(self, ids: ArrayLike) -> str:
        """Ids -> the text they encode."""
        return "".join(self.chars[i] for i in np.asarray(ids).tolist())


def load_char_corpus(source: str | os.PathLike = "tinyshakespeare", val_fraction: float = 0.1,
                     data_dir: str | os.PathLike | None = None, download_ok: bool = True,
                     progress: bool = True) -> CharCorpus:
    """A CharCorpus from a text file path (UTF-8, gzipped or not) or a known corpus name (see
    CHAR_CORPORA: "tinyshakespeare", 1.1 MB, found or downloaded like every data set).

    Raises:
        DataNotFoundError: neither a file nor a known name, or the corpus is not found.
        ValueError: a text shorter than 2 characters, or val_fraction outside [0, 1).

    Example:
        >>> from dlkit import data
        >>> corpus = data.load_char_corpus()               # doctest: +SKIP
        >>> len(corpus), len(corpus.train)                 # doctest: +SKIP
        (65, 1003855)
    """
    check_data_dir(data_dir)
    path = Path(source)
    if not path.is_file():
        if source not in CHAR_CORPORA:
            what = "a folder" if path.is_dir() else "no such file"
            known = ", ".join(sorted(CHAR_CORPORA))
            raise DataNotFoundError(
                f"source {str(source)!r}: {what}, and not a known corpus ({known}); pass the "
                "path of a UTF-8 text file or a corpus name",
                for_command_line=f"--text {source}: {what}, and not a known corpus ({known}); "
                "give the path of a UTF-8 text file or a corpus name")
        spec = CHAR_CORPORA[source]
        path = fetch(source, spec["filename"], urls=spec["urls"], sha256=spec["sha256"],
                     data_dir=data_dir, download_ok=download_ok, progress=progress)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); convert "
                         "it first, e.g. iconv -f latin1 -t utf-8") from None
    if len(text) < 2:
        raise ValueError(f"{path}: the text is too short to train on")
    return CharCorpus(text, val_fraction, source=str(path))


def _check_windows(ids, seq_len):
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"expected a 1-D array of ids, got shape {ids.shape}")
    if not isinstance(seq_len, (int, np.integer)) or seq_len < 1 or len(ids) < seq_len + 1:
        raise ValueError(f"seq_len must be a positive int below len(ids) = {len(ids)}, got "
                         f"{seq_len!r}")
    return ids


def random_windows(ids: ArrayLike, batch_size: int, seq_len: int,
                   key: Key) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``batch_size`` windows at random offsets: x (B, T) and the next characters y (B, T),
    ``y[:, t] = x[:, t + 1]`` (int64, T = seq_len).

    Raises:
        ValueError: ids not 1-D, or seq_len not a positive int below len(ids).

    Example:
        >>> import numpy as np
        >>> from dlkit import data, random
        >>> x, y = data.random_windows(np.arange(100), 4, 8, random.key(0))
        >>> x.shape, bool((y == x + 1).all())
        ((4, 8), True)
    """
    ids = _check_windows(ids, seq_len)
    offsets = generator(key).integers(0, len(ids) - seq_len, size=batch_size)
    idx = offsets[:, None] + np.arange(seq_len)
    return ids[idx].astype(np.int64), ids[idx + 1].astype(np.int64)


def sequential_windows(ids: ArrayLike,
                       seq_len: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """All non-overlapping windows in order (the tail that does not fill one is dropped):
    x (n, T) and the next characters y (n, T), for evaluation.

    Raises:
        ValueError: ids not 1-D, or seq_len not a positive int below len(ids).

    Example:
        >>> import numpy as np
        >>> from dlkit import data
        >>> x, y = data.sequential_windows(np.arange(10), 4)
        >>> x
        array([[0, 1, 2, 3],
               [4, 5, 6, 7]])
    """
    ids = _check_windows(ids, seq_len)
    n = (len(ids) - 1) // seq_len
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len)
    return ids[idx].astype(np.int64), ids[idx + 1].astype(np.int64)
