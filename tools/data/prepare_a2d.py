"""Command-line wrapper of :mod:`locater.cli.prepare_a2d` (also installed as `locater-prepare-a2d`); run with --help for its usage."""

import sys

from locater.cli.prepare_a2d import main

if __name__ == "__main__":
    sys.exit(main())
