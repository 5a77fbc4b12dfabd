"""Command-line wrapper of :mod:`locater.cli.cache_frames` (also installed as `locater-cache-frames`); run with --help for its usage."""

import sys

from locater.cli.cache_frames import main

if __name__ == "__main__":
    sys.exit(main())
