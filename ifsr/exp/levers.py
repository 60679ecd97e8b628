"""Model-side latency levers and what they cost in relevance: query pruning, document pruning, and the
FLOPS weight the student was trained with.

The inference-free query's weights are fixed (IDF), so pruning it is free at query time; a document's
weights can be pruned once, at index time. Each lever setting gets one row: nDCG@10 on SciFact test and
Cranfield by exact scoring of the pruned vectors (the function itself, no engine), its change from the
unpruned model with a 95% paired bootstrap interval over queries, and the single-thread p50 of the
inference-free pipeline on one engine setting over one corpus of the latency study
(`ifsr.exp.latency.latency_table`, its top-10 agreement measured against exact scoring of the same
pruned documents and pruned query: how faithfully the engine computes the lever's function; what the
lever itself costs is the nDCG@10 change), timed beside BM25 on the same engine (p50 ratio with its 95%
bootstrap interval over queries; BM25 is never pruned).
Levers: "query-top-k" (keep the k highest-IDF tokens), "query-min-idf" (drop tokens with IDF below a
threshold), "doc-top-k" (keep each document's k largest weights; ties by vocabulary id), "lambda" (the
idf-flops student of that FLOPS weight on the ablation's sparsity-relevance curve, its first seed, in
place of the model: the lever the paper pulls; its SciFact rows are in-domain, as on the curve). Levers
combine with "+" ("lambda=0.08+query-min-idf=2": that student with its queries pruned), each kind once.
"""
# Over 300 lines: one study: the lever grammar, its table over students and seeds, the Pareto columns and figure.
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ifsr.core.constants import GOAL_RATIO, PAPER_RATIO
from ifsr.data.beir import data_dir as resolve_data_dir, default_idf_path, load_beir, resolve_cache_dir
from ifsr.eval.evaluate import encode_texts
from ifsr.eval.metrics import per_query
from ifsr.eval.stats import median_ratio, paired_delta
from ifsr.exp.ablations import lambda_student
from ifsr.exp.config import LatencyConfig
from ifsr.exp.corpora import (CHUNK, check_sizes, latency_corpora, load_encoders, provenance,
                              scifact_queries)
from ifsr.exp.latency import latency_table, ranked_run
from ifsr.exp.pipelines import EngineCache
from ifsr.manifest import sha256_dir
from ifsr.models import resolve_model_path, saved_layout
from ifsr.serving.engines import ENGINES, ExactEngine, parse_engine
from ifsr.serving.queryside import inference_free_query
from ifsr.tables import write_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LEVERS = ("none", "query-top-k", "query-min-idf", "doc-top-k", "lambda")
COLUMNS = ["lever", "engine", "value", "seeds", "nDCG@10 scifact", "delta scifact", "delta scifact lo", "delta scifact hi",
           "nDCG@10 cranfield", "delta cranfield", "delta cranfield lo", "delta cranfield hi", "p50_ms",
           "if_over_bm25", "if_over_bm25_lo", "if_over_bm25_hi", "if_over_bm25_p", "if_over_bm25_p_paper", "repeats",
           "top10_agreement", "approximate", "no_relevance_cost", "pareto", "doc_nnz", "query_terms"]
DATASETS = ("scifact", "cranfield")
MODELS_SEP = " ; "  # the `model` column of a row with several models (each training seed's student)


