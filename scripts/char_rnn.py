#!/usr/bin/env python
"""The `dlkit-char-rnn` command from a source checkout: `python scripts/char_rnn.py --help`.

Its code is dlkit/cli/char_rnn.py; this file re-exports it (main, parse_args, ...) so that
`import char_rnn` with scripts/ on sys.path works as before.
"""
from dlkit.cli.char_rnn import *  # noqa: F401,F403
from dlkit.cli.char_rnn import cli

if __name__ == "__main__":
    cli()
