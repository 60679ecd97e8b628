"""Client-side query latency on inverted-index engines: inference-free vs BM25 vs siamese (SPEC §4).

`measure_latency(...)` returns one row per (engine setting, system, corpus size) with COLUMNS first;
`latency_ratios(df)` and `latency_plot(df, path)` summarise it. What is timed, per query, single
thread (torch and every engine at 1 thread), top-k, after a warm-up pass over every query:
- inference-free: tokenize + IDF lookup (no model) -> the engine's index of the document vectors;
- bm25: on PISA, raw text -> PISA's own tokenizer, porter2, stopwords -> PISA's BM25; on every vector
  engine, BM25 as impact vectors (`Bm25Index.impact_matrix`: the BM25 score of each (document, term)
  precomputed, idf folded in) with the query's token counts, i.e. the same engine doing the same work;
- siamese: the document encoder encodes the query on CPU -> the same index as inference-free.
Engines are settings of `ifsr.serving.engines.ENGINES`, e.g. "pisa(algorithm=block_max_wand)",
"bmp(bsize=64,alpha=0.9)" (`parse_engine`). Systems are interleaved per query in rotating order, so
background load hits them alike. Each row also has: 2-thread throughput (queries/s with two client
threads), index size, top-10 agreement with exact scoring of the same function (inference-free and
siamese: ifsr's exact scorer of the same vectors and query, a pruned query included; PISA BM25: its exhaustive ranked_or; BM25
impacts: the exact scorer of those impacts; a document tied with the reference's 10th counts as
agreeing), nDCG@10 on the SciFact qrels and its change from that reference, and, on inference-free
rows, p50 ratios to BM25 on the same engine and to the fastest BM25 of the corpus that agrees with exact
BM25 (>= 0.99) with 95% intervals and p-values (against GOAL_RATIO and PAPER_RATIO) from a two-level bootstrap
over timing passes and queries (`ifsr.eval.stats.median_ratio`; paired: one pass, one query, every system).

Corpora (`ifsr.exp.corpora`): SciFact (title + " " + text); every real passage at hand (SciFact + the
distinct passages of pairs/*.jsonl.gz); a scale series that holds every real document once and resamples
the rest from that whole pool (text and vector together; `distinct_docs` says how many are real, copies are
distractors for the qrels).
"""
# Over 300 lines: the main latency table's timing, agreement and ratio bootstrap (the pipelines live in exp/pipelines.py).
from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from ifsr.core.constants import GOAL_RATIO, MIN_AGREEMENT, PAPER_RATIO  # claim 4's thresholds
from ifsr.core.retrieval import to_run
from ifsr.data.beir import data_dir as resolve_data_dir, default_idf_path, resolve_cache_dir
from ifsr.eval.metrics import evaluate_run
from ifsr.eval.stats import median_ratio
from ifsr.exp.corpora import LatencyCorpus, check_sizes, latency_corpora, load_encoders, provenance, scifact_queries
from ifsr.exp.pipelines import (TIE_DEPTH, Bm25Impacts, EngineCache, Pipe, check_engine_setting, pipelines,
                                reference_rankings)
from ifsr.models import resolve_model_path
from ifsr.serving.engines import ENGINES, parse_engine, topk_agreement
from ifsr.serving.queryside import torch_threads

COLUMNS = ["engine", "system", "docs", "p50_ms", "p90_ms", "p99_ms", "qps", "qps_2threads", "top10_agreement",
           "delta_nDCG@10", "index_mb"]
SYSTEMS = ("inference-free", "bm25", "siamese")


def ranked_run(found: Sequence[np.ndarray], query_ids: Sequence[str], doc_ids: Sequence[str], k: int = 10) -> dict:
    """The run of per-query top-k rows in rank order (the rank is the score, so the engine's own tie
    order is kept; -1 pads a short list)."""
    rows = np.full((len(found), k), -1, dtype=np.int64)
    for i, r in enumerate(found):
        rows[i, : min(k, len(r))] = np.asarray(r, dtype=np.int64)[:k]
    scores = np.where(rows >= 0, np.arange(k, 0, -1, dtype=np.float32)[None, :], -np.inf).astype(np.float32)
    return to_run(list(query_ids), doc_ids, rows, scores)


