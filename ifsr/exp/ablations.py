"""The paper's two ablations, in the paper's stages (SPEC §3):

- stage 1, pre-training on the shared pairs of many sources: single vs ensemble teacher (`teacher_ablation`);
- stage 2, fine-tuning from the stage-1 min-max student: FLOPS vs IDF-aware FLOPS (`idf_flops_sweep`), each
  arm from a stage-1 student pre-trained with that arm's FLOPS and the same training seed.

Every arm runs once per training seed (`cfg.seeds`; the teacher ablation: `cfg.ablation_seeds()`); every run is cached under `runs_dir/<run key>`
(ifsr.exp.runs), so the notebooks share runs (the stage-1 min-max students of the teacher ablation are the
IDF-aware arm's starts) and a crashed run resumes from its last checkpoint.
Both tables come with per-query nDCG@10, from which the report computes each claim's statistic.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ifsr.core.encoder import DocumentEncoder, QueryEncoder
from ifsr.core.names import IDF_ARM
from ifsr.core.idf import load_idf
from ifsr.data.beir import load_beir
from ifsr.distill.teachers import resolve_device
from ifsr.eval.evaluate import bm25_per_query, query_vocab_evaluation
from ifsr.eval.metrics import per_query
from ifsr.exp.config import ARMS, AblationConfig, arm_views, load_config
from ifsr.exp.runs import (TrainedRun, pretrain_config, pretrained_run, run_key, start_config,
                            sweep_train_config, trained_run)
from ifsr.exp.trainsets import finetune_dataset, idf_path, limited, pretrain_dataset
from ifsr.manifest import sha256_dir, sha256_file
from ifsr.models import SPARSE_ENCODER, resolve_model_path, saved_layout
from ifsr.serving.export import load_sparse_encoder

METRICS = ("nDCG@10", "R@100", "flops", "doc_nnz", "doc_nnz_docs", "query_nnz")  # the curve's columns from each evaluation


def protocol_encoders(cfg: AblationConfig, model: str | Path) -> tuple[DocumentEncoder, QueryEncoder, Path]:
    """The protocol's evaluation encoders of a model, a trained student's folder (a SparseEncoder) or a model name
    or MLM folder (the untrained start): its document side at `eval_max_length` on `cfg.device`, the preset's IDF
    queries, and the folder that holds its weights (hashed into the cache keys)."""
    if saved_layout(model) == SPARSE_ENCODER:  # a trained student
        doc, _ = load_sparse_encoder(model, max_length=cfg.eval_max_length)
        folder = Path(model)
    else:  # a model name or MLM directory: the untrained start
        doc = DocumentEncoder.from_pretrained(str(model), max_length=cfg.eval_max_length)
        folder = Path(resolve_model_path(model))
    doc.to(resolve_device(cfg.device))
    return doc, QueryEncoder(doc.tokenizer, load_idf(idf_path(cfg), doc.tokenizer)), folder


def evaluate_trained(cfg: AblationConfig, model_dir: str | Path, query_weights: str = "idf") -> list[dict[str, Any]]:
    """Exact inference-free retrieval of a trained model on each eval set at `eval_max_length`, the documents
    encoded on the evaluation queries' vocabulary (ifsr.eval.evaluate.query_vocab_evaluation: the same runs
    as full vectors); per-query nDCG@10 kept."""
    doc, query, model_dir = protocol_encoders(cfg, model_dir)
    weights = sha256_dir(model_dir)
    rows = []
    for name in cfg.eval_datasets:
        ds = limited(load_beir(name, split=cfg.eval_split, data_dir=cfg.data_dir), cfg)
        q = query.encode([ds.queries[i] for i in ds.query_ids], binary=query_weights == "ones")  # [nq, V]
        row, run = query_vocab_evaluation(doc, str(model_dir), weights, ds, q, cfg.cache_dir)
        rows.append({"dataset": ds.name, **row, "per_query": per_query(run, {i: ds.qrels[i] for i in ds.query_ids},
                                                                       "nDCG@10")})
    return rows


def _stage_seconds(model_dir: Path) -> float:
    """A trained stage's training wall time (the trainer's `train_runtime`, last row of its log.jsonl)."""
    log = Path(model_dir).parent / "log.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    return float(next((r["train_runtime"] for r in reversed(rows) if "train_runtime" in r), float("nan")))


def _rows(evals: list[dict[str, Any]], keys: dict[str, Any], run: TrainedRun | None, model: str) -> tuple[list, list]:
    """(table rows, per-query rows) of one evaluated model: its metrics, and nDCG@10 per query."""
    table, per_q = [], []
    extra = {"student_temperature": float(run.train_config.student_temperature) if run else float("nan"),
             "train_seconds": _stage_seconds(run.model_dir) if run else float("nan"), "model": model}
    for r in evals:
        table.append({"dataset": r["dataset"], **keys, **{m: r[m] for m in METRICS}, **extra})
        per_q += [{"dataset": r["dataset"], **keys, "query_id": q, "nDCG@10": v} for q, v in sorted(r["per_query"].items())]
    return table, per_q


def start_label(arm: str) -> str:
    """The curve table's label of an arm's stage-1 starts: "stage-1 start" (IDF-aware), "stage-1 start (flops)"."""
    return "stage-1 start" if ARMS[arm] == "idf" else f"stage-1 start ({arm})"


def sweep_student(cfg: AblationConfig, arm: str, lam: float, seed: int | None = None) -> TrainedRun:
    """The student of one point of the sweep's sparsity-relevance curve (seed: `cfg.seeds[0]`), the very
    run `idf_flops_sweep` trains (same run key); trained here, with its stage-1 start, when absent."""
    lam = cfg.curve_point(arm, lam)  # the YAML's own value: the same run key
    seed = cfg.seeds[0] if seed is None else seed
    return trained_run(cfg, sweep_train_config(cfg, arm, lam, seed), _lazy(lambda: finetune_dataset(cfg)),
                       _lazy(lambda: pretrain_dataset(cfg)))


def sweep_key(cfg: AblationConfig, arm: str, lam: float, seed: int | None = None) -> str:
    """The run key of `sweep_student`'s run (`ifsr.exp.runs.run_key`), without training it: what a finished
    folder's recorded students are checked against (`ifsr.replicate.stale_reason`)."""
    lam = cfg.curve_point(arm, lam)
    return run_key(cfg, sweep_train_config(cfg, arm, lam, cfg.seeds[0] if seed is None else seed))