@dataclass(frozen=True)
class Lever:
    """One setting: `kind` in LEVERS and its value (k, an IDF threshold or a FLOPS weight; None for "none"),
    applied after the levers of `base` (a combined setting, "lambda=0.08+query-min-idf=2": one of each
    kind at most, "none" alone). The table's `lever` column is `label` ("lambda=0.08+query-min-idf"),
    its `value` column the last part's value, so a combined sweep groups like a single one."""

    kind: str
    value: float | None = None
    base: tuple[Lever, ...] = ()
    engine: str | None = None  # the engine setting this row is searched on ("...@two-phase(top_terms=8)"); None: the study's

    def __post_init__(self):
        if self.kind not in LEVERS:
            raise ValueError(f"lever must be one of {LEVERS}, got {self.kind!r}")
        if (self.kind == "none") != (self.value is None):
            raise ValueError(f"lever {self.kind!r} takes {'no value' if self.kind == 'none' else 'a value'}")
        if self.kind in ("query-top-k", "doc-top-k") and not (float(self.value).is_integer() and self.value > 0):
            raise ValueError(f"lever {self.kind!r} takes a positive integer k, got {self.value!r}")
        if self.kind == "lambda" and not self.value >= 0:
            raise ValueError(f"lever 'lambda' takes a FLOPS weight >= 0, got {self.value!r}")
        if self.engine is not None:
            parse_engine(self.engine)  # ValueError for an unknown engine or a malformed setting
        kinds = [part.kind for part in self.base] + [self.kind]
        if len(kinds) > 1 and ("none" in kinds or len(set(kinds)) != len(kinds) or any(p.base for p in self.base)):
            raise ValueError(f"a combined lever takes each kind once and never 'none', got {'+'.join(kinds)}")

    @property
    def parts(self) -> tuple[Lever, ...]:
        return (*self.base, Lever(self.kind, self.value))

    def _value_of(self, kind: str) -> float | None:
        return next((p.value for p in self.parts if p.kind == kind), None)

    @property
    def label(self) -> str:
        """The `lever` column: the base parts with their values, then this part's kind."""
        return "+".join([f"{p.kind}={p.value:g}" for p in self.base] + [self.kind])

    @property
    def name(self) -> str:
        """The setting as parsed ("lambda=0.08+query-min-idf=2")."""
        return "+".join(p.kind if p.value is None else f"{p.kind}={p.value:g}" for p in self.parts)

    def engine_for(self, default: str) -> str:
        """The engine setting this row is searched on: its own (after "@"), else the study's `default`."""
        return (self.engine or default).replace(" ", "")

    @property
    def lam(self) -> float | None:
        """The FLOPS weight of the student this setting times (None: the model itself)."""
        return self._value_of("lambda")

    @property
    def query_options(self) -> dict:
        top_k, min_idf = self._value_of("query-top-k"), self._value_of("query-min-idf")
        return {"max_terms": None if top_k is None else int(top_k), "min_idf": 0.0 if min_idf is None else float(min_idf)}

    def docs(self, vectors: sp.csr_matrix) -> sp.csr_matrix:
        k = self._value_of("doc-top-k")
        return vectors if k is None else prune_docs(vectors, int(k))


def parse_levers(specs: Sequence[str]) -> list[Lever]:
    """["none", "query-top-k=8", "doc-top-k=64", "lambda=0.08+query-min-idf=2", ...] -> Levers (ValueError on a
    malformed one). "<lever>@<engine setting>" searches that row on its own engine, e.g.
    "lambda=0.005@two-phase(base=pisa,top_terms=8,candidates=1000)" or "lambda=0.005@seismic(heap_factor=0.8)"."""
    out = []
    for spec in specs:
        try:
            levers, at, engine = str(spec).partition("@")
            if at and not engine.strip():
                raise ValueError("'@' must be followed by an engine setting")
            parts = []
            for part in levers.split("+"):
                kind, eq, value = part.strip().partition("=")
                parts.append(Lever(kind, float(value) if eq else None))
            out.append(Lever(parts[-1].kind, parts[-1].value, tuple(parts[:-1]), engine.strip() or None))
        except ValueError as e:
            raise ValueError(f"lever {spec!r}: {e} (e.g. 'none', 'query-top-k=8', 'query-min-idf=3', "
                             "'doc-top-k=64', 'lambda=0.02', 'lambda=0.08+query-min-idf=2', 'lambda=0.02@seismic')") from None
    return out


