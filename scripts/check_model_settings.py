"""Exit 2, naming the differences, when a saved run's model settings differ from a config with overrides.

  python scripts/check_model_settings.py --config configs/synthetic/train.yaml --saved RUN/config.yaml [key=value ...]

Used by ``RESUME=1 bash scripts/memory_experiment.sh`` before it keeps a variant evaluated by an earlier invocation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from locater.config import ConfigError, load_config


def differences(expected: dict, saved: dict, prefix: str = "model") -> list[str]:
    """``key: saved value != expected value`` for every leaf where the two nested dicts differ."""
    lines = []
    for key in sorted(set(expected) | set(saved), key=str):
        a, b = expected.get(key, "<missing>"), saved.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            lines += differences(a, b, f"{prefix}.{key}")
        elif a != b:
            lines.append(f"{prefix}.{key}: saved {b!r}, expected {a!r}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the config the run was made from")
    parser.add_argument("--saved", type=Path, required=True, help="the run's resolved config.yaml")
    parser.add_argument("overrides", nargs="*", help="the overrides this invocation would give it")
    args = parser.parse_args(argv)
    try:
        expected = load_config(args.config, args.overrides).to_dict()["model"]
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.saved.is_file():
        print(f"error: saved config not found: {args.saved}", file=sys.stderr)
        return 2
    saved = (yaml.safe_load(args.saved.read_text()) or {}).get("model")
    if not isinstance(saved, dict):
        print(f"error: {args.saved} has no model section", file=sys.stderr)
        return 2
    found = differences(expected, saved)
    if found:
        print(f"error: {args.saved} was made with other model settings:", file=sys.stderr)
        for line in found:
            print(f"  {line}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
