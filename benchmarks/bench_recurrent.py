"""asv: recurrent kernels (SimpleRNN, LSTM, GRU) forward and backward at the issue's shapes,
the embedding and channel dropout, a whole IMDb training step, and the recurrent kernels'
compile time (a fresh process with an empty Numba cache)."""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kernels.cpu import embedding as E
from kernels.cpu import recurrent as R

from .common import pin_threads, rand

SHAPES = [(28, 128, 28, 128), (200, 64, 128, 100)]
ROOT = Path(__file__).resolve().parents[1]


class _Cell:
    """Shared set-up: float32 data at shape (T, B, I, H), the cache of one forward."""
    params = [SHAPES]
    param_names = ["T,B,I,H"]
    gates = 1

    def setup(self, shape):
        pin_threads()
        T, B, I, H = shape
        rng = np.random.default_rng(0)
        G = self.gates * H
        self.x = rand(rng, (B, T, I))
        self.W, self.U = rand(rng, (I, G)) * 0.1, rand(rng, (H, G)) * 0.1
        self.b, self.bh = np.zeros(G, np.float32), np.zeros(G, np.float32)
        self.h0 = np.zeros((B, H), np.float32)
        self.t0, self.t1 = np.zeros(B, np.int64), np.full(B, T, np.int64)
        self.dy, self.dh = rand(rng, (B, T, H)), np.zeros((B, H), np.float32)
        self.out = self.forward()
        self.backward()

    def time_forward(self, shape):
        self.forward()

    def time_backward(self, shape):
        self.backward()

    def time_forward_backward(self, shape):
        self.out = self.forward()
        self.backward()


class SimpleRNN(_Cell):
    gates = 1

    def forward(self):
        return R.rnn_forward(self.x, self.W, self.U, self.b, self.h0, self.t0, self.t1, False,
                             R.ACT_TANH)

    def backward(self):
        return R.rnn_backward(self.W, self.U, self.t0, self.t1, False, R.ACT_TANH,
                              *self.out[2:], self.dy, self.dh, True)


class LSTM(_Cell):
    gates = 4

    def forward(self):
        return R.lstm_forward(self.x, self.W, self.U, self.b, self.h0, self.h0, self.t0,
                              self.t1, False)

    def backward(self):
        return R.lstm_backward(self.W, self.U, self.t0, self.t1, False, *self.out[3:], self.dy,
                               self.dh, self.dh, True)


class GRU(_Cell):
    gates = 3

    def forward(self):
        return R.gru_forward(self.x, self.W, self.U, self.b, self.bh, self.h0, self.t0, self.t1,
                             False)

    def backward(self):
        return R.gru_backward(self.W, self.U, self.t0, self.t1, False, *self.out[2:], self.dy,
                              self.dh, True)


class Embedding:
    """IMDb sizes: 64 x 200 ids into a 10000 x 128 table; SpatialDropout1D on the result."""

    def setup(self):
        pin_threads()
        rng = np.random.default_rng(0)
        self.ids = rng.integers(0, 10000, 64 * 200)
        self.E = rand(rng, (10000, 128))
        self.dy = rand(rng, (64 * 200, 128))
        self.x3 = self.dy.reshape(64, 200, 128)
        self.keep = (rng.random((64, 128)) > 0.4).astype(np.uint8)
        self.time_forward()
        self.time_backward()
        self.time_spatial_dropout()

    def time_forward(self):
        E.embedding_forward(self.ids, self.E)

    def time_backward(self):
        E.embedding_backward(self.ids, self.dy, 10000, -1)

    def time_spatial_dropout(self):
        E.spatial_dropout_forward(self.x3, self.keep, 1 / 0.6)


class IMDbStep:
    """One training step of scripts/train_imdb.py's model on a random batch of 64 x 200 ids
    (embedding, spatial dropout, LSTM 100 over ragged lengths, dense, BCE, backward, clipping,
    Adam)."""

    def setup(self):
        pin_threads()
        from dlkit import losses, nn, optim, random, runs
        from dlkit.cli import train_imdb
        args = runs.defaults(train_imdb.parse_args([]), train_imdb.SETTINGS)
        self.model = train_imdb.build_model(args)
        self.prepare = train_imdb.make_prepare(True)
        _, self.params = self.model.init(random.key(0), (200,))
        self.opt = optim.adam(1e-3)
        self.state = self.opt.init(self.params)
        rng = np.random.default_rng(0)
        lengths = rng.integers(20, 201, 64)
        self.xb = rng.integers(2, 10000, (64, 200))
        self.xb[np.arange(200)[None, :] < (200 - lengths)[:, None]] = 0
        self.yb = rng.integers(0, 2, 64)
        self.f = nn.value_and_grad(self.model, losses.sigmoid_binary_cross_entropy)
        self.key = random.key(1)
        self.time_train_step()

    def time_train_step(self):
        from dlkit import clip, optim
        _, _, g = self.f(self.params, self.prepare(self.xb), self.yb, key=self.key)
        u, _ = self.opt.update(clip.clip_by_global_norm(g, 1.0), self.state, self.params)
        optim.apply_updates(self.params, u)


_COMPILE_SCRIPT = """
import numpy as np
from dlkit import layers as L, random
for layer in (L.SimpleRNN(4, return_sequences=True), L.LSTM(4, return_sequences=True),
              L.GRU(4, return_sequences=True)):
    _, p = layer.init(random.key(0), (3, 2))
    for B in (1, 40):                         # the serial and the parallel build
        y, c = layer.forward(p, np.ones((B, 3, 2), np.float32))
        layer.backward(p, c, np.ones_like(y))
"""


class Compile:
    """Seconds for a fresh process to compile (empty cache) or load (filled cache) the float32
    RNN/LSTM/GRU kernels, both builds, forward and backward."""
    timeout = 600
    number = 1
    repeat = 1

    def _run(self, cache):
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        return time.perf_counter() - t

    def setup(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.warm = os.path.join(self.tmp.name, "warm")
        self._run(self.warm)

    def teardown(self):
        self.tmp.cleanup()

    def track_recurrent_compile_cold_cache(self):
        return self._run(os.path.join(self.tmp.name, "cold"))

    def track_recurrent_compile_warm_cache(self):
        return self._run(self.warm)

    track_recurrent_compile_cold_cache.unit = "seconds"
    track_recurrent_compile_warm_cache.unit = "seconds"
