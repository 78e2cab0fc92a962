#!/usr/bin/env python
"""The `dlkit-train-imdb` command from a source checkout: `python scripts/train_imdb.py --help`.

Its code is dlkit/cli/train_imdb.py; this file re-exports it (main, parse_args, ...) so that
`import train_imdb` with scripts/ on sys.path works as before.
"""
from dlkit.cli.train_imdb import *  # noqa: F401,F403
from dlkit.cli.train_imdb import cli

if __name__ == "__main__":
    cli()
