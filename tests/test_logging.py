"""fit's logs, written as the run goes: the CSV holds one row per finished epoch while the run
is still going (read from fit's own per-epoch log hook), is rewritten from the checkpoint on
resume, and the TensorBoard event file holds the scalars (read back through tensorboardX's
protobuf classes; the test skips without the ``tensorboard`` extra outside CI and fails in CI,
see tests/conftest.py need()).  Also: the time estimate, and the learning rate in the history."""
import csv
import struct

import numpy as np
import pytest

from dlkit import layers as L
from dlkit import logs, nn, optim, random, train


def _problem(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    Y = (X[:, 0] > 0).astype(np.int64)
    model = nn.serial(("fc", L.Dense(2)))
    _, params = model.init(random.key(1), (6,))
    return model, params, X, Y


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_has_one_row_per_epoch_while_the_run_goes(tmp_path):
    model, params, X, Y = _problem()
    path = tmp_path / "run" / "history.csv"
    seen = []

    def hook(msg):                  # fit logs each epoch right after writing its CSV row
        if msg.startswith("epoch "):
            seen.append(len(_rows(path)))

    opt = optim.adam(optim.cosine(0.01, 3 * 3))
    r = train.fit(model, params, opt, (X[:50], Y[:50]), key=random.key(2), epochs=3,
                  batch_size=20, val=(X[50:], Y[50:]), progress=False, log=hook, csv_log=path)
    assert seen == [1, 2, 3]
    rows = _rows(path)
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr",
                             "seconds"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"):
        assert [float(r[key]) for r in rows] == pytest.approx(r.history[key], rel=1e-12)
    # lr: the cosine schedule at each epoch's last step (steps 2, 5, 8 of 9)
    assert r.history["lr"] == pytest.approx([optim.cosine(0.01, 9)(s) for s in (2, 5, 8)])


def test_csv_columns_follow_what_is_known_and_resume_rewrites_it(tmp_path):
    model, params, X, Y = _problem()
    path, ck = tmp_path / "h.csv", tmp_path / "ck"
    kw = dict(key=random.key(3), batch_size=25, progress=False, log=lambda m: None,
              checkpoint_dir=ck, csv_log=path)
    hand_made = optim.Optimizer(*optim.sgd(0.1)[:5])     # no learning_rate: no lr column
    train.fit(model, params, hand_made, (X, Y), epochs=2, **kw)
    assert list(_rows(path)[0]) == ["epoch", "loss", "accuracy", "seconds"]
    first = _rows(path)
    path.write_text(path.read_text() + "9,garbage,from,a crash\n")   # rows past the checkpoint
    train.fit(model, params, hand_made, (X, Y), epochs=3, resume=True, **kw)
    rows = _rows(path)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and rows[:2] == first


def _events(folder):
    """(tag, step, value) of every scalar in the event files under ``folder``: TFRecord
    framing (length, crc, payload, crc) around tensorboardX's Event protobuf."""
    from tensorboardX.proto.event_pb2 import Event
    out = []
    files = sorted(folder.glob("events.out.tfevents.*"))
    assert files, f"no event file in {folder}"
    for f in files:
        raw = f.read_bytes()
        i = 0
        while i < len(raw):
            (n,) = struct.unpack("<Q", raw[i:i + 8])
            event = Event.FromString(raw[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                out.append((v.tag, event.step, v.simple_value))
    return out


def test_tensorboard_event_file_holds_the_scalars(tmp_path, need):
    need("tensorboardX")
    model, params, X, Y = _problem()
    board = tmp_path / "tb"
    r = train.fit(model, params, optim.adam(0.01), (X[:40], Y[:40]), key=random.key(4),
                  epochs=2, batch_size=20, val=(X[40:], Y[40:]), progress=False,
                  log=lambda m: None, tensorboard_dir=board)
    events = _events(board)
    tags = {t for t, _, _ in events}
    assert {"step/loss", "step/accuracy", "step/lr", "step/seconds", "epoch/loss",
            "epoch/accuracy", "epoch/val_loss", "epoch/val_accuracy", "epoch/lr",
            "epoch/seconds"} <= tags
    steps = sorted(s for t, s, _ in events if t == "step/loss")
    assert steps == [1, 2, 3, 4]
    by_tag = {(t, s): v for t, s, v in events}
    assert by_tag[("step/lr", 1)] == pytest.approx(0.01)
    assert [by_tag[("epoch/val_accuracy", s)] for s in (2, 4)] == \
        pytest.approx(r.history["val_accuracy"])
    assert [by_tag[("epoch/loss", s)] for s in (2, 4)] == pytest.approx(r.history["loss"])


def test_tensorboard_without_the_extra_is_a_clear_import_error(tmp_path, monkeypatch):
    import builtins
    real = builtins.__import__

    def no_tensorboardx(name, *a, **k):
        if name.startswith("tensorboardX"):
            raise ImportError("No module named 'tensorboardX'")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_tensorboardx)
    model, params, X, Y = _problem()
    with pytest.raises(ImportError, match=r"pip install 'dlkit\[tensorboard\]'"):
        train.fit(model, params, optim.sgd(0.1), (X, Y), key=random.key(5), epochs=1,
                  progress=False, log=lambda m: None, tensorboard_dir=tmp_path / "tb")
    assert not logs.tensorboard_available()


def test_fit_announces_its_duration_after_the_first_steps(monkeypatch):
    monkeypatch.setattr(logs, "ANNOUNCE_OVER", 0.0)
    model, params, X, Y = _problem(n=300)
    said = []
    train.fit(model, params, optim.sgd(0.1), (X, Y), key=random.key(6), epochs=2,
              batch_size=10, progress=False, log=said.append)
    first = [m for m in said if m.startswith("estimated time")]
    assert len(first) == 1 and "for 2 of 2 epochs, 60 steps" in first[0], said
    assert said.index(first[0]) == 0          # before the first epoch's line


def test_estimate_says_nothing_for_short_runs():
    said = []
    e = logs.Estimate(20, said.append, skip=1, measure=3, threshold=3600)
    assert [e.step() for _ in range(20)] == [None] * 20 and said == []
    e = logs.Estimate(20, said.append, skip=1, measure=3, threshold=0)
    out = [e.step() for _ in range(20)]
    assert out[3].startswith("estimated time: about") and out.count(None) == 19
    assert said == [out[3]] and "over steps 2-4" in said[0]
