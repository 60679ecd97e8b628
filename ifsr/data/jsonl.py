"""Strict JSONL reading shared by the data loaders: a malformed line names its file, line and format."""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterator


def bad_line(path: Path, lineno: int, what: str, fmt: str) -> ValueError:
    """The error for line `lineno` (1-based) of `path`: what is wrong, and the expected format."""
    return ValueError(f"{path}:{lineno}: {what}; expected {fmt}")


def read_jsonl(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for each non-blank line of a JSONL(.gz) file."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise bad_line(path, lineno, f"invalid JSON ({e.msg})", fmt) from None
            if not isinstance(obj, dict):
                raise bad_line(path, lineno, f"not a JSON object ({type(obj).__name__})", fmt)
            yield lineno, obj


def string_field(obj: dict[str, Any], key: str, path: Path, lineno: int, fmt: str,
                 default: str | None = None, allow_int: bool = False) -> str:
    """obj[key] as a string: `default` if absent (None: required), an int accepted if `allow_int`."""
    if key not in obj:
        if default is not None:
            return default
        raise bad_line(path, lineno, f"missing {key!r}", fmt)
    v = obj[key]
    if allow_int and isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str):
        raise bad_line(path, lineno, f"{key!r} is {type(v).__name__}, not a string", fmt)
    return v
