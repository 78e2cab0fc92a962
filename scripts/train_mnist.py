#!/usr/bin/env python
"""The `dlkit-train-mnist` command from a source checkout: `python scripts/train_mnist.py --help`.

Its code is dlkit/cli/train_mnist.py; this file re-exports it (main, parse_args, ...) so that
`import train_mnist` with scripts/ on sys.path works as before.
"""
from dlkit.cli.train_mnist import *  # noqa: F401,F403
from dlkit.cli.train_mnist import cli

if __name__ == "__main__":
    cli()
