"""Each claim of the paper as data: its comparison, the statistic over queries and seeds, the verdict.

`claim_rows` reads a preset's protocol tables (teachers/ and idf_flops/, each with per_query.csv) and
returns one row per (claim, dataset) plus the mean over datasets; `verdict` turns a row's statistic
into its word. Every row carries its power as well: `se` and `mde`, the minimum detectable effect at 80%
power from the same bootstrap, which `verdict_cell` attaches to a "not distinguishable" (what it could have
seen). The report (ifsr.report.report) only lays the rows out. Statistics: ifsr.eval.stats.
"""
# Over 300 lines: each claim's statistic and row; the latency claim's rows and lines beside them.
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Claim 4's p50 ratios are tested against GOAL_RATIO and PAPER_RATIO (ifsr.eval.stats.median_ratio, in ifsr.exp.latency)
from ifsr.core.constants import GOAL_RATIO, MIN_AGREEMENT, PAPER_RATIO
from ifsr.core.names import DENSE, IDF_ARM, MINMAX, PLAIN_ARM, RAW_SUM, SPARSE
from ifsr.eval.stats import (Bootstrap, PowerSplit, curve_arrays, curve_gap, curve_power_split, paired_delta, power_split,
                             seed_ids, seed_matrix)
from ifsr.tables import read_table

ALPHA = 0.05  # significance level of every verdict
MIN_SEEDS = 3  # training seeds (latency: also timing passes) a "holds" / "reversed" needs in its statistic
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


def verdict(p: float, delta: float, seeds: int, alpha: float = ALPHA, min_seeds: int = MIN_SEEDS,
            unit: str = "training seed(s)") -> str:
    """A claim's verdict word from its statistic, never from the sign of a difference alone.

    p: two-sided p-value of the claim's two-level bootstrap over seeds and queries (ifsr.eval.stats);
    delta: the difference in the paper's direction (> 0: as the paper says); seeds: the fewest training
    seeds of the arms that entered the statistic (`unit` names them in the message: latency counts timing
    passes too, `latency_verdict`).
      "not distinguishable"  p >= alpha
      "holds" / "reversed"   p < alpha with delta > 0 / delta < 0, from at least `min_seeds` seeds
      "not judged: ..."      p < alpha from fewer seeds (the seed variance is not measured), or no p
    """
    if pd.isna(p):
        return "not judged: no statistic (e.g. the curves' FLOPS ranges do not overlap)"
    if p >= alpha:
        return "not distinguishable"
    if seeds < min_seeds:
        return f"not judged: significant over queries, but {seeds} {unit} (needs {min_seeds})"
    return "holds" if delta > 0 else "reversed"


def verdict_cell(word: str, mde: float) -> str:
    """A verdict as the report's table shows it: a "not distinguishable" with the minimum detectable effect
    (80% power) of its test, "not distinguishable (could detect ≥ 0.0123)"; any other word, or no MDE, as is.
    (verdicts.csv keeps the word alone in `verdict`, the MDE in `mde`.)"""
    if word != "not distinguishable" or mde is None or not mde == mde:
        return word
    return f"{word} (could detect ≥ {mde:.4f})"


def latency_verdict(r, col: str = "if_over_bm25", paper: bool = False) -> str:
    """The verdict word of a p50 ratio (a latency or lever row's `col`) against GOAL_RATIO, or PAPER_RATIO with
    `paper`: "holds" when significantly below it (as fast as asked), "reversed" when significantly above, from its
    bootstrap over timing passes, queries and, for a trained student (`seeds` not NaN), training seeds; a "holds"
    or "reversed" needs MIN_SEEDS of each (a fixed model has no training seed to count)."""
    nan = float("nan")
    p = r.get(f"{col}_p_paper" if paper else f"{col}_p", nan)
    if p != p:
        return "not judged: no p-value (an older table)"
    passes, seeds = int(r.get("repeats", 1)), _seeds(r)
    if seeds == seeds and int(seeds) < passes:
        return verdict(p, (PAPER_RATIO if paper else GOAL_RATIO) - r[col], int(seeds))
    return verdict(p, (PAPER_RATIO if paper else GOAL_RATIO) - r[col], passes, unit="timing pass(es)")


