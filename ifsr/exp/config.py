"""One config dataclass per experiment, loaded from YAML and written beside the results it made.

Unknown keys are an error (a typo must not silently fall back to a default).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def from_dict(cls: type[T], values: dict[str, Any], source: str = "config") -> T:
    """Build dataclass `cls` from a dict; nested dataclass fields are built recursively."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown} for {cls.__name__}; known: {sorted(fields)}")
    kwargs = {}
    for name, value in values.items():
        ftype = fields[name].type
        sub = _dataclass_type(cls, ftype)
        kwargs[name] = from_dict(sub, value, f"{source}.{name}") if sub and isinstance(value, dict) else value
    return cls(**kwargs)


def _dataclass_type(owner: type, ftype: Any) -> type | None:
    if isinstance(ftype, str):  # postponed annotations
        import sys

        ftype = getattr(sys.modules[owner.__module__], ftype, None)
    return ftype if dataclasses.is_dataclass(ftype) else None


def load_config(cls: type[T], path: str | os.PathLike | None = None, **overrides: Any) -> T:
    """Defaults, then the YAML file (if any), then keyword overrides; every layer is checked."""
    values: dict[str, Any] = {}
    if path is not None:
        with open(path, encoding="utf-8") as f:
            loaded = yaml.safe_load(f) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a YAML mapping of config keys")
        values.update(loaded)
    values.update(overrides)
    return from_dict(cls, values, str(path or cls.__name__))


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")
    return path
