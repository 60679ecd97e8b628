"""The baselines table (issue #3): BM25, both teachers, their ensembles and the untrained model per dataset.

Each system is ranked exactly (ifsr.core.retrieval) and scored by ifsr.eval.evaluate.judged_run, so the
self-hit rule and the tie-break are those of every other evaluation. REFERENCE_NDCG10 holds independent
measurements of the same table on the full corpora.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ifsr.cache import cache_info, corpus_key
from ifsr.core.encoder import QueryEncoder
from ifsr.core.idf import load_idf
from ifsr.core.names import DENSE, MINMAX, RAW_SUM, SPARSE
from ifsr.core.objective import ensemble_targets
from ifsr.core.retrieval import SparseIndex, top_k
from ifsr.data.beir import BeirSet, default_idf_path, load_beir
from ifsr.data.mining import Bm25Index
from ifsr.distill.teachers import DenseTeacher, SparseTeacher, corpus_encoding, full_corpus_scores
from ifsr.eval.config import BaselinesConfig
from ifsr.eval.evaluate import MEASURES, Search, judged_run, limit_corpus, self_hits_for
from ifsr.eval.metrics import evaluate_run, sparsity_row
from ifsr.manifest import git_commit

COLUMNS = ["dataset", "system", "nDCG@10", "R@100", "flops", "doc_nnz", "query_nnz"]
SYSTEMS = ["bm25", "dense-teacher", "sparse-teacher", MINMAX, RAW_SUM, "inference-free-untrained"]

# nDCG@10, measured independently (issue #3): max length 256, title + " " + text, exact scoring;
# ensembles min-max each teacher per query over the whole corpus, then sum.
REFERENCE_SOURCE = "measured independently, issue #3"
REFERENCE_NDCG10: dict[str, dict[str, float]] = {
    "scifact": {"bm25": 0.679, "dense-teacher": 0.645, "sparse-teacher": 0.644, "ensemble-minmax": 0.701,
                "ensemble-raw": 0.646, "inference-free-untrained": 0.633},
    "cranfield": {"bm25": 0.370, "dense-teacher": 0.382, "sparse-teacher": 0.363, "ensemble-minmax": 0.407,
                  "ensemble-raw": 0.368, "inference-free-untrained": 0.347},
}


def _row(ds: BeirSet, system: str, search: Search, k: int, **extra: float) -> dict[str, Any]:
    return {"dataset": ds.name, "system": system, **evaluate_run(*judged_run(ds, search, k), MEASURES), **extra}


def _dense(scores: np.ndarray) -> Search:
    """Search over a full score matrix [nq, nd] (every document ranked, whatever its score)."""
    return lambda n: top_k(scores, n)


def baselines(config: BaselinesConfig) -> pd.DataFrame:
    """One row per (dataset, system in SYSTEMS); provenance and timings in `df.attrs`."""
    t_start = time.time()
    git, started = git_commit(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # the code that ran
    idf_path = Path(config.idf_path) if config.idf_path else default_idf_path(config.data_dir)
    dense = DenseTeacher(config.dense_teacher, config.max_length, device=config.device,
                         show_progress=config.show_progress)
    sparse = SparseTeacher(config.sparse_teacher, config.max_length, config.batch_size, config.show_progress,
                           device=config.device)
    query_enc = QueryEncoder(sparse.encoder.tokenizer, load_idf(idf_path, sparse.encoder.tokenizer))
    rows: list[dict[str, Any]] = []
    attrs: dict[str, Any] = {"datasets": {}, "timings": {}, "corpus_limit": config.corpus_limit,
                             "models": {dense.name: dense.checksum, sparse.name: sparse.checksum},
                             "idf": str(idf_path), "git": git, "started": started}
    for name in config.datasets:
        ds = load_beir(name, split=config.split, data_dir=config.data_dir)
        if config.corpus_limit is not None:
            ds = limit_corpus(ds, config.corpus_limit)
        k, cache, check = config.k, config.cache_dir, ds.checksum()
        qtexts, dtexts = [ds.queries[q] for q in ds.query_ids], ds.doc_texts()
        attrs["datasets"][ds.name] = {"checksum": check, "n_docs": len(dtexts), "n_queries": len(qtexts),
                                      "self_hits": self_hits_for(ds.name)}
        t: dict[str, float] = {}
        tic = time.perf_counter()
        bm = Bm25Index().build(dtexts)
        rows.append(_row(ds, "bm25", lambda n: bm.search(qtexts, n), k))
        t["bm25_s"] = time.perf_counter() - tic
        tic = time.perf_counter()
        d = corpus_encoding(sparse, dtexts, cache, check)  # [nd, V]
        t["sparse_docs_s"] = time.perf_counter() - tic
        tic = time.perf_counter()
        s_dense = full_corpus_scores(dense, qtexts, dtexts, cache, check)  # [nq, nd]
        t["dense_scores_s"] = time.perf_counter() - tic
        tic = time.perf_counter()
        q_sparse = sparse.encode_queries(qtexts)  # [nq, V]
        s_sparse = full_corpus_scores(sparse, qtexts, dtexts, cache, check)  # [nq, nd]
        t["sparse_scores_s"] = time.perf_counter() - tic
        stacked = torch.from_numpy(np.stack([s_dense, s_sparse])).double()  # [2, nq, nd]
        index = SparseIndex(d)
        q_free = query_enc.encode(qtexts)  # [nq, V]
        rows += [
            _row(ds, "dense-teacher", _dense(s_dense), k),
            _row(ds, "sparse-teacher", lambda n: index.search(q_sparse, n), k, **sparsity_row(q_sparse, d)),
            _row(ds, MINMAX, _dense(ensemble_targets(stacked, normalize=True).numpy()), k),
            _row(ds, RAW_SUM, _dense(ensemble_targets(stacked, normalize=False).numpy()), k),
            _row(ds, "inference-free-untrained", lambda n: index.search(q_free, n), k, **sparsity_row(q_free, d)),
        ]
        attrs["timings"][ds.name] = {**{k_: round(v, 2) for k_, v in t.items()},
                                     **_encode_seconds(dense, sparse, dtexts, cache, check)}
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    attrs["wall_seconds"] = round(time.time() - t_start, 1)
    df.attrs = attrs
    return df


def _encode_seconds(dense, sparse, dtexts, cache, check) -> dict[str, float | None]:
    """How long each teacher took to encode the corpus when it was computed (from the cache sidecars)."""
    out: dict[str, float | None] = {}
    for label, t in ((DENSE, dense), (SPARSE, sparse)):
        key = corpus_key(t.name, t.checksum, t.encoder_tag, check, dtexts, t.max_length)
        info = cache_info(key, cache) if cache else None
        out[f"{label}_encode_docs_s_when_computed"] = info.get("compute_seconds") if info else None
    return out


def compare_to_reference(df: pd.DataFrame, tol: float = 0.005) -> pd.DataFrame:
    """nDCG@10 beside REFERENCE_NDCG10 (full corpora only): delta = measured - reference."""
    ref = [{"dataset": d, "system": s, "reference": v} for d, row in REFERENCE_NDCG10.items() for s, v in row.items()]
    out = df[["dataset", "system", "nDCG@10"]].merge(pd.DataFrame(ref), on=["dataset", "system"], how="left")
    out["delta"] = out["nDCG@10"] - out["reference"]
    out["within_tol"] = out["delta"].abs() <= tol + 1e-12
    out.attrs = {"source": REFERENCE_SOURCE, "tol": tol}
    return out


def reference_summary(comparison: pd.DataFrame, corpus_limit: int | None) -> str:
    """One line: how many systems match the reference within tolerance (full corpora only)."""
    if corpus_limit is not None:
        return f"corpus_limit={corpus_limit}: reference values are for full corpora; deltas not comparable"
    n_ref = int(comparison["reference"].notna().sum())
    return f"{int(comparison['within_tol'].sum())}/{n_ref} within ±{comparison.attrs['tol']}"
