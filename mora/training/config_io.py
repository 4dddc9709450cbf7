"""Read a `RunConfig` from YAML files plus ``key.sub=value`` overrides, and write it back.

* A YAML file states only differences from the dataclass defaults; ``base: other.yaml`` (relative to the
  file) is loaded first and the file's keys are merged over it (dicts recursively, lists replaced).
* Overrides are ``dotted.path=value``; the value is parsed as YAML (``true``, ``3``, ``[0.9, 0.95]``,
  ``null``); list items are addressed by index (``data.datasets.0.spec.ratio=2``).
* Values are checked against the dataclass field types; unknown keys and wrong types raise
  `ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mora.training.config import ConfigError, RunConfig

_MAX_BASE_DEPTH = 8


def load_yaml_with_bases(path: str | Path, _depth: int = 0) -> dict[str, Any]:
    """The mapping in ``path`` merged over its ``base:`` chain."""
    path = Path(path)
    if _depth > _MAX_BASE_DEPTH:
        raise ConfigError("base", f"chain of base: files deeper than {_MAX_BASE_DEPTH} at {path}")
    if not path.is_file():
        raise ConfigError("config", f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError("config", f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold a mapping at top level, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    return deep_merge(load_yaml_with_bases(path.parent / base, _depth + 1), data)


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with every ``dotted.key=value`` override applied."""
    out = yaml.safe_load(yaml.safe_dump(data))  # deep copy of plain data
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(item, "an override must look like key.sub=value")
        parts = key.split(".")
        node: Any = out
        for i, part in enumerate(parts[:-1]):
            node = _child(node, part, ".".join(parts[: i + 1]), create=True)
        _assign(node, parts[-1], yaml.safe_load(raw) if raw != "" else "", key)
    return out


def _child(node: Any, part: str, path: str, create: bool) -> Any:
    if isinstance(node, list):
        index = _index(node, part, path)
        return node[index]
    if not isinstance(node, dict):
        raise ConfigError(path, f"cannot descend into a {type(node).__name__}")
    if part not in node or node[part] is None:
        if not create:
            raise ConfigError(path, "no such key")
        node[part] = {}
    return node[part]


def _assign(node: Any, part: str, value: Any, path: str) -> None:
    if isinstance(node, list):
        node[_index(node, part, path)] = value
    elif isinstance(node, dict):
        node[part] = value
    else:
        raise ConfigError(path, f"cannot set a key inside a {type(node).__name__}")


def _index(node: list, part: str, path: str) -> int:
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise ConfigError(path, f"list index {part!r} out of range (the list has {len(node)} items)")
    return int(part)


def build_run_config(data: Mapping[str, Any]) -> RunConfig:
    """A validated `RunConfig` from a plain mapping (typically YAML + overrides)."""
    try:
        return _build_dataclass(RunConfig, data, "")
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # a __post_init__ outside ConfigError
        raise ConfigError("config", str(err)) from None


def load_run_config(config_path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Defaults, then the YAML file (and its bases), then the overrides, validated."""
    data = config_to_dict(RunConfig())
    if config_path:
        data = deep_merge(data, load_yaml_with_bases(config_path))
    return build_run_config(apply_overrides(data, overrides))


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain YAML/JSON-safe data (tuples become lists)."""
    return _plain(dataclasses.asdict(config))


def dump_config_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _build_dataclass(cls: type, data: Any, path: str) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(path or "config", f"expected a mapping, got {type(data).__name__}: {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise ConfigError(where, f"unknown field (known fields here: {', '.join(sorted(known))})")
    kwargs = {
        name: _coerce(hints[name], value, f"{path}.{name}" if path else name) for name, value in data.items()
    }
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(path or "config", str(err)) from None


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, path)
            except ConfigError:
                continue
        raise ConfigError(path, f"{value!r} does not fit {_type_name(hint)}")
    if dataclasses.is_dataclass(hint):
        return _build_dataclass(hint, value, path)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(path, f"expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 3e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(path, f"expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(path, f"expected a string, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(path, f"expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(path, f"expected {len(args)} values, got {len(value)}: {value!r}")
            return tuple(_coerce(a, v, f"{path}.{i}") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{path}.{i}") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"expected a mapping, got {value!r}")
        return dict(value)
    raise ConfigError(path, f"unsupported field type {_type_name(hint)}")


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
