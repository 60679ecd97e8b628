"""Each claim of the paper as data: its comparison, the statistic over queries and seeds, the verdict.

`claim_rows` reads a preset's protocol tables (teachers/ and idf_flops/, each with per_query.csv) and
returns one row per (claim, dataset) plus the mean over datasets; `verdict` turns a row's statistic
into its word. The report (ifsr.report.report) only lays the rows out. Statistics: ifsr.report.stats.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ifsr.report.stats import Bootstrap, curve_arrays, curve_gap, paired_delta, seed_matrix

ALPHA = 0.05  # significance level of every verdict
MIN_SEEDS = 3  # training seeds a "holds" / "reversed" needs in its statistic
MEAN = "mean"  # the dataset label of the mean over datasets

# The paper's side of each claim (SPEC.md; the paper body was not available, so the ablations give a
# direction, not a number). Claim -> (what is compared, what the paper says).
PAPER = {
    "1": ("IDF-aware FLOPS vs plain FLOPS, nDCG@10 gap at equal FLOPS (stage 2)", "IDF-aware above plain"),
    "2a": ("min-max ensemble vs dense teacher, zero-shot after stage 1", "ensemble above each single teacher"),
    "2b": ("min-max ensemble vs sparse teacher, zero-shot after stage 1", "ensemble above each single teacher"),
    "3": ("min-max ensemble vs raw-sum ensemble, zero-shot after stage 1", "normalization matters: min-max above raw"),
    "H1": ("the replication's model (IDF-aware, λ named in the config) vs BM25", "SciFact .715 vs BM25 .690 "
           "(doc-v2-distill; SPEC §5)"),
    "H2": ("the replication's model vs its untrained start", "above its start (training helps)"),
}


def verdict(p: float, delta: float, seeds: int, alpha: float = ALPHA, min_seeds: int = MIN_SEEDS) -> str:
    """A claim's verdict word from its statistic, never from the sign of a difference alone.

    p: two-sided p-value of the claim's two-level bootstrap over seeds and queries (ifsr.report.stats);
    delta: the difference in the paper's direction (> 0: as the paper says); seeds: the fewest training
    seeds of the arms that entered the statistic.
      "not distinguishable"  p >= alpha
      "holds" / "reversed"   p < alpha with delta > 0 / delta < 0, from at least `min_seeds` seeds
      "not judged: ..."      p < alpha from fewer seeds (the seed variance is not measured), or no p
    """
    if pd.isna(p):
        return "not judged: no statistic (e.g. the curves' FLOPS ranges do not overlap)"
    if p >= alpha:
        return "not distinguishable"
    if seeds < min_seeds:
        return f"not judged: significant over queries, but {seeds} training seed(s) (needs {min_seeds})"
    return "holds" if delta > 0 else "reversed"


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path, dtype={"query_id": str}) if path.is_file() else None


def _row(claim: str, dataset: str, here: str, stat: Bootstrap, seeds: int | None = None, **extra: Any) -> dict:
    what, paper = PAPER[claim]
    seeds = stat.seeds if seeds is None else seeds
    return {"claim": claim, "compared": what, "paper": paper, "dataset": dataset, "here": here, **stat.as_dict(),
            "seeds": seeds, "verdict": verdict(stat.p, stat.delta, seeds), **extra}


def _both(datasets: list[str]) -> list[tuple[str, list[str]]]:
    """(label, datasets) of each dataset alone, then of their mean when there are several."""
    return [(d, [d]) for d in datasets] + ([(MEAN, datasets)] if len(datasets) > 1 else [])


def teacher_rows(table: pd.DataFrame, per_query: pd.DataFrame, n_boot: int = 10000) -> list[dict]:
    """Claims 2a, 2b, 3: the min-max ensemble's mean nDCG@10 minus each other teacher's, over seeds and queries."""
    out = []
    datasets = sorted(table["dataset"].unique())
    have = set(table["teacher"])
    for claim, other in (("2a", "dense"), ("2b", "sparse"), ("3", "ensemble-raw")):
        if not {"ensemble-minmax", other} <= have:
            continue
        for label, sets in _both(datasets):
            a = [seed_matrix(per_query, d, teacher="ensemble-minmax") for d in sets]
            b = [seed_matrix(per_query, d, teacher=other) for d in sets]
            s = paired_delta(a, b, n_boot=n_boot)
            ma, mb = np.mean([x.mean() for x in a]), np.mean([x.mean() for x in b])
            out.append(_row(claim, label, f"{ma:.4f} vs {mb:.4f}", s))
    return out


def sweep_rows(curve: pd.DataFrame, per_query: pd.DataFrame, headline: float | None, n_boot: int = 10000,
               n_boot_curve: int = 2000) -> list[dict]:
    """Claim 1 (the curves' gap over their common FLOPS range) and the headline model's rows (H1, H2)."""
    out = []
    datasets = sorted(curve["dataset"].unique())
    arms = set(curve["arm"])
    if {"idf-flops", "flops"} <= arms:
        for label, sets in _both(datasets):
            a = [curve_arrays(curve, per_query, d, "idf-flops") for d in sets]
            b = [curve_arrays(curve, per_query, d, "flops") for d in sets]
            s = curve_gap(a, b, n_boot=n_boot_curve)
            if len(sets) > 1:
                span = "mean of the datasets' gaps"
            else:  # the overlap of the two mean curves (geometric mean FLOPS over seeds per lambda)
                ranges = [np.exp(np.log(f).mean(axis=1)) for f, _ in (a[0], b[0])]
                lo, hi = max(r.min() for r in ranges), min(r.max() for r in ranges)
                span = f"mean gap over FLOPS {lo:.3g}–{hi:.3g}" if lo < hi else "the FLOPS ranges do not overlap"
            out.append(_row("1", label, span, s))
    if headline is not None and "idf-flops" in arms:
        for claim, ref in (("H1", "bm25"), ("H2", "untrained")):
            if ref not in arms:
                continue
            for label, sets in _both(datasets):
                a = [seed_matrix(per_query, d, arm="idf-flops", **{"lambda": float(headline)}) for d in sets]
                b = [seed_matrix(per_query, d, arm=ref) for d in sets]
                s = paired_delta(a, b, n_boot=n_boot)
                ma, mb = np.mean([x.mean() for x in a]), np.mean([x.mean() for x in b])
                out.append(_row(claim, label, f"{ma:.4f} vs {mb:.4f} (λ={headline:g})", s, seeds=a[0].shape[0]))
    return out


def claim_rows(root: str | Path, headline: float | None = None, n_boot: int = 10000) -> pd.DataFrame:
    """Every claim's rows for a preset's results folder (`root` = results/<preset>); empty if nothing ran."""
    root = Path(root)
    rows: list[dict] = []
    teachers, tq = _read(root / "teachers" / "table.csv"), _read(root / "teachers" / "per_query.csv")
    if teachers is not None and tq is not None:
        rows += teacher_rows(teachers, tq, n_boot)
    curve, cq = _read(root / "idf_flops" / "curve.csv"), _read(root / "idf_flops" / "per_query.csv")
    if curve is not None and cq is not None:
        rows += sweep_rows(curve, cq, headline, n_boot)
    order = {c: i for i, c in enumerate(PAPER)}
    return pd.DataFrame(sorted(rows, key=lambda r: (order[r["claim"]], r["dataset"] == MEAN, r["dataset"])))


def latency_rows(table: pd.DataFrame) -> list[str]:
    """Claim 4's lines: inference-free / BM25 p50 per corpus size on PISA; no verdict (one timing run)."""
    bm25 = table[(table["system"] == "bm25") & (table["engine"] == "pisa")].set_index("docs")["p50_ms"]
    free = table[(table["system"] == "inference-free") & (table["engine"] == "pisa")].set_index("docs")["p50_ms"]
    ratios = (free / bm25).dropna()
    return [f"{int(d):,} docs: {r:.2f}×" for d, r in ratios.items()]


def latency_section(table: pd.DataFrame | None, quality: pd.DataFrame | None = None,
                    folder: str = "latency", model: str | None = None) -> list[str]:
    title = "### Claim 4: inference-free latency is about 1.1× BM25 on an inverted index"
    if folder != "latency":
        title = f"### Claim 4 again, `{folder}`"
    lines = [title, ""]
    if table is None:
        return lines + [f"Not run for this preset (no {folder}/table.csv).", ""]
    if model:
        lines += [f"Document model: `{model}`.", ""]
    lines += ["| engine | docs | resampled | inference-free p50 ms | bm25 p50 ms | siamese p50 ms | IF / BM25 | "
              "siamese / IF | IF top-10 agreement |", "|---|---|---|---|---|---|---|---|---|"]
    bm25 = table[(table["system"] == "bm25") & (table["engine"] == "pisa")].set_index("docs")["p50_ms"]
    for (engine, docs), part in table.groupby(["engine", "docs"], sort=True):
        p = part.set_index("system")
        get = lambda s, c="p50_ms": p.loc[s, c] if s in p.index else float("nan")  # noqa: E731
        ratio = get("inference-free") / bm25.get(docs, float("nan"))
        lines.append(f"| {engine} | {docs:,} | {bool(part['resampled'].any()) if 'resampled' in part else '?'} | "
                     f"{get('inference-free'):.3f} | {get('bm25'):.3f} | {get('siamese'):.2f} | {ratio:.2f}× | "
                     f"{get('siamese') / get('inference-free'):.1f}× | {get('inference-free', 'top10_agreement'):.3f} |")
    free = table[(table["system"] == "inference-free") & (table["engine"] == "pisa")].set_index("docs")["p50_ms"]
    ratios = (free / bm25).dropna().tolist()
    if ratios:
        lines.append("")
        lines.append(f"- PISA inference-free / BM25 p50 from {min(ratios):.2f}× to {max(ratios):.2f}× (the paper "
                     "reports about 1.1×). No verdict: one timing run per size, with no interval over queries or "
                     "runs. Wall-clock times on a shared machine; `benchmarks/latency.py` prints the same ratios.")
    for r in ([] if quality is None else quality.to_dict("records")):
        if r["engine"] != r["reference"]:
            lines.append(f"- Engine quality (SciFact test): {r['system']} on {r['engine']} vs {r['reference']}: top-10 "
                         f"agreement {r['top10_agreement']:.3f}, nDCG@10 {r['nDCG@10']:.4f} vs "
                         f"{r['reference_nDCG@10']:.4f} (Δ {r['delta_nDCG@10']:+.4f})")
    return lines + [""]


def fmt_p(p: float) -> str:
    return "–" if p is None or (isinstance(p, float) and math.isnan(p)) else (f"{p:.3g}" if p >= 0.001 else "< 0.001")
