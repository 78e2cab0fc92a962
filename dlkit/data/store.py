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
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

SYSTEM_DIR = Path("/usr/share/datasets")


class DataNotFoundError(FileNotFoundError):
    pass


class ChecksumError(IOError):
    pass


def cache_dir():
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dlkit"


def check_data_dir(data_dir):
    """Raise DataNotFoundError if ``data_dir`` is given but is not an existing folder (a typo
    must not silently fall back to the other places)."""
    if data_dir and not Path(data_dir).is_dir():
        raise DataNotFoundError(f"data_dir {str(data_dir)!r} is not an existing folder; expected "
                                "a folder holding the data set's folder, or no data_dir to "
                                "search $DLKIT_DATA, ~/.cache/dlkit and /usr/share/datasets")


def search_roots(data_dir=None):
    """The folders searched, in order (DataNotFoundError if data_dir is not a folder)."""
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


def verify(path, sha256=None, md5=None, size=None):
    """Raise ChecksumError unless ``path`` has the given size and digest."""
    actual = os.path.getsize(path)
    if size is not None and actual != size:
        raise ChecksumError(f"{path}: size {actual} bytes, expected {size}")
    for algo, want in (("sha256", sha256), ("md5", md5)):
        if want:
            got = file_digest(path, algo)
            if got != want:
                raise ChecksumError(f"{path}: {algo} {got}, expected {want}")
            return


def download(url, dest, *, sha256=None, md5=None, size=None, timeout=30, progress=True):
    """Download ``url`` to ``dest`` via ``dest.part``; verify; rename.  No final file on error."""
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


def fetch(name, filename, *, urls=(), sha256=None, md5=None, size=None, data_dir=None,
          download_ok=True, progress=True):
    """Path of a verified copy of ``<name>/<filename>``, downloading it if needed."""
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
    raise DataNotFoundError(
        f"cannot find the data file {name}/{filename}.\nSearched:\n  {searched}\n"
        f"Problems:\n  {why}\nProvide it by setting DLKIT_DATA to a folder holding {name}/"
        f"{filename}, by passing --data-dir, or "
        f"by placing it in {cache_dir() / name}; on Debian, `apt-get install dataset-{name}` "
        f"installs some data sets under {SYSTEM_DIR}.")
