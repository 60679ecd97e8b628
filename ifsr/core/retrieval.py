"""Exact top-k retrieval over sparse and dense scores, self-hit removal and runs: pure functions over matrices.

Ranking contract (SPEC trap 6: sparse scores tie often), shared by every function here:

* scores are dot products, rounded to float32 *before* ranking (``scores``), so the order is exactly
  the sorted order of the float32 scores that are returned; ``top_k`` ranks a score matrix at the
  precision it is given (float64 ensemble sums stay float64 while ranked, then are returned as float32);
* rows are ranked by score descending, then by document index ascending (stable, platform
  independent: it does not depend on argpartition / BLAS internals);
* results are ``(indices int64 [nq, k], scores float32 [nq, k])``; a slot with no document holds
  index ``-1`` and score ``-inf`` (padding sits at the end of a row).

``SparseIndex.search`` / ``sparse_topk`` return only documents with score > 0 (documents sharing no
term with the query are not retrieved: an empty query vector gives an all-padding row). ``top_k``
ranks every document of a dense score matrix [nq, nd] whatever its sign, so it needs no padding and
returns ``min(k, nd)`` columns. ``to_run`` turns the arrays into the ``{qid: {did: score}}`` dict used
by ``ifsr.eval.metrics``, in rank order, skipping padding.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

PAD_INDEX = -1
PAD_SCORE = -np.inf


def _check_k_batch(k: int, batch_size: int = 1) -> None:
    if not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def _as_csr(m: object, name: str) -> sp.csr_matrix:
    if not sp.issparse(m):
        raise ValueError(f"{name} must be a scipy.sparse matrix, got {type(m).__name__}")
    if m.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {m.shape}")
    return sp.csr_matrix(m)


def _as_dense(m: object, name: str) -> np.ndarray:
    a = np.asarray(m)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
    return a


def _select_topk(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k per row from candidate triplets (row, doc index, score), ifsr tie-break.

    Candidates may come in any order but must include each row's true top k (ties at the k-th
    score included). One sort by (row asc, score desc, index asc), at the precision of ``vals``
    (-0.0 and 0.0 compare equal, so the lower index wins); scores are returned as float32.
    """
    out_idx = np.full((n_rows, k), PAD_INDEX, dtype=np.int64)  # [n_rows, k]
    out_val = np.full((n_rows, k), PAD_SCORE, dtype=np.float32)  # [n_rows, k]
    if rows.size == 0:
        return out_idx, out_val
    order = np.lexsort((cols, -vals, rows))  # [n] row, -score, index
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.searchsorted(rows, np.arange(n_rows))  # [n_rows] first candidate of each row
    rank = np.arange(rows.size) - starts[rows]  # position of each candidate inside its row
    keep = rank < k
    out_idx[rows[keep], rank[keep]] = cols[keep]
    out_val[rows[keep], rank[keep]] = vals[keep]
    return out_idx, out_val


