"""The one result writer: every file of a result folder, one Markdown format, manifest.json last."""
import json
import math

import pandas as pd

from ifsr.exp.config import BaselinesConfig, load_config
from ifsr.tables import attrs_provenance, markdown_table, write_table


def _table() -> pd.DataFrame:
    return pd.DataFrame([{"dataset": "d", "system": "bm25", "nDCG@10": 0.123456, "flops": math.nan,
                          "model": "runs/x/model"}])


def test_markdown_table_has_four_digits_and_a_dash_for_nan():
    assert markdown_table(_table().drop(columns=["model"])) == (
        "| dataset | system | nDCG@10 | flops |\n|---|---|---|---|\n| d | bm25 | 0.1235 | – |\n")


def test_write_table_writes_every_file(tmp_path):
    table = _table()
    table.attrs = {"datasets": {"d": {"checksum": "abc"}}, "models": {"m": "123"}, "idf": str(tmp_path / "none"),
                   "wall_seconds": 3.5}
    config = BaselinesConfig(datasets=["d"])
    out = write_table(table, config, tmp_path / "bl", "table", **attrs_provenance(table))
    assert pd.read_csv(out / "table.csv")["model"].tolist() == ["runs/x/model"]  # run directories stay in the CSV
    assert (out / "table.md").read_text(encoding="utf-8") == markdown_table(table.drop(columns=["model"]))
    assert load_config(BaselinesConfig, out / "config.yaml") == config
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"] == {"d": "abc"} and manifest["models"] == {"m": "123"}
    assert manifest["wall_seconds"] == 3.5 and manifest["config"]["datasets"] == ["d"]
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "manifest.json", "table.csv", "table.md"]  # no tmp
    write_table(table, config, tmp_path / "ab", "curve", md_end="\n")
    assert (tmp_path / "ab" / "curve.md").read_text(encoding="utf-8").endswith("|\n\n")


def test_manifest_is_written_last(tmp_path):
    out = write_table(_table(), BaselinesConfig(), tmp_path, "table")
    others = [p.stat().st_mtime_ns for p in out.iterdir() if p.name != "manifest.json"]
    assert (out / "manifest.json").stat().st_mtime_ns >= max(others)
