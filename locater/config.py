"""The one config loader: YAML with ``_base_`` inheritance, dotted ``key=value`` overrides, validation.

Every valid key and its type come from the YAML files in ``locater/defaults/`` (one file per top-level
section group: ``model.yaml``, ``train.yaml``, ``eval.yaml`` ...): a config file only states what differs.
A key that the defaults do not know, or a value of the wrong type, is an error naming the key and the file.
Sections whose default is an empty mapping (``{}``) are free-form and not validated below that level.

Example::

    cfg = load_config("configs/synthetic/train.yaml", ["train.max_steps=30", "model.local_memory.size=0"])
    cfg.model.image_size        # attribute access
    save_config(cfg, "runs/x/config.yaml")
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from locater.errors import LocaterError
from locater.files import write_text_atomic

DEFAULTS_DIR = Path(__file__).parent / "defaults"
BASE_KEY = "_base_"


class ConfigError(LocaterError, ValueError):
    """A config file or override is invalid (unknown key, wrong type, bad syntax, missing base file)."""


class Config(dict):
    """A nested ``dict`` with attribute access (``cfg.model.image_size``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as error:
            raise AttributeError(f"config has no key {name!r}") from error

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __deepcopy__(self, memo: dict) -> Config:
        return Config.wrap(copy.deepcopy(self.to_dict(), memo))

    @staticmethod
    def wrap(value: Any) -> Any:
        """Recursively turn mappings into :class:`Config`."""
        if isinstance(value, Mapping):
            return Config({key: Config.wrap(item) for key, item in value.items()})
        if isinstance(value, list):
            return [Config.wrap(item) for item in value]
        return value

    def to_dict(self) -> dict:
        """Plain nested ``dict`` (for YAML dumps and checkpoints)."""

        def unwrap(value: Any) -> Any:
            if isinstance(value, Mapping):
                return {key: unwrap(item) for key, item in value.items()}
            if isinstance(value, list):
                return [unwrap(item) for item in value]
            return value

        return unwrap(self)

    def get_path(self, dotted: str) -> Any:
        """Value at a dotted path, e.g. ``cfg.get_path("model.local_memory.size")``."""
        node: Any = self
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise KeyError(dotted)
            node = node[part]
        return node


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with path.open() as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a config file must hold a mapping at the top level, got {type(data).__name__}"
        )
    return data


