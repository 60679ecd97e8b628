"""results/REPORT.md: each claim of the paper beside what this preset's runs show, with numbers.

Generated from the tables under results/<preset>/ (never typed by hand); a claim the runs do not
support is reported as such.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ifsr.exp.config import BaselinesConfig, LatencyConfig, load_config
from ifsr.report.claims import bars, idf_section, latency_section, significance, teacher_section
from ifsr.report.compare import across_sweeps, config_diff, read_config, seed_repeats


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None


def _best_anywhere(root: Path, repeats: list[dict], sweeps: tuple[list, list]) -> list[str]:
    """The best IDF-aware student of every sweep of this preset (the main one and its variants), against
    BM25 and against its own seed repeat; then Claim 1 counted over every sweep that ran both arms."""
    rows, lines = [], []
    for sub in sorted(root.glob("idf_flops*/curve.csv")):
        c = pd.read_csv(sub)
        rows += [{**r, "folder": sub.parent.name} for r in c[c["arm"] == "idf-flops"].to_dict("records")]
    matched, pareto = sweeps
    for ds in sorted({r["dataset"] for r in rows}):
        best = max((r for r in rows if r["dataset"] == ds), key=lambda r: r["nDCG@10"])
        line = (f"- {ds}: the best IDF-aware student of any sweep here is `{best['folder']}` λ={best['lambda']:g}: "
                f"nDCG@10 {best['nDCG@10']:.4f}, FLOPS {best['flops']:.3g}")
        if not pd.isna(best.get("bm25_nDCG@10", float("nan"))):
            line += (f"; vs BM25 {best['bm25_nDCG@10']:.4f}: {best['nDCG@10'] - best['bm25_nDCG@10']:+.4f}, "
                     f"{significance(best['p_value_vs_bm25'])}")
        seeds = {}  # training seed -> (folder, nDCG@10) of the same settings as the best run
        for r in repeats:
            if r["dataset"] == ds and r["arm"] == "idf-flops" and r["lambda"] == best["lambda"] \
                    and best["folder"] in r["folders"]:
                seeds.update({s: (f, v) for s, f, v in zip(r["seeds"], r["folders"], r["nDCG@10"])})
        if seeds:
            line += ("; the same settings by training seed: " + ", ".join(
                f"{s}: {v:.4f} (`{f}`)" for s, (f, v) in sorted(seeds.items()))
                + f", mean {sum(v for _, v in seeds.values()) / len(seeds):.4f}")
        lines.append(line + ".")
    if matched or pareto:
        wins = sum(g["gap"] > 0 for g in matched)
        won = sum(p["winner"] == "idf-flops" for p in pareto)
        lines.append(f"- Claim 1 over every sweep with both arms: {wins}/{len(matched)} IDF-aware points above the plain "
                     f"curve at matched FLOPS; {won} of {len(pareto)} Pareto pairs won by the IDF-aware arm.")
    return lines + [""] if lines else []


def _variant_line(root: Path, folder: str) -> str:
    """How a variant's configuration differs from the main sweep's (read from both config.yaml files)."""
    a, b = read_config(root / "idf_flops" / "config.yaml"), read_config(root / folder / "config.yaml")
    if a is None or b is None:
        return f"- `{folder}`: no config.yaml to compare with the main sweep's.\n"
    diff = [f"{k}: {x} → {y}" for k, x, y in config_diff(a, b)]
    return f"- Settings that differ from the main sweep: {'; '.join(diff) or 'none'}.\n"


def _seed_repeats(repeats: list[dict]) -> list[str]:
    lines = []
    for r in repeats:
        (fa, fb), (sa, sb), (va, vb), (xa, xb) = r["folders"], r["seeds"], r["nDCG@10"], r["flops"]
        lines.append(f"- {r['dataset']} {r['arm']} λ={r['lambda']:g}: seed {sa} (`{fa}`) {va:.4f} (FLOPS {xa:.3g}), "
                     f"seed {sb} (`{fb}`) {vb:.4f} (FLOPS {xb:.3g}): Δ {vb - va:+.4f} from the training seed alone; "
                     f"mean of the two {(va + vb) / 2:.4f}.")
    if not lines:
        return []
    return ["## Seed repeats: the same settings with another training seed", ""] + lines + [""]


def _why(root: Path, curve: pd.DataFrame | None, teachers: pd.DataFrame | None, base: pd.DataFrame | None,
         repeats: list[dict], matched: list[dict]) -> list[str]:
    """What these runs suggest about a claim the runs do not support, from the tables and configs (never typed)."""
    lines = ["## Why a claim may not hold here (read from the tables and configs above)", ""]
    cfg_path = root / "teachers" / "config.yaml"
    cfg = read_config(cfg_path)
    if base is not None:
        for ds in sorted(base["dataset"].unique()):
            b = base[base["dataset"] == ds].set_index("system")["nDCG@10"]
            if {"dense-teacher", "sparse-teacher", "ensemble-minmax"} <= set(b.index):
                lines.append(f"- {ds}: as retrievers, the min-max ensemble of the teachers ({b['ensemble-minmax']:.4f}) is "
                             f"above each teacher (dense {b['dense-teacher']:.4f}, sparse {b['sparse-teacher']:.4f}): the "
                             "targets are better, so a student that does not gain from them is limited by what it "
                             "learns from them in this budget, not by the targets.")
    if cfg is not None and cfg.get("sparse_teacher") == cfg.get("train", {}).get("student"):
        lines.append(f"- The sparse teacher (`{cfg['sparse_teacher']}`) is also the students' start: its half of the "
                     "ensemble mostly restates what the student already scores, and the dense teacher is the only new "
                     "signal (the paper's sparse teacher is a separate, stronger siamese model).")
    if curve is not None and "student_temperature" in curve:
        taus = curve.dropna(subset=["student_temperature"]).groupby("arm")["student_temperature"].first()
        if taus.nunique() > 1:
            lines.append("- The two FLOPS arms trained at different calibrated student temperatures ("
                         + ", ".join(f"{a} τ {t:.3g}" for a, t in taus.items())
                         + "), since their query weights give scores of different scale: each arm's λ buys a different "
                         "FLOPS, and the arms are compared at matched FLOPS by interpolation, between few points.")
    if cfg is not None:
        t = cfg.get("train", {})
        noise = ""
        if teachers is not None and "ensemble-minmax" in set(teachers["teacher"]):
            ens = teachers[teachers["teacher"] == "ensemble-minmax"].set_index("dataset")["nDCG@10"]
            gaps = [abs(ens[r["dataset"]] - r["nDCG@10"]) for _, r in teachers.iterrows()
                    if r["teacher"] != "ensemble-minmax" and r["p_value_vs_ensemble_minmax"] >= 0.05]
            if gaps:
                noise = (f"; in the teacher table a gap of up to {max(gaps):.4f} nDCG@10 is not significant "
                         "(paired randomization, p ≥ 0.05)")
        lines.append(f"- Budget: {t.get('steps')} fine-tuning steps of {t.get('batch_size')} queries, "
                     f"pre-training pairs per source: {cfg.get('pretrain_pairs', 0)}, one seed{noise}.")
    spread = [abs(r["nDCG@10"][1] - r["nDCG@10"][0]) for r in repeats]
    if spread:
        gaps = [abs(g["gap"]) for g in matched]
        small = (f"; {sum(g < max(spread) for g in gaps)} of the {len(gaps)} matched-FLOPS gaps between the arms, "
                 "over every sweep, are smaller than that, so one seed per arm cannot order them") if gaps else ""
        lines.append(f"- Seed noise: the training seed alone moved nDCG@10 by up to {max(spread):.4f} (seed repeats "
                     f"above){small}.")
    return lines + [""]


def _caveats(root: Path, repeats: list[dict]) -> list[str]:
    """What limits these runs, read from the configs written beside the tables."""
    lines = ["## Reading these numbers", ""]
    seeds = " (a repeat with another training seed is in the seed-repeats section)" if repeats else \
        ": variation across seeds was not measured"
    ab = root / "idf_flops" / "config.yaml"
    bl = root / "baselines" / "config.yaml"
    if ab.is_file():
        c = read_config(ab)
        t = c["train"]
        lines.append(f"- Students: {t['student']}, {t['steps']} steps x {t['batch_size']} queries x (1 + {t['n_neg']}) "
                     f"documents, training length {t['max_length']}, evaluation length {c['eval_max_length']}; "
                     f"pre-training pairs per source: {c.get('pretrain_pairs', 0)}; student temperature "
                     f"{t.get('student_temperature', 1.0)} (the value each run resolved is in the curve's "
                     f"`student_temperature` column). One seed per arm{seeds}, "
                     f"and the paired p-values show how small the differences are; a claim 'not distinguishable' at "
                     f"this budget is weak evidence either way.")
        lines.append("- The `untrained` row of the curve is the start under the students' own evaluation settings; "
                     "compare students with it, not with the baselines table, when the lengths differ.")
        t2 = read_config(root / "teachers" / "config.yaml")
        if t2 is not None:
            differ = [k for k, _, _ in config_diff(read_config(ab), t2)
                      if k.startswith("train.") or k in ("eval_max_length", "teacher_lambda")]
            if differ:
                commit = json.loads((root / "teachers" / "manifest.json").read_text()).get("git", {}).get("commit", "?")
                lines.append(f"- The teacher ablation is an earlier run (commit `{commit[:10]}`) with another recipe than "
                             f"the λ sweep (differing: {', '.join(differ)}): {t2['train']['steps']} steps, "
                             f"evaluation length {t2['eval_max_length']}, student temperature "
                             f"{t2['train'].get('student_temperature', 1.0)}. Compare its arms with each other only.")
    if bl.is_file() and ab.is_file():
        b = load_config(BaselinesConfig, bl)
        if b.max_length != c["eval_max_length"]:
            lines.append(f"- The baselines were evaluated at length {b.max_length}, the students at "
                         f"{c['eval_max_length']}: the Bars section compares across that difference.")
    return lines + [""]


def write_report(results_root: str | Path, preset: str) -> Path:
    root = Path(results_root) / preset
    curve = _read(root / "idf_flops" / "curve.csv")
    teachers = _read(root / "teachers" / "table.csv")
    base = _read(root / "baselines" / "table.csv")
    latency = _read(root / "latency" / "table.csv")
    quality = _read(root / "latency" / "quality" / "table.csv")
    variants = []
    for sub in sorted(root.glob("latency_*/table.csv")):  # the latency notebook again, other parameters
        config = sub.parent / "config.yaml"
        model = load_config(LatencyConfig, config).model if config.is_file() else None
        variants += latency_section(pd.read_csv(sub), _read(sub.parent / "quality" / "table.csv"), sub.parent.name,
                                     model)
    for sub in sorted(root.glob("idf_flops_*/curve.csv")):  # the sweep again with other training settings
        folder = sub.parent.name
        curve_v = pd.read_csv(sub)
        variants += idf_section(curve_v, f"### Claim 1 again, `{folder}`") + [_variant_line(root, folder)]
        variants += bars(curve_v, base, f"### Bars again, `{folder}`")
    commits = {}
    for m in sorted(root.glob("*/manifest.json")):
        commits[m.parent.name] = json.loads(m.read_text()).get("git", {}).get("commit")
    lines = [f"# Replication report — preset `{preset}`", "",
             "Generated by `ifsr.report.report.write_report` from the tables beside this file; every number below "
             "comes from those files. Commits that produced them: "
             + ", ".join(f"{k}: `{(v or '?')[:10]}`" for k, v in commits.items()), ""]
    repeats, sweeps = seed_repeats(root), across_sweeps(root)  # read once, used by several sections
    best_any = _best_anywhere(root, repeats, sweeps)
    lines += (idf_section(curve) + teacher_section(teachers) + bars(curve, base) + best_any
              + latency_section(latency, quality)
             + variants + _seed_repeats(repeats) + _why(root, curve, teachers, base, repeats, sweeps[0])
             + _caveats(root, repeats))
    path = root / "REPORT.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_index(results_root)
    return path


def write_index(results_root: str | Path) -> Path:
    """results/REPORT.md: every preset's report, real presets first (smoke checks plumbing only)."""
    root = Path(results_root)
    order = {"gpu": 0, "cpu": 1, "smoke": 9}
    parts = sorted(root.glob("*/REPORT.md"), key=lambda p: (order.get(p.parent.name, 5), p.parent.name))
    text = "\n\n".join(p.read_text(encoding="utf-8").replace("# Replication report", "## Replication report", 1)
                       .replace("\n## ", "\n### ") for p in parts)
    index = root / "REPORT.md"
    index.write_text("# ifsr replication reports\n\nThe `smoke` preset exercises the code path on a slice; "
                     "its numbers are not a replication.\n\n" + text, encoding="utf-8")
    return index
