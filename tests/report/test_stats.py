"""Each claim's statistic (ifsr.eval.stats): hand-computed micro-examples, known answers, and a check
against a second formulation (the normal approximation of a mean over queries)."""
import math

import numpy as np
import pandas as pd
import pytest

from ifsr.eval.stats import curve_arrays, curve_gap, paired_delta, seed_matrix
from ifsr.report.claims import verdict


def test_paired_delta_by_hand():
    a = [np.array([[1.0, 0.0], [0.0, 0.0]])]  # 2 seeds x 2 queries: mean 0.25
    b = [np.array([[0.0, 0.0]])]
    r = paired_delta(a, b, n_boot=500)
    assert r.delta == pytest.approx(0.25)
    assert r.seeds == 1
    assert -1e-12 <= r.low <= r.delta <= r.high <= 1.0
    two = paired_delta(a + [np.array([[0.5], [0.5]])], b + [np.array([[0.0]])], n_boot=50)  # mean of the datasets' deltas
    assert two.delta == pytest.approx((0.25 + 0.5) / 2)


def test_identical_arms_give_p_one():
    x = np.random.default_rng(0).random((3, 40))
    r = paired_delta([x], [x.copy()], n_boot=300)
    assert r.delta == 0 and r.p == 1.0
    assert verdict(r.p, r.delta, r.seeds) == "not distinguishable"


def test_a_clear_gain_holds_and_a_clear_loss_is_reversed():
    rng = np.random.default_rng(1)
    base = rng.random((1, 300)).repeat(3, axis=0) + rng.normal(0, 0.01, (3, 300))
    better = base + 0.05 + rng.normal(0, 0.01, (3, 300))
    r = paired_delta([better], [base], n_boot=2000)
    assert r.p < 0.01 and r.low > 0
    assert verdict(r.p, r.delta, r.seeds) == "holds"
    r = paired_delta([base], [better], n_boot=2000)
    assert verdict(r.p, r.delta, r.seeds) == "reversed"


def test_seed_noise_is_not_mistaken_for_a_difference():
    """Every query moves with the training seed: a query-level test on seed means calls the +0.02 real
    (p ~ 0), the two-level bootstrap sees that the three seeds disagree by far more than that."""
    rng = np.random.default_rng(2)
    queries = rng.random(300)
    b = np.stack([queries + rng.normal(0, 0.002, 300) for _ in range(3)])
    shifts = np.array([0.12, -0.08, 0.02])  # mean +0.02, spread 0.1 over seeds
    a = np.stack([queries + s + rng.normal(0, 0.002, 300) for s in shifts])
    query_only = paired_delta([a.mean(0, keepdims=True)], [b.mean(0, keepdims=True)], n_boot=4000)  # one "seed"
    assert query_only.p < 0.001
    r = paired_delta([a], [b], n_boot=4000)
    assert r.delta == pytest.approx(0.02, abs=0.002)
    assert r.p > 0.05 and r.low < 0 < r.high
    assert verdict(r.p, r.delta, r.seeds) == "not distinguishable"


def test_one_seed_matches_the_normal_approximation():
    """A second formulation: with one seed per arm the bootstrap's 95% interval is the mean difference's
    +- 1.96 standard errors over queries (large Q)."""
    rng = np.random.default_rng(3)
    d = rng.normal(0.01, 0.2, 2000)
    r = paired_delta([d[None, :]], [np.zeros((1, 2000))], n_boot=4000)
    se = d.std(ddof=1) / math.sqrt(d.size)
    assert r.high - r.low == pytest.approx(2 * 1.96 * se, rel=0.08)
    assert (r.low + r.high) / 2 == pytest.approx(d.mean(), abs=0.3 * se)


