"""The one result writer: <name>.csv, <name>.md, config.yaml and manifest.json, each written atomically.

Every notebook writes its table with `write_table`; `markdown_table` is the one Markdown format
(4 fixed digits, NaN as –). Each file goes to a temporary file beside it and is renamed into place,
manifest.json last: a folder with a manifest.json is complete (the batch runner skips it).
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ifsr.config import dump_config
from ifsr.manifest import Manifest, atomic_write, sha256_file


def read_table(path: str | os.PathLike) -> pd.DataFrame | None:
    """A results CSV written by `write_table` (query ids kept as strings), or None when it is absent."""
    path = Path(path)
    return pd.read_csv(path, dtype={"query_id": str}) if path.is_file() else None


def markdown_table(df: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub markdown table (floats rounded, NaN shown as –)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, config: Any, out_dir: str | os.PathLike, name: str,
                data: dict[str, str] | None = None, models: dict[str, str] | None = None, md_end: str = "",
                csvs: dict[str, pd.DataFrame] | None = None, **extra: Any) -> Path:
    """<name>.csv, <name>.md (without the `model` column: run directories stay in the CSV), config.yaml
    (the config dataclass) and manifest.json (commit, config, `data` and `models` checksums, `extra`).
    `csvs`: further tables written as <key>.csv only (e.g. per-query values), before the manifest.

    `md_end`: text after the Markdown table (the ablation tables have always ended with a blank line).
    Returns the output directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = markdown_table(table.drop(columns=["model"], errors="ignore")) + md_end
    atomic_write(out / f"{name}.csv", table.to_csv(index=False).encode("utf-8"))
    atomic_write(out / f"{name}.md", md.encode("utf-8"))
    for key, part in (csvs or {}).items():
        atomic_write(out / f"{key}.csv", part.to_csv(index=False).encode("utf-8"))
    atomic_write(out / "config.yaml", dump_config(config).encode("utf-8"))
    manifest = Manifest(dataclasses.asdict(config))
    for k, v in (data or {}).items():
        manifest.add_data(k, v)
    for k, v in (models or {}).items():
        manifest.add_model(k, v)
    manifest.write(out, **extra)
    return out


def attrs_provenance(table: pd.DataFrame) -> dict[str, Any]:
    """`write_table`'s keywords from a table's `attrs` as the baselines table records them: dataset
    checksums, model checksums, the IDF file, and its timings, commit and wall time."""
    attrs = table.attrs
    data = {name: info["checksum"] for name, info in attrs.get("datasets", {}).items()}
    if attrs.get("idf") and os.path.isfile(attrs["idf"]):
        data["idf"] = sha256_file(attrs["idf"])
    extra = {k: attrs[k] for k in ("datasets", "timings", "corpus_limit", "git", "started", "wall_seconds")
             if k in attrs}
    return {"data": data, "models": dict(attrs.get("models", {})), **extra}
