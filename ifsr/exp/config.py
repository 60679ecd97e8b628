"""Every config dataclass of the kit and its one loader: defaults, then a YAML file, then overrides.

Unknown keys are an error at every layer, nested ones included (a typo must not silently fall back
to a default). This module does not import torch: reading a results folder's config.yaml is cheap.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from ifsr.core.names import ARMS, QUERY_WEIGHTS, TEACHER_MODES

T = TypeVar("T")



def arm_views(arm: str) -> list[tuple[str, str]]:
    """(table label, evaluation query weights) of a trained arm: its own weights, and IDF queries too."""
    own = ARMS[arm]
    return [(arm, own)] + ([(f"{arm}+idf-query", "idf")] if own != "idf" else [])


# ----------------------------------------------------------------------------- the loader

def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _merge(cls: type, base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on `base`; a nested dataclass field given as a mapping in both is merged key by key."""
    types = _field_types(cls)
    out = dict(base)
    for key, value in over.items():
        sub = types.get(key)
        if dataclasses.is_dataclass(sub) and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(sub, out[key], value)
        else:
            out[key] = value
    return out


def from_dict(cls: type[T], values: dict[str, Any], source: str = "config") -> T:
    """Build dataclass `cls` from a dict; nested dataclass fields are built recursively."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown} for {cls.__name__}; known: {sorted(names)}")
    types = _field_types(cls)
    kwargs = {}
    for name, value in values.items():
        sub = types[name]
        nested = dataclasses.is_dataclass(sub) and isinstance(value, dict)
        kwargs[name] = from_dict(sub, value, f"{source}.{name}") if nested else value
    return cls(**kwargs)


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        loaded = yaml.safe_load(f) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a YAML mapping of config keys")
    return loaded


def load_config(cls: type[T], path: str | os.PathLike | None = None, **overrides: Any) -> T:
    """Defaults, then the YAML file (if any), then the keyword overrides; every layer is checked.

    An override that is None keeps the layer below (a notebook parameter left at None); a mapping
    given for a nested dataclass field (e.g. `train={...}`) is merged over the YAML's mapping."""
    values = read_yaml(path) if path is not None else {}
    values = _merge(cls, values, {k: v for k, v in overrides.items() if v is not None})
    return from_dict(cls, values, str(path or cls.__name__))


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def dump_config(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def save_config(config: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_config(config), encoding="utf-8")
    return path


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


# ----------------------------------------------------------------------------- training

@dataclass
class TrainConfig:
    """One training run (a stage): `ifsr.distill.trainer.train`'s settings."""

    student: str = "splade-tiny"  # model name/path, or a previous stage's output directory
    query_weights: str = "idf"  # ARMS' values: "idf" (the idf-flops arm, the paper) or "ones" (the flops arm)
    teacher: str = "ensemble-minmax"  # dense | sparse | ensemble-minmax | ensemble-raw
    teacher_scale: float = 30.0  # S, the teacher's inverse temperature
    lam: float = 0.002  # FLOPS weight lambda (batch form)
    lambda_warmup_steps: int = 200  # T of the quadratic warm-up
    flops_form: str = "batch"  # "batch" (SPLADE) or "per_slot" (reference code; ~G x larger)
    rank_loss: str = "kl"  # "kl" or "margin_mse"
    student_temperature: float | str = 1.0  # tau: ranking term on s(q, d) / tau; 1 = the paper; "auto": calibrated
    in_batch_negatives: bool = False  # C(q) = every document of the batch, not only q's own candidates
    steps: int = 2000
    batch_size: int = 8  # queries per device step; each brings 1 positive + n_neg negatives
    grad_accum: int = 1
    n_neg: int = 2
    lr: float = 2e-5
    weight_decay: float = 0.01
    warmup_steps: int = 200  # learning-rate warm-up
    max_length: int = 256  # document tokens in training
    seed: int = 0
    bf16: bool = False  # autocast bf16 (GPU)
    use_cpu: bool = True
    save_steps: int = 500
    logging_steps: int = 10

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every field's type, range and choice, before anything is built from the config: ValueError
        naming the field, the value given and what is expected (the first bad field found)."""
        _check_text(self, "student")
        for name, choices in (("query_weights", QUERY_WEIGHTS), ("teacher", TEACHER_MODES),
                              ("flops_form", FLOPS_FORMS), ("rank_loss", RANK_LOSSES)):
            _check_choice(self, name, choices)
        for name in ("in_batch_negatives", "bf16", "use_cpu"):
            _check_bool(self, name)
        for name, low in (("steps", 1), ("batch_size", 1), ("grad_accum", 1), ("n_neg", 1), ("save_steps", 1),
                          ("logging_steps", 1), ("warmup_steps", 0), ("lambda_warmup_steps", 0)):
            _check_int(self, name, low)
        _check_int(self, "max_length", 1, MAX_POSITIONS, why=f" (BERT's {MAX_POSITIONS} position embeddings)")
        _check_int(self, "seed", 0, 2**32 - 1, why=" (numpy's seed range)")
        _check_number(self, "lr", positive=True)
        _check_number(self, "teacher_scale", positive=True)
        _check_number(self, "lam", positive=False)
        _check_number(self, "weight_decay", positive=False)
        if self.student_temperature != "auto":
            _check_number(self, "student_temperature", positive=True, also="or 'auto'")
        if self.in_batch_negatives and self.rank_loss != "kl":
            raise ValueError("in_batch_negatives needs rank_loss 'kl' (margin_mse pairs slot 0 with its own negatives)")


# TrainConfig's choices and limits (ifsr.core.objective's flops forms and ranking losses; the students are BERTs).
FLOPS_FORMS: tuple[str, ...] = ("batch", "per_slot")
RANK_LOSSES: tuple[str, ...] = ("kl", "margin_mse")
MAX_POSITIONS = 512


def _got(value: Any) -> str:
    return f"got {value!r} ({type(value).__name__})"


def _check_text(config: Any, name: str) -> None:
    value = getattr(config, name)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, {_got(value)}")


def _check_choice(config: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, name)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, {_got(value)}")


def _check_bool(config: Any, name: str) -> None:
    value = getattr(config, name)
    if not isinstance(value, bool):  # "no", 0, "false" are not booleans: a YAML true/false is
        raise ValueError(f"{name} must be true or false (a YAML boolean), {_got(value)}")


def _check_int(config: Any, name: str, low: int, high: int | None = None, why: str = "") -> None:
    value = getattr(config, name)
    expected = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}{why}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be {expected}, {_got(value)}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _check_number(config: Any, name: str, positive: bool, also: str = "") -> None:
    """A finite real number (an int is fine: its YAML spelling is kept, since it keys cached runs), > 0 or >= 0."""
    value = getattr(config, name)
    expected = f"a finite number {'> 0' if positive else '>= 0'}{' ' + also if also else ''}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        hint = ""
        if isinstance(value, str):
            try:
                float(value)
                hint = f"; YAML reads {value} as text: write it with a decimal point, e.g. 2.0e-5"
            except ValueError:
                pass
        raise ValueError(f"{name} must be {expected}, {_got(value)}{hint}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


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
    headline_lambda: float | None = None  # the IDF-aware lambda the report calls "the replication's model",
    #   named before anything runs (never picked on test data); None: no headline model
    train: TrainConfig = field(default_factory=TrainConfig)
    idf_path: str | None = None  # default: <data_dir>/idf/msmarco_bert-base-uncased_idf.json
    data_dir: str | None = None
    cache_dir: str = ".cache/ifsr"
    runs_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  # teachers and evaluation encoding: auto = cuda if available (training: train.use_cpu)

    def __post_init__(self) -> None:
        if not self.arms or set(self.arms) - set(ARMS):
            raise ValueError(f"arms must be a non-empty list from {list(ARMS)}, got {self.arms!r}")
        if not self.teachers or set(self.teachers) - set(TEACHER_MODES):
            raise ValueError(f"teachers must be a non-empty list from {TEACHER_MODES}, got {self.teachers!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or not all(isinstance(s, int) for s in self.seeds):
            raise ValueError(f"seeds must be a non-empty list of distinct integers, got {self.seeds!r}")
        if self.headline_lambda is not None and self.headline_lambda not in self.lambdas:
            raise ValueError(f"headline_lambda {self.headline_lambda} is not one of lambdas {self.lambdas}")

    def curve_point(self, arm: str, lam: float) -> float:
        """The sweep's own value of `lam` for `arm` (the YAML's float: the same run key), or ValueError when
        the arm is not swept or the lambda is not on its curve."""
        if arm not in self.arms:
            raise ValueError(f"arm {arm!r} is not in the sweep of preset {self.preset!r}: {self.arms}")
        match = [x for x in self.lambdas if abs(float(lam) - float(x)) <= 1e-12]
        if not match:
            raise ValueError(f"lambda {lam} is not on the curve of preset {self.preset!r}: {[float(x) for x in self.lambdas]}")
        return match[0]


# ----------------------------------------------------------------------------- baselines, latency

@dataclass
class BaselinesConfig:
    """The baselines table (`ifsr.eval` baselines): BM25, both teachers, their ensembles, the untrained model."""

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


PRESETS: dict[str, dict[str, Any]] = {"smoke": {"corpus_limit": 300}, "cpu": {}, "gpu": {}, "gpu-quick": {}}


def preset_config(preset: str, **overrides: Any) -> BaselinesConfig:
    """A preset's BaselinesConfig defaults, then every override that is not None (`datasets` may be a string)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    if isinstance(overrides.get("datasets"), str):
        overrides["datasets"] = parse_list(overrides["datasets"])
    return load_config(BaselinesConfig, **{**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}})


@dataclass
class LatencyConfig:
    """The latency notebook's measurement (`ifsr.serving.latency.measure_latency`'s keywords, and the preset)."""

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

    def lever_kwargs(self) -> dict[str, Any]:
        """The keywords of `ifsr.serving.levers.lever_table` (levers parsed, ValueError on a bad one; `students`:
        (FLOPS weight, seed index) -> the lever_students YAML's idf-flops student, `ifsr.exp.ablations.lambda_student`)."""
        from ifsr.exp.ablations import lambda_student
        from ifsr.serving.levers import parse_levers

        students = None if self.lever_students is None else functools.partial(
            lambda_student, self.lever_students, data_dir=self.data_dir, cache_dir=self.cache_dir)
        return {"levers": parse_levers(self.levers), "engine": self.lever_engine, "size": self.lever_size,
                "data_dir": self.data_dir, "model": self.model, "cache_dir": self.cache_dir,
                "max_length": self.max_length, "n_queries": self.n_queries, "seed": self.seed, "repeats": self.repeats,
                "resample_from": self.resample_from, "max_passages": self.max_passages,
                "students": students, "seeds": self.lever_seeds}