def test_paired_delta_refuses_unpaired_queries():
    with pytest.raises(ValueError, match="same queries"):
        paired_delta([np.zeros((2, 5))], [np.zeros((2, 4))])
    with pytest.raises(ValueError, match="same seeds"):  # an arm's runs are the same on every dataset
        paired_delta([np.zeros((2, 5)), np.zeros((1, 3))], [np.zeros((1, 5)), np.zeros((1, 3))])
    with pytest.raises(ValueError, match="one array per dataset"):
        paired_delta([np.zeros((2, 5))], [])


def test_curve_gap_by_hand():
    """a: nDCG = ln FLOPS on ln FLOPS in [0, 2]; b: 0 on [1, 3]. Overlap [1, 2]: the gap is the mean of
    ln FLOPS there, 1.5."""
    q = 4
    fa = np.exp(np.array([[0.0], [2.0]]))  # [L=2, S=1]
    ya = np.array([[[0.0] * q], [[2.0] * q]])  # [2, 1, q]
    fb = np.exp(np.array([[1.0], [3.0]]))
    yb = np.zeros((2, 1, q))
    r = curve_gap([(fa, ya)], [(fb, yb)], n_boot=100, grid=64)
    assert r.delta == pytest.approx(1.5)
    assert r.p < 0.05  # every replicate gives the same +1.5 (no query or seed varies)
    far = curve_gap([(fa, ya)], [(np.exp(np.array([[5.0], [6.0]])), yb)], n_boot=10)
    assert math.isnan(far.delta) and math.isnan(far.p)
    assert verdict(far.p, far.delta, 3).startswith("not judged")


def test_curve_gap_of_a_shifted_curve_and_of_equal_curves():
    rng = np.random.default_rng(4)
    flops = np.array([[1.0, 1.1, 0.9], [2.0, 2.1, 1.9], [4.0, 4.2, 3.8]])  # [L=3, S=3]
    base = rng.random(200)
    yb = np.stack([np.stack([base * 0.5 + 0.1 * k + rng.normal(0, 0.01, 200) for _ in range(3)]) for k in range(3)])
    up = curve_gap([(flops, yb + 0.03)], [(flops, yb)], n_boot=500)
    assert up.delta == pytest.approx(0.03, abs=1e-9) and up.p < 0.05
    same = curve_gap([(flops, yb)], [(flops, yb.copy())], n_boot=200)
    assert same.delta == pytest.approx(0.0, abs=1e-12) and same.p > 0.5  # seeds drawn per arm: replicates vary


def test_arrays_from_the_result_tables():
    per_query = pd.DataFrame(
        [{"dataset": "d", "arm": arm, "lambda": lam, "seed": s, "query_id": q, "nDCG@10": v}
         for arm, lam, s, q, v in [("x", 0.1, 1, "q2", 0.2), ("x", 0.1, 0, "q1", 0.3), ("x", 0.1, 1, "q1", 0.4),
                                   ("x", 0.1, 0, "q2", 0.5), ("x", 0.2, 0, "q1", 0.6), ("x", 0.2, 0, "q2", 0.7),
                                   ("x", 0.2, 1, "q1", 0.8), ("x", 0.2, 1, "q2", 0.9)]])
    m = seed_matrix(per_query, "d", arm="x", **{"lambda": 0.1})
    assert m.tolist() == [[0.3, 0.5], [0.4, 0.2]]  # seeds ascending, queries sorted
    curve = pd.DataFrame([{"dataset": "d", "arm": "x", "lambda": lam, "seed": s, "flops": f}
                          for lam, s, f in [(0.2, 1, 1.5), (0.1, 0, 3.0), (0.2, 0, 1.0), (0.1, 1, 2.0)]])
    flops, ndcg = curve_arrays(curve, per_query, "d", "x")
    assert flops.tolist() == [[3.0, 2.0], [1.0, 1.5]]
    assert ndcg.shape == (2, 2, 2) and ndcg[1].tolist() == [[0.6, 0.7], [0.8, 0.9]]
    with pytest.raises(ValueError, match="lacks queries"):
        seed_matrix(per_query.iloc[1:], "d", arm="x", **{"lambda": 0.1})


