"""Command-line wrapper of :mod:`locater.cli.export` (also installed as `locater-export`); run with --help for its usage."""

import sys

from locater.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
