"""Do the engines return what ifsr's exact scorer returns? Top-10 agreement and nDCG@10 difference.

Issue: an inverted-index engine quantizes impacts (PISA) or prunes posting lists (Seismic), so its
top-10 may differ from exact scoring. Each row compares one (engine, system) run with its reference
on the same queries and qrels:
- inference-free on PISA / Seismic vs ifsr's exact float scoring of the same vectors (`ifsr-exact`);
- BM25 on PISA (porter2, Terrier stopwords, k1 = 0.9, b = 0.4) vs `bm25s` (the Python reference used
  for mining: English stemmer, stopwords, k1 = 1.2, b = 0.75). These are different BM25s, so their
  agreement measures the implementations' spread, not quantization error.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ifsr.data.beir import data_dir as resolve_data_dir, default_idf_path, load_beir
from ifsr.data.mining import Bm25Index
from ifsr.eval.metrics import evaluate_run
from ifsr.eval.retrieval import PAD_INDEX, PAD_SCORE, to_run
from ifsr.serving.base import vocab_terms
from ifsr.serving.corpora import load_encoders, real_corpus, resolve_cache_dir
from ifsr.serving.engines import ENGINES, ExactEngine, check_engines, topk_agreement
from ifsr.serving.pisa import PisaBM25Index, PisaImpactIndex
from ifsr.serving.queryside import inference_free_query

COLUMNS = ["engine", "system", "reference", "nDCG@10", "reference_nDCG@10", "delta_nDCG@10", "top10_agreement"]


def stack_hits(hits: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query (rows, scores) lists -> (rows int64 [nq, k'], scores float32 [nq, k']), -1 / -inf padding."""
    width = max([k] + [len(rows) for rows, _ in hits])
    rows_out = np.full((len(hits), width), PAD_INDEX, dtype=np.int64)
    scores_out = np.full((len(hits), width), PAD_SCORE, dtype=np.float32)
    for i, (rows, scores) in enumerate(hits):
        rows_out[i, : len(rows)], scores_out[i, : len(rows)] = rows, scores
    return rows_out, scores_out


def engine_rows(doc_ids: Sequence[str], texts: Sequence[str], vectors: sp.csr_matrix, queries: Mapping[str, str],
                qrels: Mapping[str, Mapping[str, int]], tokenizer, idf: np.ndarray, workdir: str | os.PathLike,
                engines: Sequence[str] = ("pisa",), k: int = 10, doc_scale: float = 100.0,
                query_scale: float = 10.0, algorithm: str = "maxscore") -> pd.DataFrame:
    """One row per (engine, system) with its reference (COLUMNS). Indexes are built under `workdir`."""
    if len(doc_ids) != vectors.shape[0] or len(texts) != len(doc_ids):
        raise ValueError(f"{len(doc_ids)} doc ids, {len(texts)} texts and {vectors.shape[0]} vectors must match")
    check_engines(engines)
    qids = list(queries)
    encode = inference_free_query(tokenizer, idf)
    q_vecs = [encode(queries[q]) for q in qids]
    exact = ExactEngine.from_docs(vectors, k)
    runs = {("ifsr-exact", "inference-free"): [exact.search_ids(ids, w) for ids, w in q_vecs]}
    bm25s = Bm25Index().build(list(texts))
    rows_, scores_ = bm25s.search([queries[q] for q in qids], k)
    runs[("bm25s", "bm25")] = list(zip(rows_, scores_))
    work = Path(workdir)
    for name in [e for e in ENGINES if e in engines]:  # registry order: pisa rows before seismic rows
        if name == "pisa":
            terms = vocab_terms(tokenizer)
            pisa = PisaImpactIndex.from_docs(vectors, k, path=work / f"impact{doc_scale:g}", terms=terms,
                                             doc_scale=doc_scale, algorithm=algorithm, query_scale=query_scale,
                                             reuse=True, show_progress=False)
            runs[("pisa", "inference-free")] = [pisa.search_ids(ids, w) for ids, w in q_vecs]
            bm25 = PisaBM25Index.from_texts(list(texts), k, path=work / "bm25", algorithm=algorithm, reuse=True,
                                            show_progress=False)
            runs[("pisa", "bm25")] = [bm25.search(queries[q]) for q in qids]
        else:
            engine = ENGINES[name].from_docs(vectors, k)
            runs[(name, "inference-free")] = [engine.search_ids(ids, w) for ids, w in q_vecs]
    ndcg = {key: evaluate_run(to_run(qids, doc_ids, *stack_hits(hits, k)), qrels, ("nDCG@10",))["nDCG@10"]
            for key, hits in runs.items()}
    reference = {"inference-free": ("ifsr-exact", "inference-free"), "bm25": ("bm25s", "bm25")}
    out = []
    for (engine, system), hits in runs.items():
        ref = reference[system]
        agree = topk_agreement([h[0] for h in hits], [h[0] for h in runs[ref]], k)
        out.append({"engine": engine, "system": system, "reference": ref[0], "nDCG@10": ndcg[(engine, system)],
                    "reference_nDCG@10": ndcg[ref], "delta_nDCG@10": ndcg[(engine, system)] - ndcg[ref],
                    "top10_agreement": agree})
    return pd.DataFrame(out, columns=COLUMNS)


def engine_quality(data_dir: str | os.PathLike | None = None, model: str = "splade-tiny",
                   cache_dir: str | os.PathLike | None = None, max_length: int = 256,
                   engines: Sequence[str] = ("pisa",), k: int = 10) -> pd.DataFrame:
    """`engine_rows` on SciFact test (all judged queries), with the latency study's cached vectors."""
    data_dir = resolve_data_dir(data_dir)
    cache_dir = resolve_cache_dir(cache_dir)
    doc, query, weights = load_encoders(model, default_idf_path(data_dir), max_length)
    corpus = real_corpus(data_dir, doc, cache_dir, model, weights, "scifact")
    ds = load_beir("scifact", "test", data_dir=data_dir, download=False)
    queries = {q: ds.queries[q] for q in ds.query_ids}
    workdir = cache_dir / "engine-check" / f"{weights[:16]}-L{max_length}"
    return engine_rows(ds.doc_ids, corpus.texts, corpus.vectors, queries, {q: ds.qrels[q] for q in queries},
                       doc.tokenizer, query.idf, workdir, engines, k)
