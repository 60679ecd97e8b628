"""Seismic engine (`pyseismic-lsr`): approximate search over pruned, clustered posting lists, in memory."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ifsr.serving.base import Engine, silenced_native_output


LARGEST_SMALL_DIM = 2**16  # vocabulary sizes the plain (16-bit component) build holds


class SeismicImpactIndex(Engine):
    """Seismic (approximate: pruned, clustered posting lists) over the same CSR vectors."""

    name, requires, package = "seismic", "seismic", "pyseismic-lsr"
    approximate = True
    query_options = ("query_cut", "heap_factor")

    def __init__(self, docs: sp.csr_matrix, k: int = 10, n_postings: int = 3500, centroid_fraction: float = 0.1,
                 summary_energy: float = 0.4, query_cut: int = 64, heap_factor: float = 0.9, verbose: bool = False):
        seismic = self.dependency()
        docs = sp.csr_matrix(docs, dtype=np.float32)
        docs.sort_indices()
        # the plain build holds component ids in 16 bits; the "LV" (large vocabulary) build in 32, e.g. for
        # BM25's vocabulary over a real corpus (101k terms over the 49,656 real passages here)
        large = docs.shape[1] > LARGEST_SMALL_DIM
        data = (seismic.SeismicDatasetLV if large else seismic.SeismicDataset)(dim=docs.shape[1])
        data.add_documents_by_id([str(i) for i in range(docs.shape[0])], docs.indices.astype(np.int64),
                                 docs.data.astype(np.float32), docs.indptr.astype(np.int64))
        with silenced_native_output(not verbose):  # Seismic prints its build log to stdout
            self.index = (seismic.SeismicIndexLV if large else seismic.SeismicIndex).build_from_dataset(
                data, n_postings=n_postings, centroid_fraction=centroid_fraction, summary_energy=summary_energy)
        self.k, self.query_cut, self.heap_factor = k, query_cut, heap_factor
        self.dtype = seismic.get_seismic_string()

    @classmethod
    def from_docs(cls, docs: sp.csr_matrix, k: int = 10, **options) -> SeismicImpactIndex:
        """The index of `docs`; options: n_postings, centroid_fraction, summary_energy, query_cut, heap_factor."""
        return cls(docs, k, **options)

    def size_bytes(self) -> int:
        """The index's size: the file Seismic saves it to (forward index, packed posting lists, block offsets and
        summaries), written to a temporary folder and removed; its in-memory total is within a few percent."""
        with tempfile.TemporaryDirectory() as tmp, silenced_native_output(True):
            self.index.save(str(Path(tmp) / "index"))
            return sum(f.stat().st_size for f in Path(tmp).iterdir())

    def search_ids(self, ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        comps = np.asarray([str(i) for i in ids], dtype=self.dtype)
        hits = self.index.search("q", comps, np.asarray(weights, dtype=np.float32), k=self.k,
                                 query_cut=self.query_cut, heap_factor=self.heap_factor)
        return np.array([int(h[2]) for h in hits], dtype=np.int64), np.array([h[1] for h in hits], dtype=np.float32)
