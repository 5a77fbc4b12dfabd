"""Command-line wrapper of :mod:`locater.cli.build_a2d_plus` (also installed as `locater-build-a2d-plus`); run with --help for its usage."""

import sys

from locater.cli.build_a2d_plus import main

if __name__ == "__main__":
    sys.exit(main())