def ranked_ndcg(found: Sequence[np.ndarray], query_ids: Sequence[str], doc_ids: Sequence[str],
                qrels: Mapping[str, Mapping[str, int]], k: int = 10) -> float:
    """nDCG@10 of per-query top-k rows in rank order (`ranked_run`)."""
    return evaluate_run(ranked_run(found, query_ids, doc_ids, k), qrels, ("nDCG@10",))["nDCG@10"]


def best_bm25(rows: Mapping[tuple[str, str], tuple[float, float]], min_agreement: float = MIN_AGREEMENT) -> tuple[str, str] | None:
    """The BM25 reference of a corpus: {(engine, "bm25"): (top-10 agreement, median ms)} -> the fastest of those
    agreeing with exact BM25 >= `min_agreement`, else the fastest of all (None: no BM25 row)."""
    ok = [key for key, (agreement, _) in rows.items() if agreement >= min_agreement] or list(rows)
    return min(ok, key=lambda key: rows[key][1]) if ok else None


def time_passes(pipes: Mapping[tuple[str, str], Pipe], queries: Sequence[str], repeats: int, desc: str,
                show_progress: bool = True) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """`repeats` timed passes over the queries, every pipeline on each query in an order rotated per query and
    pass (no system always runs first, so background load hits them alike): per pipeline, "wall" (elapsed) and
    "cpu" (the thread's CPU time) ms, each [repeats, queries]."""
    times = {key: {"wall": np.zeros((repeats, len(queries))), "cpu": np.zeros((repeats, len(queries)))} for key in pipes}
    keys = list(pipes)
    bar = tqdm(total=repeats * len(queries), desc=desc, disable=not show_progress)
    for rep in range(repeats):
        for qi, text in enumerate(queries):
            shift = (qi + rep) % len(keys)
            for key in keys[shift:] + keys[:shift]:
                run = pipes[key].run
                c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
                run(text)  # client side: query encoding + retrieval
                w1, c1 = time.perf_counter_ns(), time.thread_time_ns()
                times[key]["wall"][rep, qi] = (w1 - w0) / 1e6
                times[key]["cpu"][rep, qi] = (c1 - c0) / 1e6
            bar.update(1)
    bar.close()
    return times


def two_thread_qps(pipes: Mapping[tuple[str, str], Pipe], queries: Sequence[str]) -> dict[tuple[str, str], float]:
    """Queries per second of each pipeline with two client threads over the queries."""
    qps = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for key, pipe in pipes.items():
            t0 = time.perf_counter()
            list(pool.map(pipe.run, queries))
            qps[key] = len(queries) / (time.perf_counter() - t0)
    return qps


def _ratios(key: tuple[str, str], times: Mapping, clock: str, fastest: tuple[str, str] | None, n_boot: int,
            seed: int) -> dict[str, object]:
    """An inference-free row's p50 ratios to BM25 on its engine, to the corpus's fastest BM25 and (inverted) of
    the siamese pipeline to it, each with its interval and p against GOAL_RATIO (and PAPER_RATIO)."""
    engine = key[0]
    row: dict[str, object] = {}
    pairs = {"bm25": (engine, "bm25") if (engine, "bm25") in times else None, "best_bm25": fastest,
             "siamese": (engine, "siamese") if (engine, "siamese") in times else None}
    for name, other_key in pairs.items():
        if other_key is None:
            continue
        mine, theirs = times[key][clock], times[other_key][clock]  # [repeats, queries] ms
        col = "siamese_over_if" if name == "siamese" else f"if_over_{name}"
        a, b = (theirs, mine) if name == "siamese" else (mine, theirs)
        stat = median_ratio(a, b, GOAL_RATIO, n_boot, seed)
        row[col], row[f"{col}_lo"], row[f"{col}_hi"], row[f"{col}_p"] = stat.delta, stat.low, stat.high, stat.p
        if name != "siamese":  # the same replicates (same seed), p against the paper's ratio
            row[f"{col}_p_paper"] = median_ratio(a, b, PAPER_RATIO, n_boot, seed).p
    if fastest is not None:
        row["best_bm25_engine"] = fastest[0]
    return row


