"""results/<preset>/REPORT.md: the verdict table first, the figures under it, the why, then the details.

Generated from the protocol's tables under results/<preset>/ (never typed by hand): the verdicts from
`ifsr.report.claims.claim_rows` (two-level bootstrap over seeds and queries; each with its minimum
detectable effect at 80% power from the same bootstrap), every other number from
the tables and configs beside it. results/REPORT.md indexes the presets in a few lines.
"""
# Over 300 lines: the report's sections in reading order, each a short function.
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ifsr.core.names import IDF_ARM, MINMAX, RAW_SUM
from ifsr.exp.config import LatencyConfig, load_config, read_config
from ifsr.report.claims import (MEAN, PAPER_RATIO, POWER_TARGET, claim_rows, fmt_p, latency_claims, latency_section,
                                 verdict_cell)
from ifsr.tables import read_table

FOLDERS = ("baselines", "teachers", "idf_flops", "latency")  # the protocol's folders, then its latency_<variant>s
FIGURES = (("idf_flops/curve.png", "sparsity–relevance curves (stage 2), mean ± sd over seeds"),
           ("teachers/teachers.png", "teacher ablation (stage 1, zero-shot), 95% CI over seeds and queries"),
           ("idf_flops/training.png", "training curves: loss terms and λ_t per step"),
           ("latency/latency.png", "latency against corpus size, per engine setting and system"))
LEVER_FIGURE = ("nDCG@10 change against the ratio to BM25, Pareto fronts",  # made with its table's Pareto columns
                "nDCG@10 against p50")  # a figure made before them (its table has none)


def _folders(root: Path) -> list[str]:
    """The folders the report reads: the protocol's, then each latency variant (latency_<variant>/)."""
    return list(FOLDERS) + sorted(p.parent.name for p in root.glob("latency_*/manifest.json"))


