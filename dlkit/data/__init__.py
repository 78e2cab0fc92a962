"""Data: real data sets found locally or downloaded with verification, and seeded batching.

Lookup order for every data set: ``data_dir`` / ``$DLKIT_DATA``, ``~/.cache/dlkit``,
``/usr/share/datasets``, then the published mirrors (see ``dlkit.data.store``).
"""
from .augment import crop_and_flip, random_crop, random_flip  # noqa: F401
from .batching import batches, n_batches, permutation, train_val_split  # noqa: F401
from .mnist import CLASS_NAMES, load_mnist, read_idx  # noqa: F401
from .store import (ChecksumError, DataNotFoundError, cache_dir, download, fetch,  # noqa: F401
                    search_roots, verify)
from .text import (CharCorpus, Vocabulary, load_char_corpus, load_imdb,  # noqa: F401
                   pad_sequences, random_windows, sequential_windows, tokenize)