def test_median_ratio_by_hand():
    from ifsr.eval.stats import median_ratio

    a, b = np.array([[2.0, 4.0, 6.0], [4.0, 4.0, 4.0]]), np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    # per-query means over the two passes: a (3, 4, 5), b (1, 2, 3); medians 4 and 2
    r = median_ratio(a, b, n_boot=500)
    assert r.delta == pytest.approx(2.0) and r.seeds == 2 and r.low <= 2.0 <= r.high
    exact = median_ratio(2 * b, b, n_boot=500)  # a constant ratio: every replicate is 2
    assert (exact.low, exact.high) == (pytest.approx(2.0), pytest.approx(2.0)) and exact.p < 0.01
    assert median_ratio(2 * b, b, null=2.0, n_boot=500).p == 1.0
    # three training seeds of a: each seed's passes, then the pooled mean per query
    seeds = np.stack([a, 2 * a, 3 * a])
    assert median_ratio(seeds, np.stack([b] * 3), n_boot=200).delta == pytest.approx(8.0 / 2.0)
    for bad_a, bad_b in ((a, b[:, :2]), (a[0], b[0]), (np.zeros((2, 0)), np.zeros((2, 0)))):
        with pytest.raises(ValueError):
            median_ratio(bad_a, bad_b)
    with pytest.raises(ValueError):
        median_ratio(a, b, null=0.0)


def test_pass_noise_is_not_mistaken_for_a_speed_difference():
    """a is b slowed by the machine in some passes (x0.8, x1.0, x1.5): pooled over passes it looks 1.1x
    slower with a narrow interval over queries alone, but resampling the passes shows it is not."""
    from ifsr.eval.stats import median_ratio

    b = np.random.default_rng(0).lognormal(0.0, 0.3, size=(3, 300))
    a = b * np.array([0.8, 1.0, 1.5])[:, None]
    queries_only = median_ratio(a.mean(axis=0, keepdims=True), b.mean(axis=0, keepdims=True))
    both = median_ratio(a, b)
    assert both.delta == pytest.approx(queries_only.delta) and queries_only.p < 0.01 and both.p > 0.05
    assert both.low <= 0.8 + 1e-9 and both.high >= 1.5 - 1e-9


def test_median_ratio_against_a_loop_bootstrap():
    """A second formulation: the percentile interval by an explicit loop over replicates (passes, then queries)."""
    from ifsr.eval.stats import median_ratio

    rng = np.random.default_rng(3)
    b = rng.lognormal(0.0, 0.4, size=(4, 120))
    a = b * rng.lognormal(0.1, 0.2, size=(4, 120)) * np.array([1.0, 0.9, 1.2, 1.05])[:, None]
    got = median_ratio(a, b, n_boot=4000)
    loop = np.random.default_rng(11)
    reps = []
    for _ in range(4000):
        p = loop.integers(0, 4, size=4)
        q = loop.integers(0, 120, size=120)
        reps.append(np.median(a[p].mean(axis=0)[q]) / np.median(b[p].mean(axis=0)[q]))
    lo, hi = np.percentile(reps, [2.5, 97.5])
    assert got.low == pytest.approx(lo, abs=0.02) and got.high == pytest.approx(hi, abs=0.02)


