"""Run folders for the training scripts: one run per folder, its settings in ``run.json``.

    p = argparse.ArgumentParser(...)
    runs.setting(p, SETTINGS, "--epochs", 10, type=int, help="...")   # a run setting
    args = p.parse_args(argv)
    out = runs.resolve(args, "train_mnist.py", SETTINGS, default_out="runs/mnist")
    ... load the data ...
    runs.begin(out, args, "train_mnist.py", SETTINGS)   # just before training

A run setting (model, data set, sizes, batch size, schedule, seed, ...) is declared with
``default=SUPPRESS``, so a flag not given is absent from ``args``.  ``resolve`` fills it in:
from __future__ import annotations

from the run's ``run.json`` with ``--resume DIR`` (a given flag that contradicts the run is an
error unless the setting is ``changeable``, like a number of epochs to extend a run by), else
from the default.  A fresh run refuses a folder that holds another run unless ``--overwrite``,
which ``begin`` honours by removing that run's files (only the names in RUN_ENTRIES; other
files are left alone).  ``begin`` writes ``run.json`` atomically.  Under data-parallel MPI
(``dlkit.distributed``) only rank 0 looks at and writes the folder: ``resolve`` runs there and
sends the settings, the folder or the error to every rank; ``begin`` does nothing elsewhere.  Errors are RunFolderError
(a ValueError), worded for the command line.
"""
import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

RUN_FILE = "run.json"
RUN_ENTRIES = (RUN_FILE, "checkpoints", "pretrain", "finetune", "history.json", "history.csv",
               "tensorboard", "config.json", "vocab.json", "learning_curve.png",
               "confusion_matrix.png", "filters.png", "samples.png")


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (another run in it, a missing or foreign
    run.json, a flag contradicting the resumed run...); the message is worded for the command
    line and says what to do instead."""


def setting(parser: argparse.ArgumentParser, settings: dict[str, Any], flag: str, default: Any,
            *, default_text: str | None = None, **kw: Any) -> None:
    """Add run-setting ``flag`` to ``parser`` (absent from args unless given) and record its
    default in ``settings`` under its dest.  Its help ends with the default, once:
    ``default_text`` if given (e.g. "per model: mlp 2e-3, ..." for a default of None that the
    script fills in), else "off" for a switch, else the value."""
    help_text = kw.pop("help", "")
    shown = default_text if default_text is not None else (
        "off" if default is False else default)
    action = parser.add_argument(flag, default=argparse.SUPPRESS, help=(
        help_text + f" (default: {shown}; with --resume: the run's)").strip(), **kw)
    settings[action.dest] = default


class HelpFormatter(argparse.HelpFormatter):
    """Help that states each option's default exactly once: "(default: X)" is added after an
    option's help unless the help already names its default (the run settings of ``setting``
    do), the option is a switch (off unless given) or its default is None (the help then says
    what happens without it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or not action.option_strings
                or any(action.default is d for d in (None, False, argparse.SUPPRESS))):
            return text
        return f"{text} (default: %(default)s)".strip()