class SparseIndex:
    """Exact sparse retrieval over a fixed document matrix: the posting lists are built once, then
    `search` ranks any number of query batches (the one exact scorer: evaluation, engine references)."""

    def __init__(self, docs: sp.spmatrix):
        d = _as_csr(docs, "docs")
        self.dtype = np.result_type(d.dtype, np.float32)
        self.index = d.T.tocsr().astype(self.dtype, copy=False)  # [V, nd] posting lists
        self.n_docs, self.vocab_size = d.shape[0], d.shape[1]

    def search(self, queries: sp.spmatrix, k: int, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Top-k documents by sparse dot product, batched over queries.

        queries: [nq, V] scipy sparse matrix (any format; converted to CSR). Memory is bounded by the
        number of matching (query, doc) pairs in one batch, never a dense nq x nd matrix.
        Returns indices int64 [nq, k] and scores float32 [nq, k]. Only documents with score > 0 are
        returned (score desc, then doc index asc); missing slots are -1 / -inf.
        """
        _check_k_batch(k, batch_size)
        q = _as_csr(queries, "queries")
        if q.shape[1] != self.vocab_size:
            raise ValueError(f"vocabulary mismatch: queries {q.shape} vs docs ({self.n_docs}, {self.vocab_size})")
        nq = q.shape[0]
        out_idx = np.full((nq, k), PAD_INDEX, dtype=np.int64)  # [nq, k]
        out_val = np.full((nq, k), PAD_SCORE, dtype=np.float32)  # [nq, k]
        for start in range(0, nq, batch_size):
            s = sp.csr_matrix(q[start:start + batch_size].astype(self.dtype, copy=False) @ self.index)  # [b, nd]
            b = s.shape[0]
            vals = s.data.astype(np.float32, copy=False)  # [nnz] scores, rounded before ranking
            keep = vals > 0  # [nnz]
            # rows with more than k candidates: keep only scores >= their k-th largest (ties kept)
            for r in np.flatnonzero(np.diff(s.indptr) > k):
                lo, hi = s.indptr[r], s.indptr[r + 1]
                seg = vals[lo:hi]
                kth = np.partition(seg, seg.size - k)[seg.size - k]
                keep[lo:hi] &= seg >= kth
            pos = np.flatnonzero(keep)  # [n] surviving candidates
            rows = np.searchsorted(s.indptr, pos, side="right") - 1  # [n] their query row
            idx_b, val_b = _select_topk(rows, s.indices[pos].astype(np.int64), vals[pos], b, k)
            out_idx[start:start + b] = idx_b
            out_val[start:start + b] = val_b
        return out_idx, out_val


def sparse_topk(queries: sp.spmatrix, docs: sp.spmatrix, k: int,
                batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k documents by sparse dot product: `SparseIndex(docs).search(queries, k, batch_size)`."""
    _check_k_batch(k, batch_size)
    q = _as_csr(queries, "queries")
    if q.shape[1] != _as_csr(docs, "docs").shape[1]:
        raise ValueError(f"vocabulary mismatch: queries {q.shape} vs docs {docs.shape}")
    return SparseIndex(docs).search(q, k, batch_size)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k documents of each row of a dense score matrix, every document eligible.

    Args:
        scores: [nq, nd] scores (float32 dot products from ``scores``, BM25, or float64 ensemble
            sums); ranked at the precision given.
        k: documents per query (> 0); ``min(k, nd)`` are returned, so no row is padded.

    Returns:
        indices int64 [nq, min(k, nd)] and scores float32 [nq, min(k, nd)], score desc then doc
        index asc, whatever the scores' sign.
    """
    _check_k_batch(k)
    s = _as_dense(scores, "scores")
    nq, nd = s.shape
    k = min(k, nd)
    if k == 0:
        return np.zeros((nq, 0), np.int64), np.zeros((nq, 0), np.float32)
    if k < nd:
        kth = np.partition(s, nd - k, axis=1)[:, nd - k]  # [nq] k-th largest score per row
        rows, cols = np.nonzero(s >= kth[:, None])  # candidates incl. ties at the k-th score
    else:
        rows, cols = np.divmod(np.arange(nq * nd), nd)  # every document is a candidate
    return _select_topk(rows, cols.astype(np.int64), s[rows, cols], nq, k)


def scores(q: sp.spmatrix | np.ndarray, d: sp.spmatrix | np.ndarray) -> np.ndarray:
    """All query-document dot products, float32 [nq, nd] (cosine when dense rows are unit length).

    q [nq, V] and d [nd, V] are both scipy sparse, or both dense. The output is dense: small
    corpora or candidate sets only (teacher scores, baselines).
    """
    if sp.issparse(q):
        qc, dc = _as_csr(q, "q"), _as_csr(d, "d")
        if qc.shape[1] != dc.shape[1]:
            raise ValueError(f"vocabulary mismatch: q {qc.shape} vs d {dc.shape}")
        return np.asarray((qc @ dc.T).toarray(), dtype=np.float32)  # [nq, nd]
    qa, da = _as_dense(q, "q"), _as_dense(d, "d")
    if qa.shape[1] != da.shape[1]:
        raise ValueError(f"dimension mismatch: q {qa.shape} vs d {da.shape}")
    return np.asarray(qa @ da.T, dtype=np.float32)  # [nq, nd]


def _rank_arrays(query_ids: Sequence[str], indices, scores) -> tuple[np.ndarray, np.ndarray]:
    """Check that (indices, scores) are equal-shape 2-D arrays with one row per query id."""
    indices, scores = np.asarray(indices), np.asarray(scores)
    if indices.shape != scores.shape or indices.ndim != 2:
        raise ValueError(f"indices {indices.shape} and scores {scores.shape} must be equal 2-D")
    if len(query_ids) != indices.shape[0]:
        raise ValueError(f"{len(query_ids)} query ids for {indices.shape[0]} result rows")
    return indices, scores


def remove_self_hits(query_ids: Sequence[str], doc_ids: Sequence[str], indices: np.ndarray,
                     scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop hits whose document id equals the query id; later hits move up, the row is padded.

    Use it only where a dataset's queries are themselves documents (ArguAna, Quora): in Cranfield,
    CISI or SciFact ids overlap by number and this would delete real hits (SPEC §4). Retrieve
    k + 1 documents if k must remain after the removal. Inputs are not modified.
    """
    indices, scores = _rank_arrays(query_ids, indices, scores)
    dids = np.asarray([str(x) for x in doc_ids] + [""], dtype=object)  # [nd + 1], "" for padding
    qids = np.asarray([str(x) for x in query_ids], dtype=object)  # [nq]
    valid = indices >= 0  # [nq, k]
    drop = valid & (dids[np.where(valid, indices, -1)] == qids[:, None])  # [nq, k]
    order = np.argsort(drop, axis=1, kind="stable")  # kept hits first, in their rank order
    new_idx = np.take_along_axis(indices, order, axis=1).copy()  # [nq, k]
    new_val = np.take_along_axis(scores, order, axis=1).astype(np.float32)  # [nq, k]
    tail = np.take_along_axis(drop, order, axis=1)  # [nq, k] True on moved-out self hits
    new_idx[tail] = PAD_INDEX
    new_val[tail] = PAD_SCORE
    return new_idx, new_val


def to_run(query_ids: Sequence[str], doc_ids: Sequence[str], indices: np.ndarray,
           scores: np.ndarray) -> dict[str, dict[str, float]]:
    """Arrays -> ``{qid: {did: score}}``, each inner dict in rank order, -1 padding skipped.

    Every query gets an entry (possibly empty). ``ifsr.eval.metrics.evaluate_run`` breaks score ties by
    this insertion order, so the evaluation follows the retrieval tie-break exactly.
    """
    indices, scores = _rank_arrays(query_ids, indices, scores)
    if len(set(query_ids)) != len(query_ids):
        raise ValueError("query_ids contain duplicates")
    if indices.size and indices.max() >= len(doc_ids):
        raise ValueError(f"document index {indices.max()} out of range for {len(doc_ids)} doc ids")
    run: dict[str, dict[str, float]] = {}
    for qid, row_idx, row_val in zip(query_ids, indices.tolist(), scores.tolist()):
        hits: dict[str, float] = {}
        for i, v in zip(row_idx, row_val):
            if i >= 0:
                hits[str(doc_ids[i])] = float(v)
        run[str(qid)] = hits
    return run