def prune_docs(vectors: sp.csr_matrix, top_k: int) -> sp.csr_matrix:
    """Each row's `top_k` largest weights (ties: lower vocabulary id first), the rest dropped."""
    if top_k <= 0:
        raise ValueError(f"top_k must be positive, got {top_k}")
    m = sp.csr_matrix(vectors, dtype=np.float32, copy=True)
    m.sort_indices()
    lengths = np.diff(m.indptr)
    row = np.repeat(np.arange(m.shape[0]), lengths)
    order = np.lexsort((m.indices, -m.data, row))  # by row, weight desc, id asc
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order)) - np.repeat(m.indptr[:-1], lengths)
    m.data[rank >= top_k] = 0
    m.eliminate_zeros()
    return m


def query_ndcg(vectors: sp.csr_matrix, doc_ids: Sequence[str], queries: dict[str, str], qrels, encode,
               k: int = 10, engine: str = "exact") -> np.ndarray:
    """Per-query nDCG@10 of exact scoring (ties by row) of `vectors` for the encoded queries, one value per
    query of `qrels` in its order (0 where nothing was found): its mean is the set's nDCG@10. An approximate
    `engine` setting (Seismic, two-phase: what it returns may differ from exact scoring by design) ranks with
    its own index of `vectors` instead; an exact one computes the same function, so exact scoring stands in."""
    qids = list(queries)
    name, opts = parse_engine(engine)
    if ENGINES[name].approximate:
        index = ENGINES[name].from_docs(sp.csr_matrix(vectors), k, **opts)
        rows = [index.search_ids(*encode(queries[q]))[0] for q in qids]
    else:
        rows, _ = ExactEngine.from_docs(vectors, k).search_many([encode(queries[q]) for q in qids])
    got = per_query(ranked_run(list(rows), qids, list(doc_ids), k), qrels, "nDCG@10")
    return np.array([got[str(q)] for q in qrels], dtype=float)


def ndcg_change(pruned: np.ndarray, reference: np.ndarray, seed: int = 0, same_models: bool = False) -> dict[str, float]:
    """The nDCG@10 change mean(pruned) - mean(reference) and its 95% interval: `ifsr.eval.stats.paired_delta`
    on per-query nDCG@10, [queries] (one model: the interval is over queries only) or [seeds, queries] (a
    "lambda" lever's students, one row per training seed: over seeds and queries). same_models: row s of both
    is the same model (a pruning or engine lever on the reference's own students), so the pair is per seed too:
    the interval of the per-(seed, query) differences, drawn over seeds and queries."""
    a, b = np.atleast_2d(pruned), np.atleast_2d(reference)
    if same_models:
        if a.shape != b.shape:
            raise ValueError(f"same_models needs the same [seeds, queries], got {a.shape} and {b.shape}")
        d = paired_delta([a - b], seed=seed)
        return {"delta": d.delta, "lo": d.low, "hi": d.high}
    b = paired_delta([a], [b], seed=seed)
    return {"delta": b.delta, "lo": b.low, "hi": b.high}


def _postings(both: pd.DataFrame) -> dict[str, float]:
    """Mean posting-list entries per query of the inference-free and BM25 rows (PISA engines; else NaN)."""
    if "postings_per_query" not in both:
        return {}
    by = both.set_index("system")["postings_per_query"]
    return {"postings_per_query": by.get("inference-free", float("nan")),
            "bm25_postings_per_query": by.get("bm25", float("nan"))}


