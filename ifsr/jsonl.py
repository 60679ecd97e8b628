"""Strict JSONL reading shared by the data loaders: a malformed line names its file, line and format."""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterator


def bad_line(path: Path, lineno: int, what: str, fmt: str) -> ValueError:
    """The error for line `lineno` (1-based) of `path`: what is wrong, and the expected format."""
    return ValueError(f"{path}:{lineno}: {what}; expected {fmt}")


def _open_binary(path: Path):
    return gzip.open(path, "rb") if Path(path).name.endswith(".gz") else open(path, "rb")


def not_utf8(path: Path, fmt: str) -> ValueError:
    """The error for a file that text-mode reading could not decode: the 1-based line (counted as
    text mode counts them: \\n, \\r\\n and a lone \\r each end a line) and column of its first byte
    that is not UTF-8, and the expected format. Only called once decoding has failed."""
    lineno = 1
    with _open_binary(path) as f:
        for raw in f:  # binary lines end at b"\n"; a b"\r\n" pair never spans two of them
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                head = raw[: e.start]
                lineno += head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n")
                col = e.start - max(head.rfind(b"\n"), head.rfind(b"\r"))  # 1-based byte column
                return bad_line(path, lineno, f"byte 0x{raw[e.start]:02x} at column {col} is not UTF-8 "
                                f"({e.reason})", f"UTF-8 text, {fmt}")
            lineno += raw.count(b"\n") + raw.count(b"\r") - raw.count(b"\r\n")
    # each line decodes alone, so a multi-byte sequence was cut by the end of the file
    return bad_line(path, lineno, "the file ends inside a UTF-8 character", f"UTF-8 text, {fmt}")


def read_jsonl(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for each non-blank line of a JSONL(.gz) file."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
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
    except UnicodeDecodeError:
        raise not_utf8(path, fmt) from None


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
