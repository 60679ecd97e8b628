"""The baselines table, its reference comparison, and the config and table writer it is run with."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from ifsr.eval.baselines import COLUMNS, REFERENCE_NDCG10, SYSTEMS, baselines, compare_to_reference, reference_summary
from ifsr.exp.config import BaselinesConfig, parse_list, preset_config
from ifsr.tables import attrs_provenance, markdown_table, write_table

REPO = Path(__file__).resolve().parents[2]


def test_parse_list_and_presets():
    assert parse_list('["scifact", "cranfield"]') == ["scifact", "cranfield"]
    assert parse_list("scifact, cranfield") == ["scifact", "cranfield"] == parse_list(["scifact", "cranfield"])
    with pytest.raises(ValueError):
        parse_list("[1, 2]")
    assert preset_config("smoke").corpus_limit == 300
    assert preset_config("smoke", corpus_limit=50, datasets='["cranfield"]').datasets == ["cranfield"]
    assert preset_config("cpu", corpus_limit=None).corpus_limit is None
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("huge")


def _fake_table() -> pd.DataFrame:
    rows = [{"dataset": d, "system": s, "nDCG@10": v + (0.004 if s == "bm25" else 0.0), "R@100": 0.9,
             "flops": math.nan, "doc_nnz": math.nan, "query_nnz": math.nan}
            for d, row in REFERENCE_NDCG10.items() for s, v in row.items()]
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.attrs = {"datasets": {"scifact": {"checksum": "abc"}}, "models": {"splade-tiny": "def"}, "wall_seconds": 1.0}
    return df


def test_compare_to_reference_and_markdown():
    cmp = compare_to_reference(_fake_table(), tol=0.005)
    assert cmp["within_tol"].all() and cmp.loc[cmp.system == "bm25", "delta"].round(6).eq(0.004).all()
    assert not compare_to_reference(_fake_table(), tol=0.003)["within_tol"].all()
    assert reference_summary(cmp, None) == "12/12 within ±0.005"
    assert reference_summary(cmp, 300).startswith("corpus_limit=300: reference values are for full corpora")
    md = markdown_table(_fake_table())
    assert md.startswith("| dataset | system | nDCG@10 |") and "| – |" in md and md.count("\n") == 14


def test_write_baselines(tmp_path):
    config = BaselinesConfig(datasets=["scifact"], out_dir=str(tmp_path / "unused"))
    out = write_table(_fake_table(), config, tmp_path / "bl", "table", **attrs_provenance(_fake_table()))
    assert {p.name for p in out.iterdir()} == {"table.csv", "table.md", "config.yaml", "manifest.json"}
    man = json.loads((out / "manifest.json").read_text())
    assert man["data"]["scifact"] == "abc" and man["models"]["splade-tiny"] == "def" and man["wall_seconds"] == 1.0
    assert man["config"]["datasets"] == ["scifact"] and "machine" in man and "commit" in man["git"]
    assert pd.read_csv(out / "table.csv").columns.tolist() == COLUMNS


# ----------------------------------------------------------------------------- real data

def _check_table(df: pd.DataFrame, datasets: list[str]) -> None:
    assert df.columns.tolist() == COLUMNS
    assert [(d, s) for d, s in zip(df.dataset, df.system)] == [(d, s) for d in datasets for s in SYSTEMS]
    assert df["nDCG@10"].between(0, 1).all() and df["R@100"].between(0, 1).all()
    sparse = df.system.isin(["sparse-teacher", "inference-free-untrained"])
    assert df.loc[sparse, ["flops", "doc_nnz", "query_nnz"]].gt(0).all().all()
    assert df.loc[~sparse, ["flops", "doc_nnz", "query_nnz"]].isna().all().all()


@pytest.mark.slow
def test_baselines_smoke_path(data_root, idf_file, splade_tiny_path, minilm_path, tmp_path):
    config = preset_config("smoke", datasets=["scifact"], corpus_limit=300, data_dir=str(data_root),
                           cache_dir=str(REPO / ".cache" / "ifsr"), out_dir=str(tmp_path), show_progress=False)
    df = baselines(config)
    _check_table(df, ["scifact"])
    assert 0 < df.attrs["datasets"]["scifact"]["n_queries"] < 300 and df.attrs["datasets"]["scifact"]["n_docs"] == 300
    assert (df["nDCG@10"] > 0.5).all()  # 300 docs, queries whose positives are all there: easy
    write_table(df, config, config.out_dir, "table", **attrs_provenance(df))
    assert (tmp_path / "manifest.json").is_file()


@pytest.mark.slow
def test_cranfield_baselines_match_reference(data_root, idf_file, splade_tiny_path, minilm_path):
    """All six systems on the full Cranfield against the independent measurements (issue #3)."""
    config = BaselinesConfig(datasets=["cranfield"], data_dir=str(data_root), cache_dir=str(REPO / ".cache" / "ifsr"),
                             show_progress=False)
    df = baselines(config)
    _check_table(df, ["cranfield"])
    cmp = compare_to_reference(df, tol=0.005)
    assert cmp["within_tol"].all(), markdown_table(cmp, digits=4)
