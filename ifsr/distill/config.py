"""A training run's config (`ifsr.distill.trainer.train`'s settings), checked field by field before anything
is built from it. Free of torch; loaded and saved by `ifsr.config`."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from ifsr.core.names import ENSEMBLES, MINMAX, QUERY_WEIGHTS, TEACHER_NAMES


@dataclass
class TrainConfig:
    """One training run (a stage): `ifsr.distill.trainer.train`'s settings."""

    student: str = "splade-tiny"  # model name/path, or a previous stage's output directory
    query_weights: str = "idf"  # ARMS' values: "idf" (the idf-flops arm, the paper) or "ones" (the flops arm)
    teacher: str = MINMAX  # a member of teacher_names (alone), ensemble-minmax (the paper) or ensemble-raw
    teacher_names: list[str] = field(default_factory=lambda: list(TEACHER_NAMES))  # the label's teachers, in order:
    #   label [K, G] (ifsr.exp.config.AblationConfig.ensemble sets them with its members)
    teacher_weights: list[float] | None = None  # the min-max ensemble's alpha_k (normalised); None: 1/K each
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
        names = self.teacher_names
        if (not isinstance(names, list) or not names or len(set(names)) != len(names)
                or any(not isinstance(n, str) or not n.strip() or n in ENSEMBLES for n in names)):
            raise ValueError(f"teacher_names must be a non-empty list of distinct names other than {list(ENSEMBLES)}, "
                             f"{_got(names)}")
        w = self.teacher_weights
        if w is not None and (not isinstance(w, list) or len(w) != len(names) or any(
                isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x) or x <= 0 for x in w)):
            raise ValueError(f"teacher_weights must be null or {len(names)} positive numbers (one per teacher_names), "
                             f"{_got(w)}")
        for name, choices in (("query_weights", QUERY_WEIGHTS), ("teacher", tuple(names) + ENSEMBLES),
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
