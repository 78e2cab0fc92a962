"""Ready-made models for the example scripts: ``MODELS[name]() -> (model, prepare, in_shape)``.

``model`` is a Layer (``nn.serial``); ``prepare(x_uint8)`` turns a batch of raw uint8 images
(N, 28, 28) into the model's float32 input, whose per-example shape is ``in_shape``.
"""
import numpy as np

from . import layers as L
from . import nn


def scaled(xb):
    """uint8 images (N, 28, 28) -> float32 in [0, 1], same shape."""
    return xb.astype(np.float32) * np.float32(1 / 255)


def mlp():
    """The Keras-tutorial MLP: Flatten, Dense 128 relu, Dropout 0.2, Dense 10."""
    model = nn.serial(("flatten", L.Flatten()), ("fc1", L.Dense(128, activation="relu")),
                      ("drop1", L.Dropout(0.2)), ("fc2", L.Dense(10)))
    return model, scaled, (28, 28)


def lstm():
    """Row-by-row LSTM: each 28x28 image as 28 steps of 28 pixels, LSTM 128, Dense 10."""
    model = nn.serial(("lstm", L.LSTM(128)), ("fc", L.Dense(10)))
    return model, scaled, (28, 28)


MODELS = {"mlp": mlp, "lstm": lstm}
