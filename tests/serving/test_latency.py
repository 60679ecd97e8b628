"""The latency harness (no timing is asserted), its corpora and provenance, and the engine check."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import need_module
from serving_helpers import real_bits  # noqa: F401

from ifsr.data.beir import load_beir
from ifsr.eval.evaluate import encode_texts
from ifsr.exp.corpora import LatencyCorpus, latency_corpora, provenance, resample
from ifsr.exp.latency import (COLUMNS, SYSTEMS, best_bm25, latency_plot, latency_ratios, latency_table,
                              measure_latency)
from ifsr.manifest import sha256_dir, sha256_file
from ifsr.report.claims import best_ratio
from ifsr.serving.engines import ENGINES, ExactEngine
from ifsr.serving.queryside import inference_free_query

need_module("pyterrier_pisa", "pyterrier-pisa")


def test_latency_table_columns(tmp_path: Path, real_bits):
    encoder, query_encoder, ids, texts, docs, queries = real_bits
    corpus = LatencyCorpus("tiny", texts[:80], docs[:80], False, list(ids[:80]), 80)
    bigger = resample(corpus, 150, seed=0)
    assert bigger.resampled and len(bigger.texts) == 150 and bigger.vectors.shape[0] == 150 and bigger.distinct == 80
    assert bigger.doc_ids[:80] == list(ids[:80]) and all("#copy" in d for d in bigger.doc_ids[80:])
    engines = ["pisa", "pisa(algorithm=block_max_wand)", "exact"] + [
        name for name in ("seismic", "bmp", "bmp(alpha=0.5)") if ENGINES[name.partition("(")[0]].is_available()]
    top1 = ExactEngine.from_docs(docs[:80], 1)
    encode = inference_free_query(encoder.tokenizer, query_encoder.idf)
    qrels = {f"q{i}": {ids[int(top1.search_ids(*encode(q))[0][0])]: 1} for i, q in enumerate(queries[:8])}
    df = latency_table([corpus, bigger], queries[:8], encoder.tokenizer, query_encoder.idf, encoder,
                       tmp_path, engines=engines, query_ids=[f"q{i}" for i in range(8)], qrels=qrels,
                       n_boot=200, show_progress=False)
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS
    assert set(df["system"]) == set(SYSTEMS) and set(df["docs"]) == {80, 150}
    assert set(df["engine"]) == set(engines) and len(df) == 2 * 3 * len(engines)
    assert (df["p50_ms"] > 0).all() and (df["p50_ms"] <= df["p99_ms"]).all() and (df["qps_2threads"] > 0).all()
    pisa = df[df["engine"].str.startswith("pisa") & (df["system"] != "bm25")]
    assert (pisa["top10_agreement"] >= 0.9).all()
    exact = df[df["engine"] == "exact"]
    assert (exact["top10_agreement"] == 1.0).all() and (exact["delta_nDCG@10"] == 0).all()
    # each query's one relevant document is its exact top-1, read through the corpus's doc ids
    assert (exact.loc[exact["system"] == "inference-free", "nDCG@10"] == 1.0).all()
    assert (df.loc[df["engine"] == "pisa", "postings_per_query"] > 0).all()
    assert (df.loc[df["engine"].isin(["pisa", "exact", "bmp"]), "index_mb"] > 0).all()
    ratios = latency_ratios(df)
    assert len(ratios) == 2 * len(engines) and ratios["best_bm25_engine"].isin(engines).all()
    assert (ratios["if_over_bm25_lo"] <= ratios["if_over_bm25"]).all()
    assert (ratios["if_over_bm25"] <= ratios["if_over_bm25_hi"]).all()
    assert df["if_over_bm25_p"].dropna().between(0, 1).all() and df["if_over_best_bm25_p_paper"].dropna().between(0, 1).all()
    assert df.attrs["times"][("pisa", "inference-free", 150)].shape == (1, 8)  # [repeats, queries] kept for pooling
    free = df[(df["system"] == "inference-free") & (df["docs"] == 150)]
    fastest = df[(df["system"] == "bm25") & (df["docs"] == 150)].sort_values("p50_ms")["engine"]
    assert set(free["best_bm25_engine"]) == {fastest.iloc[0]} or len(fastest) > 1
    best = best_ratio(df, min_agreement=0.0)
    assert best is not None and best["docs"] == 150 and best["if_over_best_bm25"] == free["if_over_best_bm25"].min()
    latency_plot(df, tmp_path / "latency.png")
    assert (tmp_path / "latency.png").stat().st_size > 0
    with pytest.raises(ValueError):
        latency_table([corpus], queries[:2], encoder.tokenizer, query_encoder.idf, encoder, tmp_path,
                      systems=("dense",))
    with pytest.raises(ValueError, match="unknown PISA options"):
        latency_table([corpus], queries[:2], encoder.tokenizer, query_encoder.idf, encoder, tmp_path,
                      engines=["pisa(rounds=8)"], show_progress=False)
    with pytest.raises(ValueError, match="sizes take"):
        measure_latency(sizes=("tiny",))
    with pytest.raises(ValueError, match="resample_from"):
        measure_latency(sizes=(1000,), resample_from="marco")


def test_bits_max_docs_and_content_keyed_indexes(tmp_path: Path, real_bits):
    encoder, query_encoder, ids, texts, docs, queries = real_bits
    small = LatencyCorpus("small", texts[:60], docs[:60], False, list(ids[:60]), 60)
    big = LatencyCorpus("big", texts[:90], docs[:90], False, list(ids[:90]), 90)
    args = (queries[:6], encoder.tokenizer, query_encoder.idf, None, tmp_path)
    df = latency_table([small, big], *args, engines=["pisa", "pisa(bits=12)", "pisa(bits=4)", "exact"],
                       systems=("inference-free",), max_docs={"pisa(bits=4)": 60, "exact": 60}, n_boot=50,
                       show_progress=False)
    assert set(df.loc[df["docs"] == 60, "engine"]) == {"pisa", "pisa(bits=12)", "pisa(bits=4)", "exact"}
    assert set(df.loc[df["docs"] == 90, "engine"]) == {"pisa", "pisa(bits=12)"}  # the capped ones left out
    free = df.set_index(["engine", "docs"])["top10_agreement"]
    assert free[("pisa(bits=12)", 90)] >= 0.95  # 12-bit impacts rank as exact scoring does, or nearly
    assert free[("pisa(bits=4)", 60)] <= free[("pisa(bits=12)", 60)]  # 4 bits: ties and rounding cost agreement
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert sum("-b12-" in f for f in folders) == 2 and sum("-b4-" in f for f in folders) == 1
    # the cache key is the content, never the name: a renamed corpus reuses its index folders
    renamed = LatencyCorpus("renamed", small.texts, small.vectors, False, small.doc_ids, 60)
    latency_table([renamed], *args, engines=["pisa(bits=12)"], systems=("inference-free",), n_boot=50,
                  show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == folders
    with pytest.raises(ValueError, match="not both"):
        latency_table([small], *args, engines=["pisa(bits=8,doc_scale=10)"], show_progress=False)
    with pytest.raises(ValueError, match="bits must be"):
        latency_table([small], *args, engines=["pisa(bits=0.5)"], show_progress=False)
    with pytest.raises(ValueError, match="max_docs"):
        latency_table([small], *args, engines=["pisa"], max_docs={"bmp(bsize=8)": 10}, show_progress=False)


def test_a_pruned_querys_agreement_is_against_exact_scoring_of_that_same_query(tmp_path: Path, real_bits):
    encoder, query_encoder, ids, texts, docs, queries = real_bits
    corpus = LatencyCorpus("tiny", texts[:80], docs[:80], False, list(ids[:80]), 80)
    args = (queries[:8], encoder.tokenizer, query_encoder.idf, None, tmp_path)
    pruned = latency_table([corpus], *args, engines=["exact", "pisa"], systems=("inference-free",), max_query_terms=2,
                           n_boot=50, show_progress=False).set_index("engine")
    assert pruned.loc["exact", "top10_agreement"] == 1.0  # the exact engine is its own reference
    assert pruned.loc["pisa", "top10_agreement"] >= 0.9
    # the pruned query ranks differently from the full one: an agreement against the full query would be < 1
    full = ExactEngine.from_docs(docs[:80], 10)
    two = [full.search_ids(*inference_free_query(encoder.tokenizer, query_encoder.idf, 0.0, 2)(q))[0] for q in queries[:8]]
    every = [full.search_ids(*inference_free_query(encoder.tokenizer, query_encoder.idf)(q))[0] for q in queries[:8]]
    assert any(set(a) != set(b) for a, b in zip(two, every))


def test_encode_texts_resumes_by_chunk(tmp_path: Path):
    class Counting:
        max_length, tokenizer = 8, [0] * 5

        def __init__(self):
            self.calls = 0

        def encode(self, texts, batch_size=32, show_progress=True, shard=None, columns=None):
            self.calls += 1
            return sp.csr_matrix(np.array([[len(t), 0, 1, 0, 0] for t in texts], dtype=np.float32))

    def encode(texts, weights="w0", chunk=2):
        return encode_texts(enc, texts, weights, tmp_path, show_progress=False, model="m", chunk=chunk)

    enc, texts = Counting(), [f"doc {i}" * (i + 1) for i in range(5)]
    first = encode(texts)
    assert enc.calls == 3 and first.shape == (5, 5) and first[4, 0] == len(texts[4])
    again = encode(texts)
    assert enc.calls == 3 and (again != first).nnz == 0  # every chunk came from the cache
    encode(texts[:2] + ["new"] + texts[3:])
    assert enc.calls == 4  # only the chunk whose texts changed is encoded again
    encode(texts, weights="w1")
    assert enc.calls == 7  # other weights: nothing reused
    assert encode([]).shape == (0, 5)
    with pytest.raises(ValueError, match="chunk"):
        encode(texts, chunk=0)


def test_latency_corpora_encode_only_the_base_a_size_needs(tmp_path: Path, data_root: Path):
    """An int size resamples `resample_from`; with "scifact" the real pool (49k passages) is never read."""
    class Counting:
        max_length, tokenizer = 8, [0] * 3

        def __init__(self):
            self.texts = 0

        def encode(self, texts, batch_size=32, show_progress=True, shard=None, columns=None):
            self.texts += len(texts)
            return sp.csr_matrix(np.ones((len(texts), 3), dtype=np.float32))

    enc, n = Counting(), len(load_beir("scifact", "test", data_dir=data_root, download=False).doc_ids)
    small, full, big = latency_corpora([300, "scifact", n + 50], data_root, enc, tmp_path, "m", "w",
                                       resample_from="scifact", seed=0, show_progress=False)
    assert enc.texts == n  # SciFact once, for all three sizes
    assert (len(small.texts), small.resampled, full.name, len(big.texts), big.resampled) == (300, True, "scifact",
                                                                                            n + 50, True)
    again, = latency_corpora([300], data_root, enc, tmp_path, "m", "w", resample_from="scifact", seed=0,
                             show_progress=False)
    assert again.doc_ids == small.doc_ids  # the same draw for the same seed
    for bad in ([0], ["msmarco"], [True]):
        with pytest.raises(ValueError, match="sizes"):
            latency_corpora(bad, data_root, enc, tmp_path, "m", "w", show_progress=False)
    with pytest.raises(ValueError, match="resample_from"):
        latency_corpora([10], data_root, enc, tmp_path, "m", "w", resample_from="cranfield", show_progress=False)


def test_latency_provenance_hashes_data_and_model(tmp_path: Path, splade_tiny_path: str, idf_file: Path,
                                                  data_root: Path):
    data, models = provenance(data_root, splade_tiny_path, idf_file)
    assert data["idf"] == sha256_file(idf_file) and models == {splade_tiny_path: sha256_dir(splade_tiny_path)}
    assert len(data["scifact-test"]) == 64 and len(data["pairs"]) == 64
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "idf.json").write_text("{}")
    data, _ = provenance(data_root, saved, idf_file)
    assert "idf" not in data  # a saved model's own IDF is hashed with the model, not the default table


def test_best_bm25_is_the_fastest_that_agrees_with_exact_bm25():
    rows = {("pisa(algorithm=block_max_wand)", "bm25"): (0.83, 2.78), ("pisa", "bm25"): (1.0, 2.99),
            ("pisa(bits=8)", "bm25"): (0.995, 3.10)}
    assert best_bm25(rows) == ("pisa", "bm25")
    assert best_bm25(rows, min_agreement=0.8) == ("pisa(algorithm=block_max_wand)", "bm25")
    assert best_bm25({("bmp", "bm25"): (0.9, 1.0), ("lucene", "bm25"): (0.95, 2.0)}) == ("bmp", "bm25")  # none agrees
    assert best_bm25({}) is None
