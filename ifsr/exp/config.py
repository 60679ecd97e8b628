"""The experiments' configs: AblationConfig (a preset of the replication) and LatencyConfig (the latency study),
and the face of every config of the kit: TrainConfig (`ifsr.distill.config`), BaselinesConfig and its presets
(`ifsr.eval.config`) and the one loader (`ifsr.config`: defaults, then a YAML file, then overrides) are
importable from here too. This module does not import torch: reading a results folder's config.yaml is cheap.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ifsr.config import dump_config, from_dict, load_config, parse_list, read_yaml, save_config, to_dict
from ifsr.core.names import ARMS, DENSE, ENSEMBLES, SPARSE, TEACHER_MODES
from ifsr.distill.config import TrainConfig
from ifsr.eval.config import PRESETS, BaselinesConfig, preset_config

__all__ = ["ARMS", "AblationConfig", "BaselinesConfig", "LatencyConfig", "PRESETS", "TrainConfig", "arm_views",
           "dump_config", "from_dict", "load_config", "parse_list", "preset_config", "read_config", "read_yaml",
           "save_config", "to_dict"]


def arm_views(arm: str) -> list[tuple[str, str]]:
    """(table label, evaluation query weights) of a trained arm: its own weights, and IDF queries too."""
    own = ARMS[arm]
    return [(arm, own)] + ([(f"{arm}+idf-query", "idf")] if own != "idf" else [])


# ----------------------------------------------------------------------------- the ablations

@dataclass
class AblationConfig:
    """One preset of the replication (both training notebooks read it). YAML: configs/<preset>.yaml."""

    preset: str = "smoke"
    train_dataset: str = "scifact"  # fine-tuning queries (train split) and corpus
    eval_datasets: list[str] = field(default_factory=lambda: ["scifact"])
    eval_split: str = "test"
    eval_max_length: int = 256
    corpus_limit: int | None = None  # smoke: first N documents (and queries judged inside them)
    train_query_limit: int | None = None  # smoke: first N training queries
    dev_queries: int = 0  # training queries held out of fine-tuning (a fixed draw): the dev split on which steps
    #   and other settings are chosen (ifsr.exp.tuning), never on a test set
    mining_depth: int = 50
    dense_teacher: str = "all-MiniLM-L6-v2"
    sparse_teacher: str = "splade-tiny"
    ensemble: list[dict[str, Any]] | None = None  # the teachers as a list, in label order: {name, kind, model,
    #   weight (optional, default 1)}; kind "dense", "sparse" or "module:Class" (a Teacher subclass in a file of its
    #   own). null: [{name: dense, kind: dense, model: dense_teacher}, {name: sparse, kind: sparse, model:
    #   sparse_teacher}] at equal weights (`members`); a member's name is also its single-teacher arm
    teacher_max_length: int = 256
    lambdas: list[float] = field(default_factory=lambda: [0.0005, 0.002, 0.008, 0.03])
    arms: list[str] = field(default_factory=lambda: list(ARMS))  # of ARMS: idf-flops, flops
    teachers: list[str] = field(default_factory=lambda: list(TEACHER_MODES))
    teacher_lambda: float = 0.002  # the pre-training stage's lambda (IDF-aware FLOPS), where the teacher ablation runs
    pretrain_pairs: int = 0  # >0: a pre-training stage on up to this many shared pairs per source
    pretrain_sources: list[str] | None = None  # pair files/sources to use (None: all)
    pretrain_steps: int = 0
    seeds: list[int] = field(default_factory=lambda: [0])  # training seeds of every arm; seeds[0]'s min-max
    #   pre-trained student is the start of every fine-tuning run (`seed` below fixes the data: sampling, negatives)
    teacher_seeds: list[int] | None = None  # the teacher ablation's training seeds (stage 1: Claims 2a, 2b, 3);
    #   null: `seeds`. More seeds where they buy power: those claims' MDE falls with seeds towards a floor below
    #   0.010, where H1's and H2's floors are above it (results/REPORT.md, its power table)
    headline_lambda: float | None = None  # the IDF-aware lambda the report calls "the replication's model",
    #   named before anything runs (never picked on test data); None: no headline model
    train: TrainConfig = field(default_factory=TrainConfig)  # both stages' settings (stage 1 replaces steps,
    #   teacher, lambda, query weights and seed: ifsr.exp.runs.pretrain_config); its `steps` are stage 2's
    finetune_n_neg: int | None = None  # stage 2's BM25 negatives per query (its candidates and its batches); null:
    #   train.n_neg. Stage 1 keeps train.n_neg, so its runs keep their keys (`finetune_train`)
    idf_path: str | None = None  # default: <data_dir>/idf/msmarco_bert-base-uncased_idf.json
    data_dir: str | None = None
    cache_dir: str = ".cache/ifsr"
    runs_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  # teachers and evaluation encoding: auto = cuda if available (training: train.use_cpu)

    def __post_init__(self) -> None:
        if not self.arms or set(self.arms) - set(ARMS):
            raise ValueError(f"arms must be a non-empty list from {list(ARMS)}, got {self.arms!r}")
        modes = tuple(m["name"] for m in self.members()) + ENSEMBLES
        if not self.teachers or set(self.teachers) - set(modes):
            raise ValueError(f"teachers must be a non-empty list from {list(modes)}, got {self.teachers!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or not all(isinstance(s, int) for s in self.seeds):
            raise ValueError(f"seeds must be a non-empty list of distinct integers, got {self.seeds!r}")
        t = self.teacher_seeds
        if t is not None and (not isinstance(t, list) or not t or len(set(t)) != len(t) or
                              not all(isinstance(s, int) and not isinstance(s, bool) for s in t)):
            raise ValueError(f"teacher_seeds must be null or a non-empty list of distinct integers, got {t!r}")
        n = self.finetune_n_neg
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.mining_depth):
            raise ValueError(f"finetune_n_neg must be null or an integer from 1 to mining_depth ({self.mining_depth}), "
                             f"got {n!r}")
        if self.headline_lambda is not None and self.headline_lambda not in self.lambdas:
            raise ValueError(f"headline_lambda {self.headline_lambda} is not one of lambdas {self.lambdas}")

    def ablation_seeds(self) -> list[int]:
        """The teacher ablation's training seeds: `teacher_seeds`, or `seeds` when it is null."""
        return list(self.seeds if self.teacher_seeds is None else self.teacher_seeds)

    def members(self) -> list[dict[str, Any]]:
        """The ensemble's teachers in label order, each {name, kind, model, weight} (checked: ValueError)."""
        if self.ensemble is None:
            return [{"name": DENSE, "kind": "dense", "model": self.dense_teacher, "weight": 1.0},
                    {"name": SPARSE, "kind": "sparse", "model": self.sparse_teacher, "weight": 1.0}]
        if not isinstance(self.ensemble, list) or not self.ensemble:
            raise ValueError(f"ensemble must be null or a non-empty list of teachers, got {self.ensemble!r}")
        out = []
        for i, m in enumerate(self.ensemble):
            extra = set(m) - {"name", "kind", "model", "weight"} if isinstance(m, dict) else None
            if extra is None or extra or not all(isinstance(m.get(k), str) and m[k].strip() for k in ("name", "kind", "model")):
                raise ValueError(f"ensemble[{i}] must be {{name, kind, model, weight (optional)}} with non-empty "
                                 f"strings, got {m!r}")
            w = m.get("weight", 1.0)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0 or w == float("inf"):
                raise ValueError(f"ensemble[{i}].weight must be a positive number, got {w!r}")
            out.append({"name": m["name"], "kind": m["kind"], "model": m["model"], "weight": float(w)})
        names = [m["name"] for m in out]
        if len(set(names)) != len(names) or set(names) & set(ENSEMBLES):
            raise ValueError(f"ensemble names must be distinct and not {list(ENSEMBLES)}, got {names}")
        return out

    def finetune_train(self) -> TrainConfig:
        """Stage 2's base TrainConfig: `train`, with `finetune_n_neg` negatives per query when it is set."""
        if self.finetune_n_neg is None:
            return self.train
        return dataclasses.replace(self.train, n_neg=self.finetune_n_neg)

    def teacher_fields(self) -> dict[str, Any]:
        """TrainConfig's teacher_names and teacher_weights for this ensemble; {} for the default members, so a
        run of the default ensemble keeps its key."""
        if self.ensemble is None:
            return {}
        members = self.members()
        weights = [m["weight"] for m in members]
        return {"teacher_names": [m["name"] for m in members],
                "teacher_weights": None if len(set(weights)) == 1 else weights}

    def curve_point(self, arm: str, lam: float) -> float:
        """The sweep's own value of `lam` for `arm` (the YAML's float: the same run key), or ValueError when
        the arm is not swept or the lambda is not on its curve."""
        if arm not in self.arms:
            raise ValueError(f"arm {arm!r} is not in the sweep of preset {self.preset!r}: {self.arms}")
        match = [x for x in self.lambdas if abs(float(lam) - float(x)) <= 1e-12]
        if not match:
            raise ValueError(f"lambda {lam} is not on the curve of preset {self.preset!r}: {[float(x) for x in self.lambdas]}")
        return match[0]


