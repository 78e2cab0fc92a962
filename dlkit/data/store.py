"""Finding, verifying and downloading data files.

A data set ``name`` is a folder of files.  ``fetch(name, filename, ...)`` looks in order in

    1. ``data_dir`` if given (it must exist), then ``$DLKIT_DATA``   <root>/<name>/<filename>
    2. ``~/.cache/dlkit`` (``$XDG_CACHE_HOME/dlkit``)
    3. ``/usr/share/datasets``                            (Debian's dataset-* packages)

and returns the first copy whose size and checksum match.  A corrupt copy in the user cache is
deleted and fetched again; a corrupt copy elsewhere is reported and skipped.  When no copy is
found, the file is downloaded from the published mirrors into the user cache (or ``data_dir``)
through a ``.part`` file with a progress bar, checked (size, then SHA-256 or MD5) and renamed
into place; a failed or interrupted download leaves no final file.  If everything fails,
``DataNotFoundError`` lists the places searched and how to provide the files.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

SYSTEM_DIR = Path("/usr/share/datasets")
# the Debian packages that install a data set under SYSTEM_DIR/<name> (the only one so far:
# no Debian release packages MNIST, Kuzushiji-MNIST, IMDb or Tiny Shakespeare)
DEBIAN_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}


class DataNotFoundError(FileNotFoundError):
    """No verified copy of a data set could be found or downloaded.

    ``str(e)`` speaks to library users (it names the ``data_dir=`` argument); the command-line
    scripts print ``e.for_command_line`` instead, the same message naming their ``--data-dir``
    flag.  Build one with ``DataNotFoundError.worded(make)``, where ``make(arg, given)`` returns
    the message for ``arg`` = ``"data_dir"`` / ``"--data-dir"`` and ``given`` =
    ``"data_dir=FOLDER"`` / ``"--data-dir FOLDER"``."""

    def __init__(self, message, for_command_line=None):
        super().__init__(message)
        self.for_command_line = message if for_command_line is None else for_command_line

    @classmethod
    def worded(cls, make):
        """The error with its library and command-line wordings from ``make(arg, given)``."""
        return cls(make("data_dir", "data_dir=FOLDER"), make("--data-dir", "--data-dir FOLDER"))


class ChecksumError(IOError):
    """A file's size or digest (SHA-256 or MD5) is not the published one: a corrupt copy or a
    broken download.  Its message names the file, what was found and what was expected."""


def cache_dir() -> Path:
    """dlkit's download folder: ``$XDG_CACHE_HOME/dlkit``, or ``~/.cache/dlkit``.

    Example:
        >>> from dlkit import data
        >>> data.cache_dir().name
        'dlkit'
    """
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dlkit"


def check_data_dir(data_dir):
    """Raise DataNotFoundError if ``data_dir`` is given but is not an existing folder (a typo
    must not silently fall back to the other places)."""
    if data_dir and not Path(data_dir).is_dir():
        raise DataNotFoundError.worded(
            lambda arg, given: f"{arg} {str(data_dir)!r} is not an existing folder; expected a "
            f"folder holding the data set's folder, or no {arg} to search $DLKIT_DATA, "
            "~/.cache/dlkit and /usr/share/datasets")


def search_roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for a data set, in order: ``data_dir``, ``$DLKIT_DATA``,
    ``cache_dir()``, then ``/usr/share/datasets``.

    Raises:
        DataNotFoundError: ``data_dir`` is given but is not an existing folder.

    Example:
        >>> from dlkit import data
        >>> data.search_roots()[-1].as_posix()
        '/usr/share/datasets'
    """
    check_data_dir(data_dir)
    roots = []
    if data_dir:
        roots.append(Path(data_dir))
    if os.environ.get("DLKIT_DATA"):
        roots.append(Path(os.environ["DLKIT_DATA"]))
    return roots + [cache_dir(), SYSTEM_DIR]