def _timing_columns(runs: list[list[np.ndarray]], timed: list[tuple], repeats: int, seed: int) -> dict[str, float]:
    """A lever row's timing columns, pooled over its models (one, or each training seed's student): runs, per model,
    [inference-free, BM25] times [repeats, queries]; timed, per model, (its latency table, its document vectors,
    its mean query terms)."""
    free, bm25 = (np.stack([r[i] for r in runs]) for i in (0, 1))  # [seeds, repeats, queries] ms
    stat = median_ratio(free, bm25, GOAL_RATIO, seed=seed)
    tables = [t for t, _, _ in timed]  # per model: its inference-free row and BM25's (postings per query)
    mine = [t[t["system"] == "inference-free"] for t in tables]
    return {"p50_ms": float(np.percentile(free, 50)), "bm25_p50_ms": float(np.percentile(bm25, 50)),
            "top10_agreement": min(float(t["top10_agreement"].iloc[0]) for t in mine),
            "if_over_bm25": stat.delta, "if_over_bm25_lo": stat.low, "if_over_bm25_hi": stat.high,
            "if_over_bm25_p": stat.p, "if_over_bm25_p_paper": median_ratio(free, bm25, PAPER_RATIO, seed=seed).p,
            "repeats": repeats, **pd.DataFrame([_postings(t) for t in tables]).mean().to_dict(),
            "doc_nnz": float(np.mean([v.nnz / v.shape[0] for _, v, _ in timed])),
            "query_terms": float(np.mean([terms for _, _, terms in timed])),
            "index_mb": float(np.mean([t["index_mb"].iloc[0] for t in mine]))}


