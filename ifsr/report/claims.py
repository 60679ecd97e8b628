"""The report's claim sections (Claims 1-4 and the Bars): each claim of the paper beside the numbers.

Each function turns a results table into Markdown lines with a verdict; `ifsr.report.report` puts
them together.
"""
from __future__ import annotations

import pandas as pd

from ifsr.report.compare import dominated_pairs, matched_flops_gaps

ALPHA = 0.05  # significance level of every verdict
MIN_SEEDS = 3  # training seeds a "holds" / "reversed" needs in its statistic


def verdict(p: float, delta: float, seeds: int, alpha: float = ALPHA, min_seeds: int = MIN_SEEDS) -> str:
    """A claim's verdict word from its statistic, never from the sign of a difference alone.

    p: two-sided p-value of a paired test over queries (per-query values averaged over seeds where
    there are several); delta: the difference in the paper's direction (> 0: as the paper says);
    seeds: training seeds per arm that entered the statistic.
      "not distinguishable"  p >= alpha (query variance alone already covers the difference; seed
                             variance could only widen it)
      "holds" / "reversed"   p < alpha with delta > 0 / delta < 0, from at least `min_seeds` seeds
      "not judged: ..."      p < alpha from fewer seeds (the seed variance is not measured), or no p
    """
    if pd.isna(p):
        return "not judged: no paired test"
    if p >= alpha:
        return "not distinguishable"
    if seeds < min_seeds:
        return f"not judged: significant over queries, but {seeds} training seed(s) (needs {min_seeds})"
    return "holds" if delta > 0 else "reversed"


def idf_section(curve: pd.DataFrame | None, title: str = "## Claim 1: IDF-aware FLOPS gives better nDCG@10 than "
                 "plain FLOPS at equal FLOPS") -> list[str]:
    lines = [title, ""]
    if curve is None:
        return lines + ["Not run for this preset (no idf_flops/curve.csv).", ""]
    for ds in sorted(curve["dataset"].unique()):
        gaps = matched_flops_gaps(curve, ds)
        lines.append(f"**{ds}** — points of the IDF-aware curve inside the plain curve's FLOPS range: {len(gaps)}")
        for g in gaps:
            lines.append(f"- λ={g['lambda']:g}, FLOPS {g['at_flops']:.3g}: IDF-aware {g['idf-flops']:.4f} vs plain "
                         f"{g['flops']:.4f} (interpolated) → {g['gap']:+.4f}")
        if gaps:
            wins = sum(g["gap"] > 0 for g in gaps)
            lines.append(f"- Verdict: not judged: the curve has no per-query nDCG@10, so its matched-FLOPS gaps "
                         f"have no statistic over queries and seeds ({wins}/{len(gaps)} matched points above the "
                         "plain curve).")
        elif not (curve[curve["dataset"] == ds]["arm"] == "flops").any():
            lines.append("- Verdict: not judged: only the IDF-aware arm ran here.")
        else:
            lines.append("- Verdict: cannot be judged: the two curves' FLOPS ranges do not overlap "
                         "(see the Pareto lines and the best points below).")
        for p in dominated_pairs(curve, ds):
            w, lo = p["win"], p["lose"]
            lines.append(f"- Pareto: {p['winner']} λ={w['lambda']:g} (FLOPS {w['flops']:.3g}, {w['nDCG@10']:.4f}) dominates "
                         f"{lo['arm']} λ={lo['lambda']:g} (FLOPS {lo['flops']:.3g}, {lo['nDCG@10']:.4f}): no more FLOPS, "
                         "no lower nDCG@10.")
        part = curve[curve["dataset"] == ds]
        for arm, grp in part.groupby("arm"):
            best = grp.loc[grp["nDCG@10"].idxmax()]
            at = "" if arm == "untrained" else f" at λ={best['lambda']:g}"
            lines.append(f"- {'the start' if arm == 'untrained' else 'best'} {arm}: nDCG@10 {best['nDCG@10']:.4f}{at}, "
                         f"FLOPS {best['flops']:.3g}")
        lines.append("")
    return lines


def significance(p: float, alpha: float = 0.05) -> str:
    return f"p = {p:.3g}, {'significant' if p < alpha else 'not significant'} at {alpha:g}"


