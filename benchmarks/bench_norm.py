"""asv: layer normalisation over the last axis (kernels.cpu.norm): forward, backward, and the
LayerNorm layer's forward+backward through the API."""
import numpy as np

from dlkit import layers as L
from kernels.cpu import norm as K

from .common import pin_threads, rand


class LayerNorm:
    # (rows, D): a transformer block's activations (batch 64 x 64 tokens, width 256); a
    # small batch that runs serially; a wide row
    params = [[(4096, 256), (128, 64), (512, 4096)]]
    param_names = ["rows,D"]

    def setup(self, shape):
        pin_threads()
        rng = np.random.default_rng(0)
        rows, D = shape
        self.x, self.dy = rand(rng, shape), rand(rng, shape)
        self.gamma, self.beta = rand(rng, D), rand(rng, D)
        _, self.mean, self.rstd = K.layernorm_forward(self.x, self.gamma, self.beta, 1e-5)
        K.layernorm_backward(self.x, self.gamma, self.mean, self.rstd, self.dy)
        self.layer = L.LayerNorm()
        self.params = {"gamma": self.gamma, "beta": self.beta}
        self.time_layer_forward_backward(shape)

    def time_forward(self, shape):
        K.layernorm_forward(self.x, self.gamma, self.beta, 1e-5)

    def time_backward(self, shape):
        K.layernorm_backward(self.x, self.gamma, self.mean, self.rstd, self.dy)

    def time_layer_forward_backward(self, shape):
        _, cache = self.layer.forward(self.params, self.x)
        self.layer.backward(self.params, cache, self.dy)
