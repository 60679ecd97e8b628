"""Block-Max Pruning engine (`bmp`; Mallia, Suel, Tonellotto, SIGIR 2024), built for learned sparse indexes.

BMP partitions the documents into blocks of `bsize` consecutive ids, keeps each term's maximum impact
per block, and visits blocks in order of their upper bound, skipping those that cannot enter the top-k.
`alpha = beta = 1` is safe (exact up to quantization); smaller values stop earlier (approximate).
What its Python binding (0.2.8) requires, measured here:
- document impacts are 8-bit: a value above 255 wraps around (300 is stored as 44), so the weights are
  quantized globally, impact = clip(round(w * 255 / max w), 1, 255) (every non-zero posting kept);
- a query term absent from the index makes the search panic, so such terms are dropped first;
- query weights are floats; BMP scales them itself (its scores are integers in its own units), and that
  costs agreement: on a synthetic Zipf corpus the safe setting's top-10 agrees 0.95 with exact scoring,
  where exact scoring over the same 8-bit impacts agrees 0.994 (tests/serving/test_engines.py).
Documents are numbered by row (their string ids are the row numbers). The index lives in a
temporary directory owned by the engine (removed with it).
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import scipy.sparse as sp

from ifsr.serving.base import Engine

MAX_IMPACT = 255  # BMP stores impacts in 8 bits


class BmpImpactIndex(Engine):
    """BMP over the document vectors (CSR [n, V]); one query at a time."""

    name, requires, package = "bmp", "bmp", "bmp"
    query_options = ("alpha", "beta")

    def __init__(self, docs: sp.csr_matrix, k: int = 10, bsize: int = 32, alpha: float = 1.0, beta: float = 1.0,
                 compress_range: bool = False):
        if bsize <= 0:
            raise ValueError(f"bsize must be positive, got {bsize}")
        if not (0 < alpha <= 1 and 0 < beta <= 1):
            raise ValueError(f"alpha and beta must be in (0, 1] (1: safe), got {alpha}, {beta}")
        bmp = self.dependency()
        docs = sp.csr_matrix(docs, dtype=np.float32, copy=True)
        docs.data[docs.data < 0] = 0
        docs.eliminate_zeros()
        docs.sort_indices()
        self.scale = MAX_IMPACT / float(docs.data.max()) if docs.nnz else 1.0
        impacts = np.clip(np.rint(docs.data * self.scale), 1, MAX_IMPACT).astype(np.int64)
        self._dir = tempfile.TemporaryDirectory(prefix="ifsr-bmp-")
        self.path = os.path.join(self._dir.name, "index")
        indexer = bmp.Indexer(self.path, bsize=bsize, compress_range=compress_range)
        for i in range(docs.shape[0]):
            lo, hi = docs.indptr[i], docs.indptr[i + 1]
            if hi > lo:  # a document without postings can never be retrieved; BMP need not hold it
                indexer.add_document(str(i), dict(zip(map(str, docs.indices[lo:hi].tolist()), impacts[lo:hi].tolist())))
        indexer.finish()
        self.searcher = bmp.Searcher(self.path)
        self.present = np.zeros(docs.shape[1], dtype=bool)
        self.present[docs.indices] = True
        self.k, self.alpha, self.beta, self.bsize = k, alpha, beta, bsize

    def with_query_options(self, **options) -> BmpImpactIndex:
        alpha, beta = options.get("alpha", self.alpha), options.get("beta", self.beta)
        if not (0 < alpha <= 1 and 0 < beta <= 1):
            raise ValueError(f"alpha and beta must be in (0, 1] (1: safe), got {alpha}, {beta}")
        return super().with_query_options(**options)

    @classmethod
    def from_docs(cls, docs: sp.csr_matrix, k: int = 10, **options) -> BmpImpactIndex:
        """The index of `docs`; options: bsize (documents a block), alpha, beta (1, 1: safe), compress_range."""
        return cls(docs, k, **options)

    def size_bytes(self) -> int:
        """The index's size on disk."""
        return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(self._dir.name) for f in files)

    def search_ids(self, ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids, weights = np.asarray(ids, dtype=np.int64), np.asarray(weights, dtype=np.float64)
        keep = (weights > 0) & self.present[ids]
        if not keep.any():
            return np.empty(0, np.int64), np.empty(0, np.float32)
        query = dict(zip(map(str, ids[keep].tolist()), weights[keep].tolist()))
        rows, scores = self.searcher.search(query, k=self.k, alpha=self.alpha, beta=self.beta)
        return np.asarray([int(r) for r in rows], dtype=np.int64), np.asarray(scores, dtype=np.float32)
