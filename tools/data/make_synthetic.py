"""Command-line wrapper of :mod:`locater.cli.make_synthetic` (also installed as `locater-make-synthetic`); run with --help for its usage."""

import sys

from locater.cli.make_synthetic import main

if __name__ == "__main__":
    sys.exit(main())