def _number(text, kind, what, ok):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1 (else argparse's usage error, naming the flag)."""
    return _number(text, int, "a positive integer", lambda v: v >= 1)


def nonnegative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    return _number(text, int, "an integer >= 0", lambda v: v >= 0)


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    return _number(text, float, "a number > 0", lambda v: 0 < v < float("inf"))


def nonnegative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    return _number(text, float, "a number >= 0", lambda v: 0 <= v < float("inf"))


def fraction(text: str) -> float:
    """argparse type: a float in [0, 1)."""
    return _number(text, float, "a fraction in [0, 1)", lambda v: 0 <= v < 1)


def output_flags(parser: argparse.ArgumentParser, *, data: str, default_out: str,
                 what: str = "") -> None:
    """Add the flags every training script shares: --data-dir (a folder holding ``data``),
    --out (``default_out`` shown as its default), --tensorboard (scalars ``what`` into
    --out/tensorboard), --resume DIR and --overwrite (see ``resolve``)."""
    parser.add_argument("--data-dir", default=None,
                        help=f"folder holding {data}, searched before $DLKIT_DATA, "
                             "~/.cache/dlkit and /usr/share/datasets")
    parser.add_argument("--out", default=None, help=f"output folder (default: {default_out})")
    parser.add_argument("--tensorboard", action="store_true",
                        help=f"also write TensorBoard scalars{what} into --out/tensorboard "
                             "(needs the tensorboard extra: pip install 'dlkit[tensorboard]')")
    parser.add_argument("--resume", default=None, metavar="DIR",
                        help="continue the run in DIR from its newest valid checkpoint, with its "
                             "settings")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new run in --out even if it holds one (its files are "
                             "removed)")


def plural(n: int, word: str) -> str:
    """``"1 epoch"``, ``"3 epochs"``.

    Example:
        >>> from dlkit import runs
        >>> runs.plural(1, "epoch"), runs.plural(3, "epoch")
        ('1 epoch', '3 epochs')
    """
    return f"{n} {word}" + ("" if n == 1 else "s")


def error_message(e: BaseException) -> str:
    """The one-line ``error: ...`` text a script prints for a RunFolderError, ValueError or
    DataNotFoundError ``e``: a data error names the ``--data-dir`` flag, not ``data_dir=``."""
    return "error: " + str(getattr(e, "for_command_line", None) or e)


def _flag(dest):
    return "--" + dest.replace("_", "-")


def held(out: str | os.PathLike) -> list[str]:
    """The entries of ``out`` that belong to a run (RUN_ENTRIES present), sorted.

    Example:
        >>> import tempfile
        >>> from dlkit import runs
        >>> with tempfile.TemporaryDirectory() as d:
        ...     runs.held(d)
        []
    """
    return sorted(n for n in RUN_ENTRIES if os.path.lexists(Path(out) / n))


def read(folder: str | os.PathLike, script: str) -> dict[str, Any]:
    """The settings saved in ``folder``/run.json by ``script``; RunFolderError otherwise."""
    path = Path(folder) / RUN_FILE
    if not path.is_file() or path.is_symlink():
        raise RunFolderError(f"{folder} holds no run to resume (no {RUN_FILE}); start one with "
                             f"--out {folder}")
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunFolderError(f"{path} cannot be read: {e}") from None
    if not isinstance(run, dict) or not isinstance(run.get("settings"), dict):
        raise RunFolderError(f"{path} is not a run file: expected an object with 'script' and "
                             f"'settings', got {str(run)[:80]}")
    if run.get("script") != script:
        raise RunFolderError(f"{folder} is a run of {run.get('script')}, not of {script}")
    return run["settings"]


def defaults(args: argparse.Namespace, settings: dict[str, Any]) -> argparse.Namespace:
    """``args`` with every run setting the command line did not give set to its default: the
    settings of a fresh run, for code that builds a script's model without running it (the
    benchmarks).  Returns ``args``.

    Example:
        >>> import argparse
        >>> args = defaults(argparse.Namespace(units=64), {"units": 100, "lr": 1e-3})
        >>> args.units, args.lr
        (64, 0.001)
    """
    for dest, default in settings.items():
        if not hasattr(args, dest):
            setattr(args, dest, default)
    return args


def resolve(args: argparse.Namespace, script: str, settings: dict[str, Any], *,
            default_out: str | os.PathLike | Callable[[argparse.Namespace], Any],
            changeable: Iterable[str] = ()) -> Path:
    """Fill the run settings into ``args`` and return the run folder (see the module doc).
    ``args`` needs ``out``, ``resume`` and ``overwrite``; default_out: a path, or a function
    of the resolved args.  Under MPI: decided on rank 0, the same on every rank."""
    from . import distributed

    def on_main():
        out = _resolve(args, script, settings, default_out, changeable)
        return vars(args), out
    resolved, out = distributed.from_main(on_main)
    vars(args).update(resolved)
    return out


def _resolve(args, script, settings, default_out, changeable):
    if args.resume and args.overwrite:
        raise RunFolderError("--overwrite starts a new run; it cannot be combined with "
                             "--resume")
    if args.resume and args.out and Path(args.out) != Path(args.resume):
        raise RunFolderError(f"--out {args.out} and --resume {args.resume} name different "
                             "folders; --resume continues the run in its own folder")
    saved = read(args.resume, script) if args.resume else {}
    for dest, default in settings.items():
        if not hasattr(args, dest):
            setattr(args, dest, saved.get(dest, default))
        elif dest in saved and getattr(args, dest) != saved[dest] and dest not in changeable:
            raise RunFolderError(
                f"{_flag(dest)} {getattr(args, dest)} contradicts the run in {args.resume}, "
                f"which was started with {_flag(dest)} {saved[dest]}; drop the flag to continue "
                "the run, or start a new run with another --out")
    out = Path(args.resume or args.out or
               (default_out(args) if callable(default_out) else default_out))
    if not args.resume and not args.overwrite and held(out):
        raise RunFolderError(f"{out} already holds a run ({', '.join(held(out))}); continue it "
                             f"with --resume {out}, replace it with --overwrite, or choose "
                             "another --out")
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} is a file, expected a folder")
    return out


def begin(out: str | os.PathLike, args: argparse.Namespace, script: str,
          settings: dict[str, Any]) -> None:
    """Make the run folder ready just before training: remove the previous run's entries if
    ``args.overwrite``, then write run.json with the resolved settings.  Rank 0 only under
    MPI."""
    from . import distributed
    if not distributed.is_main():
        return
    out = Path(out)
    if args.overwrite:
        for name in held(out):
            p = out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (RUN_FILE + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.write_text(json.dumps({"script": script,
                               "settings": {k: getattr(args, k) for k in settings}}, indent=1))
    os.replace(tmp, out / RUN_FILE)
