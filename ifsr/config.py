"""The config loader of every config dataclass: defaults, then a YAML file, then overrides.

Unknown keys are an error at every layer, nested ones included (a typo must not silently fall back
to a default). The dataclasses live with what uses them (`ifsr.distill.config.TrainConfig`,
`ifsr.eval.config.BaselinesConfig`, `ifsr.exp.config`'s AblationConfig and LatencyConfig); this module,
below them all, reads and writes them. It does not import torch: reading a results folder's config.yaml is cheap.
"""
from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _merge(cls: type, base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on `base`; a nested dataclass field given as a mapping in both is merged key by key."""
    types = _field_types(cls)
    out = dict(base)
    for key, value in over.items():
        sub = types.get(key)
        if dataclasses.is_dataclass(sub) and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(sub, out[key], value)
        else:
            out[key] = value
    return out


def from_dict(cls: type[T], values: dict[str, Any], source: str = "config") -> T:
    """Build dataclass `cls` from a dict; nested dataclass fields are built recursively."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown} for {cls.__name__}; known: {sorted(names)}")
    types = _field_types(cls)
    kwargs = {}
    for name, value in values.items():
        sub = types[name]
        nested = dataclasses.is_dataclass(sub) and isinstance(value, dict)
        kwargs[name] = from_dict(sub, value, f"{source}.{name}") if nested else value
    try:
        return cls(**kwargs)
    except ValueError as e:  # a field's check: say where the value came from (the file, and the nested key)
        raise ValueError(f"{source}: {e}") from None


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        loaded = yaml.safe_load(f) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a YAML mapping of config keys")
    return loaded


def load_config(cls: type[T], path: str | os.PathLike | None = None, **overrides: Any) -> T:
    """Defaults, then the YAML file (if any), then the keyword overrides; every layer is checked.

    An override that is None keeps the layer below (a notebook parameter left at None); a mapping
    given for a nested dataclass field (e.g. `train={...}`) is merged over the YAML's mapping."""
    values = read_yaml(path) if path is not None else {}
    values = _merge(cls, values, {k: v for k, v in overrides.items() if v is not None})
    return from_dict(cls, values, str(path or cls.__name__))


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def dump_config(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def save_config(config: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_config(config), encoding="utf-8")
    return path


def parse_list(value: str | list[str]) -> list[str]:
    """A list as given, or from a string: JSON/YAML ('["a", "b"]') or comma-separated ("a,b").

    papermill's `-p datasets '["scifact"]'` hands notebooks the string, not the list.
    """
    if not isinstance(value, str):
        return list(value)
    parsed = yaml.safe_load(value) if value.strip().startswith("[") else [v.strip() for v in value.split(",")]
    if not isinstance(parsed, list) or not all(isinstance(v, str) and v for v in parsed):
        raise ValueError(f"expected a list of names, got {value!r}")
    return parsed
