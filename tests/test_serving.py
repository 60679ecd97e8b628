"""Serving engines (PISA, Seismic, OpenSearch export) and the latency harness. No timing is asserted."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import need_module
import scipy.sparse as sp

from ifsr.serving import corpora as corpora
from ifsr.serving import latency as latency
from ifsr.serving import queryside as queryside
from ifsr.serving import engines as serving

need_module("pyterrier_pisa", "pyterrier-pisa")


def zipf_corpus(n_docs: int, vocab: int, seed: int) -> sp.csr_matrix:
    """Synthetic learned-sparse-like docs: Zipfian term popularity, gamma-distributed weights."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab + 1)
    p /= p.sum()
    rows, cols, vals = [], [], []
    for i in range(n_docs):
        c = np.unique(rng.choice(vocab, size=rng.integers(0, 40), p=p))
        rows += [i] * len(c)
        cols += c.tolist()
        vals += rng.gamma(1.0, 0.7, size=len(c)).tolist()
    return sp.csr_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=(n_docs, vocab), dtype=np.float32)


def zipf_queries(n: int, vocab: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab + 1)
    p /= p.sum()
    out = []
    for _ in range(n):
        ids = np.unique(rng.choice(vocab, size=rng.integers(1, 9), p=p))
        out.append((ids, rng.uniform(0.5, 15.6, size=len(ids)).astype(np.float32)))
    return out


def test_exact_topk_ties_by_row_and_positive_only():
    docs = sp.csr_matrix(np.array([[1, 0], [2, 0], [2, 0], [0, 1], [2, 0]], dtype=np.float32)).tocsc()
    rows, scores = serving.exact_topk(np.array([0]), np.array([1.0], np.float32), docs, k=3)
    assert rows.tolist() == [1, 2, 4] and scores.tolist() == [2, 2, 2]
    rows, _ = serving.exact_topk(np.array([1]), np.array([1.0], np.float32), docs, k=3)
    assert rows.tolist() == [3]  # zero scores never count as hits
    assert serving.topk_agreement([np.array([1, 2])], [np.array([2, 1])]) == 1.0
    assert serving.topk_agreement([np.array([], int)], [np.array([], int)]) == 1.0


@pytest.mark.parametrize("algorithm", ["block_max_wand", "maxscore", "ranked_or"])
def test_pisa_impact_agrees_with_exact(tmp_path: Path, algorithm: str):
    docs = zipf_corpus(3000, 400, seed=0)
    terms = [f"t{j}" for j in range(400)]
    terms[:4] = ["##s", ".", "é", "[unused0]"]  # '##', punctuation, non-ASCII, brackets stay verbatim
    serving.PisaImpactIndex.build(tmp_path / "idx", docs, terms, doc_scale=100, show_progress=False)
    index = serving.PisaImpactIndex(tmp_path / "idx", terms, algorithm=algorithm, k=10)
    csc = docs.tocsc()
    queries = zipf_queries(200, 400, seed=1)
    found = [index.search_ids(ids, w)[0] for ids, w in queries]
    exact = [serving.exact_topk(ids, w, csc, 10)[0] for ids, w in queries]
    assert serving.topk_agreement(found, exact) >= 0.99
    rows, _ = index.search({"##s": 1.0, ".": 2.0})  # the token-string form reaches the same postings
    assert len(rows) > 0


def test_pisa_build_refuses_bad_input(tmp_path: Path):
    docs = zipf_corpus(10, 5, seed=0)
    with pytest.raises(ValueError):
        serving.PisaImpactIndex.build(tmp_path / "a", docs, ["a", "b", "c", "d", "d"], show_progress=False)
    with pytest.raises(ValueError):
        serving.PisaImpactIndex.build(tmp_path / "b", docs, ["a", "b c", "c", "d", "e"], show_progress=False)
    with pytest.raises(ValueError):
        serving.PisaImpactIndex.build(tmp_path / "c", docs, list("abcde"), doc_scale=0, show_progress=False)
    serving.PisaImpactIndex.build(tmp_path / "d", docs, list("abcde"), show_progress=False)
    with pytest.raises(FileExistsError):
        serving.PisaImpactIndex.build(tmp_path / "d", docs, list("abcde"), show_progress=False)
    with pytest.raises(ValueError):
        serving.PisaImpactIndex(tmp_path / "d", list("abcde"), algorithm="nope")


