"""evaluate_model, the CLI, the judged-run / self-hit rule, BM25 per query and limit_corpus."""
import json
from pathlib import Path

import numpy as np
import pytest

from ifsr.cli import main
from ifsr.data.beir import BeirSet, load_beir
from ifsr.eval.baselines import REFERENCE_NDCG10
from ifsr.eval.evaluate import SELF_HITS, bm25_per_query, evaluate_model, judged_run, limit_corpus, self_hits_for

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
    ds = load_beir(str(tiny_beir), split="test")
    assert bm25_per_query(ds) == {"q1": pytest.approx(1.0), "q2": pytest.approx(1.0)}
    # now judge only d2 relevant for q1: it shares no word with q1, so it ties at score 0 with d3 and
    # ranks third (d1, then d4 with 'lung', then d2 before d3 by document index): nDCG@10 = 1/log2(4)
    ds.qrels["q1"] = {"d2": 1}
    assert bm25_per_query(ds)["q1"] == pytest.approx(0.5)


@pytest.mark.slow
def test_bm25_per_query_matches_the_baselines_bm25(data_root):
    """The paired-test reference is the baselines table's BM25: same mean nDCG@10 on SciFact test."""
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


def _self_hit_set(name: str) -> BeirSet:
    corpus = {d: {"title": "", "text": d} for d in ("a", "b", "c")}
    return BeirSet(name, corpus, {"a": "qa", "b": "qb", "z": "unjudged"}, {"a": {"b": 1}, "b": {"b": 1}})


def test_judged_run_applies_the_self_hit_rule():
    asked = []
    idx = np.array([[0, 1, 2], [1, 0, 2]], dtype=np.int64)  # query a ranks doc a first; b ranks doc b first
    val = np.array([[3, 2, 1], [5, 4, 3]], dtype=np.float32)

    def search(n):
        asked.append(n)
        return idx[:, :n], val[:, :n]

    run, qrels = judged_run(_self_hit_set("arguana"), search, 2)  # queries are documents there
    assert asked == [3] and list(run["a"]) == ["b", "c"] and list(run["b"]) == ["a", "c"]
    assert qrels == {"a": {"b": 1}, "b": {"b": 1}}
    run, _ = judged_run(_self_hit_set("scifact"), search, 2)  # ids overlap by number only: hits kept
    assert asked == [3, 2] and list(run["a"]) == ["a", "b"] and list(run["b"]) == ["b", "a"]
    run, _ = judged_run(_self_hit_set("scifact"), search, 1, self_hits=True)  # explicit override
    assert asked == [3, 2, 2] and run == {"a": {"b": 2.0}, "b": {"a": 4.0}}
    assert set(SELF_HITS) == {"arguana", "quora"} and self_hits_for("Quora") and not self_hits_for("cranfield")
