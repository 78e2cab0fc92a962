#!/usr/bin/env python
"""The `dlkit-train-dbn` command from a source checkout: `python scripts/train_dbn.py --help`.

Its code is dlkit/cli/train_dbn.py; this file re-exports it (main, parse_args, ...) so that
`import train_dbn` with scripts/ on sys.path works as before.
"""
from dlkit.cli.train_dbn import *  # noqa: F401,F403
from dlkit.cli.train_dbn import cli

if __name__ == "__main__":
    cli()
