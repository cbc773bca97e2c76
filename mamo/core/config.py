"""Typed configuration on pydantic: YAML files plus dotted command-line overrides.

Every stage describes its settings as nested dataclasses decorated with ``@section``
(pydantic dataclasses, so ``dataclasses.fields/replace/asdict`` work as usual). Their field
defaults are the single source of truth, and their annotations say what a value may be
(``Annotated[int, Field(ge=1)]``, ``Literal[...]``). ``load_config`` reads a YAML file, applies
``a.b.c=value`` overrides and lets pydantic build and check the tree; a problem is raised as a
``ConfigError`` whose message starts with the dotted key at fault (``config key
'optim.betas[1]': must be in [0, 1), got 1.5``). Checks that span fields or sections live in
the class's ``__post_init__`` and raise ``ConfigError`` with the key relative to that class;
the prefix is added here.

``python -m mamo.core.config schema --out configs/schema`` writes a JSON Schema per top-level
config, which editors (the YAML language server) use to check the files in ``configs/``.

This module imports nothing heavy (no torch) and no stage, so that every stage can use it.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import functools
import importlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import annotated_types
import pydantic.dataclasses
import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic.fields import FieldInfo
from typing_extensions import dataclass_transform

T = TypeVar("T")

# Unknown keys are errors; the validator is built on first use (importing a config stays cheap).
_SECTION = ConfigDict(extra="forbid", defer_build=True)


@dataclass_transform(field_specifiers=(dataclasses.field, Field))
def section(cls: type[T]) -> type[T]:
    """Make ``cls`` a config section: a pydantic dataclass that refuses unknown keys."""
    return pydantic.dataclasses.dataclass(cls, config=_SECTION)


class ConfigError(ValueError):
    """A configuration problem; the message starts with the dotted key at fault."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"config key '{key}': {message}" if key else message)


def check(cond: bool, key: str, message: str) -> None:
    """Raise ConfigError for ``key`` unless ``cond`` (for ``__post_init__`` cross-field checks)."""
    if not cond:
        raise ConfigError(key, message)


# ------------------------------------------------------------------------- YAML and overrides

