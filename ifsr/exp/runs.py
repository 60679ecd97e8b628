"""Trained students, one directory per run key: the resolved config plus the content of every input.

`run_key` is the only place a run is keyed. It hashes the AblationConfig fields that feed training
(every field but those in NOT_TRAINING: paths, the grid, evaluation-only settings), the stage's
TrainConfig, and the checksums of the inputs' content: the BEIR sets (training set and the evaluation
sets of the leakage filter), the pair files (when there is a pre-training stage), the IDF file, the
teachers' and the start model's weights. The same run on another machine, or with the data directory
spelled another way, gets the same directory; a changed input at the same path gets another.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ifsr.core.encoder import load_tokenizer
from ifsr.core.names import ARMS, MINMAX
from ifsr.core.idf import load_idf
from ifsr.data.beir import data_dir, load_beir
from ifsr.distill.student import mlm_dir
from ifsr.distill.teachers import TeacherBank
from ifsr.distill.trainer import flat_dataset, train
from ifsr.exp.config import AblationConfig, TrainConfig, load_config
from ifsr.exp.trainsets import build_teachers, idf_path, pretrain_dataset
from ifsr.manifest import sha256_dir, sha256_file
from ifsr.models import resolve_model_path

# AblationConfig fields that do not change a trained student: where things are, which runs a sweep
# holds (each run's own lambda / teacher / query weights are in its TrainConfig), evaluation-only
# settings, and `train` and `finetune_n_neg` (the preset's base TrainConfig and stage 2's override of it; the
# run's own TrainConfig is hashed instead).
NOT_TRAINING = frozenset({"preset", "data_dir", "cache_dir", "runs_dir", "idf_path", "device", "eval_max_length",
                          "lambdas", "arms", "teachers", "seeds", "teacher_seeds", "headline_lambda",
                          "train", "finetune_n_neg"})
# The fields every run key has hashed since the key took its present form: always in the key, so the keys of
# existing runs stand. A field added after them enters a key only when its value differs from its default:
# adding a field with its default re-keys no run (issue 30); setting it does.
KEYED_ABLATION_FIELDS = frozenset({
    "corpus_limit", "dense_teacher", "dev_queries", "eval_datasets", "eval_split", "mining_depth", "pretrain_pairs",
    "pretrain_sources", "pretrain_steps", "seed", "sparse_teacher", "teacher_lambda", "teacher_max_length",
    "train_dataset", "train_query_limit"})
KEYED_TRAIN_FIELDS = frozenset({
    "batch_size", "bf16", "flops_form", "grad_accum", "in_batch_negatives", "lam", "lambda_warmup_steps",
    "logging_steps", "lr", "max_length", "n_neg", "query_weights", "rank_loss", "save_steps", "seed", "steps",
    "student", "student_temperature", "teacher", "teacher_scale", "use_cpu", "warmup_steps", "weight_decay"})


def keyed_fields(config: Any, always: frozenset[str], skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The fields of a config dataclass that a run key hashes (`dataclasses.asdict` values): those in `always`,
    and any other (not in `skip`) whose value differs from its declared default."""
    values = dataclasses.asdict(config)
    out = {}
    for f in dataclasses.fields(config):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if f.name in always or default is dataclasses.MISSING or values[f.name] != default:
            out[f.name] = values[f.name]
    return out


def ablation_key_fields(cfg: AblationConfig) -> dict[str, Any]:
    """The AblationConfig part of a run key (`keyed_fields`, NOT_TRAINING left out)."""
    return keyed_fields(cfg, KEYED_ABLATION_FIELDS, NOT_TRAINING)


def train_key_fields(train_cfg: TrainConfig) -> dict[str, Any]:
    """The TrainConfig part of a run key (`keyed_fields`)."""
    return keyed_fields(train_cfg, KEYED_TRAIN_FIELDS)


@dataclass(frozen=True)
class TrainedRun:
    """A trained student: its SparseEncoder directory and the training config it resolved (tau included)."""

    model_dir: Path
    train_config: TrainConfig


def has_pretraining(cfg: AblationConfig) -> bool:
    return bool(cfg.pretrain_pairs and cfg.pretrain_steps)


def pretrain_config(cfg: AblationConfig, teacher: str, seed: int, query_weights: str = "idf") -> TrainConfig:
    """Stage 1 (pre-training on the shared pairs): the preset's TrainConfig with the teacher under test,
    FLOPS at `teacher_lambda` (IDF-aware: the ranking term's queries weighted by `query_weights`, "idf"; the
    plain arm's start: "ones"), `pretrain_steps` steps and this training seed."""
    return dataclasses.replace(cfg.train, steps=cfg.pretrain_steps, teacher=teacher, lam=cfg.teacher_lambda,
                               query_weights=query_weights, seed=seed, **cfg.teacher_fields())


def sweep_train_config(cfg: AblationConfig, arm: str, lam: float, seed: int) -> TrainConfig:
    """Stage 2 (fine-tuning, one run of the sweep): the preset's `finetune_train()` with the arm's query weights,
    the min-max ensemble teacher, FLOPS weight `lam` and training seed `seed`."""
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {sorted(ARMS)}, got {arm!r}")
    return dataclasses.replace(cfg.finetune_train(), query_weights=ARMS[arm], teacher=MINMAX, lam=lam, seed=seed,
                               **cfg.teacher_fields())


