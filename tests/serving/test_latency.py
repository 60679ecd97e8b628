"""The latency harness (no timing is asserted), its corpora and provenance, and the engine check."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import need_module
from serving_helpers import exact_rows, real_bits  # noqa: F401

from ifsr.manifest import sha256_dir, sha256_file
from ifsr.serving.corpora import LatencyCorpus, encode_cached, provenance, resample
from ifsr.serving.engine_check import COLUMNS as CHECK_COLUMNS, engine_rows
from ifsr.serving.engines import ENGINES
from ifsr.serving.latency import COLUMNS, SYSTEMS, latency_plot, latency_table, measure_latency
from ifsr.serving.queryside import inference_free_query

need_module("pyterrier_pisa", "pyterrier-pisa")


def test_latency_table_columns(tmp_path: Path, real_bits):
    encoder, query_encoder, _, texts, docs, queries = real_bits
    corpus = LatencyCorpus("tiny", texts[:80], docs[:80], False)
    bigger = resample(corpus, 150, seed=0)
    assert bigger.resampled and len(bigger.texts) == 150 and bigger.vectors.shape[0] == 150
    engines = [name for name in ("pisa", "exact", "seismic") if ENGINES[name].is_available()]
    df = latency_table([corpus, bigger], queries[:8], encoder.tokenizer, query_encoder.idf, encoder,
                               tmp_path, engines=engines, show_progress=False)
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS
    assert set(df["system"]) == set(SYSTEMS) and set(df["docs"]) == {80, 150}
    assert (df["p50_ms"] > 0).all() and (df["p50_ms"] <= df["p99_ms"]).all()
    pisa = df[(df["engine"] == "pisa") & (df["system"] != "bm25")]
    assert (pisa["top10_agreement"] >= 0.9).all()
    exact = df[df["engine"] == "exact"]
    assert set(exact["system"]) == {"inference-free", "siamese"} and (exact["top10_agreement"] == 1.0).all()
    assert (df.loc[df["engine"] == "pisa", "postings_per_query"] > 0).all()
    latency_plot(df, tmp_path / "latency.png")
    assert (tmp_path / "latency.png").stat().st_size > 0
    with pytest.raises(ValueError):
        latency_table([corpus], queries[:2], encoder.tokenizer, query_encoder.idf, encoder, tmp_path,
                              systems=("dense",))
    with pytest.raises(ValueError, match="sizes take"):
        measure_latency(sizes=("tiny",))
    with pytest.raises(ValueError, match="resample_from"):
        measure_latency(sizes=(1000,), resample_from="marco")


def test_encode_cached_resumes_by_chunk(tmp_path: Path):
    class Counting:
        max_length, tokenizer = 8, [0] * 5

        def __init__(self):
            self.calls = 0

        def encode(self, texts, batch_size=32, show_progress=True):
            self.calls += 1
            return sp.csr_matrix(np.array([[len(t), 0, 1, 0, 0] for t in texts], dtype=np.float32))

    enc, texts = Counting(), [f"doc {i}" * (i + 1) for i in range(5)]
    first = encode_cached(enc, texts, tmp_path, "m", "w0", chunk=2, show_progress=False)
    assert enc.calls == 3 and first.shape == (5, 5) and first[4, 0] == len(texts[4])
    again = encode_cached(enc, texts, tmp_path, "m", "w0", chunk=2, show_progress=False)
    assert enc.calls == 3 and (again != first).nnz == 0  # every chunk came from the cache
    encode_cached(enc, texts[:2] + ["new"] + texts[3:], tmp_path, "m", "w0", chunk=2, show_progress=False)
    assert enc.calls == 4  # only the chunk whose texts changed is encoded again
    encode_cached(enc, texts, tmp_path, "m", "w1", chunk=2, show_progress=False)
    assert enc.calls == 7  # other weights: nothing reused


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


def test_engine_rows_compare_each_engine_with_its_reference(tmp_path: Path, real_bits):
    encoder, query_encoder, ids, texts, docs, queries = real_bits
    qs = {f"q{i}": q for i, q in enumerate(queries[:30])}
    full = inference_free_query(encoder.tokenizer, query_encoder.idf)
    tops = exact_rows(docs, [full(text) for text in qs.values()], 2)
    qrels = {q: {ids[int(r)]: 1 for r in top} for q, top in zip(qs, tops)}  # exact nDCG@10 is then 1
    df = engine_rows(ids, texts, docs, qs, qrels, encoder.tokenizer, query_encoder.idf, tmp_path)
    assert list(df.columns) == CHECK_COLUMNS
    by = df.set_index(["engine", "system"])
    exact = by.loc[("ifsr-exact", "inference-free")]
    assert exact["top10_agreement"] == 1.0 and exact["delta_nDCG@10"] == 0.0 and exact["nDCG@10"] == pytest.approx(1.0)
    pisa = by.loc[("pisa", "inference-free")]
    assert pisa["top10_agreement"] >= 0.95 and abs(pisa["delta_nDCG@10"]) <= 0.05
    assert pisa["nDCG@10"] - pisa["reference_nDCG@10"] == pytest.approx(pisa["delta_nDCG@10"])
    assert by.loc[("bm25s", "bm25"), "top10_agreement"] == 1.0 and ("pisa", "bm25") in by.index
    with pytest.raises(ValueError, match="unknown engines"):
        engine_rows(ids, texts, docs, qs, qrels, encoder.tokenizer, query_encoder.idf, tmp_path, engines=("lucene",))
