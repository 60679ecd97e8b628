"""Figures of the results: the sparsity-relevance curve, the teacher bars, the training curves."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import pandas as pd  # noqa: E402
from matplotlib import ticker  # noqa: E402

from ifsr.core.names import MINMAX


def plot_curve(curve: pd.DataFrame, path: str | Path) -> Path:
    """nDCG@10 against the FLOPS metric, one line per arm, one panel per dataset: each point the mean
    over training seeds, its bars one standard deviation over seeds in both axes (none for one seed).
    The untrained and stage-1 starts are single markers; BM25 (no FLOPS) is a dashed level."""
    sets = sorted(curve["dataset"].unique())
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4.2), squeeze=False)
    for ax, name in zip(axes[0], sets):
        part = curve[curve["dataset"] == name]
        ys = part[part["arm"] != "bm25"]["nDCG@10"]
        lo, hi = ys.min(), ys.max()
        pad = max(0.01, 0.15 * (hi - lo))
        for arm, grp in part.groupby("arm", sort=True):
            if arm == "bm25":  # a level; drawn only where it does not squash the curves
                level = grp["nDCG@10"].mean()
                near = lo - 3 * pad <= level <= hi + 3 * pad
                ax.axhline(level if near else float("nan"), color="grey", ls="--", lw=1,
                           label=f"bm25 {level:.3f}" + ("" if near else " (off scale)"))
                continue
            g = grp.groupby("lambda", dropna=False).agg(x=("flops", "mean"), y=("nDCG@10", "mean"), xs=("flops", "std"),
                                                        ys=("nDCG@10", "std"), n=("seed", "size")).reset_index()
            g = g.sort_values("x")
            single = arm == "untrained" or arm.startswith("stage-1 start")
            ax.errorbar(g["x"], g["y"], xerr=g["xs"].fillna(0), yerr=g["ys"].fillna(0), marker="s" if single else "o",
                        ls="none" if single else "-", capsize=3, label=f"{arm} (seeds: {int(g['n'].max())})")
            for _, r in g.dropna(subset=["lambda"]).iterrows():
                if not single:
                    ax.annotate(f"λ={r['lambda']:g}", (r["x"], r["y"]), fontsize=7, alpha=0.7)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%.3g"))  # narrow ranges: no 1.2x10^0 labels
        ax.xaxis.set_minor_formatter(ticker.FormatStrFormatter("%.3g"))
        ax.set(title=name, xlabel="FLOPS (Σ_j p_q(j)·p_d(j), log scale)", ylabel="nDCG@10 (mean over seeds ± sd)")
        ax.set_ylim(min(ax.get_ylim()[0], lo - pad), min(ax.get_ylim()[1], max(hi + 3 * pad, lo + 0.05)))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_teachers(table: pd.DataFrame, per_query: pd.DataFrame, path: str | Path) -> Path:
    """The teacher ablation as bars, in the verdict table's terms: the min-max ensemble's nDCG@10 minus
    each other teacher's (and the untrained start's), mean over seeds and queries, with the 95% interval
    of the paired two-level bootstrap over seeds and queries (ifsr.eval.stats.paired_delta; seeds drawn together
    where both teachers ran the same ones, as in the verdict table). A bar above 0: the ensemble is better, as the
    paper says."""
    from ifsr.eval.stats import paired_delta, seed_ids, seed_matrix
    sets = sorted(table["dataset"].unique())
    others = [t for t in dict.fromkeys(table["teacher"]) if t != MINMAX]
    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 4), squeeze=False)
    for ax, name in zip(axes[0], sets):
        ens = seed_matrix(per_query, name, teacher=MINMAX)
        own = seed_ids(per_query, name, teacher=MINMAX)
        stats = [paired_delta([ens], [seed_matrix(per_query, name, teacher=t)], n_boot=2000,
                              paired_seeds=seed_ids(per_query, name, teacher=t) == own) for t in others]
        ax.bar(range(len(others)), [b.delta for b in stats], color="tab:blue", alpha=0.8,
               yerr=[[max(0.0, b.delta - b.low) for b in stats], [max(0.0, b.high - b.delta) for b in stats]], capsize=4)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(others)), others, rotation=15)
        ax.set(title=f"{name}: min-max ensemble {ens.mean():.4f} (stage 1, zero-shot)",
               ylabel="Δ nDCG@10, min-max − teacher (95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_training(curve: pd.DataFrame, path: str | Path, lam: float | None = None) -> Path:
    """Training curves from each run's log.jsonl: the ranking term, the FLOPS penalty (lambda_t x FLOPS)
    and lambda_t per step, for the stage-1 start and, per arm, the first seed's run at `lam` (None: the
    middle lambda of the sweep)."""
    rows = curve[~curve["arm"].isin(["untrained", "bm25"]) & ~curve["arm"].str.endswith("+idf-query")]
    lams = sorted(rows["lambda"].dropna().unique())
    if lam is None and lams:
        lam = lams[len(lams) // 2]
    picks = {}
    for _, r in rows.sort_values("seed").iterrows():
        start = str(r["arm"]).startswith("stage-1 start")
        label = f"{r['arm']} seed {r['seed']}" if start else f"{r['arm']} λ={r['lambda']:g} seed {r['seed']}"
        if start or r["lambda"] == lam:
            picks.setdefault(r["arm"], (label, Path(str(r["model"])).parent / "log.jsonl"))
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for label, log in picks.values():
        if not log.is_file():
            continue
        hist = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        hist = [h for h in hist if "loss" in h]
        steps = [h["step"] for h in hist]
        for ax, key in zip(axes, ("rank", "flops_penalty", "lambda")):
            vals = [h.get(key) for h in hist]
            if any(v is not None for v in vals):
                ax.plot(steps, vals, marker=".", label=label)
    for ax, title in zip(axes, ("ranking term (KL)", "FLOPS penalty λ_t·FLOPS", "λ_t")):
        ax.set(title=title, xlabel="step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
