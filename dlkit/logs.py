"""Training logs a user can watch while a run goes: a CSV file, TensorBoard scalars, a time
estimate.  ``train.fit`` uses all three (``csv_log=``, ``tensorboard_dir=``, ``log=``); a
hand-written loop can too:

    csv = logs.CSVLog("runs/x/history.csv", ["epoch", "loss", "val_loss"])
    tb = logs.TensorBoardLog("runs/x/tensorboard")         # needs the tensorboard extra
    eta = logs.Estimate(total_steps, print)
    for step in range(total_steps):
        ...
        tb.scalars(step, **{"train/loss": loss})
        eta.step()
    csv.write({"epoch": 1, "loss": 0.5, "val_loss": 0.6})  # flushed: ``tail -f`` shows it
    csv.close(); tb.close()

TensorBoard event files are written by tensorboardX (``pip install 'dlkit[tensorboard]'``), a
maintained writer that needs neither TensorFlow nor PyTorch; view them with
``tensorboard --logdir runs/x/tensorboard`` (the ``tensorboard`` package, installed apart).
"""
import csv
import math
import os
import time
from pathlib import Path

# Estimate speaks only for runs longer than this many seconds (tests set it to 0)
ANNOUNCE_OVER = 30.0
TENSORBOARD_HINT = ("TensorBoard logging needs tensorboardX, the 'tensorboard' extra: "
                    "pip install 'dlkit[tensorboard]'")


class CSVLog:
    """A CSV file with a header of ``columns`` and one row per ``write``, flushed at once.

    The file is (re)written at creation with the header and ``rows`` (e.g. the history of a
    resumed run, so the file matches the checkpoint it resumed from), atomically; later rows
    are appended.  A value that is None or missing is an empty cell; floats are written in
    full precision."""

    def __init__(self, path, columns, rows=()):
        self.path, self.columns = Path(path), list(columns)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(self.columns)
            for row in rows:
                w.writerow(self._cells(row))
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)

    def _cells(self, row):
        return ["" if row.get(c) is None else row[c] for c in self.columns]

    def write(self, row):
        """Append ``row`` (a dict keyed by column) and flush it to the file."""
        self._writer.writerow(self._cells(row))
        self._file.flush()

    def close(self):
        self._file.close()


def tensorboard_available():
    """True if tensorboardX (the ``tensorboard`` extra) can be imported."""
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        return False
    return True


class TensorBoardLog:
    """TensorBoard scalars in ``logdir`` through tensorboardX's SummaryWriter (ImportError
    naming the extra when it is missing).  ``purge_step``: when resuming from step s, pass s
    so that TensorBoard drops the events the interrupted run wrote at steps >= s."""

    def __init__(self, logdir, purge_step=None):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as e:
            raise ImportError(TENSORBOARD_HINT) from e
        self.writer = SummaryWriter(str(logdir), purge_step=purge_step, flush_secs=10)

    def scalars(self, step, **values):
        """Add each finite ``tag=value`` at ``step`` (None values are skipped)."""
        for tag, value in values.items():
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(tag, float(value), int(step))

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()


def format_duration(seconds):
    """``"45 s"``, ``"12 min"``, ``"1.5 h"``: a rough duration for a person."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Estimate:
    """Says once how long a run will take, from the time its first steps took.

    Call ``step()`` after every step.  After ``skip`` steps (the first may compile or warm
    caches) and then ``measure`` more, if the ``total`` steps would take longer than
    ``threshold`` seconds (default: ``ANNOUNCE_OVER``, 30), that ``step()`` returns one line
    and gives it to ``log`` if set: "estimated time: about 12 min for 2000 steps (0.36 s a
    step over steps 2-11)" (``what`` replaces "2000 steps"; ``extra`` is appended).
    ``total`` counts the steps still to run in this process.  Every other call returns
    None."""

    def __init__(self, total, log, *, what=None, skip=1, measure=10, threshold=None, extra=""):
        self.total, self.log, self.what = total, log, what or f"{total} steps"
        self.skip, self.measure, self.extra = skip, measure, extra
        self.threshold = ANNOUNCE_OVER if threshold is None else threshold
        self.done, self.said = 0, False
        self.t0 = time.perf_counter() if skip == 0 else None

    def step(self):
        self.done += 1
        if self.said:
            return None
        if self.done == self.skip:
            self.t0 = time.perf_counter()
        if self.t0 is None or self.done != self.skip + self.measure:
            return None
        per = (time.perf_counter() - self.t0) / self.measure
        self.said = True
        if per * self.total <= self.threshold:
            return None
        msg = (f"estimated time: about {format_duration(per * self.total)} for {self.what} "
               f"({per:.3g} s a step over steps {self.skip + 1}-{self.skip + self.measure})"
               f"{self.extra}")
        if self.log is not None:
            self.log(msg)
        return msg
