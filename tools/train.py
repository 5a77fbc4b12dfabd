"""Command-line wrapper of :mod:`locater.cli.train` (also installed as `locater-train`); run with --help for its usage."""

import sys

from locater.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
