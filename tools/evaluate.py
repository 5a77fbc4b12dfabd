"""Command-line wrapper of :mod:`locater.cli.evaluate` (also installed as `locater-evaluate`); run with --help for its usage."""

import sys

from locater.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