def _checked(engines: Sequence[str], systems: Sequence[str], queries: Sequence[str], repeats: int, clock: str,
             max_docs: Mapping[str, int] | None, bm25_engine: str | None, doc_encoder,
             query_ids: Sequence[str] | None) -> Callable[[str, int], bool]:
    """`latency_table`'s arguments checked (ValueError for a bad one); returns timed_on(engine setting, corpus
    size): whether `max_docs` lets that setting be timed on a corpus of that size."""
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    bad = [s for s in systems if s not in SYSTEMS]
    for spec in [*engines, *([bm25_engine] if bm25_engine else [])]:
        check_engine_setting(spec)  # ValueError for an unknown engine, a malformed setting or an unknown option
    if bad or not queries or repeats <= 0 or len(set(engines)) != len(engines):
        raise ValueError(f"unknown systems {bad}, or no queries, or repeats={repeats}, or repeated engines "
                         f"{list(engines)} (engines: {list(ENGINES)}, systems: {SYSTEMS})")
    limits = dict(max_docs or {})
    bad_limits = {e: v for e, v in limits.items() if e not in ENGINES and e.replace(" ", "") not in
                  [x.replace(" ", "") for x in engines] or not isinstance(v, int) or v <= 0}
    if bad_limits:
        raise ValueError(f"max_docs {bad_limits}: keys are engine names or settings of `engines`, values positive ints")

    def timed_on(spec: str, n: int) -> bool:
        label = spec.replace(" ", "")
        limit = next((v for e, v in limits.items() if e.replace(" ", "") == label), limits.get(parse_engine(spec)[0]))
        return limit is None or n <= limit
    if doc_encoder is None and "siamese" in systems:
        raise ValueError("the siamese system needs a doc_encoder")
    if query_ids is not None and len(query_ids) != len(queries):
        raise ValueError(f"{len(query_ids)} query ids for {len(queries)} queries")
    return timed_on


