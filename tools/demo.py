"""Command-line wrapper of :mod:`locater.cli.demo` (also installed as `locater-demo`); run with --help for its usage."""

import sys

from locater.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