def _seeds(r) -> float:
    """A latency row's training seeds: its `seeds`, else 1 for a `lambda` lever (a table made before seeds were
    kept), else NaN (a fixed model, nothing trained)."""
    seeds = r.get("seeds", float("nan"))
    if seeds == seeds:
        return float(seeds)
    return 1.0 if str(r.get("lever", "")).startswith("lambda") else float("nan")


def _basis(r) -> str:
    """What a latency row's p rests on: "3 training seeds, 3 timing passes, the queries"."""
    seeds, passes = _seeds(r), int(r.get("repeats", 1))
    model = "a fixed model" if seeds != seeds else f"{int(seeds)} training seed{'s' if seeds != 1 else ''}"
    return f"{model}, {passes} timing pass{'es' if passes != 1 else ''}, the queries"


def latency_claims(latency: pd.DataFrame | None, variants: dict[str, pd.DataFrame | None],
                   headline: float | None, lengths: dict[str, int] | None = None) -> list[dict]:
    """Claim 4's rows of the verdict table, each against the paper's 1.1x (`latency_verdict(..., paper=True)`):
    the latency table's best agreeing setting at its largest corpus against the fastest BM25, and, for each latency
    variant whose levers time the replication's model (the `lambda` lever at `headline`, no pruning), that model
    against BM25 on the same engine. `lengths`: folder ("latency", "latency_<variant>") -> the document tokens
    its encoder read, said first in its `here` (the latency folders need not share the protocol's evaluation
    length). Keys: compared, here, p, basis, verdict."""
    rows = []
    best = None if latency is None else best_ratio(latency)

    def at(folder: str) -> str:
        n = (lengths or {}).get(folder)
        return "" if n is None else f"documents at {n} tokens; "

    if latency is not None:
        rows.append({"compared": "inference-free / fastest BM25, p50 latency (top-10 agreement ≥ 0.99)",
                     "here": at("latency") + "; ".join(latency_rows(latency)),
                     "p": float("nan") if best is None else best.get("if_over_best_bm25_p_paper", float("nan")),
                     "basis": "–" if best is None else _basis(best),
                     "verdict": "not judged: no setting agrees ≥ 0.99" if best is None else
                     latency_verdict(best, "if_over_best_bm25", paper=True)})
    for folder, levers in variants.items():
        if headline is None or levers is None or "lever" not in levers:
            continue
        study = levers["engine"].iloc[0] if "engine" in levers else None  # rows on their own engine are not "no pruning"
        own = levers[(levers["lever"] == "lambda") & np.isclose(levers["value"].astype(float), headline)
                     & ((levers["engine"] == study) if study is not None else True)]
        if own.empty:
            continue
        r = own.iloc[0]
        rows.append({"compared": f"the replication's model (IDF-aware λ {headline:g}, no pruning) / BM25 on the same "
                                 f"engine, p50 latency (`{folder}`)",
                     "here": at(folder) + f"{int(r['docs']):,} docs: {r['if_over_bm25']:.2f}× [{r['if_over_bm25_lo']:.2f}, "
                             f"{r['if_over_bm25_hi']:.2f}] ({r['engine']})",
                     "p": r.get("if_over_bm25_p_paper", float("nan")), "basis": _basis(r),
                     "verdict": latency_verdict(r, "if_over_bm25", paper=True)})
    return rows


def best_ratio(df: pd.DataFrame, min_agreement: float = MIN_AGREEMENT) -> pd.Series | None:
    """The inference-free row of the largest corpus with the lowest p50 ratio to the fastest BM25 among
    those whose top-10 agrees >= `min_agreement` with exact scoring (None: no such row)."""
    free = df[(df["system"] == "inference-free") & (df["docs"] == df["docs"].max())]
    if "if_over_best_bm25" not in free:
        return None
    ok = free[free["top10_agreement"] >= min_agreement].dropna(subset=["if_over_best_bm25"])
    return None if ok.empty else ok.sort_values("if_over_best_bm25", kind="stable").iloc[0]


