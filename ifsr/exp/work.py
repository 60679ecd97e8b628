"""The work a preset plans, counted before anything runs: training steps, documents encoded, teacher texts.

`preset_work(preset)` walks the same notebook entries and configs `ifsr replicate` runs
(`ifsr.exp.presets.plan`, each AblationConfig built as its notebook builds it) and counts, per kind of
work and setting: optimizer steps of every distinct training stage (a run shared by two notebooks,
or a pre-training stage shared by two fine-tunings, once), corpus documents encoded for evaluation
(one encoding per model and set), and texts the teachers encode to score the candidates. It reads
data sizes (queries, documents, pairs per source) but trains and encodes nothing: the dry run of
`benchmarks/gpu_plan.py` and of the device script multiply these counts by measured unit costs.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ifsr.exp.config import AblationConfig, BaselinesConfig, preset_config


@dataclass(frozen=True)
class Work:
    """One kind of work at one setting: `count` units of `unit` (e.g. 3000 "steps" of batch 32 x 3 docs)."""

    kind: str  # "train" | "encode" | "teacher"
    model: str
    max_length: int
    unit: str  # "steps" (batch_size queries x group docs each) | "docs" | "texts"
    count: int
    batch_size: int = 0  # queries a step (train)
    group: int = 0  # documents a query (train: 1 positive + n_neg)
    dense: bool = False  # encoded by the dense teacher (a SentenceTransformer), not a sparse MLM encoder
    query_vocab: bool = False  # encode: only the evaluation queries' vocabulary columns (query_vocab_evaluation)
    tokenized: int = 0  # units whose texts are tokenized: an eval corpus once for all students, else count


@dataclass(frozen=True)
class WorkPlan:
    """A preset's planned work: the items, the distinct training stages, the notebooks, and the checkpoints the
    stages save on the way (steps // save_steps each)."""

    items: list[Work]
    stages: int
    notebooks: int
    checkpoints: int = 0


def _train_stages(cfg: AblationConfig, entry: str) -> list[dict[str, Any]]:
    """Each training stage of one notebook entry, as a hashable description (stage, config), built by the
    functions that build the runs (ifsr.exp.runs): stage 1 per (teacher, seed) in the teachers notebook;
    the stage-1 start, then stage 2 per (arm, lambda, seed) in the sweep."""
    from ifsr.exp.runs import ablation_key_fields, pretrain_config, start_config, sweep_train_config, train_key_fields

    shared = ablation_key_fields(cfg)
    pre = lambda tc: {"stage": "pretrain", "ablation": shared, "train": train_key_fields(tc)}  # noqa: E731
    if not entry.startswith("02_idf_flops"):
        return [pre(pretrain_config(cfg, t, seed)) for t in cfg.teachers for seed in cfg.ablation_seeds()]
    stages = []
    for arm in cfg.arms:
        for lam in cfg.lambdas:
            for seed in cfg.seeds:
                tc = sweep_train_config(cfg, arm, lam, seed)
                start = start_config(cfg, tc)  # the run's own arm and seed in stage 1
                if start is not None and pre(start) not in stages:
                    stages.append(pre(start))
                stages.append({"stage": "finetune", "ablation": shared, "train": train_key_fields(tc)})
    return stages


def _sizes(cfg: AblationConfig | BaselinesConfig, names: list[str], split: str) -> dict[str, int]:
    from ifsr.data.beir import load_beir
    from ifsr.eval.evaluate import limit_corpus

    out = {}
    for n in names:
        ds = load_beir(n, split=split, data_dir=cfg.data_dir)
        out[n] = len(limit_corpus(ds, cfg.corpus_limit).doc_ids if cfg.corpus_limit else ds.doc_ids)
    return out


def _train_queries(cfg: AblationConfig) -> int:
    from ifsr.data.beir import dev_split, load_beir, training_queries
    from ifsr.exp.trainsets import limited

    ds, _ = dev_split(limited(load_beir(cfg.train_dataset, split="train", data_dir=cfg.data_dir), cfg),
                      cfg.dev_queries, cfg.seed)
    return len(training_queries(ds)[: cfg.train_query_limit])


def _pair_count(cfg: AblationConfig) -> int:
    from ifsr.data.beir import data_dir
    from ifsr.data.pairs import load_pairs

    per_source = Counter(p.source for p in load_pairs(data_dir(cfg.data_dir) / "pairs", sources=cfg.pretrain_sources))
    return sum(min(n, cfg.pretrain_pairs) for n in per_source.values())


def _evaluation(totals: Counter, tokenized: Counter, student: str, max_length: int, sizes: dict[str, int]) -> None:
    """One student's evaluation on every eval set (ifsr.eval.evaluate.query_vocab_evaluation): each corpus encoded
    on its queries' vocabulary, and NNZ_SAMPLE documents of each in full (the doc nnz). The students share one
    tokenizer, so each corpus and sample is tokenized once (ifsr.core.encoder.DocumentEncoder._token_ids)."""
    from ifsr.eval.evaluate import NNZ_SAMPLE

    full = ("encode", student, max_length, "docs", 0, 0, False, True)
    sample = ("encode", student, max_length, "docs", 0, 0, False, False)
    first = full not in totals
    totals[full] += sum(sizes.values())
    totals[sample] += sum(min(NNZ_SAMPLE, n) for n in sizes.values())
    if first:
        tokenized[full] += sum(sizes.values())
        tokenized[sample] += sum(min(NNZ_SAMPLE, n) for n in sizes.values())


def preset_work(preset: str, root: str | Path = ".", data_dir: str | None = None, prepared: bool = False) -> WorkPlan:
    """The preset's work, summed per (kind, model, length, unit, batch, group); latency entries are CPU
    work (engines, not the accelerator) and are left out. `prepared`: what is left for the device after
    `scripts/gpu_replicate.sh prepare` ran here (ifsr.exp.carry): no baselines notebook, no dense-teacher scoring."""
    # Over 60 lines: one pass over the preset's plan that sums every kind of work it meets.
    from ifsr.exp.presets import notebook_config, plan

    totals: Counter = Counter()
    tokenized: Counter = Counter()  # the units whose texts are tokenized (fewer than encoded for the evaluation)
    seen_stages: set[str] = set()
    checkpoints = 0
    seen_enc: set[tuple] = set()
    seen_teacher: set[tuple] = set()
    steps = plan(preset, root=root, data_dir=data_dir)
    skipped = 0
    for notebook, _out, params in steps:
        entry = notebook.stem
        if entry.startswith("00_baselines"):
            if prepared:
                skipped += 1
                continue
            cfg = preset_config(preset, datasets=params.get("datasets"), corpus_limit=params.get("corpus_limit"),
                                max_length=params.get("max_length"), data_dir=data_dir)
            for name, n in _sizes(cfg, cfg.datasets, cfg.split).items():
                for model in (cfg.dense_teacher, cfg.sparse_teacher):
                    if (model, name, cfg.max_length) not in seen_enc:
                        seen_enc.add((model, name, cfg.max_length))
                        key = ("encode", model, cfg.max_length, "docs", 0, 0, model == cfg.dense_teacher, False)
                        totals[key] += n
                        tokenized[key] += n
            continue
        cfg = notebook_config(root, params, data_dir)
        if cfg is None:
            continue
        teach = [(m["model"], cfg.teacher_max_length) for m in cfg.members()]
        dense = {m["model"] for m in cfg.members() if m["kind"] == "dense"}
        sets = [("finetune", _train_queries(cfg), cfg.finetune_train().n_neg + 1)] + (
            [("pretrain", _pair_count(cfg), cfg.train.n_neg + 1)] if cfg.pretrain_pairs and cfg.pretrain_steps else [])
        for what, n_queries, group in sets:
            for model, length in teach:
                if prepared and model in dense:
                    continue
                if (what, model, length, n_queries, group) not in seen_teacher:
                    seen_teacher.add((what, model, length, n_queries, group))
                    key = ("teacher", model, length, "texts", 0, 0, model in dense, False)
                    totals[key] += n_queries * (1 + group)  # queries + candidates
                    tokenized[key] += n_queries * (1 + group)
        sizes = _sizes(cfg, cfg.eval_datasets, cfg.eval_split)
        student = cfg.train.student
        untrained = ("untrained", student, cfg.eval_max_length)
        if untrained not in seen_enc:
            seen_enc.add(untrained)
            _evaluation(totals, tokenized, student, cfg.eval_max_length, sizes)
        for stage in _train_stages(cfg, entry):
            key = json.dumps(stage, sort_keys=True, default=str)
            if key in seen_stages:
                continue
            seen_stages.add(key)
            t = stage["train"]
            checkpoints += t["steps"] // t["save_steps"]
            key = ("train", student, t["max_length"], "steps", t["batch_size"] * t["grad_accum"], t["n_neg"] + 1, False,
                   False)
            totals[key] += t["steps"]
            tokenized[key] += t["steps"]  # each step's batch is tokenized (benchmarks/gpu_plan.py: per text)
            # each trained student is evaluated once on every eval set (encodings are cached by model content)
            _evaluation(totals, tokenized, student, cfg.eval_max_length, sizes)
    items = [Work(kind=k, model=m, max_length=length, unit=u, count=c, batch_size=b, group=g, dense=dense,
                  query_vocab=qv, tokenized=tokenized[key])
             for key, c in sorted(totals.items()) for (k, m, length, u, b, g, dense, qv) in [key]]
    return WorkPlan(items=items, stages=len(seen_stages), notebooks=len(steps) - skipped, checkpoints=checkpoints)
