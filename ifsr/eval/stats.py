"""Each claim's statistic, over queries *and* training seeds: a two-level (hierarchical) bootstrap.

A model trained once per seed is one draw of the training noise; a test set is one draw of queries.
A paired test over queries on one seed (or on values averaged over seeds) measures the second only:
a training seed that shifts a whole run looks, to it, like a real difference. Here every bootstrap
replicate resamples both levels (Davison & Hinkley 1997, §3.8, resampling at each stage):
  - seeds: each arm's seeds with replacement (an arm's seeds are independent runs); one draw per arm
    serves every dataset and every lambda, since a seed's run is evaluated on all of them. With
    `paired_seeds` one draw serves both arms too: for arms whose runs of one seed share that seed's
    randomness (the student's new parameters and the data order: `TrainConfig.seed` is the trainer's seed
    and data_seed), seed s of one arm and seed s of the other are a block, as a query is;
  - queries: each dataset's queries with replacement, the same draw for both arms (paired).
The statistic is recomputed on each replicate; the two-sided p-value is the bootstrap's
p = min(1, 2 (1 + #{delta* <= 0 or >= 0, the smaller side}) / (1 + R)), and the 95% interval its
percentiles. With 3 seeds the seed level is coarse (10 distinct draws) and slightly narrow, as
every bootstrap of few units is; it is still the spread a query-only test leaves out.
Each statistic carries its power too: `se`, the sd of the same replicates, and `mde`, the minimum detectable
effect (z_{1-alpha/2} + z_0.8) x se ~ 2.8 se, the smallest true difference the test calls significant 4 times in 5.

`paired_delta` compares two arms' mean nDCG@10 (Claims 2, 3, the headline vs BM25);
`curve_gap` compares two sparsity-relevance curves over their common FLOPS range (Claim 1);
`median_ratio` compares two systems' p50 latency (Claim 4), timing passes in place of seeds: each pass times
every query once at its own moment, so a pass that the machine's load slowed shifts all of its queries.
Arrays are per dataset: the statistic of several datasets is the mean of their per-dataset values.
"""
# Over 300 lines: each claim's statistic (two bootstraps, a ratio) beside its power split, and the readers that
# turn the result tables into their arrays: one place for what a verdict rests on.
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

N_BOOT = 10000
# The minimum detectable effect's multiple of the bootstrap SE: MDE = (z_{1-alpha/2} + z_{power}) x SE, for a
# two-sided test at alpha 0.05 with power 0.8: 1.9600 + 0.8416 = 2.8016 (a normal statistic; e.g. Bloom 1995).
MDE_Z = NormalDist().inv_cdf(1 - 0.05 / 2) + NormalDist().inv_cdf(0.8)


@dataclass(frozen=True)
class Bootstrap:
    """A statistic, its two-sided bootstrap p-value against 0, its 95% interval, its standard error and minimum
    detectable effect, and what it rests on."""

    delta: float
    p: float
    low: float
    high: float
    seeds: int  # the fewest training seeds of the arms compared (1 for a fixed system such as BM25)
    replicates: int  # replicates where the statistic was defined
    se: float = float("nan")  # sd of those replicates (ddof 1), in the statistic's units (a ratio for median_ratio)

    @property
    def mde(self) -> float:
        """The minimum detectable effect at 80% power, two-sided alpha 0.05: MDE_Z x se (NaN without an se)."""
        return MDE_Z * self.se

    def as_dict(self) -> dict[str, float]:
        return {"delta": self.delta, "p": self.p, "ci_low": self.low, "ci_high": self.high, "se": self.se,
                "mde": self.mde, "seeds": self.seeds, "replicates": self.replicates}


