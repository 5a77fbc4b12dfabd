"""Command-line wrapper of :mod:`locater.cli.ytvos_local_val` (also installed as `locater-ytvos-local-val`); run with --help for its usage."""

import sys

from locater.cli.ytvos_local_val import main

if __name__ == "__main__":
    sys.exit(main())