def start_config(cfg: AblationConfig, train_cfg: TrainConfig | None = None) -> TrainConfig | None:
    """The stage-1 run a fine-tuning run `train_cfg` starts from: the min-max ensemble, pre-trained with the
    run's own FLOPS arm (its query weights) and its own training seed, so a FLOPS arm applies through both
    stages and the bootstrap over seeds carries both stages' variance (issue 27; the IDF-aware starts are
    the teacher ablation's min-max runs). train_cfg None: the IDF-aware start of seeds[0]. None without
    stage 1."""
    if not has_pretraining(cfg):
        return None
    if train_cfg is None:
        return pretrain_config(cfg, MINMAX, cfg.seeds[0])
    return pretrain_config(cfg, MINMAX, train_cfg.seed, train_cfg.query_weights)


def run_key(cfg: AblationConfig, train_cfg: TrainConfig, stage: str = "finetune") -> str:
    """The key of one stage ("pretrain" or "finetune") of a run: 16 hex digits.

    A fine-tuning stage after pre-training is keyed by the same inputs plus its start's key (the
    stage-1 run of `start_config(cfg, train_cfg)`), not by the pre-trained directory's path."""
    if stage not in ("pretrain", "finetune"):
        raise ValueError(f"stage must be 'pretrain' or 'finetune', got {stage!r}")
    pretrain = has_pretraining(cfg)
    start = start_config(cfg, train_cfg)
    root = data_dir(cfg.data_dir)
    sets = {"train": load_beir(cfg.train_dataset, split="train", data_dir=cfg.data_dir).checksum(),
            **{f"eval:{n}": load_beir(n, split=cfg.eval_split, data_dir=cfg.data_dir).checksum()
               for n in sorted(cfg.eval_datasets)}}
    pairs = {p.name: sha256_file(p) for p in sorted((root / "pairs").glob("*.jsonl.gz"))} if pretrain else {}
    models = {m: sha256_dir(resolve_model_path(m)) for m in sorted({*(t["model"] for t in cfg.members()),
                                                                     cfg.train.student})}
    parts = {
        "stage": stage,
        "pretrained": pretrain,
        "start": run_key(cfg, start, "pretrain") if stage == "finetune" and start is not None else None,
        "config": ablation_key_fields(cfg),
        "train": train_key_fields(train_cfg),
        "inputs": {"beir": sets, "pairs": pairs, "idf": sha256_file(idf_path(cfg)), "models": models},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _stage(cfg: AblationConfig, train_cfg: TrainConfig, dataset, idf, out: Path) -> None:
    """One stage; with in-batch negatives, the teachers' vectors of every example are built first (cached)."""
    bank = None
    if train_cfg.in_batch_negatives:
        flat = flat_dataset(dataset)
        group = train_cfg.n_neg + 1
        bank = TeacherBank.build(build_teachers(cfg), list(flat["query"]), [list(flat[f"doc_{g}"]) for g in range(group)],
                                 cfg.cache_dir)
    train(train_cfg, dataset, idf, out, bank=bank)


def _trained(run_dir: Path) -> TrainedRun | None:
    if not (run_dir / "model" / "modules.json").is_file():
        return None
    return TrainedRun(run_dir / "model", load_config(TrainConfig, run_dir / "train_config.yaml"))


def _data(make: Callable[[], Any] | Any) -> Any:
    return make() if callable(make) else make


def pretrained_run(cfg: AblationConfig, train_cfg: TrainConfig, pretrain_data: Callable[[], Any] | Any) -> TrainedRun:
    """Train (or reuse) one stage-1 student (`pretrain_config`), under runs_dir/pre-<key>.

    `pretrain_data`: the pre-training DatasetDict, or a function making it (called only if training runs)."""
    if not has_pretraining(cfg):
        raise ValueError(f"preset {cfg.preset!r} has no pre-training stage (pretrain_pairs and pretrain_steps > 0)")
    run_dir = Path(cfg.runs_dir) / f"pre-{run_key(cfg, train_cfg, 'pretrain')}"
    done = _trained(run_dir)
    if done is None:
        idf = load_idf(idf_path(cfg), load_tokenizer(mlm_dir(train_cfg.student)))
        _stage(cfg, train_cfg, _data(pretrain_data), idf, run_dir)
        done = _trained(run_dir)
    return done


def trained_run(cfg: AblationConfig, train_cfg: TrainConfig, finetune_data: Callable[[], Any] | Any,
                pretrain_data: Callable[[], Any] | Any | None = None) -> TrainedRun:
    """Train (or reuse) one fine-tuned student; with a pre-training stage it starts from its
    `start_config(cfg, train_cfg)` stage-1 student (trained first if it is not there yet).

    `finetune_data` / `pretrain_data`: the datasets, or functions making them (called only if training
    runs); `pretrain_data` None: `pretrain_dataset(cfg)`."""
    runs = Path(cfg.runs_dir)
    key = run_key(cfg, train_cfg)
    done = _trained(runs / key)
    if done is not None:
        return done
    idf = load_idf(idf_path(cfg), load_tokenizer(mlm_dir(train_cfg.student)))
    fine_cfg = train_cfg
    start = start_config(cfg, train_cfg)
    if start is not None:
        pre = pretrained_run(cfg, start, (lambda: pretrain_dataset(cfg)) if pretrain_data is None else pretrain_data)
        fine_cfg = dataclasses.replace(train_cfg, student=str(pre.model_dir))
    _stage(cfg, fine_cfg, _data(finetune_data), idf, runs / key)
    return _trained(runs / key)