def test_mde_of_one_seed_is_2_8_standard_errors_over_queries():
    """Known answer: one seed per arm, paired differences d_q with sample sd s over Q queries; the
    bootstrap's SE is s / sqrt(Q), its minimum detectable effect at 80% power (1.96 + 0.84) x that."""
    from ifsr.eval.stats import MDE_Z

    assert MDE_Z == pytest.approx(1.959964 + 0.841621, abs=1e-5)
    rng = np.random.default_rng(5)
    q = 2000
    d = rng.normal(0.0, 0.15, q)
    d = (d - d.mean()) / d.std(ddof=1) * 0.15  # sample sd exactly 0.15
    base = rng.random(q)
    r = paired_delta([(base + d)[None, :]], [base[None, :]], n_boot=4000)
    se = 0.15 / math.sqrt(q)
    assert r.se == pytest.approx(se, rel=0.05)
    assert r.mde == pytest.approx(2.8 * se, rel=0.05) and r.mde == pytest.approx(MDE_Z * r.se)
    assert r.as_dict()["se"] == r.se and r.as_dict()["mde"] == r.mde
    # a statistic without replicates has no SE: NaN, not 0
    far = curve_gap([(np.exp(np.array([[0.0], [1.0]])), np.zeros((2, 1, 3)))],
                    [(np.exp(np.array([[5.0], [6.0]])), np.zeros((2, 1, 3)))], n_boot=10)
    assert math.isnan(far.se) and math.isnan(far.mde) and math.isnan(far.as_dict()["mde"])


def test_seed_variance_inflates_the_mde():
    """Three training seeds that shift every query (sd 0.03 over seeds) on top of query noise: the two-level
    bootstrap's MDE counts the seed spread, a query-only bootstrap on the seed means leaves it out. With S seeds
    per arm the seed level adds about sqrt(2 * 0.03^2 / S * (S - 1) / S) = 0.02 to the SE (the bootstrap's plug-in
    variance), far above the query level's s / sqrt(Q)."""
    rng = np.random.default_rng(6)
    q = 400
    queries = rng.random(q)
    a = np.stack([queries + s + rng.normal(0, 0.05, q) for s in (0.03, -0.03, 0.0)])
    b = np.stack([queries + s + rng.normal(0, 0.05, q) for s in (-0.03, 0.03, 0.0)])
    both = paired_delta([a], [b], n_boot=4000)
    query_only = paired_delta([a.mean(0, keepdims=True)], [b.mean(0, keepdims=True)], n_boot=4000)
    d = a.mean(0) - b.mean(0)
    assert query_only.mde == pytest.approx(2.8 * d.std(ddof=1) / math.sqrt(q), rel=0.06)
    assert both.mde > 3 * query_only.mde
    seed_se = math.sqrt(2 * np.var([0.03, -0.03, 0.0]) / 3)  # each arm's seed mean, drawn with replacement
    assert both.se == pytest.approx(math.sqrt(seed_se ** 2 + query_only.se ** 2), rel=0.15)


def test_a_true_effect_of_one_mde_is_detected_four_times_in_five():
    """The MDE's promise, by simulation: a true difference equal to the MDE (one seed, Q queries) is called
    significant (p < 0.05) in about 80% of fresh samples."""
    rng = np.random.default_rng(7)
    q, sd, runs = 200, 0.2, 300
    x = rng.normal(0.0, sd, q)
    x = (x - x.mean()) / x.std(ddof=1) * sd  # a pilot sample whose sd is the population's
    pilot = paired_delta([x[None, :]], [np.zeros((1, q))], n_boot=2000)
    assert pilot.mde == pytest.approx(2.8 * sd / math.sqrt(q), rel=0.1)
    hits = sum(paired_delta([rng.normal(pilot.mde, sd, (1, q))], [np.zeros((1, q))], n_boot=400, seed=i).p < 0.05
               for i in range(runs))
    assert 0.70 <= hits / runs <= 0.90  # binomial sd at 0.8: 0.023
    null = sum(paired_delta([rng.normal(0.0, sd, (1, q))], [np.zeros((1, q))], n_boot=400, seed=i).p < 0.05
               for i in range(100))
    assert null <= 12  # and no effect is rarely called one (about 5 in 100)


