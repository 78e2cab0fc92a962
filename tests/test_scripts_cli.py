"""The scripts as a user meets them: every --help states every default exactly once (no
"(default: None)", nothing twice); bad input ends in one line "error: ..." that says what to
do, never a traceback; data errors name the --data-dir flag to script users and data_dir= to
library users, and suggest only Debian packages that exist; counts are pluralised; history.csv
is written; long runs announce their duration after their first steps."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dlkit import data, logs
from dlkit.cli import char_rnn, train_dbn, train_imdb, train_mnist

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_run_folder import fake_mnist  # noqa: E402,F401  (the fixture: 24 random images)
MAINS = {"train_mnist": train_mnist.main, "train_imdb": train_imdb.main,
         "train_dbn": train_dbn.main, "char_rnn train": lambda a: char_rnn.main(["train", *a]),
         "char_rnn sample": lambda a: char_rnn.main(["sample", *a])}
# options whose help says what happens without them instead of naming a default value
NO_DEFAULT = {"--resume", "--data-dir"}


def _options(help_text):
    """{flag: its help entry, whitespace collapsed} from argparse's --help output."""
    body = help_text.split("\noptions:\n", 1)[1]
    entries, flag = {}, None
    for line in body.splitlines():
        m = re.match(r"  (-[-\w]+)", line)
        if m:
            flag = m.group(1).split(",")[0]
            entries[flag] = line.strip()
        elif flag and line.startswith("    "):
            entries[flag] += " " + line.strip()
    return entries


