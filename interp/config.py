"""JSON round-trip for frozen config dataclasses, with unknown-key checks and a stable content hash.

Every config in ftmech is a ``@dataclass(frozen=True, kw_only=True)`` with JSON-native fields
(int, float, str, bool, Literal choices, tuples, ``X | None`` and nested configs). ``from_dict`` rebuilds it
from JSON, checking each value against its field's type, turning lists back into tuples and rejecting unknown
keys with a suggestion.
"""

import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from interp.errors import ConfigError

C = TypeVar("C")
T = TypeVar("T")
FTMECH_VERSION = "0.1.0"  # recorded beside every result
EXPONENT_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


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


def from_dict(cls: type[C], data: dict[str, Any], *, where: str | None = None) -> C:
    """Build ``cls`` from a dict: unknown keys are refused with a suggestion, every value is checked against its
    field's type (a ConfigError names the field, e.g. ``PCFGStudyConfig.seeds[0]``), lists become tuples."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{where} needs a JSON object, got {_shown(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(sorted(fields))}"
            raise ConfigError(f"unknown {where} key '{key}'{hint}")
    hints = typing.get_type_hints(cls)
    kwargs = {key: _from_native(hints[key], value, f"{where}.{key}") for key, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {json.dumps(value, default=str)[:60]}"


def _from_native(hint: Any, value: Any, where: str) -> Any:
    """``value`` read from JSON as a ``hint``; a ConfigError at ``where`` if it is not one."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_dict(hint, value, where=where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        candidates = [a for a in args if a is not type(None)]
        if len(candidates) == 1:
            return _from_native(candidates[0], value, where)
        for arg in candidates:
            try:
                return _from_native(arg, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} must be {_named(hint)}, got {_shown(value)}")
    if origin is typing.Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise ConfigError(f"{where} must be one of {', '.join(map(repr, args))}, got {_shown(value)}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {_shown(value)}")
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            items = [_from_native(args[0] if args else Any, v, f"{where}[{i}]") for i, v in enumerate(value)]
        elif len(args) != len(value):
            raise ConfigError(f"{where} must be a list of {len(args)} values, got {_shown(value)}")
        else:
            items = [
                _from_native(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
            ]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be an object, got {_shown(value)}")
        value_hint = args[1] if args else Any
        return {k: _from_native(value_hint, v, f"{where}[{k!r}]") for k, v in value.items()}
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and type(value) is not hint:
        raise ConfigError(f"{where} must be {_named(hint)}, got {_shown(value)}")
    return value


def _named(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_named(a) for a in typing.get_args(hint))
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def to_json(config: Any, *, indent: int | None = 2) -> str:
    """Canonical JSON text of a config (sorted keys)."""
    return json.dumps(to_dict(config), indent=indent, sort_keys=True)


def from_json(cls: type[C], text: str, *, source: str = "config") -> C:
    """Parse JSON text into ``cls``; malformed JSON is a ConfigError naming ``source``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc}") from None
    return from_dict(cls, data)


def load_config(cls: type[C], path: str | Path) -> C:
    """Read a JSON or YAML config file into ``cls``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        class Loader(yaml.SafeLoader):
            """YAML 1.1 reads ``1e-3`` (no dot) as a string; learning rates are written so, and are floats."""

        Loader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_FLOAT, list("+-0123456789."))
        try:
            return from_dict(cls, yaml.load(text, Loader=Loader))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
            raise ConfigError(f"config {path} is not valid YAML: {problem}{where}") from None
    return from_json(cls, text, source=f"config {path}")


def config_hash(config: Any, *, length: int = 12) -> str:
    """Stable content hash of a config: equal configs give equal run-directory keys."""
    text = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


SEED_LIMIT = 2**32  # seeds are in [0, 2^32): torch and numpy take them, and so do the offsets added to them
MAX_SEEDS = 1000  # more seeds than this in one study is a typo; a million made a million job directories


def check_seeds(seeds: Sequence[int], *, least: int = 1) -> None:
    """A study's seeds: at least ``least``, at most ``MAX_SEEDS``, distinct, each in [0, 2^32); a ConfigError
    before any job is planned otherwise."""
    if len(seeds) < least or len(seeds) > MAX_SEEDS:
        raise ConfigError(
            f"give {least} to {MAX_SEEDS} seeds, got {len(seeds)} (e.g. --seeds {max(least, 3)})"
        )
    if len(set(seeds)) != len(seeds) or any(not 0 <= s < SEED_LIMIT for s in seeds):
        raise ConfigError(f"seeds must be distinct integers in [0, 2^32), got {_listed(seeds)}")


def _listed(values: Sequence[Any]) -> str:
    return ", ".join(map(str, values[:8])) + (", ..." if len(values) > 8 else "")


def lookup(table: Mapping[str, T], name: str, what: str) -> T:
    """``table[name]``, or a ``ConfigError`` that names ``what`` and the valid choices (presets, studies,
    labellings: every named choice of a command is resolved here)."""
    if name not in table:
        raise ConfigError(f"unknown {what} '{name}'; use one of {', '.join(table)}")
    return table[name]