def latency_table(corpora: Sequence[LatencyCorpus], queries: Sequence[str], tokenizer, idf: np.ndarray, doc_encoder,
                  workdir: str | os.PathLike, engines: Sequence[str] = ("pisa",), systems: Sequence[str] = SYSTEMS,
                  k: int = 10, algorithm: str = "maxscore", doc_scale: float = 100.0, query_scale: float = 10.0,
                  min_query_idf: float = 0.0, max_query_terms: int | None = None, fold_idf: bool = True,
                  repeats: int = 1, clock: str = "wall", query_ids: Sequence[str] | None = None,
                  qrels: Mapping[str, Mapping[str, int]] | None = None, n_boot: int = 2000, seed: int = 0,
                  max_docs: Mapping[str, int] | None = None, min_agreement: float = MIN_AGREEMENT,
                  bm25_engine: str | None = None, engine_cache: EngineCache | None = None,
                  show_progress: bool = True) -> pd.DataFrame:
    """Time every (engine setting, system) on every corpus; one row each (COLUMNS first, then details).

    A warm-up pass runs every pipeline on every query (its results give top10_agreement and nDCG@10;
    agreement counts a document the exact reference scores equal to its own 10th as agreeing, `topk_agreement`);
    then `repeats` timed passes, systems interleaved per query in rotating order; then one pass with two
    client threads (qps_2threads). Pruning options (min_query_idf, max_query_terms) apply to the
    inference-free query only, and its agreement is against exact scoring of that same pruned query. algorithm, doc_scale,
    query_scale: PISA's defaults where a setting names none. fold_idf: PISA's inference-free index
    holds idf_j * w_j(d) and the query is binary (same scores); otherwise the plain index with integer
    query weights round(idf * query_scale). clock="wall" times elapsed time (what a client sees);
    clock="cpu" the thread's CPU time; the other clock's median is `<other>_p50_ms`. nDCG@10 needs
    `query_ids` (aligned with `queries`), `qrels` and the corpus's doc_ids, else NaN. max_docs: the
    largest corpus an engine is timed on, by setting ("bmp(bsize=64)") or by name ("lucene"), e.g. to
    leave out engines whose build does not fit the machine's time at 1M documents (unnamed: every corpus).
    bm25_engine: time BM25 on that engine setting alone (its index built once per corpus: PISA's is keyed by the
    texts), not on every engine, and the other systems not on it unless it is in `engines` (e.g. an approximate
    engine's inference-free rows against BM25 on PISA). engine_cache: built indexes of the non-PISA engines,
    shared across calls (`EngineCache`). The "best BM25" of a corpus (if_over_best_bm25, best_bm25_engine) is its fastest BM25 row among those whose
    agreement with exact BM25 is >= `min_agreement` (the fastest of all when none is).
    Ratios (if_over_bm25, if_over_best_bm25, siamese_over_if): medians over queries of each query's mean time over
    the `repeats` passes, with `_lo`/`_hi` (95%) and `_p` (two-sided, against GOAL_RATIO; `_p_paper` against
    PAPER_RATIO) from `n_boot` replicates of the two-level bootstrap over passes and queries (`median_ratio`).
    """
    # Over 60 lines: one warm-up and timing loop over (corpus, engine, system) whose state (reference runs, BM25 rows) the ratios need together.
    timed_on = _checked(engines, systems, queries, repeats, clock, max_docs, bm25_engine, doc_encoder, query_ids)
    o = {"k": k, "algorithm": algorithm, "doc_scale": doc_scale, "query_scale": query_scale,
         "min_query_idf": min_query_idf, "max_query_terms": max_query_terms, "fold_idf": fold_idf}
    other = "cpu" if clock == "wall" else "wall"
    rows, kept = [], {}
    with torch_threads(1):
        for corpus in corpora:
            bm25 = Bm25Impacts(corpus.texts)
            active = [e for e in engines if timed_on(e, len(corpus.texts))]
            if not active:
                continue
            plan = {e: list(systems) if bm25_engine is None else [s for s in systems if s != "bm25"] for e in active}
            if bm25_engine is not None and "bm25" in systems:
                plan.setdefault(bm25_engine, []).append("bm25")
            pipes, cache = {}, engine_cache if engine_cache is not None else EngineCache(2 * len(plan) + 1)
            for spec, mine in plan.items():
                pipes.update(pipelines(corpus, [spec], mine, Path(workdir), tokenizer, idf, doc_encoder, bm25, o,
                                        show_progress, cache))
            found = {key: [p.run(q) for q in queries] for key, p in pipes.items()}  # warm-up pass
            deep = {r: reference_rankings(r, corpus, queries, tokenizer, idf, doc_encoder, bm25, Path(workdir),
                                            max(k, TIE_DEPTH), o) for r in dict.fromkeys(p.reference for p in pipes.values())}
            refs = {r: [ids[:k] for ids, _ in lists] for r, lists in deep.items()}
            agree = {key: topk_agreement(found[key], refs[p.reference], k, ties=deep[p.reference])
                     for key, p in pipes.items()}
            judged = query_ids is not None and qrels is not None and corpus.doc_ids is not None
            ndcg = (lambda hits: ranked_ndcg(hits, query_ids, corpus.doc_ids, qrels, k)) if judged else (lambda hits: np.nan)
            ref_ndcg = {r: ndcg(hits) for r, hits in refs.items()}
            times = time_passes(pipes, queries, repeats, f"time {corpus.name} ({len(corpus.texts):,} docs)", show_progress)
            qps2 = two_thread_qps(pipes, queries)
            fastest = best_bm25({key: (agree[key], float(np.median(times[key][clock].mean(axis=0)))) for key in pipes
                                 if key[1] == "bm25"}, min_agreement)
            for key, pipe in pipes.items():
                engine, system = key
                kept[(engine, system, len(corpus.texts))] = times[key][clock]
                ms = times[key][clock].ravel()
                hits = found[key]
                row = {"engine": engine, "system": system, "docs": len(corpus.texts),
                       "p50_ms": np.percentile(ms, 50), "p90_ms": np.percentile(ms, 90),
                       "p99_ms": np.percentile(ms, 99), "qps": 1000.0 / ms.mean(), "qps_2threads": qps2[key],
                       "top10_agreement": agree[key],
                       "delta_nDCG@10": ndcg(hits) - ref_ndcg[pipe.reference], "index_mb": pipe.size_bytes / 2**20,
                       "nDCG@10": ndcg(hits), "reference": pipe.reference,
                       f"{other}_p50_ms": np.percentile(times[key][other], 50),
                       "postings_per_query": np.mean([sum(pipe.lengths.get(t, 0) for t in pipe.terms_of(q))
                                                      for q in queries]) if pipe.lengths is not None else np.nan,
                       "corpus": corpus.name, "resampled": corpus.resampled,
                       "distinct_docs": corpus.distinct if corpus.distinct is not None else len(corpus.texts),
                       "n_queries": len(queries), "repeats": repeats, "clock": clock}
                if system == "inference-free":
                    row.update(_ratios(key, times, clock, fastest, n_boot, seed))
                rows.append(row)
    table = pd.DataFrame(rows)
    for name, value in {"algorithm": algorithm, "doc_scale": doc_scale, "query_scale": query_scale,
                        "fold_idf": fold_idf, "min_query_idf": min_query_idf, "max_query_terms": max_query_terms}.items():
        table[name] = value
    table.attrs["times"] = kept  # (engine, system, docs) -> [repeats, queries] ms on `clock`, for pooled ratios
    return table


