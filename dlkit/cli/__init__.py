"""The example programs, installed as console commands (``pip install dlkit`` puts them on PATH):

    dlkit-train-mnist   dlkit.cli.train_mnist   an MLP/CNN/LSTM from dlkit.zoo on (Fashion-)MNIST
    dlkit-train-imdb    dlkit.cli.train_imdb    an LSTM sentiment classifier on IMDb reviews
    dlkit-char-rnn      dlkit.cli.char_rnn      a character-level LSTM language model
    dlkit-train-dbn     dlkit.cli.train_dbn     a deep belief net: RBM pretraining + fine-tuning

``python scripts/<name>.py`` in a source checkout runs the same program.  Each module's
``main(argv)`` runs it in-process (tests and notebooks), ``cli()`` is the console entry point.
"""