class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``3e-4`` (an exponent without a dot) as a float, as YAML 1.2 does;
    YAML 1.1 would give the string "3e-4"."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
                              list("-+0123456789."))


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("", f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        data = yaml.load(f, Loader=_Loader) or {}
    if not isinstance(data, dict):
        raise ConfigError("", f"config file {path} must hold a mapping at the top level")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=3"`` -> ``("a.b", 3)``; the value is parsed as YAML (numbers, bools, lists)."""
    if "=" not in text:
        raise ConfigError(text, "override must look like dotted.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(text, "override has an empty key")
    try:
        value = yaml.load(raw, Loader=_Loader) if raw.strip() != "" else ""
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


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = _deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = _deepcopy(v)
    return out


# ---------------------------------------------------------------------------- building configs

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


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from plain data; every problem is a ``ConfigError`` naming its key.

    The data is checked as the JSON document it denotes, strictly: no "5" for an integer, no
    1 for a boolean, lists for tuples and strings for paths. A plain (non-pydantic) dataclass
    may define ``validate(self, prefix)``; it is called once the tree is built.
    """
    if not isinstance(data, dict):
        raise ConfigError(prefix, f"must be a mapping, got {data!r}")
    try:
        # default=str: YAML dates and the like arrive as the text the file holds
        doc = json.dumps({"root": data}, default=str)
        obj = _root_model(cls).model_validate_json(doc, strict=True).root
    except ValidationError as e:
        raise _config_error(cls, e, prefix) from e
    _run_validate_hooks(obj, prefix)
    return obj


@functools.cache
def _root_model(cls: type) -> type[BaseModel]:
    # A model around cls lends _SECTION (unknown keys are errors) to plain dataclasses in the tree.
    return create_model(f"{cls.__name__}Root", root=(cls, ...), __config__=_SECTION)


def _run_validate_hooks(obj: Any, prefix: str) -> None:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            _run_validate_hooks(getattr(obj, f.name), _join(prefix, f.name))
        hook = getattr(obj, "validate", None)
        if callable(hook):
            hook(prefix)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _run_validate_hooks(v, f"{prefix}[{i}]")


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


# ------------------------------------------------------------- pydantic errors -> ConfigError

def _join(prefix: str, name: str) -> str:
    if not name:
        return prefix
    if not prefix or name.startswith("["):
        return f"{prefix}{name}"
    return f"{prefix}.{name}"


def _dotted(prefix: str, loc: tuple[Any, ...]) -> str:
    key = prefix
    for part in loc:
        key = _join(key, f"[{part}]" if isinstance(part, int) else str(part))
    return key


# pydantic error type -> what the value must be
_MESSAGES = {
    "int_type": "must be an integer", "int_parsing": "must be an integer",
    "int_from_float": "must be an integer", "float_type": "must be a number",
    "float_parsing": "must be a number", "bool_type": "must be true or false",
    "bool_parsing": "must be true or false", "string_type": "must be a string",
    "path_type": "must be a path", "list_type": "must be a list", "tuple_type": "must be a list",
    "dict_type": "must be a mapping", "dataclass_type": "must be a mapping (a section)",
    "dataclass_exact_type": "must be a mapping (a section)", "model_type": "must be a mapping",
}


def _config_error(cls: type, err: ValidationError, prefix: str) -> ConfigError:
    """The first of pydantic's errors, worded for a person editing YAML."""
    e = err.errors(include_url=False)[0]
    loc, kind, value, ctx = tuple(e["loc"][1:]), e["type"], e.get("input"), e.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, ConfigError):  # raised by a __post_init__, relative to its section
        return ConfigError(_join(_dotted(prefix, loc), cause.key), cause.message)
    key = _dotted(prefix, loc)
    tp, meta = _annotation_at(cls, loc)
    got = f", got {value!r}"
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        parent, _ = _annotation_at(cls, loc[:-1])
        known = ", ".join(sorted(f.name for f in dataclasses.fields(parent) if f.init)) \
            if dataclasses.is_dataclass(parent) else "?"
        return ConfigError(key, f"unknown key (known keys here: {known})")
    if kind in ("missing", "missing_keyword_argument", "missing_argument"):
        parent, _ = _annotation_at(cls, loc[:-1])
        if loc and isinstance(loc[-1], int) and get_origin(parent) is tuple:  # a short tuple
            n = len(value) if isinstance(value, list) else "fewer"
            return ConfigError(_dotted(prefix, loc[:-1]),
                               f"must have {len(get_args(parent))} items, got {n}")
        return ConfigError(key, "is required")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return ConfigError(key, _range_message(meta, ctx) + got)
    if kind == "literal_error":
        choices = list(get_args(tp)) if get_origin(tp) is Literal else ctx.get("expected")
        return ConfigError(key, f"must be one of {choices}{got}")
    if kind in ("too_short", "too_long"):
        n, lo, hi = ctx.get("actual_length"), ctx.get("min_length"), ctx.get("max_length")
        if get_origin(tp) is tuple and Ellipsis not in get_args(tp):
            return ConfigError(key, f"must have {len(get_args(tp))} items, got {n}")
        bound = f"at least {lo}" if kind == "too_short" else f"at most {hi}"
        return ConfigError(key, f"must have {bound} item(s), got {n}")
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return ConfigError(key, "must not be empty")
    if kind == "string_pattern_mismatch":
        return ConfigError(key, f"must match the regular expression {ctx.get('pattern')}{got}")
    if kind in _MESSAGES:
        return ConfigError(key, _MESSAGES[kind] + got)
    if isinstance(cause, Exception):
        return ConfigError(key, str(cause))
    return ConfigError(key, e["msg"] + got)


_BOUNDS = {"gt": annotated_types.Gt, "ge": annotated_types.Ge, "lt": annotated_types.Lt,
           "le": annotated_types.Le}


def _range_message(meta: list[Any], ctx: dict[str, Any]) -> str:
    """``must be in [0, 1)`` from the field's bounds (all of them, not only the one broken)."""
    bounds: dict[str, Any] = {}
    for m in meta:
        for b in m.metadata if isinstance(m, FieldInfo) else [m]:
            for name in ("gt", "ge", "lt", "le"):
                if isinstance(b, (_BOUNDS[name], annotated_types.Interval)) \
                        and getattr(b, name) is not None:
                    bounds[name] = getattr(b, name)
    bounds = bounds or ctx
    lo = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    hi = ("]", bounds["le"]) if "le" in bounds else (")", bounds["lt"]) if "lt" in bounds else None
    if lo and hi:
        return f"must be in {lo[0]}{lo[1]}, {hi[1]}{hi[0]}"
    if lo:
        return f"must be {'>=' if lo[0] == '[' else '>'} {lo[1]}"
    assert hi is not None
    return f"must be {'<=' if hi[0] == ']' else '<'} {hi[1]}"


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """``Annotated[X, ...] | None`` -> ``(X, [the Annotated metadata])``."""
    meta: list[Any] = []
    while True:
        if get_origin(tp) is Annotated:
            meta.extend(tp.__metadata__)
            tp = get_args(tp)[0]
        elif get_origin(tp) in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp, meta
            tp = args[0]
        else:
            return tp, meta


def _annotation_at(cls: type, loc: tuple[Any, ...]) -> tuple[Any, list[Any]]:
    """The annotation (and its constraints) of the value at ``loc`` in the tree of ``cls``."""
    tp, meta = _unwrap(cls)
    for part in loc:
        origin, args = get_origin(tp), get_args(tp)
        if dataclasses.is_dataclass(tp) and isinstance(part, str):
            try:
                tp = get_type_hints(tp, include_extras=True)[part]
            except (KeyError, NameError, TypeError):  # e.g. a class local to a function
                return None, []
        elif origin in (list, tuple) and isinstance(part, int) and args:
            fixed = origin is tuple and Ellipsis not in args
            tp = args[part] if fixed and part < len(args) else args[0]
        elif origin is dict and args:
            tp = args[1]
        else:
            return None, []
        tp, meta = _unwrap(tp)
    return tp, meta


# ----------------------------------------------------------------------------- JSON Schema

#: The top-level configs: schema name -> (the class, as "module:Class", the YAML files in the
#: repository it reads; the first pattern that matches a file wins). Strings, so that this
#: module imports no stage; ``schema`` imports them when it runs.
TOP_LEVEL: dict[str, tuple[str, tuple[str, ...]]] = {
    "serve": ("flows.serve:ServeConfig", ("configs/ingest/serve.yaml",)),
    "ingest": ("ingest.config:IngestConfig", ("configs/ingest/*.yaml",)),
    "concepts": ("concepts.config:ConceptsConfig", ("configs/concepts/*.yaml",)),
    "finetune": ("mamo.downstream.config:FinetuneConfig", ("configs/finetune/*.yaml",)),
    "demo": ("flows.demo:DemoConfig", ("configs/demo.yaml",)),
    "ablation": ("flows.ablation:AblationConfig", ("configs/ablation*.yaml", "configs/method_sweep.yaml")),
    "run": ("mamo.trainer.config:RunConfig", ("configs/*.yaml",)),
}


def config_class(name: str) -> type:
    """The class of top-level config ``name`` (a key of ``TOP_LEVEL``), imported now."""
    module, _, attr = TOP_LEVEL[name][0].partition(":")
    return getattr(importlib.import_module(module), attr)


def schema_for(path: str) -> str | None:
    """The ``TOP_LEVEL`` name whose patterns claim the repository-relative YAML ``path``."""
    return next((name for name, (_, pats) in TOP_LEVEL.items()
                 if any(fnmatch.fnmatchcase(path, p) for p in pats)), None)


def json_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of the YAML that ``load_config(cls, ...)`` accepts."""
    schema = TypeAdapter(cls).json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def write_schemas(out: str | Path) -> list[Path]:
    """Write ``<out>/<name>.schema.json`` for every top-level config; returns the files."""
    from mamo.core.files import write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return [write_json(out / f"{name}.schema.json", json_schema(config_class(name)))
            for name in TOP_LEVEL]


def main(argv: list[str] | None = None) -> int:
    import argparse

    from mamo.core.cli import run

    p = argparse.ArgumentParser(prog="python -m mamo.core.config",
                                description="Write the JSON Schema of every top-level config.")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("schema", help="write <out>/<name>.schema.json per top-level config")
    s.add_argument("--out", default="configs/schema", help="output folder (default: %(default)s)")
    a = p.parse_args(argv)
    return run(lambda: print(*write_schemas(a.out), sep="\n"))


if __name__ == "__main__":
    raise SystemExit(main())
