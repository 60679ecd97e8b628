"""Evaluate a sparse model on a BEIR set, with the judged-run and self-hit rule every evaluation shares.

Conventions (SPEC §4): document text = title + " " + text, exact scoring (no index pruning), ties by
document index ascending (ifsr.core.retrieval), nDCG@10 / R@100 via ifsr.eval.metrics over the split's
judged queries. Self hits (doc id == query id) are removed only where queries are documents (SELF_HITS).
The baselines table is in ifsr.eval.baselines.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from ifsr.cache import SPARSE_DOC_TAG, corpus_key, weights_checksum
from ifsr.core.encoder import DocumentEncoder, query_columns
from ifsr.core.retrieval import remove_self_hits, sparse_topk, to_run
from ifsr.data.beir import BeirSet, load_beir
from ifsr.data.mining import Bm25Index
from ifsr.distill.teachers import resolve_device
from ifsr.distributed import is_main, sharded_cached_encode
from ifsr.eval.metrics import evaluate_run, flops_metric, mean_nnz, per_query, sparsity_row
from ifsr.models import resolve_model_path
from ifsr.serving.export import load_model

SELF_HITS: dict[str, bool] = {"arguana": True, "quora": True}  # queries are documents there; else False
MEASURES = ("nDCG@10", "R@100")
DEPTH = max(int(m.rsplit("@", 1)[1]) for m in MEASURES)  # the deepest cutoff: a run needs at least this many hits

Search = Callable[[int], tuple[np.ndarray, np.ndarray]]  # depth -> (indices, scores), rows = ds.query_ids


def self_hits_for(dataset: str) -> bool:
    """Whether hits whose doc id equals the query id are removed on `dataset` (SELF_HITS, default False)."""
    return SELF_HITS.get(dataset.lower(), False)


def judged_run(ds: BeirSet, search: Search, k: int, self_hits: bool | None = None) -> tuple[dict, dict]:
    """(run, qrels) of `ds`'s judged queries, top `k` kept, self hits removed where the rule applies.

    search(depth) ranks ds.query_ids (rows in that order), e.g. `lambda n: sparse_topk(q, d, n)`; it is
    asked for k + 1 documents when self hits are removed, so k remain. self_hits: None = self_hits_for(ds.name).
    """
    self_hits = self_hits_for(ds.name) if self_hits is None else self_hits
    idx, sc = search(k + 1 if self_hits else k)
    if self_hits:
        idx, sc = remove_self_hits(ds.query_ids, ds.doc_ids, idx, sc)
    return to_run(ds.query_ids, ds.doc_ids, idx[:, :k], sc[:, :k]), {q: ds.qrels[q] for q in ds.query_ids}


def bm25_per_query(ds: BeirSet, k: int = 100, measure: str = "nDCG@10") -> dict[str, float]:
    """BM25 (the baselines table's own settings: whole documents, k1 1.2, b 0.75) per judged query:
    the reference of a paired test of a student against BM25."""
    bm = Bm25Index().build(ds.doc_texts())
    queries = [ds.queries[q] for q in ds.query_ids]
    return per_query(*judged_run(ds, lambda n: bm.search(queries, n), k), measure)


BY_CONTENT = "by-content"  # the model and dataset key parts of an encoding named by its content alone


def encode_texts(doc: DocumentEncoder, texts: list[str], weights: str, cache_dir: str | os.PathLike | None,
                 batch_size: int = 32, show_progress: bool = True, model: str = BY_CONTENT,
                 dataset: str = BY_CONTENT, columns: np.ndarray | None = None, chunk: int | None = None) -> sp.csr_matrix:
    """Document vectors [n, V] of `texts`, cached (`corpus_key`) by model + weights + dataset + texts + max
    length (+ columns): the one cached corpus encoder. The defaults name an encoding by its content alone (weights
    checksum, texts hash, max length): `ifsr evaluate`, `export --corpus` and `index` share one entry for one model
    and corpus.

    columns: only those vocabulary ids (`DocumentEncoder.encode(columns=)`: exact for queries within them).
    chunk: `chunk` texts to a cache entry (a large corpus: a killed run resumes at its first missing chunk, a
    changed text re-encodes only its chunk). Under torchrun the encoder batches are split over the ranks and
    merged (ifsr.distributed.sharded_cached_encode): every rank gets the one-process matrix."""
    if chunk is not None:
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk <= 0:
            raise ValueError(f"chunk must be a positive number of texts, got {chunk!r}")
        starts = range(0, len(texts), chunk)
        blocks = [encode_texts(doc, list(texts[i:i + chunk]), weights, cache_dir, batch_size, show_progress, model,
                               dataset, columns) for i in tqdm(starts, desc="encode corpus (cached chunks)",
                                                               disable=not show_progress or len(starts) < 2)]
        width = len(doc.tokenizer) if columns is None else len(columns)
        return sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, width), dtype=np.float32)
    key = corpus_key(model, weights, SPARSE_DOC_TAG, dataset, texts, doc.max_length, columns)
    return sharded_cached_encode(
        key, lambda shard: doc.encode(texts, batch_size=batch_size, show_progress=show_progress and is_main(),
                                      shard=shard, columns=columns), cache_dir, {"batch_size": batch_size})


def model_weights(model: str, doc: DocumentEncoder) -> str:
    """The weights checksum of a model as the CLI gives it (`weights_checksum` of its folder)."""
    return weights_checksum(resolve_model_path(model), doc.mlm)


def encode_corpus(doc: DocumentEncoder, model: str, weights: str, ds: BeirSet, cache_dir: str | os.PathLike | None,
                  batch_size: int = 32, show_progress: bool = True, columns: np.ndarray | None = None,
                  rows: np.ndarray | None = None) -> sp.csr_matrix:
    """Document vectors [nd, V] of `ds` (`encode_texts`), cached by model name + weights + dataset checksum +
    max length (+ columns). rows: only those documents (indices into ds.doc_ids), [len(rows), V]."""
    texts = ds.doc_texts()
    if rows is not None:
        texts = [texts[i] for i in rows]
    return encode_texts(doc, texts, weights, cache_dir, batch_size, show_progress, model, ds.checksum(), columns)


NNZ_SAMPLE = 32  # documents per set whose full vectors give an evaluation's doc nnz (`nnz_sample_rows`)


def nnz_sample_rows(n_docs: int, n: int = NNZ_SAMPLE) -> np.ndarray:
    """A fixed sample of min(n, n_docs) document indices (ascending; seed 0, without replacement): the
    documents whose full vectors give the mean non-zeros of an evaluation restricted to the query columns."""
    if n <= 0:
        raise ValueError(f"the nnz sample needs at least one document, got {n}")
    return np.sort(np.random.default_rng(0).choice(n_docs, size=min(n, n_docs), replace=False))


def check_depth(k: int, flag: str = "k") -> None:
    """A run of k hits measures R@100 only with k >= DEPTH (R@100 from 5 documents is a different number)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < DEPTH:
        raise ValueError(f"{flag} {k}: below the deepest measure ({', '.join(MEASURES)}); "
                         f"expected a retrieval depth of at least {DEPTH}")


def judgement_notes(ds: BeirSet, q: sp.spmatrix) -> list[str]:
    """Warnings, with counts, about judgements that make scores 0 or meaningless: judged queries with no
    relevant (grade > 0) document in the corpus, negative grades, queries with no weight after tokenization
    (rows of q [nq, V], in ds.query_ids order). ValueError when every judged query is one of them (each
    would score 0)."""
    qids = ds.query_ids
    where = str(ds.root / "qrels" / f"{ds.split}.tsv") if ds.root is not None else f"{ds.name} {ds.split} qrels"
    no_relevant = [qid for qid in qids if not any(g > 0 and d in ds.corpus for d, g in ds.qrels[qid].items())]
    empty = [qid for qid, n in zip(qids, np.diff(sp.csr_matrix(q).indptr)) if n == 0]
    if len(no_relevant) == len(qids):
        raise ValueError(f"{where}: none of its {len(qids)} judged queries has a relevant document (grade > 0) "
                         f"in the corpus (e.g. {qids[:3]}); every score would be 0; expected qrels of this corpus")
    if len(empty) == len(qids):
        raise ValueError(f"{where}: all {len(qids)} judged queries are empty after tokenization (no token with "
                         f"an IDF weight); every score would be 0")
    notes = []
    if no_relevant:
        notes.append(f"{len(no_relevant)} of {len(qids)} judged queries have no relevant document (grade > 0) in "
                     f"the corpus and score 0 (e.g. {no_relevant[:3]})")
    negative = [g for qid in qids for g in ds.qrels[qid].values() if g < 0]
    if negative:
        notes.append(f"{len(negative)} qrels rows of the judged queries have negative grades (lowest "
                     f"{min(negative)}); expected grades >= 0")
    if empty:
        notes.append(f"{len(empty)} of {len(qids)} judged queries are empty after tokenization and score 0 "
                     f"(e.g. {empty[:3]})")
    return notes


def evaluate_model(model_path_or_name: str, data_dir_or_name: str, split: str = "test",
                   idf_path: str | os.PathLike | None = None, max_length: int | None = None, k: int = 100,
                   self_hits: bool | None = None, cache_dir: str | os.PathLike | None = None,
                   data_dir: str | os.PathLike | None = None, batch_size: int = 32,
                   show_progress: bool = True, device: str = "auto") -> dict[str, Any]:
    """Inference-free retrieval quality and sparsity of a model on one BEIR split.

    model_path_or_name: a saved ifsr model (SparseEncoder or OpenSearch layout), or an MLM name/path
    with `idf_path`. data_dir_or_name: a BEIR directory, or a set name under `<data_dir>/beir`.
    self_hits: None = SELF_HITS[dataset] (default False). max_length: None = the model's own (`load_model`),
    the length `ifsr index` and `export` encode at. The corpus encoding is the content-keyed one those verbs
    share (`encode_texts`). k must reach the deepest measure (DEPTH). "warnings": `judgement_notes` (queries
    that score 0 by construction, negative grades), with counts; refused when every query would score 0.
    """
    check_depth(k)
    ds = load_beir(data_dir_or_name, split=split, data_dir=data_dir)
    doc, query = load_model(model_path_or_name, idf_path=idf_path, max_length=max_length,  # the evaluation's length
                            show_progress=show_progress)
    doc.to(resolve_device(device))
    self_hits = self_hits_for(ds.name) if self_hits is None else self_hits
    weights = model_weights(model_path_or_name, doc)
    q = query.encode([ds.queries[i] for i in ds.query_ids])  # [nq, V]
    notes = judgement_notes(ds, q)  # before the corpus is encoded: a set that would score 0 is refused at once
    t0 = time.perf_counter()
    d = encode_texts(doc, ds.doc_texts(), weights, cache_dir, batch_size, show_progress)  # [nd, V]
    encode_s = time.perf_counter() - t0
    run, qrels = judged_run(ds, lambda n: sparse_topk(q, d, n), k, self_hits)
    return {"model": str(model_path_or_name), "dataset": ds.name, "split": split,
            **evaluate_run(run, qrels, MEASURES), **sparsity_row(q, d),
            "n_queries": len(ds.query_ids), "n_docs": len(ds.doc_ids), "dataset_checksum": ds.checksum(),
            "model_checksum": weights, "max_length": doc.max_length, "k": k, "self_hits": self_hits,
            "encode_seconds": round(encode_s, 2), "warnings": notes}


def query_vocab_evaluation(doc: DocumentEncoder, model: str, weights: str, ds: BeirSet, q: sp.spmatrix,
                           cache_dir: str | os.PathLike | None, k: int = 100,
                           show_progress: bool = True) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Exact retrieval of the query matrix `q` [nq, V] (rows: ds.query_ids) over `ds`: (metrics row, run).

    The documents are encoded only on the query vocabulary (`query_columns(q)`), which gives the runs,
    nDCG@10, R@100 and the FLOPS metric of the full vectors exactly at a fraction of the cost; the doc
    nnz, which needs every column, is the mean over the full vectors of a fixed sample of NNZ_SAMPLE
    documents (`nnz_sample_rows`; "doc_nnz_docs" says how many)."""
    d = encode_corpus(doc, model, weights, ds, cache_dir, show_progress=show_progress, columns=query_columns(q))
    run, qrels = judged_run(ds, lambda n: sparse_topk(q, d, n), k)
    rows = nnz_sample_rows(len(ds.doc_ids))
    sample = encode_corpus(doc, model, weights, ds, cache_dir, show_progress=False, rows=rows)  # [n, V] full
    return {**evaluate_run(run, qrels, MEASURES), "flops": flops_metric(q, d), "doc_nnz": mean_nnz(sample),
            "doc_nnz_docs": len(rows), "query_nnz": mean_nnz(q)}, run


def limit_corpus(ds: BeirSet, n: int) -> BeirSet:
    """The first `n` documents, and the queries all of whose relevant (grade > 0) docs are among them."""
    if n <= 0:
        raise ValueError(f"corpus_limit must be positive, got {n}")
    corpus = dict(list(ds.corpus.items())[:n])
    qrels = {q: {d: g for d, g in rel.items() if d in corpus} for q, rel in ds.qrels.items()
             if q in ds.queries and any(g > 0 for g in rel.values())
             and all(d in corpus for d, g in rel.items() if g > 0)}
    if not qrels:
        raise ValueError(f"{ds.name}: no query has all its relevant documents in the first {n} documents")
    queries = {q: t for q, t in ds.queries.items() if q in qrels}
    return BeirSet(name=ds.name, corpus=corpus, queries=queries, qrels=qrels, split=ds.split, root=ds.root)
