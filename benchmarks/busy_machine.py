#!/usr/bin/env python
"""Training-step times on a busy machine: dlkit (and Keras on TensorFlow) under competing load.

    python benchmarks/busy_machine.py                          # every load, the four zoo steps
    python benchmarks/busy_machine.py --loads none spin2 --steps mlp lstm
    python benchmarks/busy_machine.py --env GOMP_SPINCOUNT=0   # try a knob (dlkit worker only)
    python benchmarks/busy_machine.py --pair                   # two CNN trainings vs one alone
    python benchmarks/busy_machine.py --loads none --steps resnet   # side by side, quiet

Each load is started by this script and stopped when its cells are done (every load process
also ends itself after ``--load-limit`` seconds, so nothing outlives a killed run):

    none         nothing else runs
    spin1/spin2  one / two Python busy loops
    torch        a PyTorch CNN training (the peer script's CNN step, 2 threads) in a loop
    torch+spin1  that training plus one busy loop
    dlkit        a second dlkit process training the CNN in a loop

Under each load every step (``mlp``, ``cnn``, ``lstm``: the zoo models' training step at batch
128; ``imdb``: the IMDb LSTM step at batch 64 x 200 tokens; on request also ``resnet`` and ``cnn-deep``, the zoo's
other image models) runs in a fresh process: warm-up
steps, then per-step times for ``--seconds`` seconds; that is repeated ``--repeats`` times, and
the table gives the median and the 90th percentile over all timed steps, and both as a multiple
of the quiet median.  Keras on TensorFlow (``pip install -e ".[keras]"``) runs the same models
in its own process under the same load when it is installed.  ``--pair`` trains the CNN for
``--pair-steps`` steps alone, then in two processes started together, and reports the slowest
of the two against the lone run.

The dlkit worker uses the threading settings ``import dlkit`` chooses (``python -m dlkit
info``); ``--env NAME=VALUE`` adds variables to its environment, for measuring the knobs.
Nothing here is a test: timings are what this machine did while the script ran.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:       # run as a script: make ``benchmarks.*`` importable
    sys.path.insert(0, str(ROOT))

LOADS = {"none": [], "spin1": ["spin"], "spin2": ["spin", "spin"], "torch": ["torch"],
         "torch+spin1": ["torch", "spin"], "dlkit": ["dlkit"]}
STEPS = ("mlp", "cnn", "lstm", "imdb")
EXTRA_STEPS = ("resnet", "cnn-deep")     # on request (--steps resnet): not in the default table


# ------------------------------------------------------------------------ the training steps

def keras_step(name):
    """The same step in Keras (TensorFlow backend): ``model.train_on_batch``."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    from keras import layers as K
    keras.utils.set_random_seed(0)
    if name == "imdb":
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 10000, (64, 200)), rng.integers(0, 2, 64).astype(np.float32)
        net = [K.Input((200,)), K.Embedding(10000, 128), K.SpatialDropout1D(0.4), K.LSTM(100),
               K.Dense(1)]
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
    else:
        from benchmarks.steps import zoo_batch
        xb, y = zoo_batch()
        x = xb.astype(np.float32) / 255
        body = {"mlp": [K.Flatten(), K.Dense(128, activation="relu"), K.Dropout(0.2)],
                "cnn": [K.Reshape((28, 28, 1)), K.Conv2D(32, 3, activation="relu"),
                        K.MaxPooling2D(2), K.Flatten(), K.Dense(128, activation="relu")],
                "lstm": [K.LSTM(128)], "resnet": _keras_resnet_body(K),
                "cnn-deep": [K.Reshape((28, 28, 1)),
                             K.Conv2D(32, 3, padding="same", activation="relu"),
                             K.MaxPooling2D(2), K.Conv2D(64, 3, padding="same", activation="relu"),
                             K.MaxPooling2D(2), K.Flatten(), K.Dense(128, activation="relu"),
                             K.Dropout(0.3)]}[name]
        net = [K.Input((28, 28))] + body + [K.Dense(10)]
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = keras.Sequential(net)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    return lambda: model.train_on_batch(x, y)


def _keras_resnet_body(K):
    """The zoo resnet in Keras's functional style, as a list of one layer (a keras.Model)
    taking (28, 28) images: channels-last, BatchNorm with PyTorch's momentum 0.1 (Keras
    0.9) and eps 1e-5."""
    import keras

    def conv_bn(x, filters, relu):
        x = K.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = K.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
        return K.ReLU()(x) if relu else x

    def block(x, filters):
        y = conv_bn(conv_bn(x, filters, True), filters, False)
        return K.ReLU()(K.Add()([x, y]))

    inp = K.Input((28, 28))
    x = conv_bn(K.Reshape((28, 28, 1))(inp), 32, True)
    x = K.MaxPooling2D(2)(block(x, 32))
    x = K.MaxPooling2D(2)(block(conv_bn(x, 64, True), 64))
    x = K.Dropout(0.3)(K.GlobalAveragePooling2D()(x))
    return [keras.Model(inp, x)]


def subject(framework, step, seconds, threads):
    """Worker: warm up, then time single steps for ``seconds``; print them as JSON."""
    if framework == "dlkit":
        from benchmarks.steps import zoo_step
        fn = zoo_step(step)
    else:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        fn = keras_step(step)
    for _ in range(3):
        fn()
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    print(json.dumps({"times": times}))


# ------------------------------------------------------------------------------- the loads