# ----------------------------------------------------------------------------------- entry point
def measure_latency(data_dir: str | os.PathLike | None = None, sizes: Sequence[str | int] = ("scifact", "real"),
                    n_queries: int = 300, engines: Sequence[str] = ("pisa",), systems: Sequence[str] = SYSTEMS,
                    model: str = "splade-tiny", idf_path: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = None, max_length: int = 256,
                    max_passages: int | None = None, resample_from: str = "real", seed: int = 0,
                    show_progress: bool = True, **options) -> pd.DataFrame:
    """The latency table for the notebook: one row per (engine setting, system, corpus size).

    model: "splade-tiny", an MLM path (with `idf_path`, default the MS MARCO table) or a saved ifsr
    model (SparseEncoder / OpenSearch layout, its own IDF). sizes: "scifact" (5,183 docs), "real"
    (every real passage at hand), or an int: that many documents resampled from `resample_from`
    ("real", or "scifact" when only SciFact is encoded with this model; flagged `resampled`);
    `max_passages` caps the pair passages in "real" (a quicker, partial corpus).
    Queries: `n_queries` SciFact test queries drawn with `seed`. `options` go to `latency_table`
    (k, algorithm, doc_scale, query_scale, min_query_idf, max_query_terms, fold_idf, repeats, clock,
    n_boot); engine options go in the settings ("bmp(alpha=0.9)"). Vectors and indexes are cached under `cache_dir`. `table.attrs["provenance"]` holds the
    data and model checksums for the manifest.
    """
    check_sizes(sizes, resample_from)
    data_dir = resolve_data_dir(data_dir)
    cache_dir = resolve_cache_dir(cache_dir)
    query_ids, queries, qrels = scifact_queries(data_dir, n_queries, seed, with_qrels=True)
    idf_path = idf_path or default_idf_path(data_dir)
    doc_encoder, query_encoder, weights = load_encoders(model, idf_path, max_length)
    corpora = latency_corpora(sizes, data_dir, doc_encoder, cache_dir, model, weights, resample_from, max_passages,
                              seed, show_progress)
    workdir = cache_dir / "latency-indexes" / f"{weights[:16]}-L{max_length}"
    table = latency_table(corpora, queries, doc_encoder.tokenizer, query_encoder.idf, doc_encoder, workdir,
                          engines, systems, query_ids=query_ids, qrels=qrels, seed=seed, show_progress=show_progress,
                          **options)
    data, models = provenance(data_dir, resolve_model_path(model), idf_path)
    table.attrs["provenance"] = {"data": data, "models": models}  # for write_table(..., **table.attrs[...])
    return table


