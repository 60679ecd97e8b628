"""Tests for ifsr.data.mining: BM25 ranking and tie-break, negative mining, the candidates checksum."""
from __future__ import annotations

import hashlib
import json
import math

import ir_measures
import numpy as np
import pytest
from ir_measures import nDCG

from ifsr.data.beir import load_beir, training_queries
from ifsr.data.mining import (Bm25Index, Candidates, candidates_checksum, mine_hard_negatives, mine_in_source,
                              passage_id, passage_table)
from ifsr.data.pairs import Pair, normalize_text

DOCS = ["apple banana", "apple apple cherry", "banana cherry date", "date elderberry fig grape"]


def bm25_by_hand(tf: int, df: int, dl: int, n: int = 4, avgdl: float = 3.0,
                 k1: float = 1.2, b: float = 0.75) -> float:
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))


def test_bm25_scores_match_hand_computation():
    ix = Bm25Index().build(DOCS)  # dl = 2, 3, 3, 4 -> avgdl 3
    idx, sc = ix.search(["apple", "cherry date"], k=4)
    assert idx.dtype == np.int64 and sc.dtype == np.float32 and idx.shape == (2, 4)
    assert idx[0].tolist() == [1, 0, 2, 3]  # tf 2 beats tf 1; zero scores by index
    np.testing.assert_allclose(sc[0], [bm25_by_hand(2, 2, 3), bm25_by_hand(1, 2, 2), 0, 0], rtol=1e-5)
    # cherry in d1, d2; date in d2, d3: d2 has both
    want = {1: bm25_by_hand(1, 2, 3), 2: 2 * bm25_by_hand(1, 2, 3), 3: bm25_by_hand(1, 2, 4), 0: 0.0}
    assert idx[1].tolist() == [2, 1, 3, 0]
    np.testing.assert_allclose(sc[1], [want[i] for i in idx[1]], rtol=1e-5)


def test_bm25_impact_matrix_is_the_index_as_vectors():
    ix = Bm25Index().build(DOCS)
    m = ix.impact_matrix()
    assert m.shape[0] == len(DOCS) and m.dtype == np.float32
    vocab = ix._bm25.vocab_dict
    assert m[1, vocab["appl"]] == pytest.approx(bm25_by_hand(2, 2, 3), rel=1e-5)  # the stemmed "apple", tf 2
    for q in ["apple", "cherry date", "date date cherry", "the of", "zebra", "apple apple"]:
        ids, counts = ix.query_vector(q)
        assert np.all(np.diff(ids) > 0) and counts.dtype == np.float32
        dense = np.zeros(m.shape[1], np.float32)
        dense[ids] = counts
        np.testing.assert_allclose(m @ dense, ix.scores(q), rtol=1e-6, atol=1e-7)  # repeats count, as in scores
    assert ix.query_vector("date date cherry")[1].tolist() == [1.0, 2.0] or \
        ix.query_vector("date date cherry")[1].tolist() == [2.0, 1.0]
    with pytest.raises(ValueError):
        Bm25Index().impact_matrix()


def test_bm25_stopwords_stemming_and_empty_queries():
    ix = Bm25Index().build(DOCS)
    np.testing.assert_array_equal(ix.scores("the apples of"), ix.scores("apple"))
    assert ix.scores("apple").max() > 0
    for q in ["", "the of and", "zebra"]:  # empty, stopwords only, out of vocabulary
        idx, sc = ix.search([q], k=3)
        assert idx[0].tolist() == [0, 1, 2] and not sc.any()
    assert ix.search(["apple"], k=10)[0].shape == (1, 4)  # k clamped to the corpus size
    with pytest.raises(ValueError):
        ix.search(["apple"], k=0)
    with pytest.raises(ValueError):
        Bm25Index().search(["apple"], k=1)
    with pytest.raises(ValueError, match="no indexable tokens"):
        Bm25Index().build(["a b", "the"])
    ix2 = Bm25Index().build(["xx yy", "", "xx"])  # an empty document is fine, scores 0
    assert ix2.search(["xx"], k=3)[0][0].tolist() == [2, 0, 1]


