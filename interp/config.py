"""JSON round-trip for frozen config dataclasses, with unknown-key checks and a stable content hash.

Every config in ftmech is a ``@dataclass(frozen=True, kw_only=True)`` with JSON-native fields
(int, float, str, bool, tuples, ``X | None`` and nested configs). ``from_dict`` rebuilds it from
JSON, turning lists back into tuples and rejecting unknown keys with a suggestion.
"""

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from interp.errors import ConfigError

C = TypeVar("C")
T = TypeVar("T")
FTMECH_VERSION = "0.1.0"  # recorded beside every result


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-native dict of a config dataclass (nested configs included)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a config dataclass instance, got {type(config).__name__}")
    return {f.name: _to_native(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _to_native(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_to_native(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_native(v) for k, v in value.items()}
    return value


def from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Build ``cls`` from a dict, rejecting unknown keys and converting lists to tuples."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} needs a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(sorted(fields))}"
            raise ConfigError(f"unknown {cls.__name__} key '{key}'{hint}")
    hints = typing.get_type_hints(cls)
    kwargs = {key: _from_native(hints[key], value) for key, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from None


def _from_native(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        for arg in typing.get_args(hint):
            if arg is type(None):
                continue
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return from_dict(arg, value)
            if typing.get_origin(arg) is tuple and isinstance(value, list):
                return _from_native(arg, value)
        return value
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_native(args[0], v) for v in value)
        return tuple(_from_native(a, v) for a, v in zip(args, value, strict=False))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def to_json(config: Any, *, indent: int | None = 2) -> str:
    """Canonical JSON text of a config (sorted keys)."""
    return json.dumps(to_dict(config), indent=indent, sort_keys=True)


def from_json(cls: type[C], text: str) -> C:
    """Parse JSON text into ``cls``; malformed JSON is a ConfigError."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config is not valid JSON: {exc}") from None
    return from_dict(cls, data)


def load_config(cls: type[C], path: str | Path) -> C:
    """Read a JSON or YAML config file into ``cls``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            return from_dict(cls, yaml.safe_load(text))
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {path} is not valid YAML: {exc}") from None
    return from_json(cls, text)


def config_hash(config: Any, *, length: int = 12) -> str:
    """Stable content hash of a config: equal configs give equal run-directory keys."""
    text = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def lookup(table: Mapping[str, T], name: str, what: str) -> T:
    """``table[name]``, or a ``ConfigError`` that names ``what`` and the valid choices (presets, studies,
    labellings: every named choice of a command is resolved here)."""
    if name not in table:
        raise ConfigError(f"unknown {what} '{name}'; use one of {', '.join(table)}")
    return table[name]
