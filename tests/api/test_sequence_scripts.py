"""scripts/train_imdb.py and scripts/char_rnn.py end to end on tiny synthetic data: training,
metrics, checkpoints, resume (bit-identical to an uninterrupted run), prediction and sampling
from a saved model."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dlkit import checkpoint, tree

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import char_rnn  # noqa: E402
import train_imdb  # noqa: E402

GOOD = ["a wonderful film", "great acting and a great story", "loved it, wonderful",
        "superb and moving", "great fun"]
BAD = ["an awful film", "boring and dull", "terrible acting, awful story", "dull, boring",
       "awful mess"]


@pytest.fixture
def imdb_dir(tmp_path):
    root = tmp_path / "data" / "aclImdb"
    i = 0
    for split in ("train", "test"):
        for label, texts in (("pos", GOOD), ("neg", BAD)):
            d = root / split / label
            d.mkdir(parents=True)
            for rep in range(4):
                for t in texts:
                    (d / f"{i}_{8 if label == 'pos' else 2}.txt").write_text(f"{t}<br />{rep}")
                    i += 1
    return tmp_path / "data"


def test_train_imdb_trains_predicts_and_resumes(imdb_dir, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--data-dir", str(imdb_dir), "--maxlen", "12", "--vocab-size", "40",
              "--embed-dim", "8", "--units", "6", "--batch-size", "8", "--lr", "0.02",
              "--dropout", "0.1", "--quiet", "--out", str(out)]
    acc = train_imdb.main(common + ["--epochs", "2", "--checkpoint-every", "3",
                                    "a wonderful story", "boring and awful"])
    text = capsys.readouterr().out
    # the words separate the classes completely: a model that learned anything is near 1, and
    # the majority class (half the reviews) is 0.5
    assert acc >= 0.9, acc
    assert "test accuracy" in text and "precision" in text and "F1" in text
    assert "sentiment predictions:" in text
    assert _predicted(text, "a wonderful story") == "positive", text
    assert _predicted(text, "boring and awful") == "negative", text
    assert (out / "vocab.json").is_file() and (out / "history.json").is_file()
    hist = json.loads((out / "history.json").read_text())
    assert hist["epochs"] == 2 and len(hist["history"]["loss"]) == 2
    assert hist["test_accuracy"] == acc
    # predictions from the saved model, without training: the same sentiments
    train_imdb.main(common + ["--predict-only", "great fun", "dull, boring"])
    text = capsys.readouterr().out
    assert _predicted(text, "great fun") == "positive", text
    assert _predicted(text, "dull, boring") == "negative", text
    # a third epoch resumed from the run's checkpoints ends bit-identical to an uninterrupted
    # 3-epoch run (params, optimizer state, test accuracy)
    train_imdb.main(common + ["--epochs", "3", "--resume", str(out)])
    assert "resumed from" in capsys.readouterr().out
    full = tmp_path / "full"
    whole = [a if a != str(out) else str(full) for a in common]
    acc3 = train_imdb.main(whole + ["--epochs", "3", "--checkpoint-every", "3"])
    a, b = checkpoint.restore(out / "checkpoints"), checkpoint.restore(full / "checkpoints")
    assert a.step == b.step
    assert tree.equal(a.params, b.params) and tree.equal(a.opt_state, b.opt_state)
    assert json.loads((out / "history.json").read_text())["test_accuracy"] == acc3


def _predicted(text, sentence):
    """The label train_imdb.py printed for sentence ('positive' / 'negative')."""
    for line in text.splitlines():
        if line.rstrip().endswith(")  " + sentence) or line.rstrip().endswith("  " + sentence):
            return line.split()[0]
    raise AssertionError(f"no prediction line for {sentence!r} in:\n{text}")


def test_char_rnn_resume_is_bit_identical_and_samples(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question.\n" * 40)
    small = ["--text", str(text), "--embed", "4", "--units", "8", "--batch-size", "4",
             "--seq-len", "12", "--eval-every", "3", "--checkpoint-every", "3",
             "--sample-length", "0"]
    full, part = tmp_path / "full", tmp_path / "part"
    char_rnn.main(["train", *small, "--steps", "6", "--out", str(full)])
    char_rnn.main(["train", *small, "--steps", "3", "--out", str(part)])
    char_rnn.main(["train", *small, "--steps", "6", "--resume", str(part)])
    a = checkpoint.restore(full / "checkpoints")
    b = checkpoint.restore(part / "checkpoints")
    assert a.step == b.step == 6
    assert tree.equal(a.params, b.params) and tree.equal(a.opt_state, b.opt_state)
    capsys.readouterr()
    s = char_rnn.main(["sample", "--out", str(full), "--length", "30", "--temperature", "0.5",
                       "--seed-text", "to be"])
    assert s.startswith("to be") and len(s) == 35 and set(s) <= set(text.read_text())
    assert s == char_rnn.main(["sample", "--out", str(full), "--length", "30",
                               "--temperature", "0.5", "--seed-text", "to be"])
    with pytest.raises(SystemExit, match="not in the corpus alphabet"):
        char_rnn.main(["sample", "--out", str(full), "--seed-text", "XYZ"])
    hist = json.loads((full / "history.json").read_text())["history"]
    assert hist["step"] == [3, 6] and np.all(np.isfinite(hist["val_loss"]))


def test_char_transformer_resumes_bit_for_bit_and_samples(tmp_path):
    """char_rnn.py --model transformer: a run cut off after its step-3 checkpoint and resumed
    ends with the uninterrupted run's params and Adam state; sampling reads a context window."""
    import shutil
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question.\n" * 40)
    small = ["--text", str(text), "--model", "transformer", "--n-embd", "8", "--n-head", "2",
             "--n-layer", "2", "--dropout", "0.1", "--batch-size", "4", "--seq-len", "12",
             "--warmup", "2", "--steps", "6", "--eval-every", "3", "--checkpoint-every", "3",
             "--sample-length", "0"]
    full, part = tmp_path / "full", tmp_path / "part"
    char_rnn.main(["train", *small, "--out", str(full)])
    shutil.copytree(full, part)
    shutil.rmtree(part / "checkpoints" / "step-000000006")
    (part / "checkpoints" / "LATEST").write_text("step-000000003")
    char_rnn.main(["train", "--resume", str(part)])
    a = checkpoint.restore(full / "checkpoints")
    b = checkpoint.restore(part / "checkpoints")
    assert a.step == b.step == 6
    assert tree.equal(a.params, b.params) and tree.equal(a.opt_state, b.opt_state)
    assert "block2" in a.params and "mha" in a.params["block1"]["attn"]
    s = char_rnn.main(["sample", "--out", str(full), "--length", "40", "--seed-text", "to be"])
    assert s.startswith("to be") and len(s) == 45 and set(s) <= set(text.read_text())
    with pytest.raises(SystemExit, match="must be a multiple of --n-head"):
        char_rnn.main(["train", *small, "--n-embd", "9", "--out", str(tmp_path / "bad")])
