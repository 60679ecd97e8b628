"""Tests for ifsr.eval.metrics: hand-computed nDCG / recall, tie handling, FLOPS, significance tests."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from ifsr.core.retrieval import sparse_topk, to_run
from ifsr.eval.metrics import (
                               evaluate_run,
                               flops_metric,
                               mean_nnz,
                               per_query,
                               rank_scores,
                               sparsity_row,
                               )


def test_ndcg_and_recall_hand_computed():
    qrels = {"q1": {"d1": 2, "d3": 1, "d9": 0}, "q2": {"x": 1}}
    run = {
        "q1": {"d2": 0.9, "d1": 0.8, "d3": 0.7, "d9": 0.6},
        "q7": {"x": 1.0},  # no qrels: ignored
        # q2 absent from the run: counts as 0
    }
    # trec_eval nDCG: linear gain = grade, discount log2(rank + 1)
    dcg = 0 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4) + 0 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    ndcg_q1 = dcg / idcg
    res = evaluate_run(run, qrels, measures=("nDCG@10", "R@100", "R@2"))
    assert res["nDCG@10"] == pytest.approx((ndcg_q1 + 0.0) / 2, abs=1e-9)
    assert res["R@100"] == pytest.approx((1.0 + 0.0) / 2)
    assert res["R@2"] == pytest.approx((0.5 + 0.0) / 2)  # only d1 of {d1, d3} in the top 2
    pq = per_query(run, qrels, "nDCG@10")
    assert set(pq) == {"q1", "q2"}
    assert pq["q1"] == pytest.approx(ndcg_q1, abs=1e-9) and pq["q2"] == 0.0


def test_empty_result_list_counts_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": {"a": 1.0}, "q2": {}}
    assert evaluate_run(run, qrels, ["nDCG@10"])["nDCG@10"] == pytest.approx(0.5)


def test_ties_follow_run_order_not_doc_id():
    qrels = {"q1": {"a": 1}, "q2": {"10": 1}, "q3": {"m": 1}}
    # every score ties; insertion order puts the relevant doc first. In q3 neither ascending nor
    # descending doc id order does.
    run = {"q1": {"a": 1.0, "b": 1.0, "c": 1.0}, "q2": {"10": 5.0, "9": 5.0},
           "q3": {"m": 2.0, "z": 2.0, "a": 2.0}}
    ours = per_query(run, qrels, "nDCG@10")
    assert ours == {"q1": pytest.approx(1.0), "q2": pytest.approx(1.0), "q3": pytest.approx(1.0)}
    # raw pytrec_eval breaks ties by doc id descending as strings: c, b, a and "9" before "10"
    raw = per_query(run, qrels, "nDCG@10", tie_break="trec_eval")
    assert raw["q1"] == pytest.approx(1 / math.log2(4))
    assert raw["q2"] == pytest.approx(1 / math.log2(3))
    assert raw["q3"] == pytest.approx(1 / math.log2(3))


def test_rank_scores_strictly_decreasing_and_stable():
    r = rank_scores({"q": {"x": 1.0, "y": 3.0, "z": 1.0, "w": 2.0}})
    assert list(r["q"].items()) == [("y", 4.0), ("w", 3.0), ("x", 2.0), ("z", 1.0)]
    with pytest.raises(ValueError):
        rank_scores({"q": {"x": float("nan")}})


def test_retrieval_tie_break_carries_into_evaluation():
    # docs 0, 1, 2 tie; retrieval puts index 0 ("m") first. Doc ids are chosen so that neither
    # trec_eval's own tie-break (id descending) nor id ascending would.
    docs = sp.csr_matrix(np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]], dtype=np.float32))
    q = sp.csr_matrix(np.array([[1.0, 0.0]], dtype=np.float32))
    idx, val = sparse_topk(q, docs, k=3)  # all three tie
    run = to_run(["q"], ["m", "z", "a"], idx, val)
    qrels = {"q": {"m": 1}}
    assert evaluate_run(run, qrels, ["nDCG@10"])["nDCG@10"] == pytest.approx(1.0)
    assert evaluate_run(run, qrels, ["nDCG@10"], tie_break="trec_eval")["nDCG@10"] < 0.99


def test_evaluate_bad_options():
    with pytest.raises(ValueError):
        evaluate_run({"q": {"a": 1.0}}, {"q": {"a": 1}}, tie_break="random")
    with pytest.raises(ValueError):
        evaluate_run({"q": {"a": 1.0}}, {})
    with pytest.raises(ValueError):
        evaluate_run({"q": {"a": 1.0}}, {"q": {"a": 1}}, ["nDCGx@10"])


def _toy_sparsity():
    # queries: q0 uses {0, 1}, q1 uses {1}            -> p_q = [1/2, 1, 0, 0]
    q = sp.csr_matrix(np.array([[1.0, 2.0, 0, 0], [0, 3.0, 0, 0]]))
    # docs: {0,1,2}, {1}, {2,3}, {} (+ an explicit zero) -> p_d = [1/4, 2/4, 2/4, 1/4]
    d = sp.csr_matrix(np.array([[1.0, 1, 1, 0], [0, 5, 0, 0], [0, 0, 2, 2], [0, 0, 0, 0]]))
    d = sp.csr_matrix((np.append(d.data, 0.0), np.append(d.indices, 0),
                       np.array([0, 3, 4, 6, 7])), shape=(4, 4))
    assert d.nnz == 7  # the explicit zero is stored
    return q, d


def test_flops_and_nnz_hand_computed():
    q, d = _toy_sparsity()
    expected = 0.5 * 0.25 + 1.0 * 0.5 + 0.0 * 0.5 + 0.0 * 0.25
    assert flops_metric(q, d) == pytest.approx(expected)
    assert mean_nnz(d) == pytest.approx((3 + 1 + 2 + 0) / 4)  # not 7/4
    assert mean_nnz(q) == pytest.approx(1.5)
    row = sparsity_row(q, d)
    assert row == {"flops": pytest.approx(0.625), "doc_nnz": pytest.approx(1.5),
                   "query_nnz": pytest.approx(1.5)}
    assert d.nnz == 7  # input not modified


def test_flops_equals_mean_overlap_over_all_pairs():
    q = sp.random(20, 50, density=0.1, format="csr", random_state=3)
    d = sp.random(30, 50, density=0.2, format="csr", random_state=4)
    qb, db = (q > 0).astype(float), (d > 0).astype(float)
    overlap = (qb @ db.T).toarray().mean()  # E_{q,d} |supp(q) ∩ supp(d)|
    assert flops_metric(q, d) == pytest.approx(overlap)
    with pytest.raises(ValueError):
        flops_metric(q[:, :10], d)