def _summary(delta: float, reps: np.ndarray, seeds: int, null: float = 0.0) -> Bootstrap:
    """The statistic, its replicates' 95% percentile interval, the two-sided p against `null` and the
    replicates' sd (its standard error; NaN from fewer than 2 replicates)."""
    reps = reps[np.isfinite(reps)]
    if not np.isfinite(delta) or reps.size == 0:
        return Bootstrap(float(delta), float("nan"), float("nan"), float("nan"), seeds, int(reps.size))
    side = min(int(np.sum(reps <= null)), int(np.sum(reps >= null)))
    p = min(1.0, 2 * (1 + side) / (1 + reps.size)) if np.any(reps != null) else 1.0
    low, high = np.percentile(reps, [2.5, 97.5])
    se = float(np.std(reps, ddof=1)) if reps.size > 1 else float("nan")
    return Bootstrap(float(delta), float(p), float(low), float(high), seeds, int(reps.size), se)


def _check_paired(paired_seeds: bool, seeds: list[int]) -> None:
    if paired_seeds and len(set(seeds)) != 1:
        raise ValueError(f"paired seeds need the same number of seeds in both arms, got {seeds}")


def _check(arms: Sequence[Sequence[np.ndarray]]) -> None:
    sizes = {len(a) for a in arms}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"every arm needs one array per dataset, got {[len(a) for a in arms]}")


def paired_delta(a: Sequence[np.ndarray], b: Sequence[np.ndarray] | None = None, n_boot: int = N_BOOT,
                 seed: int = 0, paired_seeds: bool = False) -> Bootstrap:
    """mean(a) - mean(b) over seeds and queries, averaged over datasets, with its two-level bootstrap.

    a, b: per dataset, an array [seeds, queries] of per-query nDCG@10 (row s: the run of training seed
    s; column q: the same query in both arms). b None: the statistic is mean(a) itself (its interval,
    e.g. for error bars). paired_seeds: row s of a and row s of b are runs of the same training seed (the
    module docstring), drawn together. Raises ValueError if the arms' query columns differ, or their seeds
    when paired."""
    arms = [list(a)] + ([list(b)] if b is not None else [])
    _check(arms)
    arrays = [[np.asarray(x, dtype=float) for x in arm] for arm in arms]
    for d, xs in enumerate(zip(*arrays)):
        if any(x.ndim != 2 or x.shape[0] == 0 for x in xs) or len({x.shape[1] for x in xs}) != 1:
            raise ValueError(f"dataset {d}: arrays must be [seeds >= 1, queries] with the same queries, got "
                             f"{[x.shape for x in xs]}")
    for arm in arrays:
        if len({x.shape[0] for x in arm}) != 1:
            raise ValueError(f"an arm must have the same seeds on every dataset, got {[x.shape[0] for x in arm]}")
    _check_paired(paired_seeds, [arm[0].shape[0] for arm in arrays])
    sign = [1.0, -1.0]
    delta = float(np.mean([sum(s * x.mean() for s, x in zip(sign, xs)) for xs in zip(*arrays)]))
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for start in range(0, n_boot, 1000):
        m = min(1000, n_boot - start)
        seed_draws = [rng.integers(0, arm[0].shape[0], size=(m, arm[0].shape[0])) for arm in arrays]  # [m, S]
        if paired_seeds:
            seed_draws = [seed_draws[0]] * len(arrays)
        total = np.zeros(m)
        for xs in zip(*arrays):
            q = rng.integers(0, xs[0].shape[1], size=(m, xs[0].shape[1]))  # [m, Q] shared by the arms
            for s, x, draw in zip(sign, xs, seed_draws):
                per_query = x[draw].mean(axis=1)  # [m, Q]: each query averaged over the drawn seeds
                total += s * np.take_along_axis(per_query, q, axis=1).mean(axis=1)
        reps[start:start + m] = total / len(arrays[0])
    return _summary(delta, reps, min(arm[0].shape[0] for arm in arrays))


