"""Verdict words from the statistic, on hand-made cases where the answer is known."""
import math

import numpy as np
import pandas as pd
import pytest

from ifsr.eval.stats import MDE_Z
from ifsr.report.claims import sweep_rows, teacher_rows, verdict, verdict_cell


def test_each_verdict_word():
    assert verdict(0.01, +0.02, seeds=3) == "holds"
    assert verdict(0.01, -0.02, seeds=5) == "reversed"
    assert verdict(0.05, +0.30, seeds=3) == "not distinguishable"  # a large gap, but p at alpha
    assert verdict(0.40, -0.01, seeds=1) == "not distinguishable"  # query noise alone covers it
    assert verdict(0.001, +0.02, seeds=2).startswith("not judged") and "2 training seed" in verdict(0.001, 0.02, 2)
    assert verdict(math.nan, +0.02, seeds=3).startswith("not judged")
    assert verdict(0.02, +0.02, seeds=3, alpha=0.01) == "not distinguishable"  # the level is a parameter


def test_a_not_distinguishable_cell_reads_with_its_mde():
    assert verdict_cell("not distinguishable", 0.0123) == "not distinguishable (could detect ≥ 0.0123)"
    assert verdict_cell("holds", 0.0123) == "holds"  # a verdict that was reached needs no power statement
    assert verdict_cell("not distinguishable", math.nan) == "not distinguishable"  # an older table: no MDE


def _teacher_tables(sd: dict[str, float], q: int = 400, seed: int = 0):
    """min-max = dense + d_q per query on every seed (no seed noise), d_q with sample sd `sd[dataset]` and
    mean 0 exactly: claim 2a's SE is sd / sqrt(Q) per dataset, sqrt(se_1^2 + se_2^2) / 2 for their mean."""
    rng = np.random.default_rng(seed)
    table, per_q = [], []
    for ds, s in sd.items():
        base = rng.random(q) * 0.5 + 0.25
        d = rng.normal(0.0, 1.0, q)
        d = (d - d.mean()) / d.std(ddof=1) * s
        for teacher, v in (("dense", base), ("ensemble-minmax", base + d)):
            for seed_ in range(3):
                table.append({"dataset": ds, "teacher": teacher, "seed": seed_, "nDCG@10": v.mean()})
                per_q += [{"dataset": ds, "teacher": teacher, "seed": seed_, "query_id": f"q{i}", "nDCG@10": x}
                          for i, x in enumerate(v)]
    return pd.DataFrame(table), pd.DataFrame(per_q)


def test_claim_rows_carry_the_mde_of_their_bootstrap():
    sd = {"x": 0.10, "y": 0.20}
    table, per_q = _teacher_tables(sd)
    rows = pd.DataFrame(teacher_rows(table, per_q, n_boot=4000))
    assert list(rows["dataset"]) == ["x", "y", "mean"] and set(rows["claim"]) == {"2a"}
    assert {"se", "mde"} <= set(rows.columns)
    assert (rows["mde"] > 0).all() and np.allclose(rows["mde"], MDE_Z * rows["se"])
    se = {ds: s / math.sqrt(400) for ds, s in sd.items()}
    se["mean"] = math.sqrt(se["x"] ** 2 + se["y"] ** 2) / 2
    for r in rows.to_dict("records"):
        assert r["mde"] == pytest.approx(2.8 * se[r["dataset"]], rel=0.06)
        assert r["verdict"] == "not distinguishable"  # a mean difference of 0 by construction
    assert rows.set_index("dataset").loc["y", "mde"] > 1.8 * rows.set_index("dataset").loc["x", "mde"]  # twice the sd


def test_claim_1_rows_carry_their_power_split():
    """Claim 1 (the FLOPS arms' curve gap) gets the same power columns as the paired rows: here the IDF arm is the
    plain arm raised by 0, 0.02, 0.04 on its three seeds at every lambda and query, so the queries' floor is 0
    and a few more seeds reach the target."""
    curve, per_q = [], []
    base = np.random.default_rng(7).random(100) * 0.5
    for arm, shift in (("idf-flops", [0.0, 0.02, 0.04]), ("flops", [0.0, 0.0, 0.0])):
        for k, (lam, flops) in enumerate(((0.0, 4.0), (0.01, 2.0), (0.1, 1.0))):
            for seed_ in range(3):
                v = base + 0.1 * (2 - k) + shift[seed_]
                curve.append({"dataset": "x", "arm": arm, "lambda": lam, "seed": seed_, "flops": flops,
                              "nDCG@10": v.mean()})
                per_q += [{"dataset": "x", "arm": arm, "lambda": lam, "seed": seed_, "query_id": f"q{i}",
                           "nDCG@10": y} for i, y in enumerate(v)]
    rows = pd.DataFrame(sweep_rows(pd.DataFrame(curve), pd.DataFrame(per_q), headline=None, n_boot_curve=2000))
    (r,) = rows.to_dict("records")
    assert r["claim"] == "1" and r["delta"] == pytest.approx(0.02)
    assert r["mde_floor"] == pytest.approx(0.0, abs=1e-12) and r["se_seeds"] == pytest.approx(r["se"])
    assert 3 < r["seeds_for_target"] < 100 and r["mde"] == pytest.approx(MDE_Z * r["se"])
    assert r["mde_2x_seeds"] == pytest.approx(r["mde"] / math.sqrt(2))  # all seed variance: twice the seeds halve it


def test_teacher_rows_pair_the_seeds_both_teachers_ran():
    """Both teachers' runs of seed s move by the same shift: paired (the same seed ids), the shift cancels and the
    MDE is the queries' alone; with one teacher's seeds renumbered the rows are not paired, and the shift counts."""
    rng = np.random.default_rng(9)
    base = rng.random(300) * 0.5
    shift = [0.0, 0.04, 0.08]
    table, per_q = [], []
    for teacher, extra in (("dense", 0.0), ("ensemble-minmax", 0.0)):
        for s in range(3):
            v = base + shift[s] + extra + rng.normal(0.0, 0.01, 300) * (teacher == "dense")
            table.append({"dataset": "x", "teacher": teacher, "seed": s, "nDCG@10": v.mean()})
            per_q += [{"dataset": "x", "teacher": teacher, "seed": s, "query_id": f"q{i}", "nDCG@10": y}
                      for i, y in enumerate(v)]
    table, per_q = pd.DataFrame(table), pd.DataFrame(per_q)
    (paired,) = teacher_rows(table, per_q, n_boot=2000)
    assert paired["seeds_paired"] is True and paired["mde"] < 0.005  # the queries' noise of sd 0.01 over 300
    moved = per_q.assign(seed=np.where(per_q["teacher"] == "dense", per_q["seed"] + 10, per_q["seed"]))
    (apart,) = teacher_rows(table, moved, n_boot=2000)
    assert apart["seeds_paired"] is False and apart["mde"] > 0.05  # the shared shift no longer cancels
