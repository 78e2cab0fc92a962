"""Layer constructors, one module per family, all re-exported here (``from dlkit import layers
as L``).  See ``dlkit.layers.base`` for the contract every layer follows."""
from .base import Layer  # noqa: F401
from .core import (Dense, Dropout, Flatten, Gelu, LeakyRelu, LogSoftmax, Relu,  # noqa: F401
                   Sigmoid, Softmax, Tanh)
from .conv import AvgPool2D, Conv2D, GlobalAvgPool2D, MaxPool2D  # noqa: F401
from .recurrent import (GRU, LSTM, Bidirectional, Padded, SimpleRNN,  # noqa: F401
                        TimeDistributed)
from .embedding import Embedding, PositionEmbedding, SpatialDropout1D  # noqa: F401
from .norm import LayerNorm  # noqa: F401
from .batchnorm import BatchNorm  # noqa: F401
from .attention import MultiHeadAttention, TransformerBlock  # noqa: F401