@dataclass(frozen=True)
class PowerSplit:
    """Where a paired_delta's standard error comes from, and what more seeds or queries would buy.

    se: the two-level bootstrap's (seeds and queries); se_queries: the same statistic with each arm's seeds
    averaged first, so only the queries are drawn (what infinitely many seeds would leave); se_seeds: the rest,
    sqrt(se^2 - se_queries^2). Under the usual scaling, the seed part's variance goes as 1/seeds and the query
    part's as 1/queries (approximate: a bootstrap of 3 seeds is coarse)."""

    se: float
    se_queries: float
    se_seeds: float
    seeds: int

    @property
    def floor(self) -> float:
        """The MDE no number of training seeds can go below: MDE_Z x se_queries."""
        return MDE_Z * self.se_queries

    def mde(self, seeds: int | None = None, query_factor: float = 1.0) -> float:
        """The MDE with `seeds` training seeds per arm (default: as now) and `query_factor` x the queries."""
        if query_factor <= 0 or (seeds is not None and seeds < 1):
            raise ValueError(f"seeds must be >= 1 and query_factor > 0, got {seeds}, {query_factor}")
        s = self.seeds if seeds is None else seeds
        return MDE_Z * float(np.sqrt(self.se_queries ** 2 / query_factor + self.se_seeds ** 2 * self.seeds / s))

    def seeds_for(self, target: float, most: int = 1000) -> int | None:
        """The fewest training seeds per arm whose MDE is <= `target` (None: the queries' floor is above it)."""
        if self.floor > target:
            return None
        return next((s for s in range(1, most + 1) if self.mde(s) <= target), None)


def power_split(a: Sequence[np.ndarray], b: Sequence[np.ndarray] | None = None, n_boot: int = N_BOOT,
                seed: int = 0, paired_seeds: bool = False, total: Bootstrap | None = None) -> PowerSplit:
    """`paired_delta`'s standard error split into its queries' part and its training seeds' part (`PowerSplit`).
    total: that paired_delta, already computed with the same arguments (else it is computed here)."""
    total = paired_delta(a, b, n_boot, seed, paired_seeds) if total is None else total
    means = lambda arm: [np.asarray(x, dtype=float).mean(axis=0, keepdims=True) for x in arm]  # noqa: E731
    queries = paired_delta(means(a), means(b) if b is not None else None, n_boot, seed)
    return PowerSplit(total.se, queries.se, float(np.sqrt(max(total.se ** 2 - queries.se ** 2, 0.0))), total.seeds)


