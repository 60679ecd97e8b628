"""Shared by the benchmark scripts: flag types checked by argparse (a bad value is argparse's usage line and
exit 2, before any work) and the repository root, so that a script runs the same from any folder.

Importing this module puts the repository root first on sys.path: the scripts import this checkout's ifsr,
wherever they are run from and whichever ifsr is installed.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def positive_int(text: str) -> int:
    """An integer >= 1 ("0", "-5", "2.5", "x" refused)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 ("0", "-50", "nan", "inf" refused)."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 ("-1", "nan", "inf" refused)."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def out_file(text: str) -> str:
    """A file path to write: not an existing directory, nor under an existing regular file."""
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; expected a file path")
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            raise argparse.ArgumentTypeError(f"{text} lies under {parent}, a regular file; expected a file path")
    return text


def anchor_to_repo() -> None:
    """What the library resolves from the cwd, resolved from the repository instead (unless set): the data
    directory ($IFSR_DATA_DIR: ../shared/data beside the repository, else its data/) and the cache
    ($IFSR_CACHE_DIR: <repo>/.cache/ifsr). Set in the environment, so child processes see them too."""
    from ifsr.data.beir import find_data_dir

    if not os.environ.get("IFSR_DATA_DIR"):
        os.environ["IFSR_DATA_DIR"] = str(find_data_dir(REPO, environ={})[0])
    if not os.environ.get("IFSR_CACHE_DIR"):
        os.environ["IFSR_CACHE_DIR"] = str(REPO / ".cache" / "ifsr")


def repo_path(text: str) -> str:
    """A path as given if it exists from the cwd, else the same path under the repository if it exists there
    (`--lever-students configs/cpu.yaml` from any folder)."""
    if Path(text).exists() or Path(text).is_absolute() or not (REPO / text).exists():
        return text
    return str(REPO / text)


def max_length(text: str) -> int:
    """Document tokens: an integer from 1 to 512 (BERT's positions)."""
    value = positive_int(text)
    if value > 512:
        raise argparse.ArgumentTypeError(f"expected at most 512 tokens (BERT's positions), got {text!r}")
    return value
