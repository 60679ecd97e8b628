"""Evaluate a sparse model on a BEIR set, and the baselines table (issue #3).

Conventions (SPEC §4): document text = title + " " + text, exact scoring (no index pruning), ties by
document index ascending (ifsr.eval.retrieval), nDCG@10 / R@100 via ifsr.eval.metrics over the split's judged
queries. Self hits (doc id == query id) are removed only where queries are documents (SELF_HITS).
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import yaml

from ifsr.cache import cache_info, cached_encode, corpus_key, weights_checksum
from ifsr.data.beir import BeirSet, data_dir as resolve_data_dir, load_beir
from ifsr.core.objective import ensemble_targets
from ifsr.manifest import git_commit
from ifsr.eval.metrics import evaluate_run, per_query, sparsity_row
from ifsr.data.mining import Bm25Index, topk_stable
from ifsr.core.encoder import DocumentEncoder, QueryEncoder, resolve_model_path
from ifsr.eval.retrieval import remove_self_hits, sparse_topk, to_run

SELF_HITS: dict[str, bool] = {"arguana": True, "quora": True}  # queries are documents there; else False
IDF_FILE = "idf/msmarco_bert-base-uncased_idf.json"  # under the data directory
MEASURES = ("nDCG@10", "R@100")
COLUMNS = ["dataset", "system", "nDCG@10", "R@100", "flops", "doc_nnz", "query_nnz"]
SYSTEMS = ["bm25", "dense-teacher", "sparse-teacher", "ensemble-minmax", "ensemble-raw", "inference-free-untrained"]

# nDCG@10, measured independently (issue #3): max length 256, title + " " + text, exact scoring;
# ensembles min-max each teacher per query over the whole corpus, then sum.
REFERENCE_SOURCE = "measured independently, issue #3"
REFERENCE_NDCG10: dict[str, dict[str, float]] = {
    "scifact": {"bm25": 0.679, "dense-teacher": 0.645, "sparse-teacher": 0.644, "ensemble-minmax": 0.701,
                "ensemble-raw": 0.646, "inference-free-untrained": 0.633},
    "cranfield": {"bm25": 0.370, "dense-teacher": 0.382, "sparse-teacher": 0.363, "ensemble-minmax": 0.407,
                  "ensemble-raw": 0.368, "inference-free-untrained": 0.347},
}


def self_hits_for(dataset: str) -> bool:
    return SELF_HITS.get(dataset.lower(), False)


def judged_run(ds: BeirSet, idx: np.ndarray, sc: np.ndarray, k: int, self_hits: bool) -> tuple[dict, dict]:
    """Rank arrays (k + 1 columns if self_hits) -> (run, qrels) over the judged queries, top k kept."""
    if self_hits:
        idx, sc = remove_self_hits(ds.query_ids, ds.doc_ids, idx, sc)
    return to_run(ds.query_ids, ds.doc_ids, idx[:, :k], sc[:, :k]), {q: ds.qrels[q] for q in ds.query_ids}


def _metrics(ds: BeirSet, idx: np.ndarray, sc: np.ndarray, k: int, self_hits: bool) -> dict[str, float]:
    """Rank arrays (k + 1 columns if self_hits) -> {nDCG@10, R@100} over the judged queries."""
    return evaluate_run(*judged_run(ds, idx, sc, k, self_hits), MEASURES)


def bm25_per_query(ds: BeirSet, k: int = 100, measure: str = "nDCG@10") -> dict[str, float]:
    """BM25 (the baselines table's own settings: whole documents, k1 1.2, b 0.75) per judged query:
    the reference of a paired test of a student against BM25."""
    sh = self_hits_for(ds.name)
    idx, sc = Bm25Index().build(ds.doc_texts()).search([ds.queries[q] for q in ds.query_ids], k + int(sh))
    return per_query(*judged_run(ds, idx, sc, k, sh), measure)


def encode_corpus(doc: DocumentEncoder, model: str, weights: str, ds: BeirSet, cache_dir: str | os.PathLike | None,
                  batch_size: int = 32, show_progress: bool = True) -> sp.csr_matrix:
    """Document vectors [nd, V] of `ds`, cached by model name + weights + dataset + max length."""
    from ifsr.distill.teachers import DOC_ENCODER_TAG

    texts = ds.doc_texts()
    key = corpus_key(model, weights, DOC_ENCODER_TAG, ds.checksum(), texts, doc.max_length)
    return cached_encode(key, lambda: doc.encode(texts, batch_size=batch_size, show_progress=show_progress), cache_dir)


def evaluate_model(model_path_or_name: str, data_dir_or_name: str, split: str = "test",
                   idf_path: str | os.PathLike | None = None, max_length: int = 256, k: int = 100,
                   self_hits: bool | None = None, cache_dir: str | os.PathLike | None = None,
                   data_dir: str | os.PathLike | None = None, batch_size: int = 32,
                   show_progress: bool = True, device: str = "auto") -> dict[str, Any]:
    """Inference-free retrieval quality and sparsity of a model on one BEIR split.

    model_path_or_name: a saved ifsr model (SparseEncoder or OpenSearch layout), or an MLM name/path
    with `idf_path`. data_dir_or_name: a BEIR directory, or a set name under `<data_dir>/beir`.
    self_hits: None = SELF_HITS[dataset] (default False). max_length overrides the saved one.
    """
    from ifsr.serving.export import load_model
    from ifsr.distill.teachers import resolve_device

    ds = load_beir(data_dir_or_name, split=split, data_dir=data_dir)
    doc, query = load_model(model_path_or_name, idf_path=idf_path, max_length=max_length)
    doc.max_length = max_length  # a SparseEncoder directory carries its own; the evaluation's wins
    doc.to(resolve_device(device))
    self_hits = self_hits_for(ds.name) if self_hits is None else self_hits
    weights = weights_checksum(resolve_model_path(model_path_or_name), doc.mlm)
    t0 = time.perf_counter()
    d = encode_corpus(doc, model_path_or_name, weights, ds, cache_dir, batch_size, show_progress)  # [nd, V]
    encode_s = time.perf_counter() - t0
    q = query.encode([ds.queries[i] for i in ds.query_ids])  # [nq, V]
    idx, sc = sparse_topk(q, d, k + int(self_hits))
    return {"model": str(model_path_or_name), "dataset": ds.name, "split": split,
            **_metrics(ds, idx, sc, k, self_hits), **sparsity_row(q, d),
            "n_queries": len(ds.query_ids), "n_docs": len(ds.doc_ids), "dataset_checksum": ds.checksum(),
            "model_checksum": weights, "max_length": max_length, "k": k, "self_hits": self_hits,
            "encode_seconds": round(encode_s, 2)}


# ----------------------------------------------------------------------------- baselines

@dataclass
class BaselinesConfig:
    datasets: list[str] = field(default_factory=lambda: ["scifact", "cranfield"])
    split: str = "test"
    max_length: int = 256                       # both teachers and the untrained doc encoder
    k: int = 100                                # retrieval depth (R@100 needs 100)
    corpus_limit: int | None = None             # smoke: first N docs + queries whose positives all lie there
    dense_teacher: str = "all-MiniLM-L6-v2"
    sparse_teacher: str = "splade-tiny"         # also the untrained inference-free document encoder
    idf_path: str | None = None                 # None: <data_dir>/idf/msmarco_bert-base-uncased_idf.json
    cache_dir: str | None = ".cache/ifsr"       # None: no cache
    data_dir: str | None = None                 # None: $IFSR_DATA_DIR (read when run), else ./data
    out_dir: str = "results/smoke/baselines"
    batch_size: int = 32
    device: str = "auto"                        # auto: cuda if available (caches do not record the device)
    show_progress: bool = True


PRESETS: dict[str, dict[str, Any]] = {"smoke": {"corpus_limit": 300}, "cpu": {}, "cpu-long": {}, "gpu": {}}


def parse_list(value: str | list[str]) -> list[str]:
    """A list as given, or from a string: JSON/YAML ('["a", "b"]') or comma-separated ("a,b").

    papermill's `-p datasets '["scifact"]'` hands notebooks the string, not the list.
    """
    if not isinstance(value, str):
        return list(value)
    parsed = yaml.safe_load(value) if value.strip().startswith("[") else [v.strip() for v in value.split(",")]
    if not isinstance(parsed, list) or not all(isinstance(v, str) and v for v in parsed):
        raise ValueError(f"expected a list of names, got {value!r}")
    return parsed


def preset_config(preset: str, **overrides: Any) -> BaselinesConfig:
    """A preset's defaults, then every override that is not None (`datasets` may be a string)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    if isinstance(overrides.get("datasets"), str):
        overrides["datasets"] = parse_list(overrides["datasets"])
    return BaselinesConfig(**{**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}})


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