def test_pisa_bm25_on_text(tmp_path: Path):
    texts = ["the cat sat on the mat", "dogs chase cats", "a treatise on zebras and zebra crossings",
             "nothing relevant here", "cat cat cat food"]
    serving.PisaBM25Index.build(tmp_path / "bm25", texts, show_progress=False)
    index = serving.PisaBM25Index(tmp_path / "bm25", k=3)
    rows, scores = index.search("zebra")
    assert rows[0] == 2 and scores[0] > 0  # porter2 stems zebras/zebra alike
    exhaustive = serving.PisaBM25Index(tmp_path / "bm25", algorithm="ranked_or", k=3)
    assert index.search("cat mat")[0].tolist() == exhaustive.search("cat mat")[0].tolist()


def test_seismic_engine_agrees():
    need_module("seismic", "pyseismic-lsr")
    docs = zipf_corpus(2000, 300, seed=2)
    index = serving.SeismicImpactIndex(docs, k=10)
    csc = docs.tocsc()
    queries = zipf_queries(100, 300, seed=3)
    found = [index.search_ids(ids, w)[0] for ids, w in queries]
    exact = [serving.exact_topk(ids, w, csc, 10)[0] for ids, w in queries]
    assert serving.topk_agreement(found, exact) >= 0.95  # Seismic is approximate by design


# ------------------------------------------------------------------------------ real model / data
@pytest.fixture(scope="module")
def real_bits(splade_tiny_path: str, idf_file: Path, data_root: Path):
    from ifsr.core.encoder import DocumentEncoder, QueryEncoder

    from ifsr.data.beir import load_beir

    encoder = DocumentEncoder.from_pretrained(splade_tiny_path, max_length=64).eval()
    query_encoder = QueryEncoder.from_idf_file(encoder.tokenizer, idf_file)
    ds = load_beir("scifact", "test", data_dir=data_root, download=False)
    ids, texts = ds.doc_ids[:120], ds.doc_texts()[:120]
    docs = encoder.encode(texts, batch_size=32, show_progress=False)
    queries = corpora.scifact_queries(data_root, n=60, seed=0)
    return encoder, query_encoder, ids, texts, docs, queries


def test_every_vocab_token_roundtrips_through_pisa(tmp_path: Path, real_bits):
    encoder = real_bits[0]
    terms = serving.vocab_terms(encoder.tokenizer)
    keep = np.setdiff1d(np.arange(len(terms)), encoder.tokenizer.all_special_ids)
    docs = sp.csr_matrix((np.ones(len(keep), np.float32), (np.arange(len(keep)), keep)), shape=(len(keep), len(terms)))
    serving.PisaImpactIndex.build(tmp_path / "vocab", docs, terms, show_progress=False)
    index = serving.PisaImpactIndex(tmp_path / "vocab", terms, algorithm="ranked_or", k=1)
    rows = [index.search_ids(np.array([t]), np.array([1.0]))[0] for t in keep]
    assert all(len(r) == 1 and r[0] == i for i, r in enumerate(rows))


def test_pisa_real_vectors_agree_with_exact(tmp_path: Path, real_bits):
    encoder, query_encoder, _, _, docs, queries = real_bits
    terms = serving.vocab_terms(encoder.tokenizer)
    serving.PisaImpactIndex.build(tmp_path / "real", docs, terms, show_progress=False)
    index = serving.PisaImpactIndex(tmp_path / "real", terms, k=10)
    csc = docs.tocsc()
    qv = [(query_encoder.token_ids(q), query_encoder.idf[query_encoder.token_ids(q)]) for q in queries]
    found = [index.search_ids(ids, w)[0] for ids, w in qv]
    exact = [serving.exact_topk(ids, w, csc, 10)[0] for ids, w in qv]
    assert serving.topk_agreement(found, exact) >= 0.99
    folded = (docs @ sp.diags(query_encoder.idf)).tocsr()  # idf_j * w_j(d) as impacts, binary query
    serving.PisaImpactIndex.build(tmp_path / "folded", folded, terms, show_progress=False)
    index = serving.PisaImpactIndex(tmp_path / "folded", terms, k=10)
    query = queryside.pisa_idf_query(encoder.tokenizer, query_encoder.idf, 10, folded=True)
    assert set(query(queries[0]).values()) == {1.0}
    assert serving.topk_agreement([index.search_prepared(query(q))[0] for q in queries], exact) >= 0.99


