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


def test_evaluate_refuses_k_below_the_deepest_measure(tiny_beir, idf_file, capsys):
    """Issue 31: --k 5 reported an R@100 computed from 5 documents. Refused before any model is loaded."""
    with pytest.raises(ValueError, match="k 5: below the deepest measure .*at least 100"):
        evaluate_model("splade-tiny", str(tiny_beir), idf_path=idf_file, k=5, show_progress=False)
    assert main(["evaluate", "--model", "splade-tiny", "--data", str(tiny_beir), "--idf", str(idf_file),
                 "--k", "5", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ifsr evaluate: error: --k 5: below the deepest measure") and "\n" not in err


def test_evaluate_warns_with_counts_about_queries_that_score_zero(tmp_path, idf_file, splade_tiny_path, capsys):
    """Issue 31: a query whose judged documents are all absent from the corpus, negative grades and a query that
    is empty after tokenization scored 0 with at most one logged line. Now: counts in the result's "warnings"
    and one `warning:` line each from the CLI."""
    corpus = {"d1": ("", "Alveolar macrophages clear inhaled particles from the lung."),
              "d2": ("", "Transition on a flat plate at supersonic speed.")}
    queries = {"q1": "macrophages lung", "q2": "supersonic plate", "q3": "gone", "q4": ""}
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1, "d1": -2}, "q3": {"absent": 1}, "q4": {"d2": 1}}
    root = write_beir(tmp_path / "odd", corpus, queries, qrels)
    res = evaluate_model("splade-tiny", str(root), idf_path=idf_file, max_length=64, show_progress=False)
    assert res["n_queries"] == 4 and res["nDCG@10"] == pytest.approx(0.5)
    notes = res["warnings"]
    assert len(notes) == 3, notes
    assert notes[0].startswith("1 of 4 judged queries have no relevant document") and "'q3'" in notes[0]
    assert notes[1].startswith("1 qrels rows of the judged queries have negative grades (lowest -2)")
    assert notes[2].startswith("1 of 4 judged queries are empty after tokenization") and "'q4'" in notes[2]
    assert main(["evaluate", "--model", "splade-tiny", "--data", str(root), "--idf", str(idf_file),
                 "--max-length", "64", "--quiet"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ifsr evaluate: warning: ")]
    assert len(err) == 3


def test_evaluate_refuses_qrels_that_name_no_document_of_the_corpus(tmp_path, idf_file, splade_tiny_path):
    """Issue 31: every judged document absent from the corpus gave nDCG@10 = 0 and exit 0."""
    root = write_beir(tmp_path / "other", {"d1": ("", "lung macrophages")}, {"q1": "lung", "q2": "plate"},
                      {"q1": {"x1": 1}, "q2": {"x2": 1, "d1": 0}})
    with pytest.raises(ValueError, match="none of its 2 judged queries has a relevant document"):
        evaluate_model("splade-tiny", str(root), idf_path=idf_file, max_length=64, show_progress=False)


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


@pytest.fixture(scope="module")
def trained_student(tmp_path_factory, data_root, idf_file, splade_tiny_path):
    """A student that moved: 3 steps of lr 1e-3 from splade-tiny on SciFact documents with random teacher labels."""
    import datasets

    from ifsr.core.idf import load_idf
    from ifsr.core.encoder import load_tokenizer
    from ifsr.distill.trainer import train
    from ifsr.exp.config import TrainConfig

    ds = load_beir("scifact", split="test", data_dir=data_root)
    texts, rng = ds.doc_texts()[:40], np.random.default_rng(0)
    rows = {"query": [ds.queries[q] for q in ds.query_ids[:8]],
            **{f"doc_{g}": [texts[(3 * i + g) % 40] for i in range(8)] for g in range(3)},
            "label": [rng.random((2, 3)).astype(np.float32).tolist() for _ in range(8)]}
    cfg = TrainConfig(student="splade-tiny", steps=3, batch_size=4, n_neg=2, max_length=64, warmup_steps=0, lr=1e-3,
                      lambda_warmup_steps=1, save_steps=10, logging_steps=1)
    idf = load_idf(idf_file, load_tokenizer("splade-tiny"))
    return train(cfg, datasets.Dataset.from_dict(rows), idf, tmp_path_factory.mktemp("student") / "run")


@pytest.mark.parametrize("name", ["scifact", "cranfield"])
def test_query_vocabulary_evaluation_equals_full_encoding(trained_student, data_root, idf_file, name, tmp_path):
    """Issue 27: the documents encoded only on the queries' vocabulary give the runs (scores and order), nDCG@10,
    R@100 and the FLOPS metric of the full vectors, for a trained student, on both sets; the doc nnz is that of
    the full vectors of the fixed sample."""
    from ifsr.core.encoder import QueryEncoder, query_columns
    from ifsr.core.idf import load_idf
    from ifsr.eval.evaluate import MEASURES, nnz_sample_rows, query_vocab_evaluation
    from ifsr.eval.metrics import evaluate_run, flops_metric, mean_nnz
    from ifsr.core.retrieval import sparse_topk
    from ifsr.manifest import sha256_dir
    from ifsr.serving.export import load_sparse_encoder

    ds = limit_corpus(load_beir(name, split="test", data_dir=data_root), 500)
    doc, _ = load_sparse_encoder(trained_student, max_length=128)
    q = QueryEncoder(doc.tokenizer, load_idf(idf_file, doc.tokenizer)).encode([ds.queries[i] for i in ds.query_ids])
    row, run = query_vocab_evaluation(doc, str(trained_student), sha256_dir(trained_student), ds, q, tmp_path)
    full = doc.encode(ds.doc_texts(), show_progress=False)  # [nd, V] every column
    ref_run, qrels = judged_run(ds, lambda n: sparse_topk(q, full, n), 100)
    assert run == ref_run  # the same documents, order and float scores for every query
    assert {m: row[m] for m in MEASURES} == evaluate_run(ref_run, qrels, MEASURES)
    assert row["flops"] == flops_metric(q, full)
    assert row["doc_nnz"] == mean_nnz(full[nnz_sample_rows(len(ds.doc_ids))]) and row["doc_nnz_docs"] == 32
    assert 0 < row["doc_nnz"] < mean_nnz(full) * 3 and len(query_columns(q)) < 0.2 * full.shape[1]
    again, _ = query_vocab_evaluation(doc, str(trained_student), sha256_dir(trained_student), ds, q, tmp_path)
    assert again == row  # from the cache


def test_encode_on_columns_is_the_full_encoding_restricted(doc):
    """DocumentEncoder.encode(columns=): the full vectors on those ids bit for bit (every head block has one
    shape), empty elsewhere; bad column sets refused."""
    texts = ["Alveolar macrophages clear inhaled particles from the lung.", "Heat transfer at supersonic speed.", ""]
    full = doc.encode(texts, show_progress=False)
    cols = np.concatenate([full[0].indices[::7], full[1].indices[:3], [7, 30000, 7]])  # active ones, and others
    part = doc.encode(texts, show_progress=False, columns=cols)
    keep = np.zeros(full.shape[1], dtype=bool)
    keep[np.unique(cols)] = True
    assert part.shape == full.shape and (part[:, ~keep]).nnz == 0
    assert (part[:, keep] != full[:, keep]).nnz == 0
    assert full[:, keep].nnz >= 5 and full[:, keep].nnz < full.nnz  # the test compares something, and leaves some out
    for bad in ([], [-1], [full.shape[1]]):
        with pytest.raises(ValueError, match="columns"):
            doc.encode(texts, show_progress=False, columns=np.array(bad, dtype=np.int64))
