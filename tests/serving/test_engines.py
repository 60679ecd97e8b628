"""The engine interface and registry: availability, the exact engine against brute force, Seismic."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import need_module
from serving_helpers import agreement_with_exact, zipf_corpus, zipf_queries

from ifsr.serving.base import Engine
from ifsr.serving.engines import ENGINES, ExactEngine, parse_engine, topk_agreement


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_every_registered_engine_reports_availability(name: str):
    cls = ENGINES[name]
    assert issubclass(cls, Engine) and cls.name == name
    if cls.requires is not None:
        need_module(cls.requires, cls.package)  # skip (fail in CI) when the optional package is absent
    assert cls.is_available() is True


def test_missing_dependency_is_reported_not_raised():
    class Missing(ExactEngine):
        name, requires, package = "missing", "ifsr_no_such_module", "no-such-package"

    assert Missing.is_available() is False
    with pytest.raises(ImportError, match="pip install no-such-package"):
        Missing.dependency()
    with pytest.raises(ValueError, match=r"unknown engine 'no-such-engine'"):
        parse_engine("no-such-engine")


def brute_force(dense: np.ndarray, ids: np.ndarray, weights: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """numpy ranking: float32 scores, positives only, score desc then row asc."""
    q = np.zeros(dense.shape[1], np.float32)
    q[ids] = weights
    scores = dense @ q
    rows = np.flatnonzero(scores > 0)
    rows = rows[np.lexsort((rows, -scores[rows]))][:k]
    return rows, scores[rows]


def test_exact_engine_equals_brute_force_with_ties():
    rng = np.random.default_rng(0)  # weights in {0.5, 1, 1.5, 2}: sums are exact, ties are frequent
    dense = (rng.random((300, 40)) < 0.15) * rng.integers(1, 5, size=(300, 40)).astype(np.float32) / 2
    engine = ExactEngine.from_docs(sp.csr_matrix(dense), k=10)
    queries = []
    for _ in range(200):
        ids = rng.choice(40, size=rng.integers(0, 6), replace=False)  # unsorted, sometimes empty
        queries.append((ids, (rng.integers(1, 5, size=len(ids)) / 2).astype(np.float32)))
    ties = 0
    for ids, w in queries:
        rows, scores = engine.search_ids(ids, w)
        want_rows, want_scores = brute_force(dense, ids, w, 10)
        assert rows.dtype == np.int64 and scores.dtype == np.float32
        assert rows.tolist() == want_rows.tolist() and scores.tolist() == want_scores.tolist()
        ties += len(scores) - len(set(scores.tolist()))
    assert ties > 100  # the tie-break was exercised
    many_rows, many_scores = engine.search_many(queries)
    for (ids, w), r, s in zip(queries, many_rows, many_scores):
        rows, scores = engine.search_ids(ids, w)
        assert r[r >= 0].tolist() == rows.tolist() and s[r >= 0].tolist() == scores.tolist()


def test_exact_ties_by_row_and_positive_only():
    docs = sp.csr_matrix(np.array([[1, 0], [2, 0], [2, 0], [0, 1], [2, 0]], dtype=np.float32))
    engine = ExactEngine.from_docs(docs, k=3)
    rows, scores = engine.search_ids(np.array([0]), np.array([1.0], np.float32))
    assert rows.tolist() == [1, 2, 4] and scores.tolist() == [2, 2, 2]
    rows, _ = engine.search_ids(np.array([1]), np.array([1.0], np.float32))
    assert rows.tolist() == [3]  # zero scores never count as hits
    assert topk_agreement([np.array([1, 2])], [np.array([2, 1])]) == 1.0
    assert topk_agreement([np.array([], int)], [np.array([], int)]) == 1.0


def test_seismic_engine_agrees():
    need_module("seismic", "pyseismic-lsr")
    docs = zipf_corpus(2000, 300, seed=2)
    index = ENGINES["seismic"].from_docs(docs, k=10)
    assert agreement_with_exact(index, docs, zipf_queries(100, 300, seed=3)) >= 0.95  # approximate by design
    # its size is measured (the latency tables' index_mb): at least the forward index's 4-byte weights, and far
    # from unbounded (summaries and packed, capped posting lists on top)
    assert docs.nnz * 4 < index.size_bytes() < 100 * docs.nnz * 8
    # a vocabulary beyond 16-bit component ids (BM25 over a real corpus) takes Seismic's large-vocabulary build
    wide = sp.hstack([sp.csr_matrix((docs.shape[0], 70_000 - docs.shape[1]), dtype=np.float32), docs]).tocsr()
    big = ENGINES["seismic"].from_docs(wide, k=10)
    shifted = [(ids + 70_000 - docs.shape[1], w) for ids, w in zipf_queries(100, 300, seed=3)]
    assert agreement_with_exact(big, wide, shifted) >= 0.95


def test_bmp_engine_is_exact_when_safe_and_prunes_when_not():
    """alpha = beta = 1 is BMP's safe setting: top-10 close to exact scoring. Measured on this corpus: 0.95
    (exact scoring over the same 8-bit document impacts agrees 0.994 with exact, so BMP loses the rest in its
    own query-side arithmetic: its scores are integers in its units); a query term the index lacks is dropped
    (BMP itself panics on it); smaller alpha, beta may only lose agreement."""
    need_module("bmp", "bmp")
    docs = zipf_corpus(2000, 300, seed=4)
    queries = zipf_queries(100, 300, seed=5)
    safe = ENGINES["bmp"].from_docs(docs, k=10, bsize=16)
    assert agreement_with_exact(safe, docs, queries) >= 0.93
    rows, scores = safe.search_ids(np.array([299, 5]), np.array([1.0, 2.0], np.float32))
    missing = docs[:, 299].nnz == 0
    assert len(rows) <= 10 and np.all(np.diff(scores) <= 0) and (missing or len(rows) > 0)
    empty = sp.csr_matrix((np.ones(1, np.float32), ([0], [0])), shape=(3, 300))
    assert ENGINES["bmp"].from_docs(empty, k=5).search_ids(np.array([7]), np.array([1.0]))[0].size == 0
    fast = ENGINES["bmp"].from_docs(docs, k=10, bsize=16, alpha=0.5, beta=0.5)
    assert agreement_with_exact(fast, docs, queries) <= agreement_with_exact(safe, docs, queries) + 1e-9
    assert safe.size_bytes() > 0
    with pytest.raises(ValueError, match="alpha and beta"):
        ENGINES["bmp"].from_docs(docs, alpha=0.0)


def test_engine_settings_parse_and_refuse_malformed_ones():
    assert parse_engine("bmp") == ("bmp", {})
    assert parse_engine("bmp(bsize=64, alpha=0.9)") == ("bmp", {"bsize": 64, "alpha": 0.9})
    assert parse_engine("pisa(algorithm=block_max_wand)") == ("pisa", {"algorithm": "block_max_wand"})
    for bad, match in [("lucy", "unknown engine"), ("bmp(bsize=64", "expected"), ("bmp(bsize)", "key=value"),
                       ("bmp(a=1,a=2)", "new key"), ("bmp(=3)", "key=value")]:
        with pytest.raises(ValueError, match=match):
            parse_engine(bad)
    with pytest.raises(ValueError, match="unknown engine 'lucy'"):
        parse_engine("lucy(x=1)")


def test_bm25_impacts_on_a_vector_engine_match_bm25(data_root):
    """BM25 served by a vector engine (`Bm25Index.impact_matrix`, binary-count queries): the exact engine
    gives BM25's own ranking; BMP's safe setting agrees with it like it does on learned impacts."""
    from ifsr.data.beir import load_beir
    from ifsr.data.mining import Bm25Index

    ds = load_beir("scifact", "test", data_dir=data_root, download=False)
    texts, queries = ds.doc_texts()[:600], [ds.queries[q] for q in ds.query_ids[:60]]
    bm25 = Bm25Index().build(texts)
    matrix = bm25.impact_matrix()
    exact = ENGINES["exact"].from_docs(matrix, k=10)
    want_rows, want_scores = bm25.search(queries, 10)
    for q, rows, scores in zip(queries, want_rows, want_scores):
        got_rows, got_scores = exact.search_ids(*bm25.query_vector(q))
        positive = scores > 0  # bm25s ranks zero-score documents too; engines return only scores > 0
        np.testing.assert_allclose(got_scores, scores[positive], rtol=1e-5)
        assert got_rows.tolist() == rows[positive].tolist() or np.allclose(np.sort(got_scores), np.sort(scores[positive]))
    if ENGINES["bmp"].is_available():
        bmp = ENGINES["bmp"].from_docs(matrix, k=10)
        found = [bmp.search_ids(*bm25.query_vector(q))[0] for q in queries]
        reference = [exact.search_ids(*bm25.query_vector(q))[0] for q in queries]
        assert topk_agreement(found, reference) >= 0.93


def test_query_time_options_share_one_index():
    need_module("bmp", "bmp")
    docs = zipf_corpus(500, 100, seed=6)
    safe = ENGINES["bmp"].from_docs(docs, k=10, bsize=16)
    fast = safe.with_query_options(alpha=0.5)
    assert fast.searcher is safe.searcher and (fast.alpha, safe.alpha) == (0.5, 1.0)
    with pytest.raises(ValueError, match="query-time"):
        safe.with_query_options(bsize=8)
    with pytest.raises(ValueError, match="alpha and beta"):
        safe.with_query_options(beta=2.0)


def test_topk_agreement_counts_ties_with_the_references_kth():
    # the reference keeps rows 1, 2 of the three rows scored 2.0 (k = 2); row 4 ties with its 2nd
    deep = [(np.array([1, 2, 4, 0]), np.array([2.0, 2.0, 2.0, 1.0]))]
    ref = [np.array([1, 2])]
    assert topk_agreement([np.array([1, 4])], ref, k=2) == 0.5  # by id: row 4 is a miss
    assert topk_agreement([np.array([1, 4])], ref, k=2, ties=deep) == 1.0  # a tie broken another way
    assert topk_agreement([np.array([1, 0])], ref, k=2, ties=deep) == 0.5  # row 0 scores below the 2nd: a miss
    assert topk_agreement([np.array([4, 2])], ref, k=2, ties=[(np.array([1, 2, 4]), np.array([3.0, 2.0, 2.0 - 1e-3]))]) == 0.5
    with pytest.raises(ValueError, match="tie lists"):
        topk_agreement([np.array([1])], ref, k=2, ties=[])
