"""Choosing settings on the dev split, never on a test set: the stage-2 step sweep of issue 27.

The dev split is `dev_queries` queries of the training set held out of fine-tuning (ifsr.data.beir.dev_split,
a fixed draw); its corpus is the training set's. `step_sweep` trains the replication's model (IDF-aware arm,
`headline_lambda`, the first training seed, from its own stage-1 start) for each step count (learning rate,
stage-1 FLOPS weight and stage-1 scale) of a short grid, with every other setting of the preset, and scores
each on dev by the evaluation the protocol uses (exact, `eval_max_length`). The runs are cached like every
other run (ifsr.exp.runs), so the grid point equal to the preset's steps is the protocol's own seed-0 run.

    python -m ifsr.exp.tuning configs/cpu.yaml --steps 40 100 160 --lrs 1e-4 3e-4 --out results/cpu/explore/steps
    python -m ifsr.exp.tuning configs/cpu.yaml --steps 40 --pretrain 100:150 400:600 --out results/cpu/explore/scale
    python -m ifsr.exp.tuning configs/cpu.yaml --steps 40 --max-lengths 128 256 --out results/cpu/explore/length
    python -m ifsr.exp.tuning configs/cpu.yaml --steps 40 80 160 --n-negs 3 7 --out results/cpu/explore/negatives
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ifsr.core.names import IDF_ARM
from ifsr.data.beir import BeirSet, dev_split, load_beir
from ifsr.eval.evaluate import query_vocab_evaluation
from ifsr.eval.metrics import per_query
from ifsr.eval.stats import paired_delta
from ifsr.exp.ablations import _lazy, protocol_encoders
from ifsr.exp.config import AblationConfig, load_config
from ifsr.exp.runs import pretrained_run, start_config, sweep_train_config, trained_run
from ifsr.exp.trainsets import finetune_dataset, idf_path, limited, pretrain_dataset
from ifsr.manifest import sha256_dir, sha256_file
from ifsr.models import resolve_model_path
from ifsr.tables import write_table


def dev_set(cfg: AblationConfig) -> BeirSet:
    """The dev split of the training set (`cfg.dev_queries` > 0 needed)."""
    if cfg.dev_queries <= 0:
        raise ValueError(f"{cfg.preset}: dev_queries is 0, there is no dev split to choose on")
    _, dev = dev_split(limited(load_beir(cfg.train_dataset, split="train", data_dir=cfg.data_dir), cfg),
                       cfg.dev_queries, cfg.seed)
    return dev


def dev_score(cfg: AblationConfig, model: str | Path, dev: BeirSet) -> dict[str, Any]:
    """nDCG@10 and R@100 of a model (a trained student directory, or an MLM name: the untrained start) on the dev
    split, IDF queries, exact retrieval at `eval_max_length` (the protocol's evaluation); "per_query": nDCG@10 per
    dev query, in `dev.query_ids` order."""
    doc, query, model = protocol_encoders(cfg, model)
    q = query.encode([dev.queries[i] for i in dev.query_ids])  # [nq, V]
    row, run = query_vocab_evaluation(doc, str(model), sha256_dir(model), dev, q, cfg.cache_dir)
    per_q = per_query(run, {i: dev.qrels[i] for i in dev.query_ids}, "nDCG@10")
    return {"nDCG@10": row["nDCG@10"], "R@100": row["R@100"], "flops": row["flops"], "queries": len(per_q),
            "per_query": np.array([per_q[i] for i in dev.query_ids])}


def dev_resolution(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The sweep's table with what dev can resolve: each trained point's nDCG@10 minus its own stage-1 start's (or
    the untrained start's, without stage 1), paired over the dev queries (`ifsr.eval.stats.paired_delta`, one
    training seed: the queries' part of the noise alone), its se and MDE (80 % power), and the same against the
    best point. A grid point ahead of another by less than their difference's MDE is not shown better by dev
    (issue 27: dev nDCG@10 gains of 0.02-0.04 over 200 queries did not carry to the test sets)."""
    trained = [r for r in rows if r["steps"] > 0]
    best = max(trained, key=lambda r: r["nDCG@10"]) if trained else None
    out = []
    for i, r in enumerate(rows):
        extra = {}
        if r["steps"] > 0:
            base = next((b for b in reversed(rows[:i]) if b["model"] == "stage-1 start"), rows[0])
            vs = paired_delta([r["per_query"][None, :]], [base["per_query"][None, :]])
            extra = {"Δ vs start": vs.delta, "se": vs.se, "MDE": vs.mde, "p": vs.p}
            if r is not best:
                vb = paired_delta([best["per_query"][None, :]], [r["per_query"][None, :]])
                extra.update({"best ahead by": vb.delta, "its MDE": vb.mde})
        out.append({k: v for k, v in r.items() if k != "per_query"} | extra)
    return pd.DataFrame(out)


def step_sweep(cfg: AblationConfig, steps: list[int], lrs: list[float] | None = None,
               seed: int | None = None, teacher_lambdas: list[float] | None = None,
               pretrain: list[tuple[int, int]] | None = None,
               max_lengths: list[int] | None = None, n_negs: list[int] | None = None) -> pd.DataFrame:
    """One row per (stage-1 scale, stage-1 lambda, learning rate, stage-2 step count), and the untrained and
    stage-1 starts: dev nDCG@10 of the replication's model (idf-flops at `headline_lambda`) trained for that many
    steps, training seed `seed` (default seeds[0]). A learning rate of `lrs` (default: the preset's) is the
    preset's `train.lr` for both stages, as the protocol would run it; a value of `teacher_lambdas` (default: the
    preset's) is stage 1's FLOPS weight and one of `pretrain` (default: the preset's) a (pairs per source, steps)
    scale of stage 1, and one of `max_lengths` (default: the preset's) the document length both stages train at
    (evaluation stays at `eval_max_length`), so each combination brings its own stage-1 start. A value of `n_negs`
    (default: the preset's) is stage 2's negatives per query (`finetune_n_neg`): its points share their start."""
    if cfg.headline_lambda is None:
        raise ValueError(f"{cfg.preset}: no headline_lambda, no model to tune")
    if not steps or any(not isinstance(n, int) or n <= 0 for n in steps):
        raise ValueError(f"steps must be positive integers, got {steps}")
    if lrs is not None and (not lrs or any(not lr > 0 for lr in lrs)):
        raise ValueError(f"learning rates must be positive, got {lrs}")
    if teacher_lambdas is not None and (not teacher_lambdas or any(not t >= 0 for t in teacher_lambdas)):
        raise ValueError(f"stage-1 lambdas must be >= 0, got {teacher_lambdas}")
    if pretrain is not None and (not pretrain or any(not (p > 0 and n > 0) for p, n in pretrain)):
        raise ValueError(f"stage-1 scales must be positive (pairs per source, steps), got {pretrain}")
    if max_lengths is not None and (not max_lengths or any(not (isinstance(m, int) and m > 0) for m in max_lengths)):
        raise ValueError(f"training lengths must be positive integers, got {max_lengths}")
    if n_negs is not None and (not n_negs or any(not (isinstance(n, int) and 1 <= n <= cfg.mining_depth) for n in n_negs)):
        raise ValueError(f"stage-2 negatives must be integers from 1 to mining_depth ({cfg.mining_depth}), got {n_negs}")
    seed = cfg.seeds[0] if seed is None else seed
    dev = dev_set(cfg)
    nan = float("nan")
    rows = [{"model": "untrained", "pretrain_pairs": 0, "pretrain_steps": 0, "teacher_lambda": nan, "lr": nan,
             "max_length": 0, "n_neg": 0, "steps": 0, **dev_score(cfg, cfg.train.student, dev)}]
    grid = [(p, t, lr, m) for p in pretrain or [(cfg.pretrain_pairs, cfg.pretrain_steps)]
            for t in teacher_lambdas or [cfg.teacher_lambda] for lr in lrs or [cfg.train.lr]
            for m in max_lengths or [cfg.train.max_length]]
    for (pairs, pre_steps), t, lr, m in grid:
        c = dataclasses.replace(cfg, pretrain_pairs=pairs, pretrain_steps=pre_steps, teacher_lambda=t,
                                train=dataclasses.replace(cfg.train, lr=lr, max_length=m))
        point = {"pretrain_pairs": pairs, "pretrain_steps": pre_steps, "teacher_lambda": t, "lr": lr, "max_length": m}
        pre = _lazy(lambda c=c: pretrain_dataset(c))
        start = start_config(c, sweep_train_config(c, IDF_ARM, c.headline_lambda, seed))
        if start is not None:
            run = pretrained_run(c, start, pre)
            rows.append({"model": "stage-1 start", **point, "n_neg": c.train.n_neg, "steps": 0,
                         **dev_score(c, run.model_dir, dev)})
        for k in n_negs or [c.finetune_train().n_neg]:
            ck = dataclasses.replace(c, finetune_n_neg=k)
            data, base = _lazy(lambda ck=ck: finetune_dataset(ck)), sweep_train_config(ck, IDF_ARM, ck.headline_lambda, seed)
            for n in sorted(set(steps)):
                tic = time.perf_counter()
                run = trained_run(ck, dataclasses.replace(base, steps=n), data, pre)
                rows.append({"model": f"idf-flops λ={c.headline_lambda:g}", **point, "n_neg": k, "steps": n,
                             **dev_score(ck, run.model_dir, dev), "wall_s": round(time.perf_counter() - tic, 1),
                             "run": run.model_dir.parent.name})
    return dev_resolution(rows)


def _scale(text: str) -> tuple[int, int]:
    """"400:600" -> (400, 600): a stage-1 scale of --pretrain."""
    pairs, _, steps = text.partition(":")
    if not (pairs.isdigit() and steps.isdigit()):
        raise ValueError(f"--pretrain: expected PAIRS:STEPS (e.g. 400:600), got {text!r}")
    return int(pairs), int(steps)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The stage-2 step sweep on the dev split (issue 27).")
    ap.add_argument("config", help="the preset's ablation YAML, e.g. configs/cpu.yaml (its dev_queries > 0)")
    ap.add_argument("--steps", type=int, nargs="+", required=True, help="stage-2 step counts to train and score")
    ap.add_argument("--lrs", type=float, nargs="+", default=None,
                    help="learning rates (both stages) to cross with the steps (default: the preset's train.lr)")
    ap.add_argument("--teacher-lambdas", type=float, nargs="+", default=None,
                    help="stage-1 FLOPS weights to cross with the rest (default: the preset's teacher_lambda)")
    ap.add_argument("--pretrain", nargs="+", default=None, metavar="PAIRS:STEPS",
                    help="stage-1 scales (pairs per source:steps) to cross with the rest (default: the preset's)")
    ap.add_argument("--max-lengths", type=int, nargs="+", default=None,
                    help="document lengths (tokens) both stages train at (default: the preset's train.max_length)")
    ap.add_argument("--n-negs", type=int, nargs="+", default=None,
                    help="stage-2 negatives per query to cross with the rest (default: the preset's finetune_n_neg, or "
                         "train.n_neg); stage 1 keeps train.n_neg")
    ap.add_argument("--out", required=True, help="folder for steps.csv and config.yaml (results/<preset>/explore/...)")
    ap.add_argument("--data-dir", default=None, help="data directory (default: ifsr.data.beir.find_data_dir)")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(AblationConfig, args.config, data_dir=args.data_dir)
        table = step_sweep(cfg, args.steps, args.lrs, teacher_lambdas=args.teacher_lambdas,
                           pretrain=None if args.pretrain is None else [_scale(v) for v in args.pretrain],
                           max_lengths=args.max_lengths, n_negs=args.n_negs)
    except (ValueError, FileNotFoundError) as e:
        print(f"ifsr.exp.tuning: error: {e}", file=sys.stderr)
        return 2
    train = load_beir(cfg.train_dataset, split="train", data_dir=cfg.data_dir)  # the dev split is drawn from it
    write_table(table, cfg, args.out, "steps", data={f"{train.name}-train": train.checksum(),
                                                     "idf": sha256_file(idf_path(cfg))},
                models={cfg.train.student: sha256_dir(resolve_model_path(cfg.train.student))})
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
