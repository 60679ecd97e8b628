"""A results folder's config as data: `read_config` (its AblationConfig as a dict, without torch)."""
from __future__ import annotations

from pathlib import Path

from ifsr.exp.config import AblationConfig, load_config, to_dict


def read_config(path: Path) -> dict | None:
    """A results folder's AblationConfig (config.yaml through `load_config`: fields the file lacks
    have their defaults) as a dict; None if there is no such file."""
    return to_dict(load_config(AblationConfig, path)) if Path(path).is_file() else None