def lever_table(levers: Sequence[Lever], engine: str, size: str | int = "scifact", data_dir=None,
                model: str = "splade-tiny", cache_dir: str | os.PathLike | None = None, max_length: int = 256,
                n_queries: int = 300, seed: int = 0, repeats: int = 1, resample_from: str = "real",
                max_passages: int | None = None, students: Callable[[float, int], str | os.PathLike] | None = None,
                seeds: int = 1, show_progress: bool = True) -> pd.DataFrame:
    """One row per lever (COLUMNS): relevance by exact scoring on SciFact test and Cranfield, and the
    inference-free p50 on `engine` over the latency corpus `size` ("scifact", "real" or an int resampled
    from `resample_from`: the latency table's corpus of that size, `latency_corpora`). A "lambda" lever
    swaps `model` for `students(lambda, i)`, the model directory of the idf-flops student of that FLOPS weight
    and its i-th training seed (`ifsr.exp.ablations.lambda_student` of an ablation YAML), for i < `seeds`: the
    same documents, each seed's vectors, its own index; its nDCG@10 change and its p50 ratio to BM25 are then
    over seeds too (`ndcg_change`, `ifsr.eval.stats.median_ratio`), and `seeds` says how many (NaN: a fixed
    model, no training seed). Ratios: `if_over_bm25` with `_lo`/`_hi` and `_p` (against the goal, 1.0) and
    `_p_paper` (against the paper's 1.1), from the bootstrap over seeds, `repeats` timing passes and queries."""
    # Over 60 lines: the lever loop over students and seeds shares the encoders, corpora and index cache it builds.
    parse_engine(engine)
    check_sizes([size], resample_from)
    if not levers:
        raise ValueError("no levers: the first is the reference of every nDCG@10 change")
    if any(lever.lam is not None for lever in levers) and students is None:
        raise ValueError("a 'lambda=' lever needs `students`: (FLOPS weight, seed index) -> the model directory of its "
                         "idf-flops student (e.g. ifsr.exp.ablations.lambda_student)")
    if not (isinstance(seeds, int) and seeds >= 1):
        raise ValueError(f"seeds must be a positive int (training seeds per lambda lever), got {seeds!r}")
    data_dir, cache_dir = resolve_data_dir(data_dir), resolve_cache_dir(cache_dir)
    idf_path = default_idf_path(data_dir)
    query_ids, queries, qrels = scifact_queries(data_dir, n_queries, seed, with_qrels=True)
    encoded = {}
    built = EngineCache(max(seeds, 1))  # one row's indexes (a model, or each seed's student) kept for the next

    def encoded_by(name: str):
        """(doc encoder, query encoder, eval sets, latency corpus, index workdir) of one document model."""
        if name not in encoded:
            doc, query, weights = load_encoders(name, idf_path, max_length)
            sets = {}
            for ds_name in ("scifact", "cranfield"):
                ds = load_beir(ds_name, "test", data_dir=data_dir, download=False)
                vectors = encode_texts(doc, ds.doc_texts(), weights, cache_dir, show_progress=show_progress, model=name,
                                       chunk=CHUNK)
                sets[ds_name] = (vectors, ds.doc_ids, {q: ds.queries[q] for q in ds.query_ids},
                                 {q: ds.qrels[q] for q in ds.query_ids})
            corpus, = latency_corpora([size], data_dir, doc, cache_dir, name, weights, resample_from, max_passages,
                                      seed, show_progress)
            encoded[name] = (doc, query, sets, corpus, cache_dir / "latency-indexes" / f"{weights[:16]}-L{max_length}")
        return encoded[name]

    rows, reference, models, ref_names = [], {}, {}, None
    bm25_label = engine.replace(" ", "")
    for lever in levers:
        names = [str(students(lever.lam, i)) for i in range(seeds)] if lever.lam is not None else [model]
        mine = lever.engine_for(engine)
        ndcg, timed, runs = {}, [], []
        for name in names:  # one model, or each training seed's student
            models[name] = resolve_model_path(name)
            doc, query, sets, corpus, workdir = encoded_by(name)
            encode = inference_free_query(doc.tokenizer, query.idf, **lever.query_options)
            for ds_name, (vectors, doc_ids, qs, qr) in sets.items():
                ndcg.setdefault(ds_name, []).append(query_ndcg(lever.docs(vectors), doc_ids, qs, qr, encode,
                                                               engine=mine))
            pruned = replace(corpus, name=f"{corpus.name}-{lever.name}", vectors=lever.docs(corpus.vectors))
            both = latency_table([pruned], queries, doc.tokenizer, query.idf, None, Path(workdir), [mine],
                                 ("inference-free", "bm25"), min_query_idf=lever.query_options["min_idf"],
                                 max_query_terms=lever.query_options["max_terms"], repeats=repeats,
                                 query_ids=query_ids, qrels=qrels, seed=seed, bm25_engine=bm25_label,
                                 engine_cache=built, show_progress=show_progress)
            times = both.attrs["times"]
            n = len(pruned.texts)
            runs.append([times[(mine, "inference-free", n)], times[(bm25_label, "bm25", n)]])
            timed.append((both, pruned.vectors,
                          float(np.mean([len(encode(q)[0]) for q in queries]))))
        row = {"lever": lever.label, "value": lever.value, "seeds": len(names) if lever.lam is not None else np.nan}
        ref_names = names if ref_names is None else ref_names
        same = names == ref_names  # the reference's own model(s): the pair is per seed as well as per query
        for ds_name, per_seed in ndcg.items():
            got = np.stack(per_seed)  # [seeds, queries]
            change = ndcg_change(got, reference.setdefault(ds_name, got), seed, same_models=same)
            row.update({f"nDCG@10 {ds_name}": float(got.mean()), f"delta {ds_name}": change["delta"],
                        f"delta {ds_name} lo": change["lo"], f"delta {ds_name} hi": change["hi"]})
        row.update(_timing_columns(runs, timed, repeats, seed))
        row.update({"engine": mine, "approximate": ENGINES[parse_engine(mine)[0]].approximate,
                    "docs": len(corpus.texts), "corpus": corpus.name, "model": MODELS_SEP.join(names)})
        rows.append(row)
    table = pareto(pd.DataFrame(rows)).reindex(columns=COLUMNS + [
        "bm25_p50_ms", "postings_per_query", "bm25_postings_per_query", "index_mb", "docs", "corpus", "model"])
    # every model timed (the unpruned one only when a row used it: a table of "lambda" levers has only students);
    # an MLM first, so the IDF file its queries read is recorded (a saved student carries its own)
    first, *rest = sorted(models.values(), key=lambda path: saved_layout(path) is not None)
    data, model_sums = provenance(data_dir, first, idf_path)
    model_sums.update({str(path): sha256_dir(path) for path in rest})
    data["cranfield-test"] = load_beir("cranfield", "test", data_dir=data_dir, download=False).checksum()
    table.attrs["provenance"] = {"data": data, "models": model_sums}
    return table