@pytest.fixture(autouse=True)
def wide_help(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")       # argparse wraps (and splits at hyphens) less


@pytest.mark.parametrize("script", sorted(MAINS))
def test_help_states_every_default_once(script, capsys):
    with pytest.raises(SystemExit) as e:
        MAINS[script](["--help"])
    assert e.value.code == 0
    options = _options(capsys.readouterr().out)
    assert len(options) > 4
    for flag, entry in options.items():
        assert entry.count("(default:") <= 1, entry
        assert "(default: None" not in entry and "(default: False" not in entry, entry
        takes_value = re.match(r"-[-\w]+ [A-Z{]", entry) is not None
        if takes_value and flag not in NO_DEFAULT:
            assert "(default:" in entry, entry


def test_per_model_defaults_are_spelled_out(capsys):
    with pytest.raises(SystemExit):
        train_mnist.main(["--help"])
    options = _options(capsys.readouterr().out)
    assert "(default: per model: cnn 2e-3, cnn-deep 1e-3, lstm 1e-3, mlp 2e-3, resnet 2e-3;" in \
        options["--lr"]
    assert "(default: per model: cnn 64," in options["--batch-size"]
    assert "cosine decays it to 0" in options["--schedule"]


def _error(main, argv):
    """The message a script exits with (SystemExit), checked to be one 'error:' line."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    msg = e.value.code
    assert isinstance(msg, str) and msg.startswith("error: ") and "\n" not in msg, msg
    return msg


def test_bad_text_inputs_of_char_rnn(tmp_path):
    out = ["--out", str(tmp_path / "o")]
    train = MAINS["char_rnn train"]
    assert _error(train, ["--text", "missing.txt", *out]) == (
        "error: --text missing.txt: no such file, and not a known corpus (tinyshakespeare); "
        "give the path of a UTF-8 text file or a corpus name")
    assert "a folder, and not a known corpus" in _error(train, ["--text", str(tmp_path), *out])
    binary = tmp_path / "b.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    assert "is not UTF-8 text" in _error(train, ["--text", str(binary), *out])
    short = tmp_path / "short.txt"
    short.write_text("just a few characters\n" * 3)
    assert "use a smaller --seq-len" in _error(train, ["--text", str(short), *out])
    assert "config.json not found" in _error(MAINS["char_rnn sample"],
                                             ["--out", str(tmp_path / "nothing")])


@pytest.mark.parametrize("script,argv,expect", [
    ("char_rnn train", ["--steps", "0"], "argument --steps: expected a positive integer, got 0"),
    ("char_rnn sample", ["--temperature", "0"], "argument --temperature: expected a number > 0"),
    ("train_mnist", ["--val-fraction", "1.5"], "expected a fraction in [0, 1), got 1.5"),
    ("train_mnist", ["--epochs", "two"], "argument --epochs: expected a positive integer, "
                                         "got 'two'"),
    ("train_imdb", ["--batch-size", "-3"], "argument --batch-size: expected a positive"),
    ("train_dbn", ["--sizes", "784", "0"], "argument --sizes: expected a positive integer"),
])
def test_bad_flag_values_are_usage_errors(script, argv, expect, capsys):
    with pytest.raises(SystemExit) as e:
        MAINS[script](argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err, err


@pytest.mark.parametrize("script", ["train_mnist", "train_imdb", "train_dbn", "char_rnn train"])
def test_missing_data_dir_names_the_flag(script, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("some text " * 50)
    extra = ["--text", str(text)] if script == "char_rnn train" else ["--quiet"]
    msg = _error(MAINS[script], extra + ["--data-dir", str(tmp_path / "nope"),
                                         "--out", str(tmp_path / "out")])
    assert msg.startswith("error: --data-dir '") and "is not an existing folder" in msg
    assert "or no --data-dir to search" in msg


def test_data_not_found_speaks_to_each_audience(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DLKIT_DATA", raising=False)
    monkeypatch.setattr(data.store, "SYSTEM_DIR", tmp_path / "system")
    with pytest.raises(data.DataNotFoundError) as e:
        data.fetch("mnist", "x.gz", download_ok=False)
    lib, cli = str(e.value), e.value.for_command_line
    assert "data_dir=FOLDER" in lib and "--data-dir" not in lib
    assert "--data-dir FOLDER" in cli and "data_dir" not in cli
    assert "apt-get" not in lib                 # no Debian package holds MNIST
    with pytest.raises(data.DataNotFoundError) as e:
        data.fetch("fashion-mnist", "x.gz", download_ok=False)
    assert "`apt-get install dataset-fashion-mnist`" in str(e.value)
    # the scripts print the command-line wording
    monkeypatch.setattr(data, "load_mnist",
                        lambda *a, **k: data.fetch("mnist", "x.gz", download_ok=False))
    with pytest.raises(SystemExit) as e:
        train_mnist.main(["--out", str(tmp_path / "o"), "--quiet"])
    assert e.value.code.startswith("error: cannot find the data file mnist/x.gz.")
    assert "--data-dir FOLDER" in e.value.code and "data_dir=" not in e.value.code


def test_one_epoch_is_singular_and_history_csv_is_written(fake_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    train_mnist.main(["--epochs", "1", "--batch-size", "6", "--out", str(out), "--quiet",
                      "--no-plots"])
    text = capsys.readouterr().out
    assert "after 1 epoch," in text and "1 epochs" not in text
    rows = (out / "history.csv").read_text().splitlines()
    assert rows[0] == "epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds" and len(rows) == 2


def test_char_rnn_announces_its_duration_and_logs_csv(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(logs, "ANNOUNCE_OVER", 0.0)
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question.\n" * 20)
    out = tmp_path / "c"
    char_rnn.main(["train", "--text", str(text), "--embed", "4", "--units", "8",
                   "--batch-size", "4", "--seq-len", "12", "--steps", "12", "--eval-every", "4",
                   "--sample-length", "0", "--out", str(out)])
    said = capsys.readouterr().out
    assert re.search(r"estimated time: about \d+ s for 12 steps \(.* s a step over steps "
                     r"2-11\), plus validation every 4 steps", said), said
    rows = (out / "history.csv").read_text().splitlines()
    assert rows[0] == "step,train_loss,val_loss,seconds" and len(rows) == 4


def test_console_behaviour_of_a_bad_text_path(tmp_path):
    """The real command line: one stderr line, exit status 1, no traceback."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "char_rnn.py"), "train",
                        "--text", "missing.txt", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "error: --text missing.txt: no such file, and not a known corpus (tinyshakespeare); "
        "give the path of a UTF-8 text file or a corpus name"], r.stderr