def _manifest(root: Path, folder: str) -> dict:
    path = root / folder / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _verdicts(claims: pd.DataFrame, latency: list[dict]) -> list[str]:
    lines = ["## Verdicts", "",
             "Each statistic is a difference of nDCG@10 in the paper's direction (> 0: as the paper says), with a "
             "two-level bootstrap over training seeds and queries (95% interval, two-sided p; `ifsr.eval.stats`). "
             "Arms that ran the same training seeds (the teachers; the two FLOPS arms) draw them together, as they "
             "draw the queries together: a seed fixes the student's new parameters and the data order in every arm, "
             "so its runs move together (seeds column: paired). "
             "holds / reversed: p < 0.05 from ≥ 3 seeds; not distinguishable: p ≥ 0.05. Claim 4's statistic is a p50 "
             f"ratio, inference-free / BM25, against the paper's {PAPER_RATIO:.1f}× (holds: significantly below it), with a "
             "bootstrap over training seeds, timing passes and queries; its holds / reversed need ≥ 3 of each. "
             + _mde_sentence(claims), "",
             "| claim | compared | the paper | dataset | here | Δ (95% CI) | p | seeds | MDE (80%) | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    last = None
    for r in claims.to_dict("records"):
        same = r["claim"] == last
        last = r["claim"]
        ci = "–" if math.isnan(r["ci_low"]) else f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
        delta = "–" if math.isnan(r["delta"]) else f"{r['delta']:+.4f}"
        mde = r.get("mde", float("nan"))
        paired = r.get("seeds_paired", False)
        seeds = f"{r['seeds']} paired" if paired == paired and bool(paired) else f"{r['seeds']}"  # NaN: an older table
        data = f"**{r['dataset']}**" if r["dataset"] == MEAN else r["dataset"]
        lines.append(f"| {'' if same else r['claim']} | {'' if same else r['compared']} | {'' if same else r['paper']} "
                     f"| {data} | {r['here']} | {delta} {ci} | {fmt_p(r['p'])} | {seeds} | "
                     f"{'–' if math.isnan(mde) else f'{mde:.4f}'} | {verdict_cell(r['verdict'], mde)} |")
    if claims.empty:
        lines.append("| – | no protocol tables (teachers/, idf_flops/ with per_query.csv) | | | | | | | | |")
    for i, r in enumerate(latency):
        lines.append(f"| {'' if i else '4'} | {r['compared']} | {'' if i else f'≈ {PAPER_RATIO:.1f}×'} | – | {r['here']} | – | "
                     f"{fmt_p(r['p'])} | {r['basis']} | – | {r['verdict']} |")
    return lines + [""]


def _power_lines(claims: pd.DataFrame) -> list[str]:
    """What more training seeds or evaluation queries would buy each mean row with a power split: its MDE now,
    the floor of infinitely many seeds (the queries' part alone), the seeds per arm for MDE <= POWER_TARGET, and
    the MDE with twice the seeds or twice the queries (`ifsr.eval.stats.power_split`, `curve_power_split`)."""
    if "mde_floor" not in claims:
        return []
    rows = claims[(claims["dataset"] == MEAN) & claims["mde_floor"].notna()] if (claims["dataset"] == MEAN).any() \
        else claims[claims["mde_floor"].notna()]
    if rows.empty:
        return []
    lines = ["## Power: what more seeds or queries would buy", "",
             f"Each paired row's bootstrap standard error split into the queries' part (seeds averaged first) and the "
             f"training seeds' part (the rest); the seed part's variance scales as 1/seeds, the queries' as 1/queries "
             f"(approximate: 3 seeds make a coarse bootstrap; rougher for Claim 1, whose curve gap is not linear in a "
             f"seed's points). Target: MDE ≤ {POWER_TARGET:.3f}.", "",
             f"| claim | dataset | seeds | MDE now | floor (∞ seeds) | seeds per arm for ≤ {POWER_TARGET:.3f} | "
             "MDE with 2× seeds | MDE with 2× queries |", "|---|---|---|---|---|---|---|---|"]
    for r in rows.to_dict("records"):
        need = r["seeds_for_target"]
        need = (f"none: the floor is above {POWER_TARGET:.3f}" if need != need else
                f"{int(need)}" + (" (met now)" if need <= r["seeds"] else ""))
        seeds2 = r.get("mde_2x_seeds", float("nan"))
        seeds2 = "–" if seeds2 != seeds2 else f"{seeds2:.4f}"  # an older verdict table has no such column
        lines.append(f"| {r['claim']} | {r['dataset']} | {r['seeds']} | {r['mde']:.4f} | {r['mde_floor']:.4f} | {need} | "
                     f"{seeds2} | {r['mde_2x_queries']:.4f} |")
    return lines + [""]


def _mde_sentence(claims: pd.DataFrame) -> str:
    """What the MDE column means, against the size of effect the paper reports, with the range of this run's
    not distinguishable rows (their means over datasets when there are any; from the table)."""
    text = ("MDE (80%): the minimum detectable effect, the smallest true difference this test would call significant "
            "4 times in 5 (two-sided α 0.05, power 0.8): 2.8 × the standard error of the same bootstrap (`se`, `mde` in "
            "verdicts.csv); the paper's effects are a point or two of nDCG@10 (0.01–0.02), so a not distinguishable "
            "whose MDE is above such an effect does not rule it out (the test would miss it more than 1 time in 5).")
    if "mde" in claims:
        nd = claims[(claims["verdict"] == "not distinguishable") & claims["mde"].notna()]
        mean = nd[nd["dataset"] == MEAN]
        rows, which = (mean, "not distinguishable mean rows'") if len(mean) else (nd, "not distinguishable rows'")
        if len(rows):
            text += f" Here the {which} MDE runs from {rows['mde'].min():.4f} to {rows['mde'].max():.4f}."
    return text


def _lever_caption(folder: Path) -> str:
    """The lever figure's caption as the figure beside `folder/levers/table.csv` was drawn: the Pareto figure
    when its table has the Pareto columns, else the older nDCG@10-against-p50 figure."""
    table = folder / "levers" / "table.csv"
    header = table.open(encoding="utf-8").readline().rstrip("\n").split(",") if table.is_file() else []
    return LEVER_FIGURE[0] if "pareto" in header else LEVER_FIGURE[1]


def _figures(root: Path) -> list[str]:
    lines = []
    levers = [(f"{p.parent.parent.name}/levers/levers.png",
               ("pruning levers" if p.parent.parent.name == "latency" else f"levers of `{p.parent.parent.name}`")
               + ": " + _lever_caption(p.parent.parent)) for p in sorted(root.glob("latency*/levers/levers.png"))]
    for rel, what in list(FIGURES) + levers:
        if (root / rel).is_file():
            lines += [f"**{what}** (`{rel}`)", "", f"![{what}]({rel})", ""]
    return lines


def _mean_table(table: pd.DataFrame, keys: list[str]) -> list[str]:
    """mean ± sd over seeds of nDCG@10 and FLOPS per `keys` (the seed rows of a protocol table)."""
    g = table.groupby(keys, dropna=False, sort=False)
    agg = g.agg(n=("nDCG@10", "size"), ndcg=("nDCG@10", "mean"), sd=("nDCG@10", "std"), flops=("flops", "mean"),
                nnz=("doc_nnz", "mean")).reset_index()
    head = "| " + " | ".join(keys) + " | seeds | nDCG@10 mean ± sd | FLOPS | doc non-zeros |"
    lines = [head, "|" + "---|" * (len(keys) + 4)]
    for r in agg.to_dict("records"):
        sd = "" if pd.isna(r["sd"]) else f" ± {r['sd']:.4f}"
        flops = "–" if pd.isna(r["flops"]) else f"{r['flops']:.3g}"
        nnz = "–" if pd.isna(r["nnz"]) else f"{r['nnz']:.0f}"
        vals = " | ".join("" if pd.isna(r[k]) else (f"{r[k]:g}" if isinstance(r[k], float) else str(r[k])) for k in keys)
        lines.append(f"| {vals} | {r['n']} | {r['ndcg']:.4f}{sd} | {flops} | {nnz} |")
    return lines + [""]


def _why(teachers: pd.DataFrame | None, curve: pd.DataFrame | None, base: pd.DataFrame | None,
         cfg: dict | None) -> list[str]:
    """Short lines read from the tables and configs that bear on the verdicts (never typed numbers)."""
    lines = ["## Why the verdicts may differ from the paper", ""]
    spreads = []
    for name, t, keys in (("teacher", teachers, ["dataset", "teacher"]), ("sweep", curve, ["dataset", "arm", "lambda"])):
        if t is not None and "seed" in t:
            sd = t[t["seed"] >= 0].groupby(keys, dropna=False)["nDCG@10"].std().dropna()
            if len(sd):
                spreads.append(f"{name} arms up to {sd.max():.4f} (median {sd.median():.4f})")
    if spreads:
        lines.append("- Seed noise: the sd of nDCG@10 over training seeds of one arm reaches " + "; ".join(spreads)
                     + ". A gap smaller than that needs many queries and seeds to show.")
    if teachers is not None:
        start = teachers[teachers["teacher"] == "untrained"].set_index("dataset")
        trained = teachers[teachers["teacher"] != "untrained"].groupby("dataset")[["flops", "nDCG@10"]].mean()
        for ds in trained.index.intersection(start.index):
            lines.append(f"- Stage 1 on {ds}: FLOPS {start.loc[ds, 'flops']:.3g} untrained → {trained.loc[ds, 'flops']:.3g} "
                         f"(mean of every teacher arm), nDCG@10 {start.loc[ds, 'nDCG@10']:.4f} → "
                         f"{trained.loc[ds, 'nDCG@10']:.4f}.")
    if base is not None:
        for ds in sorted(base["dataset"].unique()):
            b = base[base["dataset"] == ds].set_index("system")["nDCG@10"]
            if {"dense-teacher", "sparse-teacher", MINMAX} <= set(b.index):
                lines.append(f"- {ds}, the teachers as retrievers: min-max ensemble {b['ensemble-minmax']:.4f}, dense "
                             f"{b['dense-teacher']:.4f}, sparse {b['sparse-teacher']:.4f}"
                             + (f", raw sum {b[RAW_SUM]:.4f}" if RAW_SUM in b.index else "")
                             + ": the targets' ranking quality, before any student learns from them.")
    if curve is not None and "arm" in curve:
        arms = set(curve["arm"].astype(str))
        if any(a.startswith("stage-1 start (") for a in arms):
            lines.append("- Claim 1's design: each FLOPS arm applies through both stages. A stage-2 run starts from a "
                         "stage-1 min-max student pre-trained with its own arm's FLOPS and its own training seed (the "
                         "IDF-aware starts are the teacher ablation's runs), so the gap between the curves is the arms' "
                         "whole effect and the bootstrap over seeds carries both stages' variance.")
        elif "stage-1 start" in arms:
            lines.append("- Claim 1's design (these tables): both arms fine-tune from one IDF-aware stage-1 student "
                         "(seeds[0]), so the plain arm is an IDF-aware model with plain-FLOPS steps on top, and the seed "
                         "spread leaves stage 1 out: the gap can hardly show whatever the truth is.")
    lines += _h2_start(curve, base, cfg)
    if cfg is not None:
        if cfg.get("sparse_teacher") == cfg.get("train", {}).get("student"):
            lines.append(f"- The sparse teacher (`{cfg['sparse_teacher']}`) is also the students' start: its half of "
                         "the ensemble mostly restates what the student already scores (the paper's sparse teacher is a "
                         "separate, stronger siamese model).")
        lines.append(f"- Scale: {cfg.get('pretrain_pairs')} pairs per source and {cfg.get('pretrain_steps')} stage-1 "
                     f"steps, {cfg['train']['steps']} stage-2 steps of {cfg['train']['batch_size']} queries; the paper "
                     "pre-trains on millions of pairs. Stage 2 trains on SciFact train: its SciFact rows are in-domain, "
                     "its Cranfield rows zero-shot.")
    return lines + [""]


def _h2_start(curve: pd.DataFrame | None, base: pd.DataFrame | None, cfg: dict | None) -> list[str]:
    """H2's headroom per dataset: the untrained start against BM25 and the min-max teacher, and what the
    replication's model (mean over seeds) adds to it; [] without the sweep's untrained and headline rows."""
    lam = None if cfg is None else cfg.get("headline_lambda")
    if curve is None or lam is None or "arm" not in curve:
        return []
    out = []
    for ds in sorted(curve["dataset"].unique()):
        part = curve[curve["dataset"] == ds]
        start = part[part["arm"] == "untrained"]["nDCG@10"]
        bm25 = part[part["arm"] == "bm25"]["nDCG@10"]
        model = part[(part["arm"] == IDF_ARM) & ((part["lambda"] - float(lam)).abs() <= 1e-12)]["nDCG@10"]
        if not (len(start) and len(model)):
            continue
        teacher = None
        if base is not None:
            b = base[(base["dataset"] == ds) & (base["system"] == MINMAX)]["nDCG@10"]
            teacher = float(b.iloc[0]) if len(b) else None
        out.append(f"- H2 on {ds}: the untrained start is already a retrieval-trained model, {start.iloc[0]:.4f}"
                   + (f" (BM25 {bm25.iloc[0]:.4f}" if len(bm25) else " (")
                   + (f", the min-max teacher {teacher:.4f}" if teacher is not None else "") + "); "
                   f"the replication's model adds {model.mean() - start.iloc[0]:+.4f} (mean over {len(model)} seeds). "
                   "The room left is the gap to the teacher; a gain shows only above H2's MDE (the verdict table).")
    return out


def _details(root: Path, cfg: dict | None, teachers: pd.DataFrame | None, curve: pd.DataFrame | None,
             base: pd.DataFrame | None) -> list[str]:
    lines = ["## Details", ""]
    if cfg is not None:
        t = cfg["train"]
        own = curve is not None and "arm" in curve and curve["arm"].astype(str).str.startswith("stage-1 start (").any()
        start = "its own FLOPS arm and seed" if own else f"seed {cfg['seeds'][0]}"
        lines.append(f"- Protocol (`idf_flops/config.yaml`, `teachers/config.yaml`): student {t['student']}; stage 1: "
                     f"{cfg.get('pretrain_pairs')} pairs per source, {cfg.get('pretrain_steps')} steps, IDF-aware FLOPS "
                     f"λ {cfg.get('teacher_lambda')}, teachers {', '.join(cfg.get('teachers', []))}; stage 2: "
                     f"{t['steps']} steps on {cfg.get('train_dataset')} train"
                     + (f" less {cfg['dev_queries']} dev queries (held out: settings are chosen on them)"
                        if cfg.get("dev_queries") else "") +
                     f", from the stage-1 min-max student of {start}, λ {cfg.get('lambdas')}, arms "
                     f"{', '.join(cfg.get('arms', []))}; "
                     f"{t['batch_size']} queries × (1 + {t['n_neg']}) documents per step"
                     + (f" in stage 1, × (1 + {cfg['finetune_n_neg']}) in stage 2" if cfg.get("finetune_n_neg") is not None
                        and cfg["finetune_n_neg"] != t["n_neg"] else "") + ", training length "
                     f"{t['max_length']}, evaluation length {cfg.get('eval_max_length')} for every row; seeds "
                     f"{cfg.get('seeds')}; the replication's model: IDF-aware λ {cfg.get('headline_lambda')} (named in the "
                     "config before the runs).")
    if curve is not None and "doc_nnz_docs" in curve and curve["doc_nnz_docs"].notna().any():
        lines.append("- Evaluation: exact retrieval with the documents encoded only on the evaluation queries' vocabulary "
                     "(the runs, nDCG@10, R@100 and FLOPS of the full vectors); doc nnz is the mean over the full vectors "
                     f"of a fixed sample of {int(curve['doc_nnz_docs'].max())} documents per set.")
    times = []
    for folder in _folders(root):
        m = _manifest(root, folder)
        if m.get("wall_seconds"):
            times.append(f"{folder} {m['wall_seconds'] / 60:.1f} min")
    for name, t in (("stage-1 training", teachers), ("stage-2 training", curve)):
        if t is not None and "train_seconds" in t:
            runs = t.dropna(subset=["train_seconds"]).drop_duplicates("model")
            if name == "stage-2 training":
                runs = runs[~runs["arm"].astype(str).str.startswith("stage-1 start")]
            if len(runs):
                times.append(f"{name} {runs['train_seconds'].sum() / 60:.1f} min over {len(runs)} runs")
    if times:
        lines.append("- Wall time (this run's manifests and training logs): " + "; ".join(times) + ".")
    commits = {f: _manifest(root, f).get("git", {}).get("commit") for f in _folders(root) if _manifest(root, f)}
    if commits:
        distinct = sorted({(c or "?")[:10] for c in commits.values()})
        lines.append(f"- Made at commit{'s' if len(distinct) > 1 else ''} " + ", ".join(f"`{c}`" for c in distinct)
                     + ("" if len(distinct) == 1 else " (" + ", ".join(f"{f}: `{(c or '?')[:10]}`"
                                                                     for f, c in commits.items()) + ")") + ".")
    lines.append("")
    if teachers is not None:
        lines += ["### Stage 1: teachers (zero-shot)", ""] + _mean_table(teachers, ["dataset", "teacher"])
    if curve is not None:
        lines += ["### Stage 2: the λ sweep", ""] + _mean_table(curve, ["dataset", "arm", "lambda"])
    if base is not None:
        cols = [c for c in ("dataset", "system", "nDCG@10", "R@100", "flops") if c in base]
        lines += ["### Baselines", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(("–" if math.isnan(v) else f"{v:.4g}") if isinstance(v, float) else str(v) for v in r) + " |"
                  for r in base[cols].itertuples(index=False)] + [""]
    return lines


def _latency_configs(root: Path) -> dict[str, LatencyConfig]:
    """Each latency folder's (latency/, latency_<variant>/) LatencyConfig, by folder name."""
    return {p.parent.name: load_config(LatencyConfig, p) for p in sorted(root.glob("latency*/config.yaml"))}


def _latency_variants(root: Path, configs: dict[str, LatencyConfig]) -> list[str]:
    """A latency section per variant of the latency notebook (`03_latency@<variant>`: latency_<variant>/)."""
    lines = []
    for table in sorted(root.glob("latency_*/table.csv")):
        cfg = configs.get(table.parent.name)
        model = f"{cfg.model}, documents cut at {cfg.max_length} tokens" if cfg else None
        lines += latency_section(read_table(table), read_table(table.parent / "levers" / "table.csv"),
                                 folder=table.parent.name, model=model)
    return lines


def write_report(results_root: str | Path, preset: str, n_boot: int = 10000) -> Path:
    root = Path(results_root) / preset
    cfg = read_config(root / "idf_flops" / "config.yaml") or read_config(root / "teachers" / "config.yaml")
    claims = claim_rows(root, headline=(cfg or {}).get("headline_lambda"), n_boot=n_boot)
    teachers, curve = read_table(root / "teachers" / "table.csv"), read_table(root / "idf_flops" / "curve.csv")
    base, latency = read_table(root / "baselines" / "table.csv"), read_table(root / "latency" / "table.csv")
    lines = [f"# Replication report — preset `{preset}`", "",
             "Generated by `ifsr.report.report.write_report` from the tables beside this file (every number comes "
             "from them); the run details are at the end.", ""]
    variants = {t.parent.name: read_table(t.parent / "levers" / "table.csv") for t in sorted(root.glob("latency*/table.csv"))}
    latency_cfgs = _latency_configs(root)
    lengths = {folder: c.max_length for folder, c in latency_cfgs.items()}
    lines += _verdicts(claims, latency_claims(latency, variants, (cfg or {}).get("headline_lambda"), lengths))
    lines += _figures(root) + _why(teachers, curve, base, cfg)
    lines += _power_lines(claims)
    lines += _details(root, cfg, teachers, curve, base)
    if latency is not None:
        lines += latency_section(latency, read_table(root / "latency" / "levers" / "table.csv"))
    lines += _latency_variants(root, latency_cfgs)
    path = root / "REPORT.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if not claims.empty:
        claims.to_csv(root / "verdicts.csv", index=False)
    write_index(results_root)
    return path


def write_index(results_root: str | Path) -> Path:
    """results/REPORT.md: a few lines per preset (its verdicts in one line each, with their minimum detectable
    effect at 80% power where verdicts.csv has it), linking its report."""
    root = Path(results_root)
    order = {"gpu": 0, "gpu-quick": 1, "cpu": 2, "smoke": 9}
    lines = ["# ifsr replication reports", "",
             "One report per preset; the `smoke` preset exercises the protocol on slices, its numbers are not a "
             "replication. MDE: a verdict's minimum detectable effect, the smallest true difference its test would call "
             "significant 4 times in 5 (2.8 × its bootstrap standard error).", ""]
    for rep in sorted(root.glob("*/REPORT.md"), key=lambda p: (order.get(p.parent.name, 5), p.parent.name)):
        lines.append(f"## [{rep.parent.name}]({rep.parent.name}/REPORT.md)")
        lines.append("")
        verdicts = rep.parent / "verdicts.csv"
        if verdicts.is_file():
            v = pd.read_csv(verdicts)
            for claim, part in v.groupby("claim", sort=False):
                per = "; ".join(f"{r['dataset']}: {r['verdict']} (Δ {r['delta']:+.4f}, p {fmt_p(r['p'])}"
                                + ("" if pd.isna(r.get("mde", float("nan"))) else f", MDE {r['mde']:.4f}") + ")"
                                for r in part.to_dict("records"))
                lines.append(f"- Claim {claim} ({part['compared'].iloc[0]}): {per}")
        else:
            lines.append("- no verdicts (no protocol tables)")
        lines.append("")
    index = root / "REPORT.md"
    index.write_text("\n".join(lines), encoding="utf-8")
    return index
