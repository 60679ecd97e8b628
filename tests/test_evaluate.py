"""evaluate_model, the CLI, the baselines table and its helpers."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ifsr.data.beir import BeirSet
from ifsr.eval.evaluate import (COLUMNS, REFERENCE_NDCG10, SYSTEMS, BaselinesConfig, baselines, bm25_per_query,
                           compare_to_reference, evaluate_model, limit_corpus, markdown_table, matrix_topk, parse_list,
                           preset_config, write_baselines)

REPO = Path(__file__).resolve().parents[1]
RESULT_KEYS = {"nDCG@10", "R@100", "flops", "doc_nnz", "query_nnz", "n_queries", "dataset_checksum"}


def write_beir(root: Path, corpus: dict, queries: dict, qrels: dict) -> Path:
    (root / "qrels").mkdir(parents=True)
    with open(root / "corpus.jsonl", "w") as f:
        for did, (title, text) in corpus.items():
            f.write(json.dumps({"_id": did, "title": title, "text": text}) + "\n")
    with open(root / "queries.jsonl", "w") as f:
        for qid, text in queries.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    with open(root / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, rel in qrels.items():
            for did, g in rel.items():
                f.write(f"{qid}\t{did}\t{g}\n")
    return root


@pytest.fixture
def tiny_beir(tmp_path) -> Path:
    corpus = {
        "d1": ("Macrophages", "Alveolar macrophages clear inhaled particles from the lung."),
        "d2": ("Boundary layers", "Transition on a flat plate at supersonic speed, with heat transfer."),
        "d3": ("", "A recipe for lemon cake with butter and sugar."),
        "d4": ("Lung disease", "Chronic inflammation of the airways and the lung."),
    }
    queries = {"q1": "what do macrophages clear from the lung", "q2": "supersonic boundary layer heat transfer",
               "q3": "unjudged query"}
    return write_beir(tmp_path / "tiny", corpus, queries, {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}})


def test_evaluate_model_on_a_beir_dir(tiny_beir, idf_file, splade_tiny_path, tmp_path):
    res = evaluate_model("splade-tiny", str(tiny_beir), idf_path=idf_file, max_length=64, cache_dir=tmp_path / "c",
                         show_progress=False)
    assert RESULT_KEYS <= set(res)
    assert res["n_queries"] == 2 and res["n_docs"] == 4 and res["self_hits"] is False
    assert res["nDCG@10"] == pytest.approx(1.0)  # each query's one relevant doc ranks first
    assert res["R@100"] == 1.0 and res["flops"] > 0 and res["doc_nnz"] > res["query_nnz"] > 0
    again = evaluate_model("splade-tiny", str(tiny_beir), idf_path=idf_file, max_length=64,
                           cache_dir=tmp_path / "c", show_progress=False)
    assert again["nDCG@10"] == res["nDCG@10"] and again["dataset_checksum"] == res["dataset_checksum"]
    assert len(list((tmp_path / "c").rglob("*.npz"))) == 1  # the second call read the cached encoding


def test_self_hits_removed_only_when_asked(tmp_path, idf_file, splade_tiny_path):
    text = "supersonic boundary layer heat transfer"
    root = write_beir(tmp_path / "qd", {"1": ("", text), "2": ("", "heat transfer in a supersonic boundary layer flow"),
                                        "3": ("", "lemon cake")}, {"1": text}, {"1": {"2": 1}})
    kw = dict(idf_path=idf_file, max_length=64, show_progress=False)
    kept = evaluate_model("splade-tiny", str(root), self_hits=False, **kw)
    dropped = evaluate_model("splade-tiny", str(root), self_hits=True, **kw)
    assert kept["nDCG@10"] < 1.0 and dropped["nDCG@10"] == pytest.approx(1.0)  # doc "1" == query "1"
    assert evaluate_model("splade-tiny", str(root), **kw)["self_hits"] is False  # "qd" is not in SELF_HITS


def test_cli_evaluate_writes_json(tiny_beir, idf_file, splade_tiny_path, tmp_path, capsys):
    from ifsr.cli import main

    out = tmp_path / "res" / "eval.json"
    rc = main(["evaluate", "--model", "splade-tiny", "--data", str(tiny_beir), "--split", "test", "--idf",
               str(idf_file), "--max-length", "64", "--json", str(out), "--quiet"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert RESULT_KEYS <= set(res) and res["n_queries"] == 2
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "nDCG@10=1.0000" in line
    assert main(["evaluate", "--model", "splade-tiny", "--data", str(tiny_beir), "--split", "dev", "--idf",
                 str(idf_file), "--quiet"]) == 2  # missing split: a clear error, exit code 2
    assert "available splits: ['test']" in capsys.readouterr().err


# ----------------------------------------------------------------------------- helpers

def test_bm25_per_query_by_hand(tiny_beir):
    """q1's words (macrophages, clear, lung) put d1 first; q2's (supersonic, boundary, heat, transfer) put
    d2 first. Both are judged queries with their one relevant document at rank 1: nDCG@10 = 1 each.
    q3 has no judgements and is left out."""
    from ifsr.data.beir import load_beir

    ds = load_beir(str(tiny_beir), split="test")
    assert bm25_per_query(ds) == {"q1": pytest.approx(1.0), "q2": pytest.approx(1.0)}
    # now judge only d2 relevant for q1: it shares no word with q1, so it ties at score 0 with d3 and
    # ranks third (d1, then d4 with 'lung', then d2 before d3 by document index): nDCG@10 = 1/log2(4)
    ds.qrels["q1"] = {"d2": 1}
    assert bm25_per_query(ds)["q1"] == pytest.approx(0.5)


@pytest.mark.slow
def test_bm25_per_query_matches_the_baselines_bm25(data_root):
    """The paired-test reference is the baselines table's BM25: same mean nDCG@10 on SciFact test."""
    from ifsr.data.beir import load_beir

    pq = bm25_per_query(load_beir("scifact", split="test", data_dir=str(data_root)))
    assert len(pq) == 300
    assert sum(pq.values()) / len(pq) == pytest.approx(REFERENCE_NDCG10["scifact"]["bm25"], abs=0.001)