def _row(claim: str, dataset: str, here: str, stat: Bootstrap, seeds: int | None = None, **extra: Any) -> dict:
    what, paper = PAPER[claim]
    seeds = stat.seeds if seeds is None else seeds
    return {"claim": claim, "compared": what, "paper": paper, "dataset": dataset, "here": here, **stat.as_dict(),
            "seeds": seeds, "verdict": verdict(stat.p, stat.delta, seeds), **extra}


POWER_TARGET = 0.010  # the MDE the protocol aims at (issue 27): one point of nDCG@10, the paper's kind of effect


def _power(p: PowerSplit) -> dict[str, float]:
    """A row's power split (`ifsr.eval.stats.power_split`, `curve_power_split`): the queries' and the seeds' parts
    of its se, the MDE floor no number of seeds goes below, and the seeds per arm that would bring its MDE to
    POWER_TARGET (NaN: the floor is above it, only more queries can), and its MDE with twice the seeds or queries."""
    need = p.seeds_for(POWER_TARGET)
    return {"se_queries": p.se_queries, "se_seeds": p.se_seeds, "mde_floor": p.floor,
            "seeds_for_target": float("nan") if need is None else float(need), "mde_2x_seeds": p.mde(2 * p.seeds),
            "mde_2x_queries": p.mde(query_factor=2.0)}


def _both(datasets: list[str]) -> list[tuple[str, list[str]]]:
    """(label, datasets) of each dataset alone, then of their mean when there are several."""
    return [(d, [d]) for d in datasets] + ([(MEAN, datasets)] if len(datasets) > 1 else [])


def _same_seeds(per_query: pd.DataFrame, sets: list[str], column: str, a: str, b: str) -> bool:
    """Whether arms a and b (values of `column`) ran the same training seeds on every dataset of `sets`: then
    seed s of both is one block (the trainer's seed and data order; `ifsr.eval.stats.paired_delta`)."""
    return all(seed_ids(per_query, d, **{column: a}) == seed_ids(per_query, d, **{column: b}) for d in sets)


def teacher_rows(table: pd.DataFrame, per_query: pd.DataFrame, n_boot: int = 10000) -> list[dict]:
    """Claims 2a, 2b, 3: the min-max ensemble's mean nDCG@10 minus each other teacher's, over seeds and queries."""
    out = []
    datasets = sorted(table["dataset"].unique())
    have = set(table["teacher"])
    for claim, other in (("2a", DENSE), ("2b", SPARSE), ("3", RAW_SUM)):
        if not {MINMAX, other} <= have:
            continue
        for label, sets in _both(datasets):
            a = [seed_matrix(per_query, d, teacher=MINMAX) for d in sets]
            b = [seed_matrix(per_query, d, teacher=other) for d in sets]
            paired = _same_seeds(per_query, sets, "teacher", MINMAX, other)
            s = paired_delta(a, b, n_boot=n_boot, paired_seeds=paired)
            ma, mb = np.mean([x.mean() for x in a]), np.mean([x.mean() for x in b])
            out.append(_row(claim, label, f"{ma:.4f} vs {mb:.4f}", s, seeds_paired=paired,
                            **_power(power_split(a, b, n_boot=n_boot, paired_seeds=paired, total=s))))
    return out