def median_ratio(a: np.ndarray, b: np.ndarray, null: float = 1.0, n_boot: int = 2000, seed: int = 0) -> Bootstrap:
    """Claim 4's statistic: median over queries of a's time / median over queries of b's, a query's time
    being its mean over training seeds and timing passes; with its bootstrap at every level (seeds, each
    drawn seed's passes, then queries).

    a, b: [passes, queries] times of two systems timed in the same passes, or [seeds, passes, queries] when a
    is timed for several training seeds of one model (b timed beside each, in the same passes). Row r: pass r,
    column q: the same query; paired at every level, so one draw of each serves both. Returns the ratio as
    `delta`, its 95% interval, the two-sided p against `null` (e.g. 1.0: as fast as b), and as `seeds` the
    fewer of the seeds and passes (the passes alone for [passes, queries]). One pass leaves the pass level
    out: the interval is then over queries (and seeds) only."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a, b = (a[None], b[None]) if a.ndim == 2 else (a, b)
    if a.ndim != 3 or a.shape != b.shape or 0 in a.shape:
        raise ValueError(f"a and b must be [passes, queries] or [seeds, passes, queries] of one shape, got "
                         f"{np.shape(a)} and {np.shape(b)}")
    if not null > 0:
        raise ValueError(f"null must be a positive ratio, got {null}")
    n_seed, n_pass, n_q = a.shape
    ratio = float(np.median(a.mean(axis=(0, 1))) / np.median(b.mean(axis=(0, 1))))
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for start in range(0, n_boot, 200):
        m = min(200, n_boot - start)
        seeds = rng.integers(0, n_seed, size=(m, n_seed, 1))
        passes = rng.integers(0, n_pass, size=(m, n_seed, n_pass))
        queries = rng.integers(0, n_q, size=(m, n_q))
        ta, tb = (np.take_along_axis(x[seeds, passes].mean(axis=(1, 2)), queries, axis=1) for x in (a, b))  # [m, Q]
        reps[start:start + m] = np.median(ta, axis=1) / np.median(tb, axis=1)
    return _summary(ratio, reps, n_pass if n_seed == 1 else min(n_seed, n_pass), null)


def _gap(xa: np.ndarray, ya: np.ndarray, xb: np.ndarray, yb: np.ndarray, grid: int) -> float:
    """Mean over the common x range of interp_a(x) - interp_b(x) (linear, points sorted by x)."""
    lo, hi = max(xa.min(), xb.min()), min(xa.max(), xb.max())
    if not lo < hi:
        return float("nan")
    x = np.linspace(lo, hi, grid)
    ia, ib = np.argsort(xa, kind="stable"), np.argsort(xb, kind="stable")
    return float(np.mean(np.interp(x, xa[ia], ya[ia]) - np.interp(x, xb[ib], yb[ib])))


def curve_gap(a: Sequence[tuple[np.ndarray, np.ndarray]], b: Sequence[tuple[np.ndarray, np.ndarray]],
              n_boot: int = 2000, seed: int = 0, grid: int = 64, paired_seeds: bool = False) -> Bootstrap:
    """Claim 1's statistic: curve a's nDCG@10 minus curve b's, averaged over their common FLOPS range.

    a, b: per dataset, (flops [lambdas, seeds], ndcg [lambdas, seeds, queries]) of one arm. A curve's
    point at lambda l is (mean over seeds of log FLOPS, mean over seeds and queries of nDCG@10); each
    curve is interpolated linearly in log FLOPS, and the gap is averaged over `grid` points of the
    overlap of the two curves' FLOPS ranges (no extrapolation). Replicates whose curves do not overlap
    are left out (`replicates` counts the rest); no overlap at all gives delta and p NaN. paired_seeds: seed s
    of a and of b are runs of one training seed, drawn together (`paired_delta`)."""
    _check([a, b])
    arms = [[(np.log(np.asarray(f, dtype=float)), np.asarray(y, dtype=float)) for f, y in arm] for arm in (a, b)]
    for d, ((fa, ya), (fb, yb)) in enumerate(zip(*arms)):
        if fa.shape != ya.shape[:2] or fb.shape != yb.shape[:2] or ya.shape[2] != yb.shape[2]:
            raise ValueError(f"dataset {d}: flops [L, S] and ndcg [L, S, Q] with the same queries, got "
                             f"{fa.shape}, {ya.shape}, {fb.shape}, {yb.shape}")

    def stat(draws: list[np.ndarray] | None, queries: list[np.ndarray] | None) -> float:
        gaps = []
        for d, ((fa, ya), (fb, yb)) in enumerate(zip(*arms)):
            pts = []
            for k, (f, y) in enumerate(((fa, ya), (fb, yb))):
                s = draws[k] if draws is not None else np.arange(f.shape[1])
                yq = y[:, s, :].mean(axis=1)  # [L, Q]
                if queries is not None:
                    yq = yq[:, queries[d]]
                pts.append((f[:, s].mean(axis=1), yq.mean(axis=1)))
            gaps.append(_gap(*pts[0], *pts[1], grid))
        return float(np.mean(gaps))

    _check_paired(paired_seeds, [arm[0][0].shape[1] for arm in arms])
    delta = stat(None, None)
    rng = np.random.default_rng(seed)
    reps = np.full(n_boot, np.nan)
    if np.isfinite(delta):
        for r in range(n_boot):
            draws = [rng.integers(0, arm[0][0].shape[1], size=arm[0][0].shape[1]) for arm in arms]
            if paired_seeds:
                draws = [draws[0]] * len(arms)
            queries = [rng.integers(0, ya.shape[2], size=ya.shape[2]) for _, ya in arms[0]]
            reps[r] = stat(draws, queries)
    return _summary(delta, reps, min(arm[0][0].shape[1] for arm in arms))


def curve_power_split(a: Sequence[tuple[np.ndarray, np.ndarray]], b: Sequence[tuple[np.ndarray, np.ndarray]],
                      n_boot: int = 2000, seed: int = 0, grid: int = 64, paired_seeds: bool = False,
                      total: Bootstrap | None = None) -> PowerSplit:
    """`curve_gap`'s standard error split as `power_split` splits `paired_delta`'s: the queries' part is the same
    statistic with each arm's seeds collapsed first (a point's log FLOPS and per-query nDCG@10 averaged over
    seeds, which is the point `curve_gap` draws), so only the queries are drawn; the seeds' part is the rest.
    The curve is not linear in a seed's points, so the 1/seeds scaling of the seed part is rougher here.
    total: that curve_gap, already computed with the same arguments (else it is computed here)."""
    total = curve_gap(a, b, n_boot, seed, grid, paired_seeds) if total is None else total

    def collapsed(arm):
        return [(np.exp(np.log(np.asarray(f, dtype=float)).mean(axis=1, keepdims=True)),
                 np.asarray(y, dtype=float).mean(axis=1, keepdims=True)) for f, y in arm]

    queries = curve_gap(collapsed(a), collapsed(b), n_boot, seed, grid)
    return PowerSplit(total.se, queries.se, float(np.sqrt(max(total.se ** 2 - queries.se ** 2, 0.0))), total.seeds)


# ----------------------------------------------------------------------------- from the result tables

def _rows(per_query, dataset: str, where: dict):
    """The rows of a per_query.csv table of `dataset` matching `where` (floats compared with isclose)."""
    part = per_query[per_query["dataset"] == dataset]
    for k, v in where.items():
        part = part[np.isclose(part[k], v)] if isinstance(v, float) else part[part[k] == v]
    return part


def seed_matrix(per_query, dataset: str, queries: Sequence[str] | None = None, **where) -> np.ndarray:
    """[seeds, queries] of per-query nDCG@10 from a per_query.csv table: the rows of `dataset` matching
    `where` (e.g. teacher="dense", or arm="idf-flops", lambda=0.01), seeds in ascending order, queries
    in `queries`' order (default: sorted). Raises ValueError if no row matches or a seed lacks a query."""
    part = _rows(per_query, dataset, where)
    if part.empty:
        raise ValueError(f"per-query table: no rows for {dataset} {where}")
    wide = part.pivot_table(index="seed", columns="query_id", values="nDCG@10", aggfunc="first").sort_index()
    cols = sorted(wide.columns.astype(str)) if queries is None else list(queries)
    wide.columns = wide.columns.astype(str)
    missing = [q for q in cols if q not in wide.columns]
    if missing or wide[cols].isna().any().any():
        raise ValueError(f"per-query table: {dataset} {where}: a seed lacks queries (e.g. {missing[:3]})")
    return wide[cols].to_numpy(dtype=float)


