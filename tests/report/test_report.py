"""The report states each claim's numbers and verdict from the tables and configs (checked by
tokens on a line, never by whole sentences)."""
import pandas as pd
import pytest
import yaml

from ifsr.report.report import write_report


def lines_with(text: str, *tokens: str) -> list[str]:
    """The report's lines holding every token."""
    return [line for line in text.splitlines() if all(t in line for t in tokens)]


def section(text: str, heading: str) -> str:
    """From a heading's line up to the next heading of the same level or above."""
    part = text.split(heading, 1)[1]
    return part.split("\n## ", 1)[0]


def _curve(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


PLAIN = [{"dataset": "d", "arm": "flops", "lambda": 1.0, "flops": 1.0, "nDCG@10": 0.50},
         {"dataset": "d", "arm": "flops", "lambda": 0.1, "flops": 100.0, "nDCG@10": 0.70}]


def test_report_states_verdicts_from_tables(tmp_path):
    root = tmp_path / "results"
    _curve(root / "p" / "idf_flops" / "curve.csv", PLAIN + [
        {"dataset": "d", "arm": "idf-flops", "lambda": 0.5, "flops": 10.0, "nDCG@10": 0.55, "p_value_vs_bm25": 0.2},
        {"dataset": "d", "arm": "untrained", "lambda": float("nan"), "flops": 20.0, "nDCG@10": 0.56}])
    _curve(root / "p" / "baselines" / "table.csv", [{"dataset": "d", "system": "bm25", "nDCG@10": 0.52},
                                                    {"dataset": "d", "system": "inference-free-untrained",
                                                     "nDCG@10": 0.40}])
    _curve(root / "p" / "teachers" / "table.csv", [
        {"dataset": "d", "teacher": "dense", "nDCG@10": 0.61, "p_value_vs_ensemble_minmax": 0.01},
        {"dataset": "d", "teacher": "sparse", "nDCG@10": 0.58, "p_value_vs_ensemble_minmax": 0.001},
        {"dataset": "d", "teacher": "ensemble-minmax", "nDCG@10": 0.60, "p_value_vs_ensemble_minmax": 1.0},
        {"dataset": "d", "teacher": "ensemble-raw", "nDCG@10": 0.57, "p_value_vs_ensemble_minmax": 0.02}])
    text = write_report(root, "p").read_text()
    claim1 = section(text, "## Claim 1")
    assert lines_with(claim1, "λ=0.5", "FLOPS 10", "0.5500", "0.6000", "-0.0500")
    assert lines_with(claim1, "Verdict: not judged", "no per-query", "0/1")  # a sign count is no statistic
    # one seed: a significant gap is not judged (seed variance unmeasured); the words never come from the sign
    assert lines_with(text, "Claim 2: not judged", "1 training seed(s)", "dense", "0.6100", "p = 0.01")
    assert lines_with(text, "Claim 3: not judged", "0.6000", "0.5700", "p = 0.02", "significant")
    bars = section(text, "## Bars")
    assert lines_with(bars, "0.5500", "λ=0.5", "bm25 0.5200", "+0.0300", "p = 0.2", "not significant",
                      "picked on this test set")
    assert not lines_with(text, "holds") and not lines_with(text, "beats it")
    # the start is read from the curve (the students' evaluation settings), not the baselines table
    assert lines_with(bars, "0.5500", "curve", "0.5600", "-0.0100")
    assert not lines_with(bars, "0.4000")


def test_report_latency_section_ratios_by_hand(tmp_path):
    root = tmp_path / "results"
    rows = []
    for docs, free, bm25, siam, res in [(100, 0.30, 0.25, 6.0, False), (1000, 0.50, 0.50, 9.0, True)]:
        for system, ms in [("inference-free", free), ("bm25", bm25), ("siamese", siam)]:
            rows.append({"engine": "pisa", "system": system, "docs": docs, "p50_ms": ms, "resampled": res,
                         "top10_agreement": 0.99})
    _curve(root / "p" / "latency" / "table.csv", rows)
    _curve(root / "p" / "latency" / "quality" / "table.csv", [
        {"engine": "pisa", "system": "inference-free", "reference": "ifsr-exact", "nDCG@10": 0.62,
         "reference_nDCG@10": 0.63, "delta_nDCG@10": -0.01, "top10_agreement": 0.995}])
    text = write_report(root, "p").read_text()
    assert lines_with(text, "pisa", "ifsr-exact", "0.995", "0.6200", "0.6300", "-0.0100")
    assert "| pisa | 100 | False | 0.300 | 0.250 | 6.00 | 1.20× | 20.0× | 0.990 |" in text  # 0.30/0.25, 6/0.3
    assert "| pisa | 1,000 | True | 0.500 | 0.500 | 9.00 | 1.00× | 18.0× |" in text
    assert lines_with(text, "from 1.00× to 1.20×", "No verdict") and "holds" not in text
    # the same notebook run again with a trained student (a preset's "03_latency@student") gets its own section
    student = root / "p" / "latency_student"
    _curve(student / "table.csv", [{**r, "p50_ms": r["p50_ms"] / 2 if r["system"] == "inference-free" else r["p50_ms"]}
                                   for r in rows])
    (student / "config.yaml").write_text("model: runs/p/abc/model\n")
    part = write_report(root, "p").read_text().split("`latency_student`")[1]
    assert lines_with(part, "runs/p/abc/model")
    assert "| pisa | 100 | False | 0.150 | 0.250 | 6.00 | 0.60× | 40.0× |" in part
    assert lines_with(part, "from 0.50× to 0.60×", "No verdict")


def test_report_has_a_section_per_sweep_variant(tmp_path):
    root = tmp_path / "results"
    for folder, v, flag in (("idf_flops", 0.55, False), ("idf_flops_inbatch", 0.66, True)):
        _curve(root / "p" / folder / "curve.csv",
               PLAIN + [{"dataset": "d", "arm": "idf-flops", "lambda": 0.5, "flops": 10.0, "nDCG@10": v}])
        train = {"student": "s", "steps": 300, "batch_size": 8, "n_neg": 3, "max_length": 128}
        if flag:  # the main sweep's config predates the field: an absent field is its default, not a difference
            train["in_batch_negatives"] = True
        (root / "p" / folder / "config.yaml").write_text(yaml.safe_dump({"eval_max_length": 512, "train": train}))
    _curve(root / "p" / "baselines" / "table.csv", [{"dataset": "d", "system": "bm25", "nDCG@10": 0.60}])
    text = write_report(root, "p").read_text()
    main, variant = text.split("### Claim 1 again", 1)
    assert lines_with(main, "0.5500", "0.6000", "-0.0500") and lines_with(main, "bm25 0.6000", "-0.0500")
    assert lines_with(variant, "0.6600", "0.6000", "+0.0600")
    differ = lines_with(variant, "train.in_batch_negatives")
    assert len(differ) == 1 and "False → True" in differ[0] and "train.steps" not in differ[0]
    assert lines_with(variant.split("Bars again")[1], "0.6600", "bm25 0.6000", "+0.0600")
    assert lines_with(variant.split("\n")[0], "`idf_flops_inbatch`")
    assert lines_with(main, "`idf_flops_inbatch`", "λ=0.5", "0.6600")  # the best student of any sweep
    assert lines_with(main, "Claim 1", "1/2", "0 of 0")  # counted over both sweeps


def test_report_pairs_sweeps_that_differ_only_in_the_training_seed(tmp_path):
    root = tmp_path / "results"
    train = {"student": "s", "steps": 600, "max_length": 256}
    for folder, seed, v, other in (("idf_flops", 0, 0.60, 128), ("idf_flops_long", 0, 0.68, 256),
                                   ("idf_flops_long_seed1", 1, 0.67, 256)):
        _curve(root / "p" / folder / "curve.csv",
               [{"dataset": "d", "arm": "idf-flops", "lambda": 0.0, "flops": 2.0, "nDCG@10": v},
                {"dataset": "d", "arm": "untrained", "lambda": float("nan"), "flops": 2.1, "nDCG@10": 0.5}])
        (root / "p" / folder / "config.yaml").write_text(yaml.safe_dump(  # the grid (lambdas) may differ
            {"eval_max_length": 512, "lambdas": [0.0] if seed else [0.0, 0.01],
             "train": {**train, "seed": seed, "max_length": other}}))
    text = write_report(root, "p").read_text()
    assert lines_with(text, "`idf_flops_long` λ=0", "0.6800", "0: 0.6800", "1: 0.6700", "0.6750")
    assert lines_with(text, "Seed noise", "0.0100")
    seeds = section(text, "## Seed repeats")
    # only the pair that differs in train.seed alone (idf_flops differs in max_length as well); untrained rows skipped
    (line,) = lines_with(seeds, "λ=0")
    assert all(t in line for t in ("`idf_flops_long`", "`idf_flops_long_seed1`", "0.6800", "0.6700", "-0.0100",
                                   "0.6750"))


def test_report_why_lines_come_from_tables_and_configs(tmp_path):
    root = tmp_path / "results"
    _curve(root / "p" / "baselines" / "table.csv", [{"dataset": "d", "system": s, "nDCG@10": v} for s, v in
                                                    [("dense-teacher", 0.61), ("sparse-teacher", 0.60),
                                                     ("ensemble-minmax", 0.70)]])
    _curve(root / "p" / "teachers" / "table.csv", [
        {"dataset": "d", "teacher": t, "nDCG@10": v, "p_value_vs_ensemble_minmax": p} for t, v, p in
        [("dense", 0.64, 0.3), ("sparse", 0.60, 0.01), ("ensemble-minmax", 0.63, 1.0)]])
    (root / "p" / "teachers" / "config.yaml").write_text(yaml.safe_dump(
        {"sparse_teacher": "tiny", "pretrain_pairs": 0, "train": {"student": "tiny", "steps": 30, "batch_size": 4}}))
    why = section(write_report(root, "p").read_text(), "## Why")
    assert lines_with(why, "0.7000", "0.6100", "0.6000")
    assert lines_with(why, "`tiny`", "start")
    assert lines_with(why, "0.0100", "p ≥ 0.05")  # dense: |0.63 - 0.64|, p 0.3; sparse (p 0.01) left out


def test_teacher_verdicts_with_three_seeds_follow_the_p_value(tmp_path):
    """Three seed rows per teacher, each carrying the pooled test: significant and in the paper's direction
    -> holds; p >= 0.05 -> not distinguishable, whatever the sign; seed rows with different p are refused."""
    root = tmp_path / "results"
    rows = []
    for _ in range(3):  # a row per training seed
        rows += [{"dataset": "d", "teacher": "dense", "nDCG@10": 0.55, "p_value_vs_ensemble_minmax": 0.001},
                 {"dataset": "d", "teacher": "sparse", "nDCG@10": 0.50, "p_value_vs_ensemble_minmax": 0.001},
                 {"dataset": "d", "teacher": "ensemble-minmax", "nDCG@10": 0.60, "p_value_vs_ensemble_minmax": 1.0},
                 {"dataset": "d", "teacher": "ensemble-raw", "nDCG@10": 0.61, "p_value_vs_ensemble_minmax": 0.30}]
    _curve(root / "p" / "teachers" / "table.csv", rows)
    text = write_report(root, "p").read_text()
    assert lines_with(text, "Claim 2: holds", "dense", "3 seed(s)")
    assert lines_with(text, "Claim 3: not distinguishable", "0.6100")  # raw is above, but p = 0.3
    rows[0] = {**rows[0], "p_value_vs_ensemble_minmax": 0.5}  # one seed's own test is no pooled statistic
    _curve(root / "p" / "teachers" / "table.csv", rows)
    with pytest.raises(ValueError, match="different p-values"):
        write_report(root, "p")
