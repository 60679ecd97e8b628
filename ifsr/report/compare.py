"""Comparisons between result tables and configs, as data: the report (ifsr.report.report) words them.

- `matched_flops_gaps`: the two FLOPS arms at equal FLOPS (interpolated), as the paper's curves compare them.
- `dominated_pairs`: Pareto pairs (no more FLOPS, no lower nDCG@10), which need no interpolation.
- `read_config` / `config_diff`: how two runs' settings differ (variants, seed repeats, recipes).
- `seed_repeats` / `across_sweeps`: the same settings under two training seeds; every sweep's comparisons.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ifsr.exp.config import AblationConfig, load_config, to_dict


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
    """A results folder's AblationConfig (config.yaml through `load_config`: fields the file lacks
    have their defaults) as a dict; None if there is no such file."""
    return to_dict(load_config(AblationConfig, path)) if Path(path).is_file() else None


def config_diff(a: dict, b: dict) -> list[tuple[str, object, object]]:
    """(key, a's value, b's value) for every setting that differs; `train` keys as `train.<key>`."""
    top = [{k: v for k, v in c.items() if k != "train"} for c in (a, b)]
    out = []
    for prefix, x, y in (("", *top), ("train.", a.get("train", {}), b.get("train", {}))):
        keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
        out += [(prefix + k, x.get(k, "unset"), y.get(k, "unset")) for k in keys]
    return out


GRID_KEYS = ("arms", "lambdas", "teachers")  # which runs a sweep holds, not how each run was made


def seed_repeats(root: Path) -> list[dict]:
    """The same (dataset, arm, λ) trained in two sweeps whose settings differ only in the training seed
    (and in which arms/λ they hold): {dataset, arm, lambda, folders, seeds, nDCG@10, flops, p_value_vs_bm25}."""
    configs = {p.parent.name: read_config(p) for p in sorted(Path(root).glob("idf_flops*/config.yaml"))}
    out = []
    for a, b in ((a, b) for a in configs for b in configs if a < b):
        if [k for k, _, _ in config_diff(configs[a], configs[b]) if k not in GRID_KEYS] != ["train.seed"]:
            continue
        ca, cb = (Path(root) / f / "curve.csv" for f in (a, b))
        if not (ca.is_file() and cb.is_file()):
            continue
        both = pd.read_csv(ca).merge(pd.read_csv(cb), on=["dataset", "arm", "lambda"], suffixes=("_a", "_b"))
        for _, r in both.dropna(subset=["lambda"]).iterrows():
            pair = lambda col: (r.get(f"{col}_a", np.nan), r.get(f"{col}_b", np.nan))  # noqa: E731
            out.append({"dataset": r["dataset"], "arm": r["arm"], "lambda": r["lambda"], "folders": (a, b),
                        "seeds": (configs[a]["train"]["seed"], configs[b]["train"]["seed"]),
                        "nDCG@10": pair("nDCG@10"), "flops": pair("flops"), "p_value_vs_bm25": pair("p_value_vs_bm25")})
    return out


def across_sweeps(root: Path) -> tuple[list[dict], list[dict]]:
    """Every sweep's matched-FLOPS gaps and Pareto pairs (idf_flops*/curve.csv under a preset's results)."""
    matched, pareto = [], []
    for sub in sorted(Path(root).glob("idf_flops*/curve.csv")):
        c = pd.read_csv(sub)
        for ds in sorted(c["dataset"].unique()):
            matched += [{**g, "folder": sub.parent.name} for g in matched_flops_gaps(c, ds)]
            pareto += [{**p, "folder": sub.parent.name} for p in dominated_pairs(c, ds)]
    return matched, pareto