def lambda_student(students: str | os.PathLike, lam: float, seed_index: int = 0,
                   data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> str:
    """The model directory of the idf-flops student at FLOPS weight `lam` of the ablation YAML `students`
    and its training seed `seeds[seed_index]` (`sweep_student`: its sweep's own run, trained when absent); the
    latency levers' "lambda=" model."""
    overrides = {"data_dir": str(data_dir)} if data_dir is not None else {}
    if cache_dir is not None:
        overrides["cache_dir"] = str(cache_dir)
    cfg = load_config(AblationConfig, students, **overrides)
    if not 0 <= seed_index < len(cfg.seeds):
        raise ValueError(f"{students}: seed index {seed_index} out of its {len(cfg.seeds)} seeds {cfg.seeds}")
    return str(sweep_student(cfg, IDF_ARM, lam, cfg.seeds[seed_index]).model_dir)


def idf_flops_sweep(cfg: AblationConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stage 2, the FLOPS vs IDF-aware FLOPS lambda sweep: (curve, per_query).

    Every (arm, lambda, seed) fine-tunes with the min-max ensemble teacher from the stage-1 student of its
    own arm and seed (`ifsr.exp.runs.start_config`: the arm applies through both stages). curve.csv: one row per (dataset, arm, lambda, seed), each arm evaluated
    with the query weights it was trained with, the plain arm also with IDF queries (`arm_views`), and
    the untrained start, each arm's stage-1 starts and BM25 on the same queries; per_query.csv: nDCG@10 of every
    query of those rows, for the report's statistics (ifsr.eval.stats)."""
    data = _lazy(lambda: finetune_dataset(cfg))
    pre = _lazy(lambda: pretrain_dataset(cfg))
    table, per_q = _rows(evaluate_trained(cfg, cfg.train.student), {"arm": "untrained", "lambda": float("nan"),
                                                                     "seed": -1}, None, cfg.train.student)
    for name in cfg.eval_datasets:  # BM25 on the same queries: the reference of the headline model
        ref = bm25_per_query(limited(load_beir(name, split=cfg.eval_split, data_dir=cfg.data_dir), cfg))
        keys = {"dataset": name, "arm": "bm25", "lambda": float("nan"), "seed": -1}
        table.append({**keys, "nDCG@10": sum(ref.values()) / len(ref), "model": "bm25"})
        per_q += [{**keys, "query_id": q, "nDCG@10": v} for q, v in sorted(ref.items())]
    for arm in cfg.arms:  # each arm's stage-1 starts (per seed), evaluated with the arm's own query weights
        for seed in cfg.seeds:
            start = start_config(cfg, sweep_train_config(cfg, arm, cfg.lambdas[0], seed))
            if start is None:
                break
            run = pretrained_run(cfg, start, pre)
            t, q = _rows(evaluate_trained(cfg, run.model_dir, ARMS[arm]), {"arm": start_label(arm), "lambda":
                                                                            cfg.teacher_lambda, "seed": seed},
                         run, str(run.model_dir))
            table, per_q = table + t, per_q + q
    for arm in cfg.arms:
        for lam in cfg.lambdas:
            for seed in cfg.seeds:
                run = trained_run(cfg, sweep_train_config(cfg, arm, lam, seed), data, pre)
                for label, qw in arm_views(arm):
                    t, q = _rows(evaluate_trained(cfg, run.model_dir, qw), {"arm": label, "lambda": lam, "seed": seed},
                                 run, str(run.model_dir))
                    table, per_q = table + t, per_q + q
    return pd.DataFrame(table), pd.DataFrame(per_q)


def teacher_ablation(cfg: AblationConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stage 1, the teacher ablation: (table, per_query), evaluated zero-shot.

    Each teacher of `cfg.teachers` supervises pre-training on the shared pairs (IDF-aware FLOPS at
    `teacher_lambda`) once per training seed of `cfg.ablation_seeds()`; table.csv: one row per (dataset, teacher, seed), plus the
    untrained start; per_query.csv: nDCG@10 of every query of those rows (the report's statistics)."""
    pre = _lazy(lambda: pretrain_dataset(cfg))
    table, per_q = _rows(evaluate_trained(cfg, cfg.train.student), {"teacher": "untrained", "seed": -1}, None,
                         cfg.train.student)
    for teacher in cfg.teachers:
        for seed in cfg.ablation_seeds():
            run = pretrained_run(cfg, pretrain_config(cfg, teacher, seed), pre)
            t, q = _rows(evaluate_trained(cfg, run.model_dir), {"teacher": teacher, "seed": seed}, run, str(run.model_dir))
            table, per_q = table + t, per_q + q
    return pd.DataFrame(table), pd.DataFrame(per_q)


class _lazy:
    """Build the fine-tuning data only if some run actually needs training."""

    def __init__(self, make):
        self.make, self.value = make, None

    def __call__(self):
        if self.value is None:
            self.value = self.make()
        return self.value


def provenance(cfg: AblationConfig, table: pd.DataFrame) -> dict[str, Any]:
    """`ifsr.tables.write_table`'s keywords for an ablation table: data and model checksums
    (the table's trained students included); its Markdown keeps the blank last line it always had."""
    data = {ds: load_beir(ds, split=cfg.eval_split, data_dir=cfg.data_dir).checksum()
            for ds in sorted(set(cfg.eval_datasets) | {cfg.train_dataset})}
    data["idf"] = sha256_file(idf_path(cfg))
    names = sorted({*(m["model"] for m in cfg.members()), cfg.train.student}) + sorted(set(table.get("model", [])))
    return {"data": data, "models": {m: sha256_dir(resolve_model_path(m)) for m in names}, "md_end": "\n"}