def test_power_split_puts_a_per_seed_shift_in_the_seed_part_and_nothing_in_the_queries():
    """Hand-made: arm a is arm b plus a constant per training seed (0, 0.02, 0.04), the same for every query.
    Averaged over seeds, every query differs by 0.02 exactly: the queries' part is 0. The whole se is then the
    bootstrap sd of a mean of 3 values drawn with replacement: sqrt(pop. variance / 3) = 0.00943."""
    from ifsr.eval.stats import MDE_Z, power_split

    rng = np.random.default_rng(1)
    base = rng.random(200)
    shift = np.array([0.0, 0.02, 0.04])[:, None]
    p = power_split([base[None, :] + shift], [np.tile(base, (3, 1))], n_boot=20000)
    assert p.se_queries == pytest.approx(0.0, abs=1e-12) and p.floor == pytest.approx(0.0, abs=1e-12)
    want = np.sqrt(np.var([0.0, 0.02, 0.04]) / 3)
    assert p.se == pytest.approx(want, rel=0.03) and p.se_seeds == pytest.approx(p.se)
    # the seed part's variance scales as 1/seeds: 4x the seeds halve the MDE; the floor needs no seeds at all
    assert p.mde(12) == pytest.approx(MDE_Z * p.se_seeds / 2)
    assert p.mde(p.seeds_for(0.010)) <= 0.010 < p.mde(p.seeds_for(0.010) - 1)


def test_power_split_of_identical_seeds_is_all_queries():
    """Three identical seeds per arm: no seed variance, the se is the queries' alone; and no number of seeds
    brings the MDE under the queries' floor."""
    from ifsr.eval.stats import PowerSplit, power_split

    rng = np.random.default_rng(2)
    a, b = rng.random(300), rng.random(300)
    p = power_split([np.tile(a, (3, 1))], [np.tile(b, (3, 1))], n_boot=4000)
    assert p.se_seeds < 0.25 * p.se and p.se_queries == pytest.approx(p.se, rel=0.05)
    assert p.seeds_for(p.floor / 2) is None and p.mde(1000) >= p.floor
    made = PowerSplit(se=0.005, se_queries=0.003, se_seeds=0.004, seeds=3)  # by hand: MDE_Z x 0.005 now
    assert made.mde() == pytest.approx(2.8016 * 0.005, rel=1e-4)
    assert made.mde(12) == pytest.approx(2.8016 * np.sqrt(0.003 ** 2 + 0.004 ** 2 / 4), rel=1e-4)
    assert made.mde(query_factor=2.0) == pytest.approx(2.8016 * np.sqrt(0.003 ** 2 / 2 + 0.004 ** 2), rel=1e-4)
    with pytest.raises(ValueError, match="seeds"):
        made.mde(0)


def _sweep(shift: np.ndarray, q: int = 200, seed: int = 5):
    """Two arms of a 3-lambda sweep on the same FLOPS points (every seed alike): b's per-query nDCG@10 rises with
    lambda's FLOPS; a = b + shift[seed] at every lambda and query."""
    rng = np.random.default_rng(seed)
    flops = np.tile(np.array([[1.0], [2.0], [4.0]]), (1, len(shift)))  # [L=3, S]
    base = rng.random(q) * 0.5
    yb = np.stack([np.tile(base + 0.1 * k, (len(shift), 1)) for k in range(3)])  # [3, S, q]
    ya = yb + np.asarray(shift, dtype=float)[None, :, None]
    return [(flops, ya)], [(flops, yb)]


def test_curve_power_split_puts_a_per_seed_shift_in_the_seed_part():
    """Hand-made: curve a is curve b raised by a constant per training seed (0, 0.02, 0.04). Seeds collapsed, a is
    b + 0.02 at every query: the queries' part is 0. The whole se is that of a mean of 3 values drawn with
    replacement (b's seeds are alike): sqrt(pop. variance / 3) = 0.00943, as in the paired case."""
    from ifsr.eval.stats import curve_power_split

    a, b = _sweep(np.array([0.0, 0.02, 0.04]))
    p = curve_power_split(a, b, n_boot=4000)
    assert p.se_queries == pytest.approx(0.0, abs=1e-12) and p.floor == pytest.approx(0.0, abs=1e-12)
    assert p.se == pytest.approx(np.sqrt(np.var([0.0, 0.02, 0.04]) / 3), rel=0.05) and p.se_seeds == pytest.approx(p.se)
    assert p.seeds == 3 and p.seeds_for(0.010) is not None


