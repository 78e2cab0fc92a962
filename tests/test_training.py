"""Real training: accuracy on Fashion-MNIST, bit-identical runs in separate processes (and
across thread counts), kill -9 and resume, NaN detection.  Uses $DLKIT_DATA."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dlkit import checkpoint as C
from dlkit import layers as L
from dlkit import nn, optim, random, train, tree
from dlkit.layers.base import Layer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_mnist.py"


def run_script(out, *extra, env=None, wait=True):
    cmd = [sys.executable, str(SCRIPT), "--dataset", "fashion-mnist", "--out", str(out),
           "--quiet", "--no-plots", *extra]
    e = dict(os.environ, **(env or {}))
    if not wait:
        return subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    r = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((Path(out) / "history.json").read_text()), r.stdout


def _linear_baseline():
    """Test accuracy of softmax regression (Flatten, Dense 10) trained with the script's MLP
    recipe: the same split, inputs, seed, Adam 2e-3 with cosine decay, batch 128, 2 epochs."""
    from dlkit import data, zoo
    (xtr, ytr), (xte, yte) = data.load_mnist("fashion-mnist")
    key = random.key(0)
    (xtr, ytr), _ = data.train_val_split(xtr, ytr, 0.1, random.fold_in(key, 0))
    _, prepare, in_shape = zoo.MODELS["mlp"]("fashion-mnist")
    model = nn.serial(("flatten", L.Flatten()), ("fc", L.Dense(10)))
    _, params = model.init(random.fold_in(key, 1), in_shape)
    opt = optim.adam(optim.cosine(2e-3, 2 * data.n_batches(len(xtr), 128)))
    r = train.fit(model, params, opt, (xtr, ytr), key=random.fold_in(key, 2), epochs=2,
                  batch_size=128, prepare=prepare, progress=False, log=lambda m: None)
    return train.evaluate(model, r.params, xte, yte, prepare=prepare)[1]


@pytest.mark.slow
def test_mlp_accuracy_and_bit_identical_processes(data_dir, tmp_path):
    h1, out = run_script(tmp_path / "a", "--epochs", "2")
    h2, _ = run_script(tmp_path / "b", "--epochs", "2")
    h3, _ = run_script(tmp_path / "c", "--epochs", "2", env={"NUMBA_NUM_THREADS": "1"})
    # measured: linear 0.833, MLP 0.864; the hidden layer must beat the linear model clearly
    assert h1["test_accuracy"] >= _linear_baseline() + 0.015, out
    assert h1["params_sha256"] == h2["params_sha256"] == h3["params_sha256"]
    assert h1["history"]["loss"] == h2["history"]["loss"]
    assert "macro avg" in out and "Ankle boot" in out


@pytest.mark.slow
def test_kill_9_then_resume_matches_uninterrupted(data_dir, tmp_path):
    args = ("--epochs", "2", "--train-subset", "20000", "--checkpoint-every", "20")
    ref, _ = run_script(tmp_path / "ref", *args)
    out = tmp_path / "killed"
    p = run_script(out, *args, wait=False)
    deadline = time.time() + 300
    while not (out / "checkpoints" / "LATEST").exists():
        assert p.poll() is None and time.time() < deadline, "no checkpoint before exit"
        time.sleep(0.05)
    time.sleep(np.random.default_rng().uniform(0, 0.3))
    os.kill(p.pid, signal.SIGKILL)
    assert p.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = C.restore(out / "checkpoints").step
    resumed, stdout = run_script(out, *args, "--resume", str(out))
    assert "resumed from" in stdout
    assert resumed["params_sha256"] == ref["params_sha256"], f"killed at step {killed_at}"
    assert resumed["history"]["loss"] == ref["history"]["loss"]


def _small_problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 12)).astype(np.float32)
    Y = (X[:, :3].sum(1) > 0).astype(np.int64) + 2 * (X[:, 3] > 0)
    model = nn.serial(("fc1", L.Dense(16, activation="tanh")), ("drop", L.Dropout(0.1)),
                      ("fc2", L.Dense(4)))
    _, params = model.init(random.key(0), (12,))
    return model, params, X, Y


def test_resume_mid_epoch_in_process_is_bit_identical(tmp_path):
    model, params, X, Y = _small_problem()
    kw = dict(key=random.key(9), epochs=3, batch_size=32, progress=False, log=lambda m: None)
    ref = train.fit(model, params, optim.adam(1e-2), (X, Y), **kw)
    train.fit(model, params, optim.adam(1e-2), (X, Y), checkpoint_dir=tmp_path,
              checkpoint_every=4, max_steps=14, **kw)
    assert C.restore(tmp_path).step == 12
    res = train.fit(model, params, optim.adam(1e-2), (X, Y), checkpoint_dir=tmp_path,
                    checkpoint_every=4, resume=True, **kw)
    assert tree.equal(res.params, ref.params) and tree.equal(res.opt_state, ref.opt_state)
    assert {k: v for k, v in res.history.items() if k != "seconds"} == \
        {k: v for k, v in ref.history.items() if k != "seconds"}
    with pytest.raises(ValueError, match="pass the same --seed"):
        train.fit(model, params, optim.adam(1e-2), (X, Y), checkpoint_dir=tmp_path,
                  resume=True, **{**kw, "key": random.key(10)})


def _poison_grads(layer, at_call):
    """Wrap a layer so that its backward puts a NaN into grads['W'] on call number at_call."""
    calls = [0]

    def backward(params, cache, dy, *, need_dx=True):
        dx, g = layer.backward(params, cache, dy, need_dx=need_dx)
        if calls[0] == at_call:
            g["W"] = g["W"].copy()
            g["W"][0, 0] = np.nan
        calls[0] += 1
        return dx, g
    return Layer(layer.init, layer.forward, backward)


def test_nan_gradient_at_step_n(tmp_path):
    _, _, X, Y = _small_problem()
    model = nn.serial(("fc1", _poison_grads(L.Dense(16, activation="tanh"), 11)),
                      ("fc2", L.Dense(4)))
    _, params = model.init(random.key(0), (12,))
    with pytest.raises(FloatingPointError, match=r"gradient of 'fc1/W' at step 11 "
                                                 r"\(epoch 2, batch 1\)"):
        train.fit(model, params, optim.sgd(0.1), (X, Y), key=random.key(1), epochs=5,
                  batch_size=30, checkpoint_dir=tmp_path, checkpoint_every=1, progress=False,
                  log=lambda m: None)
    steps = [int(p.name.split("-")[1]) for p in C.list_checkpoints(tmp_path)]
    assert steps and max(steps) < 11 + 1 and 11 + 1 not in steps
    c = C.restore(tmp_path)
    assert c.step == 11 and all(np.isfinite(a).all() for a in tree.leaves(c.params))


def test_nan_loss_names_the_step():
    from dlkit.data import permutation
    from dlkit.random import fold_in
    model, params, X, Y = _small_problem()
    X = X.copy()
    X[100] = np.inf
    order = permutation(fold_in(random.key(1), train.EPOCH_SALT), len(X))   # epoch 1's order
    step = int(np.flatnonzero(order == 100)[0]) // 30
    with pytest.raises(FloatingPointError, match=rf"in the loss at step {step} "):
        train.fit(model, params, optim.sgd(0.1), (X, Y), key=random.key(1), epochs=1,
                  batch_size=30, progress=False, log=lambda m: None)


def test_fit_learns_and_early_stops():
    model, params, X, Y = _small_problem()
    logs = []
    res = train.fit(model, params, optim.adam(3e-2), (X[:200], Y[:200]), key=random.key(1),
                    epochs=40, batch_size=25, val=(X[200:], Y[200:]), early_stopping=2,
                    monitor="val_loss", progress=False, log=logs.append)
    h = res.history
    assert h["accuracy"][-1] > 0.9 and len(h["epoch"]) < 40
    assert any("early stopping" in m for m in logs)
    assert set(h) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    assert h["lr"] == [pytest.approx(3e-2)] * len(h["epoch"])


def test_missing_data_stops_with_the_places_searched(tmp_path, monkeypatch, capsys):
    import importlib.util

    from dlkit.data import mnist
    spec = importlib.util.spec_from_file_location("train_mnist", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setenv("DLKIT_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(mnist.SPECS, "mnist", {**mnist.SPECS["mnist"],
                                               "urls": ("http://127.0.0.1:9/",)})
    with pytest.raises(SystemExit) as e:
        script.main(["--dataset", "mnist", "--quiet", "--out", str(tmp_path / "out")])
    msg = str(e.value)
    assert "cannot find the data file mnist/train-images-idx3-ubyte.gz" in msg
    assert str(tmp_path / "empty" / "mnist") in msg and "DLKIT_DATA" in msg
    assert "http://127.0.0.1:9/train-images-idx3-ubyte.gz failed" in msg