def test_fast_query_side_matches_query_encoder(real_bits):
    encoder, query_encoder, *_, queries = real_bits
    fast = queryside.inference_free_query(encoder.tokenizer, query_encoder.idf)
    for q in queries:
        ids, w = fast(q)
        assert np.array_equal(ids, query_encoder.token_ids(q))
        assert np.allclose(w, query_encoder.idf[ids])
    pruned = queryside.inference_free_query(encoder.tokenizer, query_encoder.idf, min_idf=2.0, max_terms=5)
    ids, w = pruned(queries[0])
    assert len(ids) <= 5 and (w >= 2.0).all()
    terms = serving.vocab_terms(encoder.tokenizer)
    pisa_query = queryside.pisa_idf_query(encoder.tokenizer, query_encoder.idf, query_scale=10)
    for q in queries:  # the table-driven PISA query equals the generic path's integer weights
        ids = query_encoder.token_ids(q)
        scaled = np.rint(query_encoder.idf[ids].astype(np.float64) * 10)
        assert pisa_query(q) == {terms[i]: s for i, s in zip(ids, scaled) if s > 0}
    for q in queries[:10]:  # pruned: the same tokens on both paths
        top = queryside.pisa_idf_query(encoder.tokenizer, query_encoder.idf, 10, min_idf=2.0, max_terms=5)(q)
        ids, _ = queryside.inference_free_query(encoder.tokenizer, query_encoder.idf, min_idf=2.0, max_terms=5)(q)
        assert set(top) == {terms[i] for i in ids} and len(top) <= 5 and min(top.values()) >= 20


@pytest.mark.parametrize("form", ["neural_sparse", "rank_feature"])
def test_opensearch_export_and_hand_scoring(tmp_path: Path, real_bits, form: str):
    encoder, query_encoder, ids, texts, docs, queries = real_bits
    vocab = serving.vocab_terms(encoder.tokenizer)
    paths = serving.export_opensearch(ids, docs, vocab, tmp_path, "scifact-ifsr", texts=texts, show_progress=False)
    mapping = json.loads(paths["mapping"].read_text())
    assert mapping["mappings"]["properties"]["sparse_embedding"] == {"type": "rank_features"}
    lines = paths["bulk"].read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 * len(ids)
    for i, (action, source) in enumerate(zip(lines[::2], lines[1::2])):
        action, source = json.loads(action), json.loads(source)
        assert action == {"index": {"_index": "scifact-ifsr", "_id": ids[i]}}
        feats = source["sparse_embedding"]
        assert len(feats) == docs[i].nnz and all(v > 0 and "." not in k for k, v in feats.items())
        assert source["text"] == texts[i]
    csc = docs.tocsc()
    for q in queries[:20]:
        body = serving.query_body(q, query_encoder, form=form)
        assert json.loads(json.dumps(body)) == body and body["size"] == 10
        hand = serving.score_bulk(paths["bulk"], body)
        qids = query_encoder.token_ids(q)
        exact = np.asarray(csc[:, qids] @ query_encoder.idf[qids]).ravel()
        assert set(hand) == {ids[i] for i in np.flatnonzero(exact > 0)}
        for doc, score in hand.items():
            assert score == pytest.approx(exact[ids.index(doc)], rel=1e-5)


def test_opensearch_query_forms_and_escaping(real_bits):
    encoder, query_encoder, *_ = real_bits
    vocab = serving.vocab_terms(encoder.tokenizer)
    keys = [serving.escape_feature(t) for t in vocab]
    assert len(set(keys)) == len(vocab) and not any("." in k for k in keys)
    assert all(serving.unescape_feature(k) == t for k, t in zip(keys, vocab))
    body = serving.query_body("Vitamin D. levels", query_encoder, form="neural_sparse")
    tokens = body["query"]["neural_sparse"]["sparse_embedding"]["query_tokens"]
    assert "%2E" in tokens and "vitamin" in tokens  # '.' is escaped the same way on both sides
    raw = serving.query_body("Vitamin D. levels", query_encoder, escape_dots=False)
    assert "." in raw["query"]["neural_sparse"]["sparse_embedding"]["query_tokens"]
    clause = serving.query_body("vitamin", query_encoder, form="rank_feature")["query"]["bool"]["should"][0]
    assert clause["rank_feature"]["field"] == "sparse_embedding.vitamin" and clause["rank_feature"]["linear"] == {}
    assert serving.query_body("", query_encoder)["query"] == {"match_none": {}}
    with pytest.raises(ValueError):
        serving.query_body("x", query_encoder, form="knn")