def pareto(table: pd.DataFrame) -> pd.DataFrame:
    """The table with `no_relevance_cost` (the nDCG@10 change's 95% interval holds 0 on both sets: nothing is
    shown lost) and `pareto` (no other row on the same engine, whatever its options, is at least as fast, p50 ratio
    to BM25, and at least as relevant, the mean of the two sets' changes, and better in one)."""
    t = table.copy()
    family = t["engine"].map(lambda e: parse_engine(str(e))[0])
    t["no_relevance_cost"] = np.logical_and.reduce([(t[f"delta {d} lo"] <= 0) & (t[f"delta {d} hi"] >= 0)
                                                    for d in DATASETS])
    gain = t[[f"delta {d}" for d in DATASETS]].mean(axis=1)
    front = []
    for i in t.index:
        peers = t.index[family == family[i]]
        front.append(not any((t.at[j, "if_over_bm25"] <= t.at[i, "if_over_bm25"]) and (gain[j] >= gain[i]) and
                             ((t.at[j, "if_over_bm25"] < t.at[i, "if_over_bm25"]) or (gain[j] > gain[i]))
                             for j in peers if j != i))
    t["pareto"] = front
    return t


def lever_plot(levers: pd.DataFrame, path: str | os.PathLike) -> Figure:
    """The Pareto figure, one panel per set: nDCG@10 change against the p50 ratio to BM25, both with their 95%
    intervals, one colour per engine, each engine's front joined; filled markers: no relevance cost shown. Points
    carry a number (the table's row order), placed clear of each other (`place_labels`); the key under the panels
    names each number's setting. Returns the figure (saved to `path`)."""
    from matplotlib.figure import Figure

    t = levers if "pareto" in levers else pareto(levers)
    family = t["engine"].map(lambda e: parse_engine(str(e))[0])
    number = {i: k + 1 for k, i in enumerate(t.index)}
    key = [f"{number[i]:>2} {family[i]}: {_short(r)}" for i, r in t.iterrows()]
    rows = -(-len(key) // 2)  # the key in two columns
    fig = Figure(figsize=(11, 4.4 + 0.14 * rows))
    axes = fig.subplots(1, len(DATASETS), sharex=True)
    for ax, d in zip(axes, DATASETS):
        for i, (engine, part) in enumerate(t.groupby(family, sort=False)):
            color = f"C{i}"
            x, y = part["if_over_bm25"], part[f"delta {d}"]
            ax.errorbar(x, y, xerr=[x - part["if_over_bm25_lo"], part["if_over_bm25_hi"] - x],
                        yerr=[y - part[f"delta {d} lo"], part[f"delta {d} hi"] - y], fmt="none", ecolor=color,
                        alpha=0.35, lw=0.8)
            free = part["no_relevance_cost"].astype(bool)
            ax.scatter(x[free], y[free], color=color, label=engine, zorder=3)
            ax.scatter(x[~free], y[~free], facecolors="none", edgecolors=color, zorder=3)
            front = part[part["pareto"].astype(bool)].sort_values("if_over_bm25")
            ax.plot(front["if_over_bm25"], front[f"delta {d}"], "-", color=color, alpha=0.6)
        ax.axhline(0, color="grey", lw=0.6)
        for ratio, style in ((GOAL_RATIO, "--"), (PAPER_RATIO, ":")):
            ax.axvline(ratio, color="grey", lw=0.6, ls=style)
        ax.set_xlabel(f"p50 ratio to BM25 ({int(t['docs'].iloc[0]):,} docs)")
        ax.set_ylabel(f"nDCG@10 change, {d}")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Latency levers: relevance change against speed (filled: no cost shown; lines: Pareto fronts)",
                 fontsize=9)
    bottom = (0.16 * rows + 0.1) / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    for ax, d in zip(axes, DATASETS):  # after the layout: the offsets are found in the panels' final pixels
        place_labels(ax, [(str(number[i]), t.at[i, "if_over_bm25"], t.at[i, f"delta {d}"]) for i in t.index])
    half = key[:rows], key[rows:]
    for col, lines in enumerate(half):
        fig.text(0.02 + 0.49 * col, bottom - 0.01, "\n".join(lines), fontsize=6.5, family="monospace", va="top")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return fig