def test_curve_power_split_of_identical_seeds_is_all_queries():
    """Every seed alike, the arms differing per query (noise of sd 0.1): the se is the queries' alone."""
    from ifsr.eval.stats import curve_gap, curve_power_split

    a, b = _sweep(np.zeros(3))
    noise = np.random.default_rng(6).normal(0.0, 0.1, a[0][1].shape[2])
    a = [(a[0][0], a[0][1] + noise[None, None, :])]
    p = curve_power_split(a, b, n_boot=2000)
    assert p.se_seeds < 0.25 * p.se and p.se_queries == pytest.approx(p.se, rel=0.05)
    assert p.se == pytest.approx(curve_gap(a, b, n_boot=2000).se)  # the whole se is curve_gap's own
    assert p.se_queries == pytest.approx(0.1 / np.sqrt(200), rel=0.1)  # the mean gap's sd over 200 queries
    assert p.seeds_for(p.floor / 2) is None


def test_paired_seeds_cancel_a_shift_both_arms_share():
    """Hand-made: seed s moves both arms by the same shift (0, 0.03, 0.06: its data order), a = b + 0.01 at every
    query. Drawn together, every replicate is +0.01 (se 0); drawn apart, the shared shift no longer cancels:
    se = sqrt(2 x pop. variance / 3) = 0.0200."""
    from ifsr.eval.stats import paired_delta, power_split

    base = np.random.default_rng(8).random(150)
    shift = np.array([0.0, 0.03, 0.06])[:, None]
    b = base[None, :] + shift
    a = b + 0.01
    together = paired_delta([a], [b], n_boot=4000, paired_seeds=True)
    assert together.delta == pytest.approx(0.01) and together.se == pytest.approx(0.0, abs=1e-12) and together.p < 0.01
    apart = paired_delta([a], [b], n_boot=4000)
    assert apart.se == pytest.approx(np.sqrt(2 * np.var([0.0, 0.03, 0.06]) / 3), rel=0.05) and apart.p > 0.3
    assert power_split([a], [b], n_boot=2000, paired_seeds=True).se_seeds == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="paired seeds need the same number of seeds"):
        paired_delta([a], [b[:2]], paired_seeds=True)


def test_curve_gap_with_paired_seeds_cancels_a_shared_shift():
    """Both sweeps' curves move with the seed (0, 0.03, 0.06 at every lambda), a = b + 0.01: drawn together the
    gap is +0.01 on every replicate; drawn apart it spreads as the paired case does."""
    from ifsr.eval.stats import curve_gap, curve_power_split

    shift = np.array([0.0, 0.03, 0.06])
    a, b = _sweep(shift)  # a = b + shift[seed]
    b = [(b[0][0], b[0][1] + shift[None, :, None])]  # b moves with the seed as a does
    a = [(a[0][0], a[0][1] + 0.01)]
    together = curve_gap(a, b, n_boot=1000, paired_seeds=True)
    assert together.delta == pytest.approx(0.01) and together.se == pytest.approx(0.0, abs=1e-9)
    assert curve_power_split(a, b, n_boot=500, paired_seeds=True).se == pytest.approx(0.0, abs=1e-9)
    assert curve_gap(a, b, n_boot=1000).se == pytest.approx(np.sqrt(2 * np.var(shift) / 3), rel=0.1)
    with pytest.raises(ValueError, match="paired seeds"):
        curve_gap(a, [(b[0][0][:, :2], b[0][1][:, :2])], paired_seeds=True)
