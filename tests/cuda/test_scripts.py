"""The training scripts with --device cuda on tiny synthetic data, under the simulator: each
trains on device arrays through its whole code path (loading, training, checkpoints,
evaluation, history.json) and, where the run is short enough to repeat on the CPU, ends with
the CPU run's losses and params."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dlkit import device

OK, WHY = device.available()
if not OK:
    pytest.skip(WHY, allow_module_level=True)

from dlkit import checkpoint, data, nn, tree, zoo  # noqa: E402
from dlkit import layers as L  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import char_rnn  # noqa: E402
import train_dbn  # noqa: E402
import train_imdb  # noqa: E402
import train_mnist  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from test_sequence_scripts import imdb_dir  # noqa: E402,F401  (the fixture)


def _close_trees(a, b, rtol=1e-5, atol=0.0):
    fa, fb = tree.flatten(a), tree.flatten(b)
    assert fa.keys() == fb.keys()
    for k in fb:
        assert fa[k].dtype == fb[k].dtype and fa[k].shape == fb[k].shape, k
        scale = max(float(np.max(np.abs(fb[k]))), 1e-30) if fb[k].size else 1.0
        np.testing.assert_allclose(fa[k], fb[k], rtol=rtol, atol=max(atol, rtol * scale),
                                   err_msg=k)


def _tiny_cnn(dataset="fashion-mnist"):
    model = nn.serial(("conv1", L.Conv2D(2, 3, stride=3, activation="relu")),
                      ("pool1", L.MaxPool2D(3)), ("flatten", L.Flatten()),
                      ("fc", L.Dense(10)))
    return model, zoo.images, (1, 28, 28)


def test_train_mnist_cnn(tmp_path, monkeypatch):
    """train_mnist.py --device cuda --model cnn (a tiny CNN: the simulator is slow) on 12
    synthetic images: the same history as the CPU run."""
    rng = np.random.default_rng(0)
    fake = ((rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), rng.integers(0, 10, 12)),
            (rng.integers(0, 256, (4, 28, 28), dtype=np.uint8), rng.integers(0, 10, 4)))
    monkeypatch.setattr(data, "load_mnist", lambda *a, **k: fake)
    monkeypatch.setitem(zoo.MODELS, "cnn", _tiny_cnn)
    runs = {}
    for dev in ("cpu", "cuda"):
        out = tmp_path / dev
        train_mnist.main(["--device", dev, "--model", "cnn", "--epochs", "1", "--batch-size",
                          "6", "--out", str(out), "--no-plots", "--quiet"])
        runs[dev] = json.loads((out / "history.json").read_text())
    assert runs["cuda"]["device"] == "cuda"
    for k in ("loss", "accuracy", "val_loss"):
        np.testing.assert_allclose(runs["cuda"]["history"][k], runs["cpu"]["history"][k],
                                   rtol=1e-5)
    assert runs["cuda"]["test_accuracy"] == runs["cpu"]["test_accuracy"]


def _tiny_resnet(dataset="fashion-mnist"):
    """The zoo resnet's pattern (conv + BatchNorm/ReLU, a residual block ending in BatchNorm),
    tiny: the simulator is slow."""
    model = nn.serial(("stem", L.Conv2D(2, 3, stride=3, use_bias=False)),
                      ("stem_bn", L.BatchNorm(activation="relu")),
                      ("block1", nn.residual(("conv_a", L.Conv2D(2, 3, padding="same",
                                                                 use_bias=False)),
                                             ("bn_a", L.BatchNorm()))),
                      ("pool1", L.MaxPool2D(3)), ("flatten", L.Flatten()),
                      ("fc", L.Dense(10)))
    return model, zoo.images, (1, 28, 28)


def test_train_mnist_resnet(tmp_path, monkeypatch):
    """train_mnist.py --device cuda --model resnet --augment (a tiny resnet) on 12 synthetic
    images: the history and the BatchNorm running statistics of the CPU run."""
    rng = np.random.default_rng(0)
    fake = ((rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), rng.integers(0, 10, 12)),
            (rng.integers(0, 256, (4, 28, 28), dtype=np.uint8), rng.integers(0, 10, 4)))
    monkeypatch.setattr(data, "load_mnist", lambda *a, **k: fake)
    monkeypatch.setitem(zoo.MODELS, "resnet", _tiny_resnet)
    runs, states = {}, {}
    for dev in ("cpu", "cuda"):
        out = tmp_path / dev
        train_mnist.main(["--device", dev, "--model", "resnet", "--augment", "--epochs", "1",
                          "--batch-size", "6", "--out", str(out), "--no-plots", "--quiet"])
        runs[dev] = json.loads((out / "history.json").read_text())
        states[dev] = checkpoint.restore(out / "checkpoints").state
    assert runs["cuda"]["device"] == "cuda"
    for k in ("loss", "accuracy", "val_loss"):
        np.testing.assert_allclose(runs["cuda"]["history"][k], runs["cpu"]["history"][k],
                                   rtol=1e-5)
    assert runs["cuda"]["test_accuracy"] == runs["cpu"]["test_accuracy"]
    assert sorted(tree.flatten(states["cpu"])) == ["block1/bn_a/mean", "block1/bn_a/var",
                                                   "stem_bn/mean", "stem_bn/var"]
    _close_trees(states["cuda"], states["cpu"], rtol=1e-5)


def test_train_imdb(imdb_dir, tmp_path, capsys):  # noqa: F811
    """Embedding (device ids), SpatialDropout1D, LSTM over a ragged batch, clipping, BCE with
    integer labels: the CPU run's losses and params."""
    common = ["--data-dir", str(imdb_dir), "--maxlen", "5", "--vocab-size", "30",
              "--embed-dim", "4", "--units", "3", "--batch-size", "8", "--lr", "0.02",
              "--dropout", "0.2", "--clip", "0.05", "--train-subset", "16",
              "--test-subset", "8", "--epochs", "1", "--quiet", "a wonderful story"]
    params = {}
    for dev in ("cpu", "cuda"):
        out = tmp_path / dev
        train_imdb.main(common + ["--device", dev, "--out", str(out)])
        params[dev] = checkpoint.restore(out / "checkpoints").params
        assert "sentiment predictions:" in capsys.readouterr().out
    _close_trees(params["cuda"], params["cpu"])