# ----------------------------------------------------------------------------- latency

@dataclass
class LatencyConfig:
    """The latency notebook's measurement (`ifsr.exp.latency.measure_latency`'s keywords, and the preset) and its
    lever study (`ifsr.exp.levers.lever_kwargs` reads the lever fields)."""

    preset: str = "smoke"
    sizes: list[str | int] = field(default_factory=lambda: ["scifact"])  # "scifact", "real", or an int: resampled
    n_queries: int = 100  # SciFact test queries timed per system
    engines: list[str] = field(default_factory=lambda: ["pisa"])
    model: str = "splade-tiny"  # document encoder: name, MLM path, or saved ifsr model
    cache_dir: str = ".cache/ifsr"
    data_dir: str | None = None
    max_passages: int | None = None  # cap on pair passages in "real"
    resample_from: str = "real"  # what the int sizes resample: "real" or "scifact"
    seed: int = 0
    repeats: int = 1  # timed passes over the queries
    max_length: int = 256  # document tokens the encoder reads
    max_docs: dict[str, int] = field(default_factory=dict)  # engine name or setting -> largest corpus it is timed on
    levers: list[str] = field(default_factory=list)  # "none", "query-top-k=8", "query-min-idf=3", "doc-top-k=64"
    lever_engine: str | None = None  # the engine setting the levers are timed on (None: no lever study)
    lever_size: str | int = "scifact"  # the latency corpus the levers are timed on
    lever_students: str | None = None  # ablation YAML whose idf-flops students the "lambda=" levers time
    lever_seeds: int = 1  # training seeds of each "lambda=" lever's student (the YAML's first seeds)

    LEVER_FIELDS: ClassVar[tuple[str, ...]] = ("levers", "lever_engine", "lever_size", "lever_students", "lever_seeds")

    def measure_kwargs(self) -> dict[str, Any]:
        """The keywords of `measure_latency` (every field but the preset and the lever study's)."""
        return {k: v for k, v in to_dict(self).items() if k != "preset" and k not in self.LEVER_FIELDS}


def read_config(path: str | os.PathLike) -> dict | None:
    """A results folder's AblationConfig (config.yaml through `load_config`: fields the file lacks
    have their defaults) as a dict; None if there is no such file."""
    return to_dict(load_config(AblationConfig, path)) if Path(path).is_file() else None
