"""Command-line wrapper of :mod:`locater.cli.run_recipe` (also installed as `locater-recipe`); run with --help for its usage."""

import sys

from locater.cli.run_recipe import main

if __name__ == "__main__":
    sys.exit(main())
