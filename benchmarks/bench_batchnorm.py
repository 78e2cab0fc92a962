"""asv: batch normalisation (kernels.cpu.batchnorm): training forward, backward, eval forward,
and the BatchNorm layer's training forward+backward through the API (plain and ReLU-fused)."""
import numpy as np

from dlkit import random
from dlkit.layers.batchnorm import BatchNorm
from kernels.cpu import batchnorm as K

from .common import pin_threads, rand


class BatchNorm2d:
    # (N, C, H, W): the first conv block of a small CNN; a deeper, smaller block; (N, C)
    # after a dense layer (S = 1)
    params = [[(128, 32, 28, 28), (128, 64, 7, 7), (128, 512)]]
    param_names = ["shape"]

    def setup(self, shape):
        pin_threads()
        rng = np.random.default_rng(0)
        N, C = shape[:2]
        S = int(np.prod(shape[2:]))
        self.x, self.dy = rand(rng, shape), rand(rng, shape)
        self.x3, self.dy3 = self.x.reshape(N, C, S), self.dy.reshape(N, C, S)
        self.gamma, self.beta = rand(rng, C), rand(rng, C)
        self.rm, self.rv = np.zeros(C, np.float32), np.ones(C, np.float32)
        self.y, self.mean, self.invstd = K.batchnorm_forward_train(self.x3, self.gamma,
                                                                   self.beta, 1e-5, 0)
        self.layer, self.relu = BatchNorm(), BatchNorm(activation="relu")
        _, self.params, self.state = self.layer.init(random.key(0), shape[1:])
        self.time_backward(shape)
        self.time_forward_eval(shape)
        self.time_layer_forward_backward(shape)
        self.time_layer_relu_forward_backward(shape)

    def time_forward_train(self, shape):
        K.batchnorm_forward_train(self.x3, self.gamma, self.beta, 1e-5, 0)

    def time_backward(self, shape):
        K.batchnorm_backward(self.x3, self.y, self.gamma, self.mean, self.invstd, self.dy3, 0)

    def time_forward_eval(self, shape):
        K.batchnorm_forward_eval(self.x3, self.gamma, self.beta, self.rm, self.rv, 1e-5, 0)

    def time_layer_forward_backward(self, shape):
        _, cache, _ = self.layer.forward(self.params, self.x, state=self.state, train=True)
        self.layer.backward(self.params, cache, self.dy)

    def time_layer_relu_forward_backward(self, shape):
        _, cache, _ = self.relu.forward(self.params, self.x, state=self.state, train=True)
        self.relu.backward(self.params, cache, self.dy)
