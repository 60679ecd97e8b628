"""The paper's two ablations: FLOPS vs IDF-aware FLOPS (a lambda sweep), and single vs ensemble teacher.

Every run is cached under `runs_dir/<run key>` (ifsr.exp.runs): the notebooks share runs (the
ensemble-minmax, IDF-aware run at the chosen lambda serves both ablations) and a crashed run resumes
from its last checkpoint.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from ifsr.core.encoder import DocumentEncoder, QueryEncoder, resolve_model_path
from ifsr.core.idf import load_idf
from ifsr.data.beir import load_beir
from ifsr.distill.teachers import resolve_device
from ifsr.distill.trainsets import finetune_dataset, idf_path, limited
from ifsr.eval.evaluate import bm25_per_query, encode_corpus, judged_run
from ifsr.eval.metrics import evaluate_run, paired_randomization_test, per_query, sparsity_row
from ifsr.eval.retrieval import sparse_topk
from ifsr.exp.config import ARMS, AblationConfig, arm_views
from ifsr.exp.runs import trained_run
from ifsr.manifest import sha256_dir, sha256_file
from ifsr.serving.export import load_sparse_encoder

METRICS = ("nDCG@10", "R@100", "flops", "doc_nnz", "query_nnz")  # the curve's columns from each evaluation


def evaluate_trained(cfg: AblationConfig, model_dir: str | Path, query_weights: str = "idf") -> list[dict[str, Any]]:
    """Exact inference-free retrieval of a trained model on each eval set; per-query nDCG@10 kept."""
    if (Path(model_dir) / "modules.json").is_file():  # a trained student
        doc, _ = load_sparse_encoder(model_dir, max_length=cfg.eval_max_length)
    else:  # a model name or MLM directory: the untrained start
        doc = DocumentEncoder.from_pretrained(str(model_dir), max_length=cfg.eval_max_length)
        model_dir = Path(resolve_model_path(str(model_dir)))
    doc.to(resolve_device(cfg.device))
    query = QueryEncoder(doc.tokenizer, load_idf(idf_path(cfg), doc.tokenizer))
    rows = []
    for name in cfg.eval_datasets:
        ds = limited(load_beir(name, split=cfg.eval_split, data_dir=cfg.data_dir), cfg)
        d = encode_corpus(doc, str(model_dir), sha256_dir(model_dir), ds, cfg.cache_dir)  # [nd, V]
        q = query.encode([ds.queries[i] for i in ds.query_ids], binary=query_weights == "ones")  # [nq, V]
        run, qrels = judged_run(ds, lambda n: sparse_topk(q, d, n), 100)
        rows.append({"dataset": ds.name, **evaluate_run(run, qrels), **sparsity_row(q, d),
                     "per_query": per_query(run, qrels, "nDCG@10")})
    return rows


def bm25_reference(cfg: AblationConfig) -> dict[str, dict[str, float]]:
    """BM25's per-query nDCG@10 on each eval set ({dataset name: {qid: value}}), for paired tests."""
    sets = [limited(load_beir(n, split=cfg.eval_split, data_dir=cfg.data_dir), cfg) for n in cfg.eval_datasets]
    return {ds.name: bm25_per_query(ds) for ds in sets}


def _curve_row(r: dict[str, Any], arm: str, lam: float, bm25: dict[str, dict[str, float]], seed: int,
               **extra: Any) -> dict[str, Any]:
    """One curve.csv row: the evaluation's metrics and a paired randomization test against BM25."""
    ref = bm25[r["dataset"]]
    return {"dataset": r["dataset"], "arm": arm, "lambda": lam, **{m: r[m] for m in METRICS},
            "bm25_nDCG@10": sum(ref.values()) / len(ref),
            "p_value_vs_bm25": paired_randomization_test(r["per_query"], ref, seed=seed), **extra}


def idf_flops_sweep(cfg: AblationConfig) -> pd.DataFrame:
    """curve.csv rows: one per (dataset, arm, lambda). Each arm of ARMS is evaluated with the query
    weights it was trained with; the plain arm is also shown with IDF queries at inference
    (`arm_views`). Every row has a paired randomization test against BM25 on the same queries."""
    data = _lazy(lambda: finetune_dataset(cfg))
    bm25 = bm25_reference(cfg)
    rows = [_curve_row(r, "untrained", float("nan"), bm25, cfg.seed, model=cfg.train.student)  # the start, same settings
            for r in evaluate_trained(cfg, cfg.train.student)]
    for arm in cfg.arms:
        for lam in cfg.lambdas:
            tc = dataclasses.replace(cfg.train, query_weights=ARMS[arm], teacher="ensemble-minmax", lam=lam)
            run = trained_run(cfg, tc, data)
            for label, qw in arm_views(arm):
                rows += [_curve_row(r, label, lam, bm25, cfg.seed, student_temperature=float(
                    run.train_config.student_temperature), model=str(run.model_dir))
                    for r in evaluate_trained(cfg, run.model_dir, qw)]
    return pd.DataFrame(rows)


def teacher_ablation(cfg: AblationConfig) -> pd.DataFrame:
    """table.csv rows: one per (dataset, teacher), with a paired randomization test vs ensemble-minmax."""
    data = _lazy(lambda: finetune_dataset(cfg))
    results = {}
    for teacher in cfg.teachers:
        tc = dataclasses.replace(cfg.train, query_weights=ARMS["idf-flops"], teacher=teacher, lam=cfg.teacher_lambda)
        run = trained_run(cfg, tc, data)
        results[teacher] = (run, evaluate_trained(cfg, run.model_dir))
    rows = []
    for teacher, (run, evals) in results.items():
        for r in evals:
            ref = next((e for e in results.get("ensemble-minmax", (None, []))[1] if e["dataset"] == r["dataset"]), None)
            p = paired_randomization_test(r["per_query"], ref["per_query"], seed=cfg.seed) if ref else float("nan")
            rows.append({"dataset": r["dataset"], "teacher": teacher, "nDCG@10": r["nDCG@10"], "R@100": r["R@100"],
                         "flops": r["flops"], "p_value_vs_ensemble_minmax": p,
                         "student_temperature": float(run.train_config.student_temperature),
                         "model": str(run.model_dir)})
    return pd.DataFrame(rows)


class _lazy:
    """Build the fine-tuning data only if some run actually needs training."""

    def __init__(self, make):
        self.make, self.value = make, None

    def __call__(self):
        if self.value is None:
            self.value = self.make()
        return self.value


def provenance(cfg: AblationConfig, table: pd.DataFrame) -> dict[str, Any]:
    """`ifsr.report.tables.write_table`'s keywords for an ablation table: data and model checksums
    (the table's trained students included); its Markdown keeps the blank last line it always had."""
    data = {ds: load_beir(ds, split=cfg.eval_split, data_dir=cfg.data_dir).checksum()
            for ds in sorted(set(cfg.eval_datasets) | {cfg.train_dataset})}
    data["idf"] = sha256_file(idf_path(cfg))
    names = sorted({cfg.dense_teacher, cfg.sparse_teacher, cfg.train.student}) + sorted(set(table.get("model", [])))
    return {"data": data, "models": {m: sha256_dir(resolve_model_path(m)) for m in names}, "md_end": "\n"}
