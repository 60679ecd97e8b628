"""Comparisons between result tables and configs, as data: the report (ifsr.report) words them.

- `matched_flops_gaps`: the two FLOPS arms at equal FLOPS (interpolated), as the paper's curves compare them.
- `dominated_pairs`: Pareto pairs (no more FLOPS, no lower nDCG@10), which need no interpolation.
- `read_config` / `config_diff`: how two runs' settings differ (variants, seed repeats, recipes).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml


def matched_flops_gaps(curve: pd.DataFrame, dataset: str, a: str = "idf-flops", b: str = "flops") -> list[dict]:
    """For each point of arm `a`, arm `b`'s nDCG@10 at the same FLOPS (log-linear interpolation,
    only inside b's FLOPS range): the comparison at equal FLOPS that the paper's curves make."""
    part = curve[curve["dataset"] == dataset]
    pa, pb = part[part["arm"] == a].sort_values("flops"), part[part["arm"] == b].sort_values("flops")
    if len(pa) == 0 or len(pb) < 2:
        return []
    xb, yb = np.log(pb["flops"].to_numpy()), pb["nDCG@10"].to_numpy()
    gaps = []
    for _, r in pa.iterrows():
        x = np.log(r["flops"])
        if xb[0] <= x <= xb[-1]:
            gaps.append({"lambda": r["lambda"], "at_flops": r["flops"], a: r["nDCG@10"],
                         b: float(np.interp(x, xb, yb)), "gap": r["nDCG@10"] - float(np.interp(x, xb, yb))})
    return gaps


def dominated_pairs(curve: pd.DataFrame, dataset: str, a: str = "idf-flops", b: str = "flops") -> list[dict]:
    """Pairs of points (one per arm) where one is at most the other's FLOPS with at least its nDCG@10,
    better in one of the two: a comparison that needs no interpolation, made even where the two
    arms' FLOPS ranges do not overlap."""
    part = curve[curve["dataset"] == dataset]
    out = []
    for _, x in part[part["arm"] == a].iterrows():
        for _, y in part[part["arm"] == b].iterrows():
            for win, lose, winner in ((x, y, a), (y, x, b)):
                if (win["flops"] <= lose["flops"] and win["nDCG@10"] >= lose["nDCG@10"]
                        and (win["flops"], win["nDCG@10"]) != (lose["flops"], lose["nDCG@10"])):
                    out.append({"winner": winner, "win": win, "lose": lose})
    return out


def read_config(path: Path) -> dict | None:
    """A results folder's config.yaml; TrainConfig fields newer than the run get their defaults (the
    run had them)."""
    if not path.is_file():
        return None
    import dataclasses

    from ifsr.train import TrainConfig

    c = yaml.safe_load(path.read_text()) or {}
    c["train"] = {**dataclasses.asdict(TrainConfig()), **(c.get("train") or {})}
    return c


def config_diff(a: dict, b: dict) -> list[tuple[str, object, object]]:
    """(key, a's value, b's value) for every setting that differs; `train` keys as `train.<key>`."""
    top = [{k: v for k, v in c.items() if k != "train"} for c in (a, b)]
    out = []
    for prefix, x, y in (("", *top), ("train.", a.get("train", {}), b.get("train", {}))):
        keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
        out += [(prefix + k, x.get(k, "unset"), y.get(k, "unset")) for k in keys]
    return out