def load(kind, limit, steps=None):
    """Worker: a competing load that runs until killed, ``limit`` seconds or ``steps`` steps;
    prints "ready" once it is running at full speed and, with ``steps``, its time at the end."""
    end = time.time() + limit
    if kind == "spin":
        print("ready", flush=True)
        while time.time() < end:
            pass
        return
    if kind == "torch":
        import torch
        torch.set_num_threads(2)
        torch.set_num_interop_threads(1)
        from benchmarks.peer_conv import step_torch
        fn = step_torch("default")
    else:
        from benchmarks.steps import zoo_step
        fn = zoo_step("cnn")
    fn()
    print("ready", flush=True)
    t0, done = time.perf_counter(), 0
    while time.time() < end and (steps is None or done < steps):
        fn()
        done += 1
    print(json.dumps({"seconds": time.perf_counter() - t0, "steps": done}), flush=True)


def _me(*args, env=None, quiet=False):
    return subprocess.Popen([sys.executable, "-m", "benchmarks.busy_machine", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.PIPE if quiet else None)


def start_loads(kinds, limit, dlkit_env):
    """Start the load processes (a dlkit load gets the dlkit worker's environment)."""
    procs = [_me("--load", k, "--load-limit", str(limit),
                 env=dlkit_env if k == "dlkit" else None) for k in kinds]
    for p in procs:                 # wait until each load is warm (imports, JIT, first step)
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError("a load process failed to start")
    time.sleep(1.0)
    return procs


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def run_subject(framework, step, seconds, threads, extra_env):
    env = dict(os.environ, **extra_env) if framework == "dlkit" else dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = _me("--subject", framework, "--step", step, "--seconds", str(seconds),
            "--threads", str(threads), env=env, quiet=True)     # TensorFlow's start-up chatter
    out, err = p.communicate(timeout=600)
    if p.returncode:
        raise RuntimeError(f"{framework} {step} worker failed (exit {p.returncode}):\n"
                           f"{err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])["times"]


def have_keras():
    import importlib.util
    return all(importlib.util.find_spec(m) for m in ("keras", "tensorflow"))


def table(a, extra_env):
    frameworks = ["dlkit"] + (["keras"] if have_keras() and not a.no_keras else [])
    print(f"# per-step times, ms: median / p90 (x quiet median); {a.repeats} x {a.seconds} s "
          f"per cell, {a.threads} threads" + (f"; dlkit env {extra_env}" if extra_env else ""))
    quiet, rows = {}, []
    for load_name in a.loads:
        procs = start_loads(LOADS[load_name], a.load_limit, dict(os.environ, **extra_env))
        try:
            for fw in frameworks:
                for step in a.steps:
                    t = np.array(sum((run_subject(fw, step, a.seconds, a.threads, extra_env)
                                      for _ in range(a.repeats)), [])) * 1e3
                    med, p90 = np.median(t), np.percentile(t, 90)
                    q = quiet.setdefault((fw, step), med) if load_name == "none" \
                        else quiet.get((fw, step))
                    rel = f" ({med / q:.1f}x / {p90 / q:.1f}x)" if q else ""
                    rows.append(dict(load=load_name, framework=fw, step=step, median_ms=med,
                                     p90_ms=p90, n=len(t)))
                    print(f"{load_name:12s} {fw:6s} {step:5s} {med:9.2f} / {p90:9.2f}{rel}"
                          f"   n={len(t)}", flush=True)
        finally:
            stop(procs)
    return rows


def pair(a, extra_env):
    env = dict(os.environ, **extra_env)
    args = ("--load", "dlkit", "--load-limit", "3600", "--steps-only", str(a.pair_steps))

    def finish(procs):
        for p in procs:             # each prints "ready" after its warm-up, then its time
            p.stdout.readline()
        return [json.loads(p.communicate()[0].strip().splitlines()[-1])["seconds"]
                for p in procs]
    alone = finish([_me(*args, env=env)])[0]
    both = finish([_me(*args, env=env), _me(*args, env=env)])
    print(f"CNN training, {a.pair_steps} steps: alone {alone:.2f} s; two together "
          f"{both[0]:.2f} s and {both[1]:.2f} s: the slower {max(both) / alone:.2f}x alone")
    return {"alone_s": alone, "together_s": both}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loads", nargs="*", default=list(LOADS), choices=list(LOADS))
    p.add_argument("--steps", nargs="*", default=list(STEPS), choices=STEPS + EXTRA_STEPS)
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per repeat")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="Keras/TF threads")
    p.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE",
                   help="extra environment for the dlkit worker")
    p.add_argument("--no-keras", action="store_true")
    p.add_argument("--pair", action="store_true", help="two CNN trainings vs one alone")
    p.add_argument("--pair-steps", type=int, default=300)
    p.add_argument("--load-limit", type=float, default=900)
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--subject", choices=["dlkit", "keras"], help=argparse.SUPPRESS)
    p.add_argument("--step", choices=STEPS + EXTRA_STEPS, help=argparse.SUPPRESS)
    p.add_argument("--load", choices=["spin", "torch", "dlkit"], help=argparse.SUPPRESS)
    p.add_argument("--steps-only", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.subject:
        return subject(a.subject, a.step, a.seconds, a.threads)
    if a.load:
        return load(a.load, a.load_limit, a.steps_only)
    extra_env = dict(kv.split("=", 1) for kv in a.env)
    result = pair(a, extra_env) if a.pair else table(a, extra_env)
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