def test_tie_break_is_score_desc_then_index_asc():
    ix = Bm25Index().build(["xx yy", "aa bb", "xx yy", "xx yy", "xx yy zz"])
    idx, sc = ix.search(["xx"], k=5)
    assert sc[0, 0] == sc[0, 1] == sc[0, 2]
    assert idx[0].tolist() == [0, 2, 3, 4, 1]
    assert ix.search(["xx"], k=2)[0][0].tolist() == [0, 2]
    # ties straddling the top-k boundary, and documents scoring 0 (still ranked, by index)
    assert ix.search(["xx"], k=4)[0][0].tolist() == [0, 2, 3, 4]
    idx, sc = ix.search(["zz", "nothing matches"], k=5)
    assert idx.tolist() == [[4, 0, 1, 2, 3], [0, 1, 2, 3, 4]] and sc[1].tolist() == [0.0] * 5
    assert ix.search(["xx"], k=9)[0].shape == (1, 5)  # k' = min(k, n_docs): no padding


def _toy_corpus():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]
    docs = [" ".join(rng.choice(words, size=8)) for _ in range(60)]
    doc_ids = [f"d{i}" for i in range(60)]
    queries = {f"q{i}": " ".join(rng.choice(words, size=3)) for i in range(10)}
    positives = {f"q{i}": [f"d{i}", f"d{i + 20}"] for i in range(10)}
    return docs, doc_ids, queries, positives


def test_mine_hard_negatives_properties():
    docs, doc_ids, queries, positives = _toy_corpus()
    ix = Bm25Index().build(docs)
    a = mine_hard_negatives(queries, positives, doc_ids, ix, n_neg=4, depth=10, seed=7)
    assert a == mine_hard_negatives(queries, positives, doc_ids, ix, n_neg=4, depth=10, seed=7)
    b = mine_hard_negatives(queries, positives, doc_ids, ix, n_neg=4, depth=10, seed=8)
    assert [c.negatives for c in a] != [c.negatives for c in b]
    rows, _ = ix.search(list(queries.values()), 12)
    for c, row in zip(a, rows):
        assert c.positives == tuple(positives[c.query_id])
        assert len(c.negatives) == 4 == len(set(c.negatives))
        assert not set(c.negatives) & set(c.positives)
        top = [doc_ids[j] for j in row if doc_ids[j] not in c.positives][:10]
        assert set(c.negatives) <= set(top)
        assert list(c.negatives) == sorted(c.negatives, key=top.index)  # rank order kept
    # a query's draw does not depend on which other queries are mined with it
    one = mine_hard_negatives({"q3": queries["q3"]}, positives, doc_ids, ix, 4, 10, seed=7)
    assert one[0] == a[3]


def test_mine_hard_negatives_from_teacher_ranking_and_errors():
    docs, doc_ids, queries, positives = _toy_corpus()
    ranking = {q: list(reversed(doc_ids)) for q in queries}
    c = mine_hard_negatives(queries, positives, doc_ids, None, n_neg=3, depth=3, seed=0,
                            ranking=ranking)
    for cand in c:  # depth == n_neg: exactly the teacher's top 3 non-positives
        assert cand.negatives == tuple(d for d in reversed(doc_ids) if d not in cand.positives)[:3]
    ix = Bm25Index().build(docs)
    with pytest.raises(ValueError):
        mine_hard_negatives(queries, positives, doc_ids, ix, n_neg=5, depth=4, seed=0)
    with pytest.raises(ValueError):
        mine_hard_negatives(queries, positives, doc_ids, None, n_neg=1, depth=4, seed=0)
    with pytest.raises(ValueError, match="no positives"):
        mine_hard_negatives(queries, {}, doc_ids, ix, n_neg=1, depth=4, seed=0)


