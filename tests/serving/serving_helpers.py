"""Shared pieces of the serving tests: synthetic corpora and queries, the real-model fixture, agreement."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ifsr.core.encoder import DocumentEncoder, QueryEncoder
from ifsr.core.idf import load_idf
from ifsr.data.beir import load_beir
from ifsr.exp.corpora import scifact_queries
from ifsr.serving.base import Engine
from ifsr.serving.engines import ExactEngine, topk_agreement


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


def exact_rows(docs: sp.csr_matrix, queries: list[tuple[np.ndarray, np.ndarray]], k: int = 10) -> list[np.ndarray]:
    """Top-k rows of every query by the exact engine."""
    exact = ExactEngine.from_docs(docs, k)
    return [exact.search_ids(ids, w)[0] for ids, w in queries]


def agreement_with_exact(engine: Engine, docs: sp.csr_matrix, queries: list[tuple[np.ndarray, np.ndarray]],
                         k: int = 10) -> float:
    """Top-k agreement of `engine` (built over `docs`) with the exact engine on `queries`."""
    found = [engine.search_ids(ids, w)[0] for ids, w in queries]
    return topk_agreement(found, exact_rows(docs, queries, k), k)


@pytest.fixture(scope="module")
def real_bits(splade_tiny_path: str, idf_file, data_root):
    """(splade-tiny document encoder, query encoder, 120 SciFact doc ids, texts, vectors, 60 queries)."""
    encoder = DocumentEncoder.from_pretrained(splade_tiny_path, max_length=64).eval()
    query_encoder = QueryEncoder(encoder.tokenizer, load_idf(idf_file, encoder.tokenizer))
    ds = load_beir("scifact", "test", data_dir=data_root, download=False)
    ids, texts = ds.doc_ids[:120], ds.doc_texts()[:120]
    docs = encoder.encode(texts, batch_size=32, show_progress=False)
    queries = scifact_queries(data_root, n=60, seed=0)
    return encoder, query_encoder, ids, texts, docs, queries
