"""Command-line wrapper of :mod:`locater.cli.benchmark` (also installed as `locater-benchmark`); run with --help for its usage."""

import sys

from locater.cli.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