def test_limit_corpus():
    corpus = {f"d{i}": {"title": "", "text": f"t{i}"} for i in range(5)}
    ds = BeirSet("x", corpus, {"a": "qa", "b": "qb", "c": "qc", "e": "qe"},
                 {"a": {"d0": 1, "d4": 0}, "b": {"d1": 1, "d3": 2}, "c": {"d0": 0}, "e": {"d2": 1}})
    small = limit_corpus(ds, 3)
    assert small.doc_ids == ["d0", "d1", "d2"]
    assert small.query_ids == ["a", "e"]  # b has a positive outside; c has no positive
    assert small.qrels["a"] == {"d0": 1} and small.checksum() != ds.checksum()
    with pytest.raises(ValueError, match="no query"):
        limit_corpus(BeirSet("y", corpus, {"b": "qb"}, {"b": {"d4": 1}}), 2)
    with pytest.raises(ValueError, match="positive"):
        limit_corpus(ds, 0)


def test_matrix_topk_ties_by_index():
    s = np.array([[0.5, 0.9, 0.5, 0.9], [0.0, 0.0, 0.0, 1.0]], dtype=np.float32)
    idx, sc = matrix_topk(s, 3)
    assert idx.tolist() == [[1, 3, 0], [3, 0, 1]] and sc.dtype == np.float32
    np.testing.assert_array_equal(sc, np.array([[0.9, 0.9, 0.5], [1.0, 0.0, 0.0]], dtype=np.float32))


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
    md = markdown_table(_fake_table())
    assert md.startswith("| dataset | system | nDCG@10 |") and "| – |" in md and md.count("\n") == 14


def test_write_baselines(tmp_path):
    config = BaselinesConfig(datasets=["scifact"], out_dir=str(tmp_path / "unused"))
    out = write_baselines(_fake_table(), config, tmp_path / "bl")
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
    write_baselines(df, config)
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
