"""asv: fused scaled-dot-product attention (kernels.cpu.attention): forward, backward, the
MultiHeadAttention layer's forward+backward through the API (the char transformer's training
step: bench_training.py)."""
import numpy as np

from dlkit import layers as L
from dlkit import random
from kernels.cpu import attention as K

from .common import pin_threads, rand


class Attention:
    # (B, H, T, D), causal: nanoGPT's CPU "baby GPT" (batch 12, 4 heads, context 64, head 32)
    # and a longer context (batch 8, 8 heads, T 512, head 64)
    params = [[(12, 4, 64, 32), (8, 8, 512, 64)]]
    param_names = ["B,H,T,D"]

    def setup(self, shape):
        pin_threads()
        rng = np.random.default_rng(0)
        self.q, self.k, self.v, self.dout = (rand(rng, shape) for _ in range(4))
        self.scale = 1.0 / np.sqrt(shape[3])
        self.out, self.lse = self.time_forward(shape)
        self.time_backward(shape)
        B, H, T, D = shape
        self.layer = L.MultiHeadAttention(H)
        _, self.params = self.layer.init(random.key(0), (T, H * D))
        self.x, self.dy = rand(rng, (B, T, H * D)), rand(rng, (B, T, H * D))
        self.time_layer_forward_backward(shape)

    def time_forward(self, shape):
        return K.attention_forward(self.q, self.k, self.v, True, self.scale, 0.0, 0)

    def time_backward(self, shape):
        K.attention_backward(self.q, self.k, self.v, self.out, self.lse, self.dout, True,
                             self.scale, 0.0, 0)

    def time_layer_forward_backward(self, shape):
        _, cache = self.layer.forward(self.params, self.x)
        self.layer.backward(self.params, cache, self.dy)

