"""asv: recurrent kernels (SimpleRNN, LSTM, GRU) forward and backward at the issue's shapes,
the embedding and channel dropout, and the recurrent kernels' compile time (a fresh process
with an empty Numba cache).  The IMDb LSTM's whole training step is in bench_training.py."""
import numpy as np

from kernels.cpu import embedding as E
from kernels.cpu import recurrent as R

from .common import ColdAndWarmStart, pin_threads, rand

SHAPES = [(28, 128, 28, 128), (200, 64, 128, 100)]


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


class Compile(ColdAndWarmStart):
    """Seconds for a fresh process to compile (empty cache) or load (filled cache) the float32
    RNN/LSTM/GRU kernels, both builds, forward and backward."""

    def script(self):
        return _COMPILE_SCRIPT

    def setup_cache(self):
        return self.first_runs()

    setup_cache.timeout = 1800
    track_cold_cache, track_warm_cache = ColdAndWarmStart.cold, ColdAndWarmStart.warm
