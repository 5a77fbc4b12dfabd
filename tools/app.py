"""Command-line wrapper of :mod:`locater.cli.app` (also installed as `locater-app`); run with --help for its usage."""

import sys

from locater.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
