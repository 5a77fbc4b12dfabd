"""Command-line wrapper of :mod:`locater.cli.prepare_jhmdb` (also installed as `locater-prepare-jhmdb`); run with --help for its usage."""

import sys

from locater.cli.prepare_jhmdb import main

if __name__ == "__main__":
    sys.exit(main())
