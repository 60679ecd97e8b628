"""Tests for ifsr.core.retrieval: hand-computed micro examples, tie-breaks, padding, and agreement with a
brute-force lexsort reference on random data."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ifsr.core.retrieval import SparseIndex, remove_self_hits, scores, sparse_topk, to_run, top_k

NEG_INF = -np.inf

# 3 docs x 5 vocab; docs 0 and 2 are identical, so they tie for every query.
DOCS = sp.csr_matrix(np.array([
    [1.0, 0.0, 2.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0, 3.0],
    [1.0, 0.0, 2.0, 0.0, 0.0],
], dtype=np.float32))
QUERIES = sp.csr_matrix(np.array([
    [1.0, 0.0, 1.0, 0.0, 0.0],  # d0 = 1 + 2 = 3, d1 = 0, d2 = 3
    [0.0, 2.0, 0.0, 0.0, 1.0],  # d0 = 0, d1 = 2 + 3 = 5, d2 = 0
    [0.0, 0.0, 0.0, 0.0, 0.0],  # empty query: nothing scores > 0
    [0.5, 1.0, 0.0, 0.0, 0.0],  # d0 = 0.5, d1 = 1, d2 = 0.5
    [0.0, 0.0, 0.0, 7.0, 0.0],  # term no document has
], dtype=np.float32))


def test_sparse_topk_hand_computed():
    idx, val = sparse_topk(QUERIES, DOCS, k=3)
    assert idx.dtype == np.int64 and val.dtype == np.float32
    assert idx.shape == (5, 3) and val.shape == (5, 3)
    np.testing.assert_array_equal(idx, [[0, 2, -1], [1, -1, -1], [-1, -1, -1], [1, 0, 2],
                                        [-1, -1, -1]])
    np.testing.assert_array_equal(val, [[3, 3, NEG_INF], [5, NEG_INF, NEG_INF],
                                        [NEG_INF] * 3, [1, 0.5, 0.5], [NEG_INF] * 3])


def test_sparse_topk_tie_at_kth_position_takes_lowest_index():
    # k = 2 cuts between the tied d0 and d2: the lower index must win, in both query orders.
    idx, val = sparse_topk(QUERIES, DOCS, k=2)
    np.testing.assert_array_equal(idx[0], [0, 2])
    np.testing.assert_array_equal(idx[3], [1, 0])
    np.testing.assert_array_equal(val[3], [1.0, 0.5])
    idx1, _ = sparse_topk(QUERIES[[0]], DOCS, k=1)
    assert idx1[0, 0] == 0


def test_large_tie_block_is_cut_by_index():
    # 50 documents all scoring 1 plus one scoring 2 at the end; argpartition alone would pick an
    # arbitrary subset of the tied block.
    nd = 51
    d = np.zeros((nd, 4), dtype=np.float32)
    d[:, 1] = 1.0
    d[-1, 1] = 2.0
    q = sp.csr_matrix(np.array([[0.0, 1.0, 0.0, 0.0]], dtype=np.float32))
    idx, val = sparse_topk(q, sp.csr_matrix(d), k=5)
    np.testing.assert_array_equal(idx[0], [50, 0, 1, 2, 3])
    np.testing.assert_array_equal(val[0], [2, 1, 1, 1, 1])
    didx, dval = top_k(scores(q.toarray(), d), k=5)
    np.testing.assert_array_equal(didx, idx)
    np.testing.assert_array_equal(dval, val)


def test_top_k_returns_nonpositive_scores_and_stops_at_nd():
    q = np.array([[1.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    d = np.array([[-1.0, 0.0], [2.0, 0.0], [0.0, 5.0]], dtype=np.float32)
    idx, val = top_k(scores(q, d), k=4)
    # q0: d1 = 2, d2 = 0, d0 = -1 ; q1: all 0 -> index order; every document ranked, k' = min(k, nd) = 3
    assert idx.dtype == np.int64 and val.dtype == np.float32
    np.testing.assert_array_equal(idx, [[1, 2, 0], [0, 1, 2]])
    np.testing.assert_array_equal(val, [[2, 0, -1], [0, 0, 0]])


def test_top_k_ties_straddling_k_and_zeros():
    s = np.array([[1.0, 2.0, 2.0, 2.0, 0.0, 2.0]], dtype=np.float32)
    assert top_k(s, 2)[0].tolist() == [[1, 2]]
    assert top_k(s, 5)[0].tolist() == [[1, 2, 3, 5, 0]]
    s = np.array([[0.5, 0.9, 0.5, 0.9], [0.0, 0.0, 0.0, 1.0]], dtype=np.float32)
    idx, sc = top_k(s, 3)
    assert idx.tolist() == [[1, 3, 0], [3, 0, 1]] and sc.dtype == np.float32
    np.testing.assert_array_equal(sc, np.array([[0.9, 0.9, 0.5], [1.0, 0.0, 0.0]], dtype=np.float32))


def test_top_k_ranks_at_the_given_precision():
    # two float64 scores that round to the same float32: ranked by their float64 values, returned as float32
    s = np.array([[1.0, 1.0 + 1e-9, 0.5]], dtype=np.float64)
    idx, sc = top_k(s, 3)
    assert idx.tolist() == [[1, 0, 2]] and sc.dtype == np.float32 and sc[0, 0] == sc[0, 1]


def _reference_topk(s: np.ndarray, k: int, positive_only: bool):
    """Brute force: full lexsort of each row by (score desc, index asc)."""
    nq, nd = s.shape
    idx = np.full((nq, k), -1, dtype=np.int64)
    val = np.full((nq, k), -np.inf, dtype=np.float32)
    for i in range(nq):
        order = np.lexsort((np.arange(nd), -s[i]))
        if positive_only:
            order = order[s[i, order] > 0]
        order = order[:k]
        idx[i, :order.size] = order
        val[i, :order.size] = s[i, order]
    return idx, val


@pytest.mark.parametrize("k,batch_size", [(1, 256), (10, 7), (40, 3), (200, 64)])
def test_sparse_and_dense_match_bruteforce_reference(k, batch_size):
    rng = np.random.default_rng(0)
    nq, nd, vocab = 37, 150, 60
    # small integer weights: every dot product is exact in float32, and ties are frequent
    q = sp.random(nq, vocab, density=0.06, format="csr", random_state=1,
                  data_rvs=lambda n: rng.integers(1, 3, n)).astype(np.float32)
    d = sp.random(nd, vocab, density=0.15, format="csr", random_state=2,
                  data_rvs=lambda n: rng.integers(1, 4, n)).astype(np.float32)
    s = q.toarray().astype(np.float64) @ d.toarray().T.astype(np.float64)  # [nq, nd] exact
    ref_idx, ref_val = _reference_topk(s, k, positive_only=True)
    idx, val = sparse_topk(q, d, k=k, batch_size=batch_size)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(val, ref_val)

    np.testing.assert_array_equal(SparseIndex(d).search(q, k=k, batch_size=batch_size)[0], ref_idx)

    ref_idx, ref_val = _reference_topk(s, k, positive_only=False)
    didx, dval = top_k(scores(q.toarray(), d.toarray()), k=k)
    kk = min(k, nd)  # every document is ranked: no padding
    assert didx.shape == (nq, kk)
    np.testing.assert_array_equal(didx, ref_idx[:, :kk])
    np.testing.assert_array_equal(dval, ref_val[:, :kk])
    np.testing.assert_array_equal(top_k(scores(q, d), k=k)[0], didx)  # sparse input, same scores


def test_sparse_topk_accepts_other_sparse_formats_and_explicit_zeros():
    d = DOCS.tocoo()
    q = QUERIES.tolil()
    idx, _ = sparse_topk(q, d, k=3)
    ref, _ = sparse_topk(QUERIES, DOCS, k=3)
    np.testing.assert_array_equal(idx, ref)
    # an explicit stored zero in a query must not make a document "match"
    qz = sp.csr_matrix((np.array([0.0], np.float32), np.array([4]), np.array([0, 1])), shape=(1, 5))
    idx, val = sparse_topk(qz, DOCS, k=2)
    np.testing.assert_array_equal(idx, [[-1, -1]])


def test_sparse_topk_drops_nonpositive_scores():
    # a negative query weight: d1 scores 1*1 - 1*3 = -2 and must not be returned; d0, d2 score 1
    q = sp.csr_matrix(np.array([[1.0, 1.0, 0.0, 0.0, -1.0]], dtype=np.float32))
    idx, val = sparse_topk(q, DOCS, k=3)
    np.testing.assert_array_equal(idx, [[0, 2, -1]])
    np.testing.assert_array_equal(val, [[1, 1, NEG_INF]])


def test_full_scores():
    s = scores(QUERIES, DOCS)
    assert s.shape == (5, 3) and s.dtype == np.float32
    np.testing.assert_array_equal(s[0], [3, 0, 3])
    np.testing.assert_array_equal(s[1], [0, 5, 0])
    dense = scores(QUERIES.toarray(), DOCS.toarray())
    assert dense.dtype == np.float32
    np.testing.assert_array_equal(dense, s)
    assert scores(QUERIES.toarray().astype(np.float64), DOCS.toarray().astype(np.float64)).dtype == np.float32


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_k_raises(bad):
    with pytest.raises(ValueError):
        sparse_topk(QUERIES, DOCS, k=bad)
    with pytest.raises(ValueError):
        top_k(scores(QUERIES, DOCS), k=bad)


def test_shape_and_type_errors():
    with pytest.raises(ValueError):
        sparse_topk(QUERIES[:, :4], DOCS, k=1)
    with pytest.raises(ValueError):
        sparse_topk(QUERIES.toarray(), DOCS, k=1)  # dense input to the sparse path
    with pytest.raises(ValueError):
        scores(np.zeros((2, 3)), np.zeros((4, 5)))
    with pytest.raises(ValueError):
        scores(QUERIES[:, :4], DOCS)
    with pytest.raises(ValueError):
        top_k(np.zeros(3), k=1)  # a score matrix is 2-D
    with pytest.raises(ValueError):
        sparse_topk(QUERIES, DOCS, k=1, batch_size=0)


def test_remove_self_hits_shifts_and_pads():
    idx = np.array([[0, 2, 1], [2, -1, -1], [1, 0, 2]], dtype=np.int64)
    val = np.array([[3, 2, 1], [4, -np.inf, -np.inf], [9, 8, 7]], dtype=np.float32)
    new_idx, new_val = remove_self_hits(["a", "b", "c"], ["a", "b", "c"], idx, val)
    np.testing.assert_array_equal(new_idx, [[2, 1, -1], [2, -1, -1], [1, 0, -1]])
    np.testing.assert_array_equal(new_val, [[2, 1, NEG_INF], [4, NEG_INF, NEG_INF],
                                            [9, 8, NEG_INF]])
    assert idx[0, 0] == 0  # input untouched


def test_to_run_skips_padding_and_keeps_rank_order():
    idx, val = sparse_topk(QUERIES, DOCS, k=3)
    doc_ids = ["z", "m", "a"]  # rank order must not follow doc id order
    run = to_run(["q0", "q1", "q2", "q3", "q4"], doc_ids, idx, val)
    assert list(run["q0"].items()) == [("z", 3.0), ("a", 3.0)]
    assert run["q1"] == {"m": 5.0}
    assert run["q2"] == {} and run["q4"] == {}
    assert list(run["q3"]) == ["m", "z", "a"]
    with pytest.raises(ValueError):
        to_run(["q", "q", "q2", "q3", "q4"], doc_ids, idx, val)


def test_top_k_treats_negative_zero_as_zero():
    # -0.0 == 0.0 as floats: the tie must go to the lower index, whatever the sign bit says
    vals = np.array([[-0.0, 0.0, -1.0], [0.0, -0.0, -1.0], [-1.0, 0.0, -0.0]], dtype=np.float32)
    idx, _ = top_k(vals, 3)
    np.testing.assert_array_equal(idx, [[0, 1, 2], [0, 1, 2], [1, 2, 0]])
    idx, _ = top_k(vals, 2)  # the cut falls inside the tie
    np.testing.assert_array_equal(idx, [[0, 1], [0, 1], [1, 2]])
    idx, _ = top_k(vals.astype(np.float64), 2)
    np.testing.assert_array_equal(idx, [[0, 1], [0, 1], [1, 2]])
