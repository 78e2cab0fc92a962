"""Run folders (issue 14, class 3): every training script refuses to start a fresh run in a
folder that holds another run (one error line naming --resume, --overwrite and --out),
--overwrite replaces it, --resume DIR restores the run's settings from the run itself and
refuses flags that contradict them, and --data-dir naming a missing folder is an error.  Tiny
synthetic data sets keep each run to a fraction of a second."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dlkit import checkpoint, data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent / "api"))
import char_rnn  # noqa: E402
import train_dbn  # noqa: E402
import train_imdb  # noqa: E402
import train_mnist  # noqa: E402
from test_sequence_scripts import imdb_dir  # noqa: E402,F401  (the fixture)


@pytest.fixture
def fake_mnist(monkeypatch):
    rng = np.random.default_rng(0)
    fake = ((rng.integers(0, 256, (24, 28, 28), dtype=np.uint8), rng.integers(0, 10, 24)),
            (rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), rng.integers(0, 10, 6)))
    monkeypatch.setattr(data, "load_mnist", lambda *a, **k: fake)


def mnist(out, *extra):
    return train_mnist.main(["--epochs", "1", "--batch-size", "6", "--out", str(out),
                             "--quiet", "--no-plots", *extra])


def test_mnist_refuses_a_folder_holding_another_run(fake_mnist, tmp_path):
    out = tmp_path / "run"
    mnist(out, "--epochs", "2")
    before = (out / "history.json").read_text()
    with pytest.raises(SystemExit, match=rf"^error: {out} already holds a run \(checkpoints, "
                                         rf"history.csv, history.json, run.json\); continue it "
                                         rf"with --resume "
                                         rf"{out}, replace it with --overwrite, or choose another "
                                         r"--out$"):
        mnist(out)
    assert (out / "history.json").read_text() == before
    assert checkpoint.restore(out / "checkpoints").step == 2 * 4
    mnist(out, "--overwrite")
    assert json.loads((out / "history.json").read_text())["epochs"] == 1
    assert checkpoint.restore(out / "checkpoints").step == 4
    assert [p.name for p in checkpoint.list_checkpoints(out / "checkpoints")] == \
        ["step-000000004"]


def test_mnist_resume_restores_the_run_settings(fake_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    mnist(out, "--schedule", "constant", "--lr", "0.01", "--val-fraction", "0.25")
    capsys.readouterr()
    train_mnist.main(["--resume", str(out), "--quiet", "--no-plots"])
    text = capsys.readouterr().out
    assert "lr=0.01 (constant), batch 6" in text and "18 train / 6 val" in text
    assert "resumed from" in text
    for flag, value, saved in (("--batch-size", "8", "6"), ("--model", "cnn", "mlp"),
                               ("--epochs", "3", "1")):
        with pytest.raises(SystemExit, match=rf"^error: {flag} {value} contradicts the run in "
                                             rf"{out}, which was started with {flag} {saved}"):
            train_mnist.main(["--resume", str(out), flag, value, "--quiet"])
    with pytest.raises(SystemExit, match="--overwrite starts a new run; it cannot be combined"):
        train_mnist.main(["--resume", str(out), "--overwrite"])
    with pytest.raises(SystemExit, match=r"holds no run to resume \(no run.json\)"):
        train_mnist.main(["--resume", str(tmp_path / "nothing")])


def test_imdb_resume_extends_epochs_and_keeps_settings(imdb_dir, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "imdb"
    first = ["--data-dir", str(imdb_dir), "--maxlen", "8", "--vocab-size", "30",
             "--embed-dim", "4", "--units", "3", "--batch-size", "8", "--epochs", "1",
             "--quiet", "--out", str(out)]
    train_imdb.main(first)
    with pytest.raises(SystemExit, match=r"already holds a run"):
        train_imdb.main(first)
    capsys.readouterr()
    train_imdb.main(["--resume", str(out), "--epochs", "2", "--data-dir", str(imdb_dir),
                     "--quiet"])
    assert "resumed from" in capsys.readouterr().out
    hist = json.loads((out / "history.json").read_text())
    assert hist["units"] == 3 and hist["maxlen"] == 8 and len(hist["history"]["loss"]) == 2
    with pytest.raises(SystemExit, match=r"--units 5 contradicts the run"):
        train_imdb.main(["--resume", str(out), "--units", "5", "--data-dir", str(imdb_dir)])
    train_imdb.main(["--predict-only", "--out", str(out), "a wonderful film"])   # its sizes
    assert "a wonderful film" in capsys.readouterr().out


def test_char_rnn_resume_without_repeating_flags(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question.\n" * 20)
    out = tmp_path / "c"
    small = ["--text", str(text), "--embed", "4", "--units", "8", "--batch-size", "4",
             "--seq-len", "12", "--eval-every", "2", "--checkpoint-every", "2",
             "--sample-length", "0", "--out", str(out)]
    char_rnn.main(["train", *small, "--steps", "2"])
    with pytest.raises(SystemExit, match=r"already holds a run"):
        char_rnn.main(["train", *small, "--steps", "2"])
    char_rnn.main(["train", "--resume", str(out), "--steps", "4", "--sample-length", "0",
                   "--eval-every", "2"])
    assert checkpoint.restore(out / "checkpoints").step == 4
    with pytest.raises(SystemExit, match=r"--units 9 contradicts the run"):
        char_rnn.main(["train", "--resume", str(out), "--units", "9"])


def test_dbn_refuses_a_folder_holding_another_run(fake_mnist, tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    fake = ((rng.integers(0, 256, (12, 4, 4), dtype=np.uint8), rng.integers(0, 10, 12)),
            (rng.integers(0, 256, (4, 4, 4), dtype=np.uint8), rng.integers(0, 10, 4)))
    monkeypatch.setattr(data, "load_mnist", lambda *a, **k: fake)
    out = tmp_path / "dbn"
    args = ["--sizes", "16", "5", "--pretrain-epochs", "1", "--batch-size", "6",
            "--finetune-epochs", "1", "--finetune-batch-size", "6", "--gibbs-steps", "2",
            "--val-fraction", "0", "--no-plots", "--quiet"]
    train_dbn.main(args + ["--out", str(out)])
    with pytest.raises(SystemExit, match=r"already holds a run"):
        train_dbn.main(args + ["--out", str(out)])
    with pytest.raises(SystemExit, match=r"--sizes \[16, 7\] contradicts the run"):
        train_dbn.main(["--resume", str(out), "--sizes", "16", "7"])
    train_dbn.main(["--resume", str(out), "--quiet", "--no-plots", "--gibbs-steps", "2"])
    assert json.loads((out / "run.json").read_text())["settings"]["sizes"] == [16, 5]


@pytest.mark.parametrize("script", ["train_mnist", "train_imdb", "char_rnn", "train_dbn"])
def test_missing_data_dir_is_an_error(tmp_path, script):
    missing = str(tmp_path / "no-such-folder")
    text = tmp_path / "t.txt"
    text.write_text("some text")
    argv = {"train_mnist": ["--quiet"], "train_imdb": ["--quiet"], "train_dbn": ["--quiet"],
            "char_rnn": ["train", "--text", str(text)]}[script]
    main = {"train_mnist": train_mnist.main, "train_imdb": train_imdb.main,
            "train_dbn": train_dbn.main, "char_rnn": char_rnn.main}[script]
    with pytest.raises(SystemExit, match=r"^error: --data-dir '.*no-such-folder' is not an "
                                         r"existing folder"):
        main(argv + ["--data-dir", missing, "--out", str(tmp_path / "out")])
