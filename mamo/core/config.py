"""Typed configuration: YAML files plus dotted command-line overrides, validated at start.

Every stage (ingest, concepts, training, evaluation) describes its settings as nested
dataclasses; their field defaults are the single source of truth. ``load_config`` reads a
YAML file, applies ``a.b.c=value`` overrides, and builds the dataclass tree, raising a
``ConfigError`` whose message names the offending dotted key (unknown key, wrong type,
impossible value).

This module imports nothing heavy (no torch) so that every stage can use it.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")

_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """A configuration problem; the message starts with the dotted key at fault."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config key '{key}': {message}" if key else message)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (coercing int->float only)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(key, f"must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(key, f"has the wrong type: {value!r} fits none of {tp}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(key, f"must be a mapping (section {tp.__name__}), got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"must be a list, got {value!r}")
        args = get_args(tp)
        if args and not (origin is tuple and len(args) == 2 and args[1] is Ellipsis) and origin is tuple:
            if len(args) != len(value):
                raise ConfigError(key, f"must have {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if (origin is tuple or tp is tuple) else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        # YAML 1.1 reads "3e-4" (no dot) as a string; accept it as the number it means.
        if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(key, f"must be a path, got {value!r}")
        return Path(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(key, f"must be of type {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types name their key.

    After construction, a ``validate(self, prefix)`` method on the dataclass (if any) is
    called so that sections can reject impossible values with the dotted key.
    """
    if not isinstance(data, dict):
        raise ConfigError(prefix, f"must be a mapping, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for name in data:
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(_join(prefix, str(name)), f"unknown key (known keys here: {known})")
    kwargs = {name: _coerce(value, hints[name], _join(prefix, name)) for name, value in data.items()}
    obj = cls(**kwargs)
    _validate_tree(obj, prefix)
    return obj


def _validate_tree(obj: Any, prefix: str) -> None:
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(prefix)


def to_dict(obj: Any) -> Any:
    """Plain-data view of a config tree (paths as strings), for YAML/JSON output."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=3"`` -> ``("a.b", 3)``; the value is parsed as YAML (numbers, bools, lists)."""
    if "=" not in text:
        raise ConfigError(text, "override must look like dotted.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(text, "override has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(data: dict[str, Any], overrides: typing.Iterable[str]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (a copy), creating sections as needed."""
    out = _deepcopy(data)
    for text in overrides:
        key, value = parse_override(text)
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(".".join(parts[: i + 1]), "is a value, not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("", f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError("", f"config file {path} must hold a mapping at the top level")
    return data


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: typing.Iterable[str] = (),
    base: dict[str, Any] | None = None,
) -> T:
    """Defaults of ``cls`` <- ``base`` <- YAML file ``path`` <- dotted ``overrides``."""
    data = _deepcopy(base or {})
    if path is not None:
        data = _merge(data, read_yaml(path))
    data = apply_overrides(data, overrides)
    return from_dict(cls, data)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = _deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = _deepcopy(v)
    return out


def check(cond: bool, key: str, message: str) -> None:
    """Raise ConfigError for ``key`` unless ``cond``; for use in ``validate`` methods."""
    if not cond:
        raise ConfigError(key, message)