def test_tensorboard_flag_without_the_extra_is_a_one_line_error(fake_mnist, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setattr(logs, "tensorboard_available", lambda: False)
    msg = _error(train_mnist.main, ["--epochs", "1", "--out", str(tmp_path / "o"), "--quiet",
                                    "--tensorboard"])
    assert "pip install 'dlkit[tensorboard]'" in msg and "drop --tensorboard" in msg


def test_augment_flag_trains_cnn_on_augmented_batches(fake_mnist, tmp_path, capsys):
    import json
    args = ["--model", "cnn", "--epochs", "1", "--batch-size", "8", "--quiet", "--no-plots"]
    train_mnist.main([*args, "--out", str(tmp_path / "plain")])
    train_mnist.main([*args, "--augment", "--out", str(tmp_path / "aug")])
    assert "augment: crop 2 + flip" in capsys.readouterr().out
    plain, aug = (json.loads((tmp_path / d / "history.json").read_text())
                  for d in ("plain", "aug"))
    assert aug["augment"] is True and plain["augment"] is False
    run = json.loads((tmp_path / "aug" / "run.json").read_text())
    assert run["settings"]["augment"] is True        # a run setting: --resume restores it
    assert aug["params_sha256"] != plain["params_sha256"]


@pytest.mark.parametrize("model", ["mlp", "lstm"])
def test_augment_flag_refuses_non_image_models(fake_mnist, tmp_path, model):
    with pytest.raises(SystemExit, match=rf"^error: --augment needs an image model .*: cnn, "
                                         rf"cnn-deep or resnet, not {model}$"):
        train_mnist.main(["--model", model, "--augment", "--out", str(tmp_path / "o"),
                          "--quiet"])


def test_resnet_resumed_run_ends_with_the_uninterrupted_params_and_state(fake_mnist, tmp_path):
    """--model resnet (BatchNorm: running statistics as state) with --augment: a run cut
    after its first epoch (its last checkpoint removed) and resumed ends bit for bit where an
    uninterrupted one ends: params, optimizer state and the running statistics."""
    import shutil

    from dlkit import checkpoint, tree
    common = ["--model", "resnet", "--augment", "--batch-size", "6", "--epochs", "2", "--quiet",
              "--no-plots"]
    for name in ("cut", "full"):
        train_mnist.main([*common, "--out", str(tmp_path / name)])
    last = checkpoint.list_checkpoints(tmp_path / "cut" / "checkpoints")[-1]
    shutil.rmtree(last)                                  # as if killed before epoch 2 ended
    assert checkpoint.restore(tmp_path / "cut" / "checkpoints").step == 4
    train_mnist.main([*common, "--resume", str(tmp_path / "cut")])
    a, b = (checkpoint.restore(tmp_path / d / "checkpoints") for d in ("cut", "full"))
    assert a.step == b.step == 8
    assert sorted(tree.flatten(a.state))[:2] == ["block1/bn_a/mean", "block1/bn_a/var"]
    assert tree.equal(a.params, b.params) and tree.equal(a.opt_state, b.opt_state)
    assert tree.equal(a.state, b.state)
    means = [v for k, v in tree.flatten(a.state).items() if k.endswith("/mean")]
    assert len(means) == 6 and all(m.any() for m in means)     # trained, not the zeros of init


def test_val_fraction_zero_trains_on_every_image_without_validation(fake_mnist, tmp_path,
                                                                    capsys):
    import json
    out = tmp_path / "all"
    train_mnist.main(["--epochs", "1", "--batch-size", "6", "--val-fraction", "0", "--out",
                      str(out), "--quiet", "--no-plots"])
    assert "(24 train / 0 val / 6 test)" in capsys.readouterr().out
    hist = json.loads((out / "history.json").read_text())["history"]
    assert hist["val_loss"] == [None] and hist["val_accuracy"] == [None]