def teacher_section(table: pd.DataFrame | None) -> list[str]:
    lines = ["## Claims 2 and 3: the min-max ensemble beats each single teacher; normalization matters", ""]
    if table is None:
        return lines + ["Not run for this preset (no teachers/table.csv).", ""]
    for ds in sorted(table["dataset"].unique()):
        rows = table[table["dataset"] == ds]
        pooled = rows.groupby("teacher")["p_value_vs_ensemble_minmax"].nunique(dropna=False)
        if (pooled > 1).any():  # a row per seed carries the one test over queries and seeds, not its own
            raise ValueError(f"teachers table, {ds}: the seed rows of {sorted(pooled[pooled > 1].index)} carry different "
                             "p-values; a multi-seed table holds the pooled test on every row")
        part = rows.groupby("teacher").mean(numeric_only=True)  # nDCG@10: the mean over seeds
        seeds = int(rows.groupby("teacher").size().min())  # rows = training seeds
        if "ensemble-minmax" not in part.index:
            continue
        ens = part.loc["ensemble-minmax", "nDCG@10"]
        lines.append(f"**{ds}** — ensemble-minmax nDCG@10 {ens:.4f}")
        for t in ("dense", "sparse", "ensemble-raw"):
            if t in part.index:
                r = part.loc[t]
                lines.append(f"- vs {t}: {r['nDCG@10']:.4f} (Δ {ens - r['nDCG@10']:+.4f}, paired randomization "
                             f"p = {r['p_value_vs_ensemble_minmax']:.3g})")
        singles = [t for t in ("dense", "sparse") if t in part.index]
        if singles:
            best = max(singles, key=lambda t: part.loc[t, "nDCG@10"])
            p = part.loc[best, "p_value_vs_ensemble_minmax"]
            word = verdict(p, ens - part.loc[best, "nDCG@10"], seeds)
            lines.append(f"- Claim 2: {word} here (ensemble {ens:.4f} vs the best single teacher, {best}, "
                         f"{part.loc[best, 'nDCG@10']:.4f}; {significance(p)}; {seeds} seed(s)).")
        if "ensemble-raw" in part.index:
            raw = part.loc["ensemble-raw", "nDCG@10"]
            p = part.loc["ensemble-raw", "p_value_vs_ensemble_minmax"]
            lines.append(f"- Claim 3: {verdict(p, ens - raw, seeds)} here (min-max {ens:.4f} vs raw sum {raw:.4f}; "
                         f"{significance(p)}; {seeds} seed(s)).")
        lines.append("")
    return lines


def bars(curve: pd.DataFrame | None, base: pd.DataFrame | None,
          title: str = "## Bars: the best IDF-aware student vs BM25 and the untrained inference-free start") -> list[str]:
    lines = [title, ""]
    if curve is None or base is None:
        return lines + ["Needs both idf_flops/curve.csv and baselines/table.csv.", ""]
    for ds in sorted(curve["dataset"].unique()):
        idf = curve[(curve["dataset"] == ds) & (curve["arm"] == "idf-flops")]
        b = base[base["dataset"] == ds].set_index("system")
        if idf.empty or "bm25" not in b.index:
            continue
        top = idf.loc[idf["nDCG@10"].idxmax()]
        best = top["nDCG@10"]
        start = curve[(curve["dataset"] == ds) & (curve["arm"] == "untrained")]["nDCG@10"]
        refs = [("bm25", b.loc["bm25", "nDCG@10"])]  # BM25 reads whole documents
        if len(start):  # the start under the students' own evaluation settings (the same max length)
            refs.append(("the untrained start (curve)", start.iloc[0]))
        elif "inference-free-untrained" in b.index:
            refs.append(("inference-free-untrained (baselines)", b.loc["inference-free-untrained", "nDCG@10"]))
        for system, v in refs:
            test = ""
            if system == "bm25" and not pd.isna(top.get("p_value_vs_bm25", float("nan"))):
                test = f"; paired randomization over the same queries: {significance(top['p_value_vs_bm25'])}"
            lines.append(f"- {ds}: best IDF-aware {best:.4f} (λ={top['lambda']:g}) vs {system} {v:.4f}: "
                         f"{best - v:+.4f}{test}; no verdict: the best of the sweep was picked on this test set")
    return lines + [""]


def latency_section(table: pd.DataFrame | None, quality: pd.DataFrame | None = None,
                     folder: str = "latency", model: str | None = None) -> list[str]:
    title = "## Claim 4: inference-free latency is about 1.1× BM25 on an inverted index"
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