def merge_dicts(base: dict, update: Mapping) -> dict:
    """``base`` updated by ``update``, nested mappings merged key by key; neither argument is changed (values taken
    from ``update`` are deep copies, untouched values of ``base`` are shared)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_dicts(dict(merged[key]), value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _load_with_bases(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"config inheritance cycle: {cycle}")
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list):
        raise ConfigError(f"{path}: {BASE_KEY} must be a path or a list of paths")
    merged: dict = {}
    for base in bases:
        merged = merge_dicts(merged, _load_with_bases((path.parent / base), (*chain, path)))
    return merge_dicts(merged, data)


def load_defaults() -> Config:
    """The full schema with default values (every ``locater/defaults/*.yaml``; top-level keys may not repeat)."""
    merged: dict = {}
    owner: dict[str, Path] = {}
    for path in sorted(DEFAULTS_DIR.glob("*.yaml")):
        for key, value in _read_yaml(path).items():
            if key in merged:
                raise ConfigError(f"defaults key {key!r} is defined in both {owner[key]} and {path}")
            merged[key] = value
            owner[key] = path
    return Config.wrap(merged)


# The allowed values of every enumerated key: the one place they are checked (at load time, for files, mappings
# and overrides alike). Keys in UPPER_CASE_KEYS accept any case and are stored in upper case.
TESTING_TYPES = ("NORM", "MUL", "SPAT", "TEMP")
CHOICES: dict[str, tuple[str, ...]] = {
    "model.vision.pos_embed_init": ("random", "sincos"),
    "model.global_memory.write": ("gated", "window"),
    "model.local_memory.write": ("gated", "window"),
    "model.local_memory.mask_encoding": ("conv", "patch"),
    "model.decoder_activation": ("none", "relu"),
    "train.data.source": ("synthetic", "layout", "ytvos"),
    "train.schedule.kind": ("cosine", "step", "constant"),
    "train.amp": ("none", "bf16", "fp16"),
    "validation.mode": ("max", "min"),
    "eval.dataset": ("A2D", "JHMDB", "SYN", "YTVOS", "DAVIS17"),
    "eval.ytvos_split": ("valid", "local_val"),
    "eval.davis_split": ("val", "train"),
    "eval.testing_type": (*TESTING_TYPES, "ALL"),
}
UPPER_CASE_KEYS = frozenset({"eval.dataset", "eval.testing_type"})
# Switches that also take "auto" (decided by the machine at run time: bf16 autocast where the device has bf16 units).
AUTO_SWITCHES = frozenset({"eval.amp"})


def _alternatives(choices: tuple[str, ...]) -> str:
    """``("a", "b", "c")`` -> ``"a, b or c"``."""
    return " or ".join([", ".join(choices[:-1]), choices[-1]] if len(choices) > 1 else list(choices))


def _check_choice(key: str, value: str, source: str) -> str:
    """``value`` if :data:`CHOICES` allows it for ``key`` (upper-cased for :data:`UPPER_CASE_KEYS`)."""
    choices = CHOICES[key]
    normalised = value.upper() if key in UPPER_CASE_KEYS else value
    if normalised in choices:
        return normalised
    close = difflib.get_close_matches(normalised, choices, n=1, cutoff=0.3)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"{source}: {key} must be {_alternatives(choices)}, got {value!r}{hint}")


_FLOAT_LITERAL = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_value(key: str, default: Any, value: Any, source: str) -> Any:
    if default is None or value is None and default is None:
        return value
    if value is None:
        raise ConfigError(f"{source}: {key} may not be null (expected {_type_name(default)})")
    if isinstance(default, bool):
        if key in AUTO_SWITCHES and value == "auto":
            return value
        if not isinstance(value, bool):
            allowed = "true, false or auto" if key in AUTO_SWITCHES else "true or false"
            raise ConfigError(f"{source}: {key} must be {allowed}, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key} must be an integer, got {value!r} ({_type_name(value)})")
        return value
    if isinstance(default, float):
        if isinstance(value, str) and _FLOAT_LITERAL.match(value.strip()):
            value = float(value)  # YAML 1.1 reads "3e-3" (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key} must be a number, got {value!r} ({_type_name(value)})")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key} must be a string, got {value!r} ({_type_name(value)})")
        return _check_choice(key, value, source) if key in CHOICES else value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r} ({_type_name(value)})")
        return value
    return value


def _validate(
    defaults: Mapping, data: Mapping, source: str, prefix: str = "", base: Mapping | None = None
) -> dict:
    """Check ``data`` against the schema ``defaults`` and merge it onto ``base`` (default: the defaults)."""
    result = copy.deepcopy(dict(defaults if base is None else base))
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            close = difflib.get_close_matches(str(key), [str(k) for k in defaults], n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(f"{source}: unknown config key {dotted}{hint}")
        default = defaults[key]
        if isinstance(default, Mapping):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: {dotted} must be a mapping, got {value!r}")
            below = result.get(key, default)
            if not default:  # free-form section
                result[key] = merge_dicts(dict(below), value)
            else:
                result[key] = _validate(default, value, source, dotted + ".", below)
        else:
            result[key] = _check_value(dotted, default, value, source)
    return result


def parse_overrides(overrides: Iterable[str]) -> dict:
    """Turn ``["a.b=1", "c=[1, 2]"]`` into a nested mapping; values are parsed as YAML."""
    nested: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {error}") from error
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override")
        node[parts[-1]] = value
    return nested


def load_config(
    source: str | Path | Mapping | None = None, overrides: Iterable[str] = (), validate: bool = True
) -> Config:
    """Load a config: defaults <- file (with its ``_base_`` chain) or mapping <- ``key=value`` overrides.

    Args:
        source: a YAML path, a mapping, a :class:`Config`, or ``None`` for the defaults alone.
        overrides: dotted ``key=value`` strings, values parsed as YAML.
        validate: check keys and types against the defaults (always on in the tools).

    Returns:
        The resolved :class:`Config`.
    """
    if source is None:
        data: dict = {}
        name = "<defaults>"
    elif isinstance(source, Mapping):
        data = Config.wrap(source).to_dict() if isinstance(source, Config) else copy.deepcopy(dict(source))
        data.pop(BASE_KEY, None)
        name = "<mapping>"
    else:
        data = _load_with_bases(Path(source))
        name = str(source)
    defaults = load_defaults().to_dict()
    resolved = _validate(defaults, data, name) if validate else merge_dicts(defaults, data)
    override_tree = parse_overrides(overrides)
    if override_tree:
        if validate:
            resolved = _validate(defaults, override_tree, "command-line override", base=resolved)
        else:
            resolved = merge_dicts(resolved, override_tree)
    return Config.wrap(resolved)


def save_config(cfg: Mapping, path: str | Path) -> Path:
    """Write the resolved config as YAML (every run writes one next to its outputs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = cfg.to_dict() if isinstance(cfg, Config) else Config.wrap(cfg).to_dict()
    return write_text_atomic(path, yaml.safe_dump(plain, sort_keys=False))
