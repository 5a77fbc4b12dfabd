"""Command-line wrapper of :mod:`locater.cli.pretrain_vision` (also installed as `locater-pretrain-vision`); run with --help for its usage."""

import sys

from locater.cli.pretrain_vision import main

if __name__ == "__main__":
    sys.exit(main())
