"""The baselines table's config (`ifsr.eval.baselines`) and its presets. Free of torch; loaded by `ifsr.config`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ifsr.config import load_config, parse_list


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