def matrix_topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each row of a dense score matrix [nq, nd]: (score desc, doc index asc)."""
    idx = np.stack([topk_stable(row, k) for row in scores]) if len(scores) else np.zeros((0, k), np.int64)
    return idx.astype(np.int64), np.take_along_axis(scores, idx, axis=1).astype(np.float32)


def _sparse_row(ds, system, q, d, k, sh) -> dict[str, Any]:
    idx, sc = sparse_topk(q, d, k + int(sh))
    return {"dataset": ds.name, "system": system, **_metrics(ds, idx, sc, k, sh), **sparsity_row(q, d)}


def _dense_row(ds, system, scores, k, sh) -> dict[str, Any]:
    idx, sc = matrix_topk(scores, k + int(sh))
    return {"dataset": ds.name, "system": system, **_metrics(ds, idx, sc, k, sh)}


def baselines(config: BaselinesConfig) -> pd.DataFrame:
    """One row per (dataset, system in SYSTEMS); provenance and timings in `df.attrs`."""
    from ifsr.distill.teachers import DenseTeacher, SparseTeacher, corpus_encoding, full_corpus_scores

    t_start = time.time()
    git, started = git_commit(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # the code that ran
    root = resolve_data_dir(config.data_dir)
    idf_path = Path(config.idf_path) if config.idf_path else root / IDF_FILE
    dense = DenseTeacher(config.dense_teacher, config.max_length, device=config.device,
                         show_progress=config.show_progress)
    sparse = SparseTeacher(config.sparse_teacher, config.max_length, config.batch_size, config.show_progress,
                           device=config.device)
    query_enc = QueryEncoder.from_idf_file(sparse.encoder.tokenizer, idf_path)
    rows: list[dict[str, Any]] = []
    attrs: dict[str, Any] = {"datasets": {}, "timings": {}, "corpus_limit": config.corpus_limit,
                             "models": {dense.name: dense.checksum, sparse.name: sparse.checksum},
                             "idf": str(idf_path), "git": git, "started": started}
    for name in config.datasets:
        ds = load_beir(name, split=config.split, data_dir=root)
        if config.corpus_limit is not None:
            ds = limit_corpus(ds, config.corpus_limit)
        sh, k, cache, check = self_hits_for(ds.name), config.k, config.cache_dir, ds.checksum()
        qtexts, dtexts = [ds.queries[q] for q in ds.query_ids], ds.doc_texts()
        attrs["datasets"][ds.name] = {"checksum": check, "n_docs": len(dtexts), "n_queries": len(qtexts),
                                      "self_hits": sh}
        t: dict[str, float] = {}
        tic = time.perf_counter()
        bm = Bm25Index().build(dtexts)
        rows.append({"dataset": ds.name, "system": "bm25", **_metrics(ds, *bm.search(qtexts, k + int(sh)), k, sh)})
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
        rows += [
            _dense_row(ds, "dense-teacher", s_dense, k, sh),
            _sparse_row(ds, "sparse-teacher", q_sparse, d, k, sh),
            _dense_row(ds, "ensemble-minmax", ensemble_targets(stacked, normalize=True).numpy(), k, sh),
            _dense_row(ds, "ensemble-raw", ensemble_targets(stacked, normalize=False).numpy(), k, sh),
            _sparse_row(ds, "inference-free-untrained", query_enc.encode(qtexts), d, k, sh),
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
    for label, t in (("dense", dense), ("sparse", sparse)):
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


def markdown_table(df: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub markdown table (floats rounded, NaN shown as –)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_baselines(df: pd.DataFrame, config: BaselinesConfig, out_dir: str | os.PathLike | None = None) -> Path:
    """table.csv, table.md, config.yaml and manifest.json in `out_dir` (default config.out_dir)."""
    from ifsr.exp.config import save_config
    from ifsr.manifest import Manifest, sha256_file

    out = Path(out_dir if out_dir is not None else config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "table.csv", index=False)
    (out / "table.md").write_text(markdown_table(df), encoding="utf-8")
    save_config(config, out / "config.yaml")
    manifest = Manifest(dataclasses.asdict(config))
    for name, info in df.attrs.get("datasets", {}).items():
        manifest.add_data(name, info["checksum"])
    for name, checksum in df.attrs.get("models", {}).items():
        manifest.add_model(name, checksum)
    if df.attrs.get("idf") and os.path.isfile(df.attrs["idf"]):
        manifest.add_data("idf", sha256_file(df.attrs["idf"]))
    extra = {k: df.attrs[k] for k in ("datasets", "timings", "corpus_limit", "git", "started") if k in df.attrs}
    if "wall_seconds" in df.attrs:
        extra["wall_seconds"] = df.attrs["wall_seconds"]
    manifest.write(out, **extra)
    return out