def seed_ids(per_query, dataset: str, **where) -> list[int]:
    """The training seeds (ascending) of a per_query.csv table's rows of `dataset` matching `where`: the rows
    `seed_matrix` stacks. Two arms with the same ids can be bootstrapped with `paired_seeds`."""
    return sorted(int(s) for s in _rows(per_query, dataset, where)["seed"].unique())


def curve_arrays(curve, per_query, dataset: str, arm: str, queries: Sequence[str] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(flops [lambdas, seeds], ndcg [lambdas, seeds, queries]) of one arm of the sweep, for `curve_gap`."""
    part = curve[(curve["dataset"] == dataset) & (curve["arm"] == arm)]
    lams = sorted(part["lambda"].unique())
    if not lams:
        raise ValueError(f"curve: no rows for {dataset} {arm}")
    flops = np.stack([part[np.isclose(part["lambda"], lam)].sort_values("seed")["flops"].to_numpy(float)
                      for lam in lams])
    ndcg = np.stack([seed_matrix(per_query, dataset, queries, arm=arm, **{"lambda": float(lam)}) for lam in lams])
    if flops.shape != ndcg.shape[:2]:
        raise ValueError(f"curve: {dataset} {arm}: the FLOPS and per-query rows disagree on the seeds")
    return flops, ndcg
