"""``python -m dlkit info``: what dlkit chose for threads, BLAS and malloc in this process
(see ``dlkit.threads``), for bug reports and for checking an override took effect."""
import argparse

from . import threads


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m dlkit", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["info"], help="info: threads, BLAS, malloc, MPI")
    p.parse_args(argv)
    print(threads.info())


if __name__ == "__main__":
    main()