def test_latency_table_columns(tmp_path: Path, real_bits):
    encoder, query_encoder, _, texts, docs, queries = real_bits
    corpus = corpora.LatencyCorpus("tiny", texts[:80], docs[:80], False)
    bigger = corpora.resample(corpus, 150, seed=0)
    assert bigger.resampled and len(bigger.texts) == 150 and bigger.vectors.shape[0] == 150
    engines = ("pisa", "seismic") if _has("seismic") else ("pisa",)
    df = latency.latency_table([corpus, bigger], queries[:8], encoder.tokenizer, query_encoder.idf, encoder,
                               tmp_path, engines=engines, show_progress=False)
    assert list(df.columns[: len(latency.COLUMNS)]) == latency.COLUMNS
    assert set(df["system"]) == set(latency.SYSTEMS) and set(df["docs"]) == {80, 150}
    assert (df["p50_ms"] > 0).all() and (df["p50_ms"] <= df["p99_ms"]).all()
    pisa = df[(df["engine"] == "pisa") & (df["system"] != "bm25")]
    assert (pisa["top10_agreement"] >= 0.9).all()
    assert (df.loc[df["engine"] == "pisa", "postings_per_query"] > 0).all()
    latency.latency_plot(df, tmp_path / "latency.png")
    assert (tmp_path / "latency.png").stat().st_size > 0
    with pytest.raises(ValueError):
        latency.latency_table([corpus], queries[:2], encoder.tokenizer, query_encoder.idf, encoder, tmp_path,
                              systems=("dense",))
    with pytest.raises(ValueError, match="sizes take"):
        latency.measure_latency(sizes=("tiny",))
    with pytest.raises(ValueError, match="resample_from"):
        latency.measure_latency(sizes=(1000,), resample_from="marco")


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_encode_cached_resumes_by_chunk(tmp_path: Path):
    class Counting:
        max_length, tokenizer = 8, [0] * 5

        def __init__(self):
            self.calls = 0

        def encode(self, texts, batch_size=32, show_progress=True):
            self.calls += 1
            return sp.csr_matrix(np.array([[len(t), 0, 1, 0, 0] for t in texts], dtype=np.float32))

    enc, texts = Counting(), [f"doc {i}" * (i + 1) for i in range(5)]
    first = corpora.encode_cached(enc, texts, tmp_path, "m", "w0", chunk=2, show_progress=False)
    assert enc.calls == 3 and first.shape == (5, 5) and first[4, 0] == len(texts[4])
    again = corpora.encode_cached(enc, texts, tmp_path, "m", "w0", chunk=2, show_progress=False)
    assert enc.calls == 3 and (again != first).nnz == 0  # every chunk came from the cache
    corpora.encode_cached(enc, texts[:2] + ["new"] + texts[3:], tmp_path, "m", "w0", chunk=2, show_progress=False)
    assert enc.calls == 4  # only the chunk whose texts changed is encoded again
    corpora.encode_cached(enc, texts, tmp_path, "m", "w1", chunk=2, show_progress=False)
    assert enc.calls == 7  # other weights: nothing reused


def test_latency_provenance_hashes_data_and_model(tmp_path: Path, splade_tiny_path: str, idf_file: Path,
                                                  data_root: Path):
    from ifsr.manifest import sha256_dir, sha256_file

    data, models = corpora.provenance(data_root, splade_tiny_path, idf_file)
    assert data["idf"] == sha256_file(idf_file) and models == {splade_tiny_path: sha256_dir(splade_tiny_path)}
    assert len(data["scifact-test"]) == 64 and len(data["pairs"]) == 64
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "idf.json").write_text("{}")
    data, _ = corpora.provenance(data_root, saved, idf_file)
    assert "idf" not in data  # a saved model's own IDF is hashed with the model, not the default table


def test_engine_rows_compare_each_engine_with_its_reference(tmp_path: Path, real_bits):
    from ifsr.serving.engine_check import COLUMNS, engine_rows

    encoder, query_encoder, ids, texts, docs, queries = real_bits
    qs = {f"q{i}": q for i, q in enumerate(queries[:30])}
    csc = docs.tocsc()
    full = queryside.inference_free_query(encoder.tokenizer, query_encoder.idf)
    qrels = {}
    for q, text in qs.items():  # judge the exact top-2 documents relevant: exact nDCG@10 is then 1
        top, _ = serving.exact_topk(*full(text), csc, 2)
        qrels[q] = {ids[int(r)]: 1 for r in top}
    df = engine_rows(ids, texts, docs, qs, qrels, encoder.tokenizer, query_encoder.idf, tmp_path)
    assert list(df.columns) == COLUMNS
    by = df.set_index(["engine", "system"])
    exact = by.loc[("ifsr-exact", "inference-free")]
    assert exact["top10_agreement"] == 1.0 and exact["delta_nDCG@10"] == 0.0 and exact["nDCG@10"] == pytest.approx(1.0)
    pisa = by.loc[("pisa", "inference-free")]
    assert pisa["top10_agreement"] >= 0.95 and abs(pisa["delta_nDCG@10"]) <= 0.05
    assert pisa["nDCG@10"] - pisa["reference_nDCG@10"] == pytest.approx(pisa["delta_nDCG@10"])
    assert by.loc[("bm25s", "bm25"), "top10_agreement"] == 1.0 and ("pisa", "bm25") in by.index
    with pytest.raises(ValueError, match="unknown engines"):
        engine_rows(ids, texts, docs, qs, qrels, encoder.tokenizer, query_encoder.idf, tmp_path, engines=("lucene",))