def test_char_rnn(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question.\n" * 10)
    small = ["--text", str(text), "--embed", "3", "--units", "4", "--batch-size", "2",
             "--seq-len", "4", "--steps", "2", "--eval-every", "2", "--checkpoint-every", "2",
             "--sample-length", "0", "--clip", "0.1"]
    params = {}
    for dev in ("cpu", "cuda"):
        char_rnn.main(["train", *small, "--device", dev, "--out", str(tmp_path / dev)])
        params[dev] = checkpoint.restore(tmp_path / dev / "checkpoints").params
    _close_trees(params["cuda"], params["cpu"])


def test_train_dbn(tmp_path, monkeypatch):
    """train_dbn.py --device cuda on 4x4 synthetic images (one 16-5 RBM: the simulator is
    slow; tests/cuda/test_rbm_api.py pretrains two layers): pretraining, the probe,
    fine-tuning and the samples on the device end with the CPU run's histories, accuracies and
    pretrained RBM."""
    rng = np.random.default_rng(1)
    fake = ((rng.integers(0, 256, (12, 4, 4), dtype=np.uint8), rng.integers(0, 10, 12)),
            (rng.integers(0, 256, (4, 4, 4), dtype=np.uint8), rng.integers(0, 10, 4)))
    monkeypatch.setattr(data, "load_mnist", lambda *a, **k: fake)
    runs, stacks = {}, {}
    for dev in ("cpu", "cuda"):
        out = tmp_path / dev
        train_dbn.main(["--device", dev, "--sizes", "16", "5", "--pretrain-epochs", "1",
                        "--batch-size", "6", "--finetune-epochs", "1",
                        "--finetune-batch-size", "6", "--probe", "--probe-epochs", "1",
                        "--gibbs-steps", "2", "--val-fraction", "0", "--out", str(out),
                        "--quiet"])
        runs[dev] = json.loads((out / "history.json").read_text())
        stacks[dev] = checkpoint.restore(out / "pretrain").params
        assert (out / "samples.png").exists() and (out / "filters.png").exists()
    # the hidden bias's step is a small difference of probabilities (~1e-4 after one step
    # from std 0.01 weights): float32 rounding of its terms, ~lr * 1e-7, sets the tolerance
    _close_trees(stacks["cuda"], stacks["cpu"], atol=1e-7)
    for h, w in zip(runs["cuda"]["pretrain_histories"], runs["cpu"]["pretrain_histories"]):
        for k in ("recon_error", "monitor_recon_error", "monitor_pseudo_likelihood"):
            np.testing.assert_allclose(h[k], w[k], rtol=1e-5, err_msg=k)
    np.testing.assert_allclose(runs["cuda"]["finetune_history"]["loss"],
                               runs["cpu"]["finetune_history"]["loss"], rtol=1e-5)
    for k in ("test_accuracy", "probe_test_accuracy"):
        assert runs["cuda"][k] == runs["cpu"][k], k


def test_clear_error_without_cuda(monkeypatch, tmp_path):
    """--device cuda where CUDA cannot run: the install message, before any work."""
    def no_cuda():
        raise RuntimeError("CUDA was asked for but no CUDA GPU or driver was found; install "
                           "the CUDA extra ...")
    monkeypatch.setattr(device, "cuda", no_cuda)
    with pytest.raises(SystemExit, match="install the CUDA extra"):
        train_imdb.main(["--device", "cuda", "--data-dir", str(tmp_path), "--quiet"])
