"""The exact engine (`exact`): ifsr's exact scorer (`ifsr.core.retrieval.SparseIndex`, built once) behind the engine
interface, the reference every other engine is checked against (`ifsr.serving.engines`)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from ifsr.core.retrieval import SparseIndex
from ifsr.serving.base import Engine


class ExactEngine(Engine):
    """Exact top-k by sparse dot product: one `SparseIndex` over the documents, queried many times."""

    name = "exact"

    def __init__(self, docs: sp.csr_matrix, k: int = 10):
        self.index, self.k = SparseIndex(docs), k

    @classmethod
    def from_docs(cls, docs: sp.csr_matrix, k: int = 10) -> ExactEngine:
        return cls(docs, k)

    def query_matrix(self, queries: Sequence[tuple[np.ndarray, np.ndarray]]) -> sp.csr_matrix:
        """CSR [nq, V] of queries given as (vocabulary ids, float weights), terms in the given order."""
        lengths = [len(ids) for ids, _ in queries]
        indptr = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        ids = np.concatenate([np.asarray(i, dtype=np.int64) for i, _ in queries] + [np.empty(0, np.int64)])
        weights = np.concatenate([np.asarray(w, dtype=np.float32) for _, w in queries] + [np.empty(0, np.float32)])
        return sp.csr_matrix((weights, ids, indptr), shape=(len(queries), self.index.vocab_size))

    def search_many(self, queries: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of many queries at once: (rows int64 [nq, k], scores float32 [nq, k]), -1 / -inf padding."""
        return self.index.search(self.query_matrix(queries), self.k)

    def size_bytes(self) -> int:
        """The index's size (in memory: CSR data, indices and row pointers)."""
        m = self.index.index  # [V, n] posting lists
        return int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)

    def search_ids(self, ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, scores = self.search_many([(ids, weights)])
        hit = rows[0] >= 0
        return rows[0][hit], scores[0][hit]