def sweep_rows(curve: pd.DataFrame, per_query: pd.DataFrame, headline: float | None, n_boot: int = 10000,
               n_boot_curve: int = 2000) -> list[dict]:
    """Claim 1 (the curves' gap over their common FLOPS range) and the headline model's rows (H1, H2)."""
    out = []
    datasets = sorted(curve["dataset"].unique())
    arms = set(curve["arm"])
    if {IDF_ARM, PLAIN_ARM} <= arms:
        for label, sets in _both(datasets):
            a = [curve_arrays(curve, per_query, d, IDF_ARM) for d in sets]
            b = [curve_arrays(curve, per_query, d, PLAIN_ARM) for d in sets]
            paired = _same_seeds(per_query, sets, "arm", IDF_ARM, PLAIN_ARM)
            s = curve_gap(a, b, n_boot=n_boot_curve, paired_seeds=paired)
            split = curve_power_split(a, b, n_boot=n_boot_curve, paired_seeds=paired, total=s)
            if len(sets) > 1:
                span = "mean of the datasets' gaps"
            else:  # the overlap of the two mean curves (geometric mean FLOPS over seeds per lambda)
                ranges = [np.exp(np.log(f).mean(axis=1)) for f, _ in (a[0], b[0])]
                lo, hi = max(r.min() for r in ranges), min(r.max() for r in ranges)
                span = f"mean gap over FLOPS {lo:.3g}–{hi:.3g}" if lo < hi else "the FLOPS ranges do not overlap"
            out.append(_row("1", label, span, s, seeds_paired=paired, **_power(split)))
    if headline is not None and IDF_ARM in arms:
        for claim, ref in (("H1", "bm25"), ("H2", "untrained")):
            if ref not in arms:
                continue
            for label, sets in _both(datasets):
                a = [seed_matrix(per_query, d, arm=IDF_ARM, **{"lambda": float(headline)}) for d in sets]
                b = [seed_matrix(per_query, d, arm=ref) for d in sets]
                s = paired_delta(a, b, n_boot=n_boot)
                ma, mb = np.mean([x.mean() for x in a]), np.mean([x.mean() for x in b])
                out.append(_row(claim, label, f"{ma:.4f} vs {mb:.4f} (λ={headline:g})", s, seeds=a[0].shape[0],
                                seeds_paired=False, **_power(power_split(a, b, n_boot=n_boot, total=s))))
    return out


def claim_rows(root: str | Path, headline: float | None = None, n_boot: int = 10000) -> pd.DataFrame:
    """Every claim's rows for a preset's results folder (`root` = results/<preset>); empty if nothing ran."""
    root = Path(root)
    rows: list[dict] = []
    teachers, tq = read_table(root / "teachers" / "table.csv"), read_table(root / "teachers" / "per_query.csv")
    if teachers is not None and tq is not None:
        rows += teacher_rows(teachers, tq, n_boot)
    curve, cq = read_table(root / "idf_flops" / "curve.csv"), read_table(root / "idf_flops" / "per_query.csv")
    if curve is not None and cq is not None:
        rows += sweep_rows(curve, cq, headline, n_boot)
    order = {c: i for i, c in enumerate(PAPER)}
    return pd.DataFrame(sorted(rows, key=lambda r: (order[r["claim"]], r["dataset"] == MEAN, r["dataset"])))


def _free(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["system"] == "inference-free"]


def latency_rows(table: pd.DataFrame) -> list[str]:
    """Claim 4's cell: per corpus size, the fastest inference-free setting (top-10 agreement >= 0.99)
    against the fastest BM25 of that size, with its interval over queries."""
    out = []
    free = _free(table)
    if "if_over_best_bm25" not in free:
        return out
    for docs, part in free.groupby("docs", sort=True):
        ok = part[part["top10_agreement"] >= MIN_AGREEMENT].dropna(subset=["if_over_best_bm25"])
        if ok.empty:
            out.append(f"{int(docs):,} docs: no setting agrees ≥ 0.99")
            continue
        r = ok.sort_values("if_over_best_bm25", kind="stable").iloc[0]
        out.append(f"{int(docs):,} docs: {r['if_over_best_bm25']:.2f}× [{r['if_over_best_bm25_lo']:.2f}, "
                   f"{r['if_over_best_bm25_hi']:.2f}] ({r['engine']} vs {r['best_bm25_engine']})")
    return out


