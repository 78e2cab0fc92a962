"""asv: dense forward/backward, activations, softmax cross-entropy (whole training steps and
the optimizers: bench_training.py)."""
import numpy as np

from dlkit import losses
from kernels.cpu import activations as A
from kernels.cpu import dense as D

from .common import pin_threads, rand


class Dense:
    params = [[(128, 784, 128), (128, 128, 10), (1024, 1024, 1024)]]
    param_names = ["N,I,O"]

    def setup(self, shape):
        pin_threads()
        n, i, o = shape
        rng = np.random.default_rng(0)
        self.x, self.W, self.b = rand(rng, (n, i)), rand(rng, (i, o)), rand(rng, o)
        self.y = D.dense_forward(self.x, self.W, self.b, D.ACT_RELU)
        self.dy = rand(rng, (n, o))
        D.dense_backward(self.x, self.W, self.y, self.dy, D.ACT_RELU, True)

    def time_forward_relu(self, shape):
        D.dense_forward(self.x, self.W, self.b, D.ACT_RELU)

    def time_backward_relu(self, shape):
        D.dense_backward(self.x, self.W, self.y, self.dy, D.ACT_RELU, True)

    def time_backward_params_only(self, shape):
        D.dense_backward(self.x, self.W, self.y, self.dy, D.ACT_RELU, False)


class Elementwise:
    params = [[16_384, 1_048_576]]
    param_names = ["n"]

    def setup(self, n):
        pin_threads()
        rng = np.random.default_rng(0)
        self.x, self.dy = rand(rng, n), rand(rng, n)
        self.y = A.activation_forward(self.x, A.TANH, 0.0)
        self.keep = (rng.random(n) > 0.2).astype(np.uint8)
        A.activation_backward(self.x, self.y, self.dy, A.TANH, 0.0)
        A.dropout_forward(self.x, self.keep, 1.25)

    def time_tanh_forward(self, n):
        A.activation_forward(self.x, A.TANH, 0.0)

    def time_tanh_backward(self, n):
        A.activation_backward(self.x, self.y, self.dy, A.TANH, 0.0)

    def time_dropout(self, n):
        A.dropout_forward(self.x, self.keep, 1.25)


class SoftmaxCrossEntropy:
    params = [[(128, 10), (4096, 1000)]]
    param_names = ["N,C"]

    def setup(self, shape):
        pin_threads()
        rng = np.random.default_rng(0)
        self.z = rand(rng, shape)
        self.y = rng.integers(0, shape[1], shape[0])
        losses.softmax_cross_entropy(self.z, self.y)

    def time_softmax_cross_entropy(self, shape):
        losses.softmax_cross_entropy(self.z, self.y)