def place_labels(ax: Any, points: list[tuple[str, float, float]], size: float = 6.0) -> None:
    """Annotate each (label, x, y) next to its point at the first offset (points) of a fixed ring whose text box
    overlaps no label placed before it; points are taken left to right, so a cluster fans out. The box is
    estimated from the font size (digits: about 0.6 em wide)."""
    ring = [(3, 3), (3, -3 - size), (-3 - size, 3), (-3 - size, -3 - size), (3, 3 + 1.2 * size),
            (3, -3 - 2.2 * size), (-3 - size, 3 + 1.2 * size), (-3 - size, -3 - 2.2 * size)]
    ring += [(dx, dy * k) for k in (2, 3, 4) for dx, dy in ring]
    scale = ax.figure.dpi / 72.0  # points -> pixels
    placed: list[tuple[float, float, float, float]] = []
    for label, x, y in sorted(points, key=lambda p: (p[1], p[2])):
        px, py = ax.transData.transform((x, y))
        w, h = 0.6 * size * len(label) * scale, size * scale
        for dx, dy in ring:
            box = (px + dx * scale, py + dy * scale, px + dx * scale + w, py + dy * scale + h)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        placed.append(box)
        ax.annotate(label, (x, y), fontsize=size, textcoords="offset points", xytext=(dx, dy))


def _short(row: pd.Series) -> str:
    """A point's label: the lever's setting, and the engine's options where it has any."""
    label, value = str(row["lever"]), row["value"]
    label = label if value != value else f"{label}={value:g}"  # NaN: "none"
    _, opts = parse_engine(str(row["engine"]))
    return label + ("" if not opts else " " + ",".join(f"{k}={v}" for k, v in opts.items() if k != "base"))


def lever_models(table: pd.DataFrame) -> list[str]:
    """Every model a lever table names in its `model` column (a row's several seeds split), in order."""
    return [m for cell in table["model"].dropna() for m in str(cell).split(MODELS_SEP)]


def lever_kwargs(config: LatencyConfig) -> dict[str, Any]:
    """The keywords of `lever_table` from a LatencyConfig (levers parsed, ValueError on a bad one; `students`:
    (FLOPS weight, seed index) -> the lever_students YAML's idf-flops student, `ifsr.exp.ablations.lambda_student`)."""
    c = config
    students = None if c.lever_students is None else functools.partial(
        lambda_student, c.lever_students, data_dir=c.data_dir, cache_dir=c.cache_dir)
    return {"levers": parse_levers(c.levers), "engine": c.lever_engine, "size": c.lever_size,
            "data_dir": c.data_dir, "model": c.model, "cache_dir": c.cache_dir,
            "max_length": c.max_length, "n_queries": c.n_queries, "seed": c.seed, "repeats": c.repeats,
            "resample_from": c.resample_from, "max_passages": c.max_passages,
            "students": students, "seeds": c.lever_seeds}


def lever_study(config: LatencyConfig, out_dir: str | os.PathLike) -> pd.DataFrame | None:
    """The latency notebook's lever section: `lever_table` of a LatencyConfig's levers (None when it names
    none), written to <out_dir>/levers/ (table, levers.png, config and manifest with the data checksums)."""
    if not config.levers:
        return None
    if not config.lever_engine:
        raise ValueError("levers need lever_engine: the engine setting they are timed on")
    table = lever_table(**lever_kwargs(config))
    out = Path(out_dir) / "levers"
    lever_plot(table, out / "levers.png")
    write_table(table, config, out, "table", **table.attrs["provenance"])
    return table