def file_digest(path, algo):
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: str | os.PathLike, sha256: str | None = None, md5: str | None = None,
           size: int | None = None) -> None:
    """Raise ChecksumError unless ``path`` has the given size and digest (SHA-256 if given,
    else MD5; None skips a check).

    Raises:
        ChecksumError: the size or the digest differs.
        OSError: the file cannot be read.

    Example:
        >>> import hashlib, tempfile, os
        >>> from dlkit import data
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = os.path.join(d, "f.bin")
        ...     with open(p, "wb") as f:
        ...         _ = f.write(b"dlkit")
        ...     data.verify(p, sha256=hashlib.sha256(b"dlkit").hexdigest(), size=5)
        ...     data.verify(p, size=4)
        Traceback (most recent call last):
        ...
        dlkit.data.store.ChecksumError: ...f.bin: size 5 bytes, expected 4
    """
    actual = os.path.getsize(path)
    if size is not None and actual != size:
        raise ChecksumError(f"{path}: size {actual} bytes, expected {size}")
    for algo, want in (("sha256", sha256), ("md5", md5)):
        if want:
            got = file_digest(path, algo)
            if got != want:
                raise ChecksumError(f"{path}: {algo} {got}, expected {want}")
            return


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None,
             md5: str | None = None, size: int | None = None, timeout: float = 30,
             progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``; verify; rename.  No final file on error.

    Args:
        url: the source.
        dest: the final path (its folder is created).
        sha256, md5, size: the published checksum and size, checked before the rename.
        timeout: seconds to wait for the server.
        progress: show a tqdm progress bar.

    Returns:
        ``dest`` as a Path.

    Raises:
        ChecksumError: a truncated download or a checksum mismatch.
        OSError: a network or file error (urllib's URLError is one).

    Example:
        >>> from dlkit import data
        >>> data.download("https://example.org/t10k-labels-idx1-ubyte.gz",  # doctest: +SKIP
        ...               "/tmp/t10k-labels-idx1-ubyte.gz", size=4542)
        PosixPath('/tmp/t10k-labels-idx1-ubyte.gz')
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(part, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or size
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name,
                      disable=not progress, leave=False) as bar:
                while True:
                    block = r.read(1 << 16)
                    if not block:
                        break
                    f.write(block)
                    bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
        if total and os.path.getsize(part) != total:
            raise ChecksumError(f"download of {url} ended after {os.path.getsize(part)} of "
                                f"{total} bytes (connection dropped)")
        verify(part, sha256, md5, size)
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return dest


def fetch(name: str, filename: str, *, urls: Sequence[str] = (), sha256: str | None = None,
          md5: str | None = None, size: int | None = None,
          data_dir: str | os.PathLike | None = None, download_ok: bool = True,
          progress: bool = True) -> Path:
    """Path of a verified copy of ``<name>/<filename>``, downloading it if needed.

    Each folder of ``search_roots(data_dir)`` is tried in turn (a corrupt copy is skipped),
    then each of ``urls`` (downloaded into ``cache_dir()/name``) when ``download_ok``.

    Raises:
        DataNotFoundError: no verified copy anywhere; the message lists the places searched,
            the problems met and how to provide the file.

    Example:
        >>> from dlkit import data
        >>> data.fetch("fashion-mnist", "t10k-labels-idx1-ubyte.gz",  # doctest: +SKIP
        ...            download_ok=False)
        PosixPath('/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz')
    """
    problems = []
    for root in search_roots(data_dir):
        path = root / name / filename
        if not path.is_file():
            continue
        try:
            verify(path, sha256, md5, size)
            return path
        except ChecksumError as e:
            problems.append(f"corrupt copy skipped: {e}")
            if root == cache_dir():
                path.unlink()
    target = (Path(data_dir) if data_dir else cache_dir()) / name / filename
    if download_ok:
        for url in urls:
            try:
                return download(url, target, sha256=sha256, md5=md5, size=size,
                                progress=progress)
            except (OSError, urllib.error.URLError, ChecksumError) as e:
                problems.append(f"download from {url} failed: {e}")
    searched = "\n  ".join(str(r / name / filename) for r in search_roots(data_dir))
    why = "\n  ".join(problems) or "no copy found and no download attempted"
    debian = (f"; on Debian and Ubuntu, `apt-get install {DEBIAN_PACKAGES[name]}` installs it "
              f"under {SYSTEM_DIR}" if name in DEBIAN_PACKAGES else "")
    raise DataNotFoundError.worded(
        lambda arg, given: f"cannot find the data file {name}/{filename}.\nSearched:\n  "
        f"{searched}\nProblems:\n  {why}\nProvide it by setting DLKIT_DATA to a folder holding "
        f"{name}/{filename}, by passing {given} (a folder holding {name}/), or by placing it "
        f"in {cache_dir() / name}{debian}.")
