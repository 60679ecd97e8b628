"""Figures of the results: the FLOPS ablation's curve (nDCG@10 against FLOPS)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import pandas as pd  # noqa: E402
from matplotlib import ticker  # noqa: E402


def plot_curve(curve: pd.DataFrame, path: str | Path) -> Path:
    """nDCG@10 against the FLOPS metric, one line per arm, one panel per dataset."""
    sets = sorted(curve["dataset"].unique())
    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 4), squeeze=False)
    for ax, name in zip(axes[0], sets):
        for arm, part in curve[curve["dataset"] == name].groupby("arm"):
            part = part.sort_values("flops")
            ax.plot(part["flops"], part["nDCG@10"], marker="o", label=arm)
            for _, r in part.dropna(subset=["lambda"]).iterrows():
                ax.annotate(f"λ={r['lambda']:g}", (r["flops"], r["nDCG@10"]), fontsize=7, alpha=0.7)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%.3g"))  # narrow ranges: no 1.2x10^0 labels
        ax.xaxis.set_minor_formatter(ticker.FormatStrFormatter("%.3g"))
        ax.set(title=name, xlabel="FLOPS (Σ_j p_q(j)·p_d(j), log scale)", ylabel="nDCG@10")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