def _reference_bm25(table: pd.DataFrame, engine: str, docs: int, resampled: int) -> str:
    """A sentence on the fastest BM25 the best ratio is measured against, when its own top-10 agreement
    with exact BM25 is below 0.99 or its nDCG@10 moved: on resampled corpora a copy ties its original, so an
    engine may return the copy, which is never judged relevant, with top-10 scores that all agree."""
    row = table[(table["system"] == "bm25") & (table["engine"] == engine) & (table["docs"] == docs)]
    if row.empty:
        return ""
    r = row.iloc[0]
    delta = r.get("delta_nDCG@10", 0.0)
    if r["top10_agreement"] >= MIN_AGREEMENT and not abs(delta) >= 0.0005:  # 0.0005: the change shows at 4 decimals
        return ""
    why = " (this corpus holds resampled copies, which tie with their originals)" if resampled else ""
    return (f"That BM25's own top-10 agreement with exact BM25 is {r['top10_agreement']:.3f}{why}, nDCG@10 change "
            f"{delta:+.4f}; against BM25 on the same engine the ratio is the second one. ")


def latency_section(table: pd.DataFrame | None, levers: pd.DataFrame | None = None,
                    folder: str = "latency", model: str | None = None) -> list[str]:
    """The report's latency section: the best ratio first, then every setting's ratios, then the levers."""
    title = "### Claim 4: inference-free latency is about 1.1× BM25 on an inverted index"
    if folder != "latency":
        title = f"### Claim 4 again, `{folder}`"
    lines = [title, ""]
    if table is None:
        return lines + [f"Not run for this preset (no {folder}/table.csv).", ""]
    if model:
        lines += [f"Document model: `{model}`.", ""]
    free = _free(table)
    largest = int(table["docs"].max())
    b = best_ratio(table)
    if b is not None:
        resampled = int(b["docs"]) - int(b.get("distinct_docs", b["docs"]))
        lines += [f"**Best ratio reached at {largest:,} documents** ({resampled:,} of them resampled copies): "
                  f"inference-free on `{b['engine']}` at {b['p50_ms']:.3f} ms p50 is {b['if_over_best_bm25']:.2f}× "
                  f"[{b['if_over_best_bm25_lo']:.2f}, {b['if_over_best_bm25_hi']:.2f}] the fastest BM25 "
                  f"(`{b['best_bm25_engine']}`) and {b['if_over_bm25']:.2f}× BM25 on its own engine; top-10 agreement "
                  f"{b['top10_agreement']:.3f} with exact scoring, nDCG@10 change {b['delta_nDCG@10']:+.4f}. "
                  + _reference_bm25(table, b["best_bm25_engine"], largest, resampled) +
                  f"Intervals: 95%, bootstrap over {_basis(b)}; against the paper's {PAPER_RATIO:.1f}×: "
                  f"{latency_verdict(b, 'if_over_best_bm25', paper=True)} (p {fmt_p(b.get('if_over_best_bm25_p_paper', float('nan')))}).", ""]
    else:
        lines += [f"No setting reached top-10 agreement ≥ 0.99 with exact scoring at {largest:,} documents.", ""]
    lines += ["| engine | docs | distinct | IF p50 ms | BM25 p50 ms (same engine) | IF / BM25 (same) | "
              "IF / fastest BM25 | siamese / IF | IF qps, 2 threads | IF index MB | top-10 agr. | ΔnDCG@10 |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    bm25 = table[table["system"] == "bm25"].set_index(["engine", "docs"])["p50_ms"]
    f = lambda v, spec: "–" if v != v else format(v, spec)  # noqa: E731  (NaN -> dash)
    for r in free.sort_values(["docs", "if_over_best_bm25"], kind="stable").to_dict("records"):
        same = bm25.get((r["engine"], r["docs"]), float("nan"))
        lines.append(f"| {r['engine']} | {int(r['docs']):,} | {int(r.get('distinct_docs', r['docs'])):,} | "
                     f"{r['p50_ms']:.3f} | {f(same, '.3f')} | {f(r.get('if_over_bm25', float('nan')), '.2f')}× | "
                     f"{f(r.get('if_over_best_bm25', float('nan')), '.2f')}× | "
                     f"{f(r.get('siamese_over_if', float('nan')), '.1f')}× | {r['qps_2threads']:.0f} | "
                     f"{f(r['index_mb'], '.1f')} | {r['top10_agreement']:.3f} | {f(r['delta_nDCG@10'], '+.4f')} |")
    lines += ["", "BM25 on PISA is PISA's own (porter2, k1 0.9, b 0.4); on the vector engines, bm25s's Lucene BM25 "
              "(k1 1.2, b 0.75) as impact vectors. `benchmarks/latency.py` prints the same ratios.", ""]
    if levers is not None and not levers.empty:
        lines += lever_lines(levers)
    return lines


def lever_lines(levers: pd.DataFrame) -> list[str]:
    """The latency section's levers: the fastest setting without a relevance cost shown, the fastest agreeing
    one, those under BM25's p50, then every row."""
    # Over 60 lines: the lever section's sentences and table rows, in reading order.
    f = lambda v, spec: "–" if v != v else format(v, spec)  # noqa: E731  (NaN -> dash)
    lines: list[str] = []
    lines += [f"**Levers** (inference-free on `{levers['engine'].iloc[0]}` unless the row names its engine, "
              f"{int(levers['docs'].iloc[0]):,} docs, against BM25 on `{levers['engine'].iloc[0]}`; nDCG@10 by exact "
              "scoring, an approximate engine's (Seismic, two-phase) by its own ranking on each set's corpus; "
              "Δ against the first row):", ""]
    free = fastest_free(levers) if "no_relevance_cost" in levers else None
    if free is not None:
        lines += [f"**Fastest setting whose nDCG@10 change interval holds 0 on both sets**: `{_lever_name(free)}` on "
                  f"`{free['engine']}`, {free['if_over_bm25']:.2f}× [{free['if_over_bm25_lo']:.2f}, "
                  f"{free['if_over_bm25_hi']:.2f}] BM25 (p {fmt_p(free.get('if_over_bm25_p', float('nan')))} against "
                  f"{GOAL_RATIO:.1f}×, {fmt_p(free.get('if_over_bm25_p_paper', float('nan')))} against "
                  f"{PAPER_RATIO:.1f}×), top-10 agreement {free['top10_agreement']:.3f}; nDCG@10 "
                  f"{_change(free, 'scifact')} on SciFact and {_change(free, 'cranfield')} on Cranfield. "
                  "Each engine's Pareto front is in the figure and the `pareto` column.", ""]
        if bool(free.get("approximate", False)):
            exact = fastest_free(levers[~levers["approximate"].astype(bool)])
            lines += [f"`{free['engine']}` is approximate: its nDCG@10 is its own ranking of each set's corpus (a few "
                      "thousand documents), while its top-10 agreement with exact scoring at "
                      f"{int(free['docs']):,} documents is {free['top10_agreement']:.3f}; the relevance it loses at "
                      "that size is not measured here (no judgments there). " + (
                          "No exact setting (top-10 agreement ≥ 0.99) shows no relevance cost." if exact is None else
                          f"The fastest exact one (top-10 agreement ≥ 0.99) without a relevance cost shown: "
                          f"`{_lever_name(exact)}` on `{exact['engine']}`, {exact['if_over_bm25']:.2f}× "
                          f"[{exact['if_over_bm25_lo']:.2f}, {exact['if_over_bm25_hi']:.2f}] BM25 (p "
                          f"{fmt_p(exact.get('if_over_bm25_p', float('nan')))} against {GOAL_RATIO:.1f}×, "
                          f"{fmt_p(exact.get('if_over_bm25_p_paper', float('nan')))} against {PAPER_RATIO:.1f}×); "
                          f"nDCG@10 {_change(exact, 'scifact')} on SciFact and {_change(exact, 'cranfield')} on "
                          "Cranfield."), ""]
    elif "no_relevance_cost" in levers:
        lines += ["No setting's nDCG@10 change interval holds 0 on both sets.", ""]
    best = best_lever(levers)
    if best is not None:
        hi = best["if_over_bm25_hi"]
        goal = ("lies below 1.0" if hi < 1.0 else "includes 1.0" if best["if_over_bm25_lo"] <= 1.0 else "lies above 1.0")
        lines += [f"Fastest lever setting with top-10 agreement ≥ 0.99 (the engine against exact scoring of the same "
                  f"pruned query and documents; the lever's own cost is its nDCG@10 change): `{_lever_name(best)}` at {best['p50_ms']:.3f} ms "
                  f"p50, {best['if_over_bm25']:.2f}× [{best['if_over_bm25_lo']:.2f}, {hi:.2f}] BM25 on the same engine "
                  f"(the goal, ≤ 1.0×: the interval {goal}){_postings_note(best)}; nDCG@10 {_change(best, 'scifact')} on SciFact and "
                  f"{_change(best, 'cranfield')} on Cranfield against the unpruned model. ≤ {GOAL_RATIO:.1f}× BM25: "
                  f"{latency_verdict(best)} (p {fmt_p(best.get('if_over_bm25_p', float('nan')))}; bootstrap over "
                  f"{_basis(best)}).", ""]
    under = goal_levers(levers)
    if under:
        lines += ["Settings under BM25's p50 on the same engine (IF/BM25 interval below 1.0, agreement ≥ 0.99), "
                  "fastest first, each with what it costs: " + "; ".join(
                      f"`{_lever_name(r)}` {r['if_over_bm25']:.2f}× [{r['if_over_bm25_lo']:.2f}, {r['if_over_bm25_hi']:.2f}] "
                      f"({latency_verdict(r)}), "
                      f"nDCG@10 {_change(r, 'scifact')} SciFact / {_change(r, 'cranfield')} Cranfield"
                      for r in under) + ". None is chosen by its nDCG@10: these are the test sets.", ""]
    elif best is not None:
        lines += ["No lever setting's IF/BM25 interval lies below 1.0.", ""]
    lines += ["| lever | engine | value | nDCG@10 SciFact (Δ [95%]) | nDCG@10 Cranfield (Δ [95%]) | p50 ms | IF / BM25 "
              f"| ≤ {GOAL_RATIO:.1f}× BM25 (p): verdict | top-10 agr. | Pareto | doc nnz | query terms |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    nan = float("nan")
    for r in levers.to_dict("records"):
        ratio = r.get("if_over_bm25", nan)
        ratio = "–" if ratio != ratio else (f"{ratio:.2f}× [{r.get('if_over_bm25_lo', nan):.2f}, "
                                            f"{r.get('if_over_bm25_hi', nan):.2f}]")
        front = {True: "front", False: "–"}.get(r.get("pareto"), "–")
        lines.append(f"| {r['lever']} | {r.get('engine', '–')} | {f(r['value'], 'g')} | {r['nDCG@10 scifact']:.4f} "
                     f"({_change(r, 'scifact')}) | {r['nDCG@10 cranfield']:.4f} ({_change(r, 'cranfield')}) | "
                     f"{r['p50_ms']:.3f} | {ratio} | ({fmt_p(r.get('if_over_bm25_p', nan))}): {latency_verdict(r)} | "
                     f"{f(r.get('top10_agreement', nan), '.3f')} | {front} | {r['doc_nnz']:.0f} | {r['query_terms']:.1f} |")
    lines.append("")
    if levers["lever"].astype(str).str.startswith("lambda").any():
        n = int(levers["seeds"].max()) if "seeds" in levers and levers["seeds"].notna().any() else 1
        which = "the sweep's first seed, the run of its curve" if n == 1 else f"the sweep's first {n} seeds, the runs of its curve, pooled"
        lines += [f"`lambda` rows: the idf-flops student trained at that FLOPS weight ({which}) in place of the unpruned "
                  "model, on the same documents; it was fine-tuned on SciFact train, so its SciFact row is in-domain, as "
                  "on the curve.", ""]
    lines += [f"Ratios: 95% intervals and two-sided p against {GOAL_RATIO:.1f}× from a bootstrap over training seeds "
              "(`lambda` rows), timing passes and queries (`ifsr.eval.stats.median_ratio`); holds / reversed: "
              f"p < {ALPHA:g} from ≥ {MIN_SEEDS} of each.", ""]
    return lines


def fastest_free(levers: pd.DataFrame, min_agreement: float = MIN_AGREEMENT) -> pd.Series | None:
    """The fastest lever row (p50 ratio to BM25) among those with no relevance cost shown on either set
    (`no_relevance_cost`, ifsr.exp.levers.pareto), an exact engine's row also agreeing >= `min_agreement` with
    exact scoring (its relevance is exact scoring's; an approximate engine's is its own ranking's); None: none."""
    if "no_relevance_cost" not in levers:
        return None
    approximate = levers["approximate"].astype(bool) if "approximate" in levers else False
    ok = levers[levers["no_relevance_cost"].astype(bool) & (approximate | (levers["top10_agreement"] >= min_agreement))]
    ok = ok.dropna(subset=["if_over_bm25"])
    return None if ok.empty else ok.sort_values("if_over_bm25", kind="stable").iloc[0]


def best_lever(levers: pd.DataFrame, min_agreement: float = MIN_AGREEMENT) -> pd.Series | None:
    """The lever row with the lowest p50 ratio to BM25 on its engine among those whose top-10 agrees
    >= `min_agreement` with exact scoring of the same vectors (None: no such row)."""
    if "if_over_bm25" not in levers or "top10_agreement" not in levers:
        return None
    ok = levers[levers["top10_agreement"] >= min_agreement].dropna(subset=["if_over_bm25"])
    return None if ok.empty else ok.sort_values("if_over_bm25", kind="stable").iloc[0]


def goal_levers(levers: pd.DataFrame, min_agreement: float = MIN_AGREEMENT) -> list[pd.Series]:
    """The lever rows that meet issue 14's goal, fastest first: the upper end of the IF/BM25 interval below 1.0
    and top-10 agreement >= `min_agreement` (never a choice among them by nDCG@10, which is measured on test)."""
    if "if_over_bm25_hi" not in levers or "top10_agreement" not in levers:
        return []
    ok = levers[(levers["top10_agreement"] >= min_agreement) & (levers["if_over_bm25_hi"] < 1.0)]
    return [r for _, r in ok.sort_values("if_over_bm25", kind="stable").iterrows()]


def _postings_note(r: pd.Series) -> str:
    """", reading 1.50× BM25's posting entries per query" when the lever table has both counts (PISA)."""
    free, bm25 = r.get("postings_per_query", float("nan")), r.get("bm25_postings_per_query", float("nan"))
    return "" if not (free == free and bm25 == bm25 and bm25 > 0) else f", reading {free / bm25:.2f}× BM25's posting entries per query"


def _change(r, dataset: str) -> str:
    """A lever row's nDCG@10 change on `dataset`, "-0.0202 [-0.0310, -0.0101]" with its paired interval over
    queries (a table made before the interval was kept shows the change alone)."""
    delta, lo, hi = (r.get(f"delta {dataset}{s}", float("nan")) for s in ("", " lo", " hi"))
    return f"{delta:+.4f}" + (f" [{lo:+.4f}, {hi:+.4f}]" if lo == lo and hi == hi else "")


def _lever_name(r: pd.Series) -> str:
    return str(r["lever"]) if r["value"] != r["value"] else f"{r['lever']}={r['value']:g}"


def fmt_p(p: float) -> str:
    return "–" if p is None or (isinstance(p, float) and math.isnan(p)) else (f"{p:.3g}" if p >= 0.001 else "< 0.001")
