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


def standardized(xb):
    """uint8 images (N, 28, 28) -> float32 with Fashion-MNIST's pixel mean 0 and std 1."""
    return (xb.astype(np.float32) * np.float32(1 / 255) - np.float32(0.2860)) \
        * np.float32(1 / 0.3530)


def lstm():
    """Row-by-row LSTM: each 28x28 image as 28 steps of 28 pixels, LSTM 128, Dense 10.
    Inputs standardized (87.2% instead of 85.8% test accuracy after 5 epochs)."""
    model = nn.serial(("lstm", L.LSTM(128)), ("fc", L.Dense(10)))
    return model, standardized, (28, 28)


def images(xb):
    """uint8 images (N, 28, 28) -> float32 NCHW (N, 1, 28, 28) in [0, 1]."""
    return scaled(xb)[:, None]


def cnn():
    """The classic small Keras CNN: Conv2D 32 3x3 relu, MaxPool 2x2, Flatten, Dense 128 relu,
    Dense 10, on (N, 1, 28, 28) images."""
    model = nn.serial(("conv1", L.Conv2D(32, 3, activation="relu")), ("pool1", L.MaxPool2D(2)),
                      ("flatten", L.Flatten()), ("fc1", L.Dense(128, activation="relu")),
                      ("fc2", L.Dense(10)))
    return model, images, (1, 28, 28)


def cnn_deep():
    """Two conv blocks: Conv2D 32 3x3 same relu, MaxPool 2, Conv2D 64 3x3 same relu, MaxPool 2,
    Flatten, Dense 128 relu, Dropout 0.3, Dense 10, on (N, 1, 28, 28) images."""
    model = nn.serial(("conv1", L.Conv2D(32, 3, padding="same", activation="relu")),
                      ("pool1", L.MaxPool2D(2)),
                      ("conv2", L.Conv2D(64, 3, padding="same", activation="relu")),
                      ("pool2", L.MaxPool2D(2)),
                      ("flatten", L.Flatten()), ("fc1", L.Dense(128, activation="relu")),
                      ("drop1", L.Dropout(0.3)), ("fc2", L.Dense(10)))
    return model, images, (1, 28, 28)


MODELS = {"mlp": mlp, "lstm": lstm, "cnn": cnn, "cnn-deep": cnn_deep}