def model_from_curve(spec: str) -> str:
    """"<curve.csv>:<arm>:<lambda>" -> the trained student of that row of an ablation's curve (its
    `model` column), e.g. "results/cpu/idf_flops/curve.csv:idf-flops:0.01"; with several training seeds,
    the lowest seed's run. The run must exist."""
    path, arm, lam = (spec.rsplit(":", 2) + ["", ""])[:3]
    if not Path(path).is_file() or not arm or not lam:
        raise ValueError(f"model_from {spec!r}: expected '<curve.csv>:<arm>:<lambda>' with an existing curve.csv")
    curve = pd.read_csv(path)
    rows = curve[(curve["arm"] == arm) & np.isclose(curve["lambda"], float(lam))]
    if rows.empty:
        known = sorted({(a, float(x)) for a, x in zip(curve["arm"], curve["lambda"])}, key=str)
        raise ValueError(f"{path}: no row with arm {arm!r} and lambda {lam}; rows: {known}")
    model = str((rows.sort_values("seed", kind="stable") if "seed" in rows else rows)["model"].iloc[0])
    if not (Path(model) / "modules.json").is_file():
        raise FileNotFoundError(f"{path}: the {arm} lambda={lam} student {model} is not on disk (re-run its notebook)")
    return model


RATIO_COLUMNS = ["engine", "docs", "distinct_docs", "if_over_bm25", "if_over_bm25_lo", "if_over_bm25_hi",
                 "if_over_bm25_p", "if_over_bm25_p_paper", "best_bm25_engine", "if_over_best_bm25",
                 "if_over_best_bm25_lo", "if_over_best_bm25_hi", "if_over_best_bm25_p", "if_over_best_bm25_p_paper",
                 "siamese_over_if", "top10_agreement", "delta_nDCG@10", "repeats"]


def latency_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Per (engine setting, corpus size), from its inference-free row: p50 ratios to BM25 on the same
    engine and to the fastest BM25 of that corpus (95% intervals and p against 1.0 and 1.1, over timing passes
    and queries), siamese / inference-free,
    top-10 agreement with exact scoring and the nDCG@10 change that costs."""
    free = df[df["system"] == "inference-free"]
    return free.reindex(columns=RATIO_COLUMNS).reset_index(drop=True)


STYLES = {"inference-free": "-", "bm25": "--", "siamese": ":"}


def latency_plot(df: pd.DataFrame, path: str | os.PathLike, stat: str = "p50_ms") -> None:
    """`stat` vs corpus size (log-log), a colour per engine setting, a line style per system (solid:
    inference-free, dashed: BM25, dotted: siamese); sizes with resampled documents drawn hollow."""
    if stat not in df.columns:
        raise ValueError(f"no column {stat!r} in the latency table")
    fig = Figure(figsize=(7.5, 4.8))  # no pyplot: no backend is selected or changed
    ax = fig.subplots()
    colors = {e: f"C{i % 10}" for i, e in enumerate(dict.fromkeys(df["engine"]))}
    for (engine, system), part in df.sort_values("docs").groupby(["engine", "system"], sort=False):
        ax.plot(part["docs"], part[stat], STYLES.get(system, "-."), marker="o", color=colors[engine],
                label=f"{system} · {engine}")
        if "resampled" in part:
            res = part[part["resampled"].astype(bool)]
            ax.plot(res["docs"], res[stat], "o", mfc="white", color=colors[engine])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("documents (hollow: with resampled copies)")
    ax.set_ylabel(f"{stat.replace('_ms', '')} latency per query (ms)")
    ax.set_title("Client-side latency, single thread, top-10")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