def test_mine_in_source():
    pairs = [Pair("red apple fruit", "Apple fruit is red.", "s1"),
             Pair("red apple fruit", "red apples grow on trees", "s1"),  # 2nd positive of same query
             Pair("banana fruit", "banana fruit is yellow", "s1"),
             Pair("cherry", "apple fruit is red", "s1"),              # same passage, normalized
             Pair("apple fruit red", "green pear", "s1"),
             Pair("apple fruit red", "apple fruit red", "s2"),
             Pair("kiwi", "kiwi fruit", "s2"),
             Pair("lime", "lime fruit", "s2"),
             Pair("fig", "fig fruit", "s2")]
    cands = mine_in_source(pairs, n_neg=2, depth=3, seed=1)
    assert cands == mine_in_source(pairs, n_neg=2, depth=3, seed=1)
    assert [c.query_id for c in cands] == [str(i) for i in range(len(pairs))]
    table = passage_table(pairs)
    assert len(table) == 8  # "Apple fruit is red." == "apple fruit is red" after normalizing
    for p, c in zip(pairs, cands):
        assert c.source == p.source and c.positives == (passage_id(p.source, p.positive),)
        assert all(d.startswith(p.source + ":") for d in c.doc_ids)  # same-source negatives
        neg_texts = {normalize_text(table[d]) for d in c.negatives}
        assert normalize_text(p.positive) not in neg_texts
        assert len(c.negatives) == 2
    # the query's other positive is not a negative; the best non-positive is
    assert passage_id("s1", "red apples grow on trees") not in cands[0].negatives
    assert passage_id("s1", "Apple fruit is red.") not in cands[1].negatives
    top2 = mine_in_source(pairs, n_neg=2, depth=2, seed=5)[4].negatives  # depth == n_neg
    assert top2 == (passage_id("s1", "apple fruit is red"), passage_id("s1", "red apples grow on trees"))


def test_candidates_checksum(tmp_path):
    docs, doc_ids, queries, positives = _toy_corpus()
    cands = mine_hard_negatives(queries, positives, doc_ids, Bm25Index().build(docs), 3, 8, 0)
    cands.append(Candidates("ü", "naïve query", ("d1",), (), "src"))
    h = candidates_checksum(cands)
    canonical = "".join(json.dumps(c.to_json(), ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"
                        for c in cands)  # the teachers' score caches are keyed by this exact text
    assert h == hashlib.sha256(canonical.encode()).hexdigest()
    assert candidates_checksum(list(cands)) == h
    changed = cands[:-1] + [Candidates("ü", "naïve query", ("d1",), ("d2",), "src")]
    assert candidates_checksum(changed) != h
    assert candidates_checksum(cands[::-1]) != h  # order matters


# ----------------------------------------------------------------------------- real data

@pytest.mark.data
def test_bm25_ndcg10_scifact(data_root):
    s = load_beir("scifact", data_dir=data_root, download=False)
    ids = s.doc_ids
    idx, sc = Bm25Index().build(s.doc_texts()).search([s.queries[q] for q in s.query_ids], 100)
    run = {q: {ids[j]: float(v) for j, v in zip(r, vs)} for q, r, vs in zip(s.query_ids, idx, sc)}
    # 0.679: Anserini BM25-flat on BEIR SciFact (Kamalloo et al. 2023); we measure 0.6791
    assert ir_measures.calc_aggregate([nDCG @ 10], s.qrels, run)[nDCG @ 10] == pytest.approx(0.679, abs=0.005)


@pytest.mark.data
def test_mine_scifact_train(data_root):
    tr = load_beir("scifact", split="train", data_dir=data_root, download=False)
    tq = training_queries(tr)
    ix = Bm25Index().build(tr.doc_texts())
    cands = mine_hard_negatives({q: t for q, t, _ in tq}, {q: p for q, _, p in tq}, tr.doc_ids,
                                ix, n_neg=2, depth=50, seed=0)
    assert len(cands) == 809
    assert all(len(c.negatives) == 2 and not set(c.negatives) & set(c.positives) for c in cands)
    assert sum(len(c.positives) for c in cands) == sum(len(p) for _, _, p in tq)
