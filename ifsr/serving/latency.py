"""Client-side query latency on one engine: inference-free vs BM25 vs siamese (SPEC §4).

`measure_latency(...)` returns one row per (engine, system, corpus size) with COLUMNS first;
`latency_ratios(df)` and `latency_plot(df, path)` summarise it. What is timed, per query, single
thread (torch and PISA at 1 thread), top-k, after a warm-up pass over every query:
- inference-free: tokenize + IDF lookup (no model) -> PISA weighted query on the impact index;
- bm25: raw text -> PISA's own tokenizer, porter2, stopwords -> BM25 over the same documents' text;
- siamese: the document encoder encodes the query on CPU -> the same impact index.
Systems are interleaved per query in rotating order, so background load hits them alike. Engines are those of
`ifsr.serving.engines.ENGINES`: PISA runs all three systems, the others (exact, Seismic) the vector two.

Corpora (`ifsr.serving.corpora`): SciFact (title + " " + text); every real passage at hand (SciFact + the
distinct passages of pairs/*.jsonl.gz); a scale series resampled from those (text and vector together,
so BM25 and the sparse index see the same corpus; flagged `resampled`). Query sides: `ifsr.serving.queryside`.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from ifsr.core.encoder import resolve_model_path
from ifsr.data.beir import data_dir as resolve_data_dir, default_idf_path
from ifsr.serving.base import vocab_terms
from ifsr.serving.corpora import (LatencyCorpus, load_encoders, provenance, real_corpus, resample,
                                  resolve_cache_dir, scifact_queries)
from ifsr.serving.engines import ENGINES, ExactEngine, topk_agreement
from ifsr.serving.pisa import PisaBM25Index, PisaImpactIndex, index_built, posting_lengths
from ifsr.serving.queryside import inference_free_query, pisa_idf_query, siamese_query, torch_threads

COLUMNS = ["engine", "system", "docs", "p50_ms", "p90_ms", "p99_ms", "qps", "top10_agreement"]
SYSTEMS = ("inference-free", "bm25", "siamese")


# --------------------------------------------------------------------------------------- timing
def _index_path(workdir: str | os.PathLike, corpus: LatencyCorpus, kind: str) -> Path:
    """Index folder for a corpus, keyed by its content (indexes are reused across calls)."""
    parts = [corpus.name, len(corpus.texts), corpus.vectors.nnz, corpus.texts[0], corpus.texts[-1]]
    key = hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:16]
    return Path(workdir) / f"pisa-{kind}-{key}"


def _pipelines(corpus: LatencyCorpus, engines: Sequence[str], systems: Sequence[str], workdir: Path, tokenizer,
               idf: np.ndarray, doc_encoder, o: dict, show_progress: bool) -> dict[tuple[str, str], tuple]:
    """(engine, system) -> (text -> top-k rows: the whole client-side pipeline, for one corpus;
    text -> index terms it reads, or None; posting-list lengths of that index, or None)."""
    out: dict[tuple[str, str], tuple] = {}
    terms = vocab_terms(tokenizer)
    if_query = inference_free_query(tokenizer, idf, o["min_query_idf"], o["max_query_terms"])
    siamese = siamese_query(doc_encoder) if "siamese" in systems else None
    def impact_index(kind: str, vectors: Callable[[], sp.csr_matrix]) -> PisaImpactIndex:
        path = _index_path(workdir, corpus, f"{kind}{o['doc_scale']:g}")
        if index_built(path):  # reused: the vectors are not even computed
            return PisaImpactIndex(path, terms, o["algorithm"], o["k"], o["query_scale"])
        return PisaImpactIndex.from_docs(vectors(), o["k"], path=path, terms=terms, doc_scale=o["doc_scale"],
                                         algorithm=o["algorithm"], query_scale=o["query_scale"], reuse=True,
                                         show_progress=show_progress)

    if "pisa" in engines and "inference-free" in systems:
        fold = o["fold_idf"]  # idf_j * w_j(d) stored as the impact: the query is binary, scores unchanged
        pisa = impact_index("impactidf" if fold else "impact",
                            lambda: (corpus.vectors @ sp.diags(np.asarray(idf, np.float32))).tocsr() if fold
                            else corpus.vectors)
        pisa_if = pisa_idf_query(tokenizer, idf, o["query_scale"], o["min_query_idf"], o["max_query_terms"], fold)
        out[("pisa", "inference-free")] = (lambda t: pisa.search_prepared(pisa_if(t))[0], pisa_if,
                                           posting_lengths(pisa.path))
    if "pisa" in engines and siamese is not None:
        plain = impact_index("impact", lambda: corpus.vectors)
        out[("pisa", "siamese")] = (lambda t: plain.search_ids(*siamese(t))[0],
                                    lambda t: plain.query_dict(*siamese(t)),
                                    posting_lengths(plain.path))
    if "pisa" in engines and "bm25" in systems:
        path = _index_path(workdir, corpus, "bm25")
        bm25 = PisaBM25Index.from_texts(corpus.texts, o["k"], path=path, algorithm=o["algorithm"], reuse=True,
                                        show_progress=show_progress)
        out[("pisa", "bm25")] = (lambda t: bm25.search(t)[0], bm25.query_terms, posting_lengths(path))
    others = [e for e in ENGINES if e in engines and e != "pisa"] if set(systems) - {"bm25"} else []
    for name in others:  # any other registered engine: built from the vectors, searched by ids and weights
        engine = ENGINES[name].from_docs(corpus.vectors, o["k"], **(o["options"].get(name) or {}))
        if "inference-free" in systems:
            out[(name, "inference-free")] = (lambda t, e=engine: e.search_ids(*if_query(t))[0], None, None)
        if siamese is not None:
            out[(name, "siamese")] = (lambda t, e=engine: e.search_ids(*siamese(t))[0], None, None)
    return out


def _references(corpus: LatencyCorpus, queries: Sequence[str], systems: set[str], tokenizer, idf, doc_encoder,
                workdir: Path, k: int) -> dict[str, list[np.ndarray]]:
    """Exact top-k per system: the exact engine on the unpruned query vector (float32, ties by row);
    bm25: PISA's exhaustive ranked_or over the same BM25 index."""
    ref = {}
    exact = ExactEngine.from_docs(corpus.vectors, k) if systems - {"bm25"} else None
    if "inference-free" in systems:
        full = inference_free_query(tokenizer, idf)
        ref["inference-free"] = [exact.search_ids(*full(q))[0] for q in queries]
    if "siamese" in systems:
        siamese = siamese_query(doc_encoder)
        ref["siamese"] = [exact.search_ids(*siamese(q))[0] for q in queries]
    if "bm25" in systems:
        exhaustive = PisaBM25Index(_index_path(workdir, corpus, "bm25"), "ranked_or", k)
        ref["bm25"] = [exhaustive.search(q)[0] for q in queries]
    return ref


def latency_table(corpora: Sequence[LatencyCorpus], queries: Sequence[str], tokenizer, idf: np.ndarray, doc_encoder,
                  workdir: str | os.PathLike, engines: Sequence[str] = ("pisa",), systems: Sequence[str] = SYSTEMS,
                  k: int = 10, algorithm: str = "maxscore", doc_scale: float = 100.0, query_scale: float = 10.0,
                  min_query_idf: float = 0.0, max_query_terms: int | None = None, fold_idf: bool = True,
                  repeats: int = 1, clock: str = "wall", seismic: dict | None = None,
                  show_progress: bool = True) -> pd.DataFrame:
    """Time every (engine, system) on every corpus; one row each (COLUMNS first, then details).

    A warm-up pass runs every pipeline on every query (its results give top10_agreement against
    `_references`); then `repeats` timed passes, systems interleaved per query in rotating order.
    Pruning options (min_query_idf, max_query_terms) apply to the inference-free query only.
    fold_idf: the inference-free system queries an index of idf_j * w_j(d) impacts with weight-1
    terms (exact same scores; no query weights to pass); otherwise the plain index with integer
    query weights round(idf * query_scale). The siamese system always uses the plain index.
    clock="wall" times elapsed time (what a client sees); clock="cpu" times the thread's CPU time,
    which on a loaded shared machine leaves out the time the process waited for a core. Both are
    recorded: the other clock's median is the column `<other>_p50_ms`.
    """
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    bad = [e for e in engines if e not in ENGINES] + [s for s in systems if s not in SYSTEMS]
    if bad or not queries or repeats <= 0:
        raise ValueError(f"unknown engines/systems {bad}, or no queries, or repeats={repeats} (engines: "
                         f"{list(ENGINES)}, systems: {SYSTEMS})")
    if doc_encoder is None and "siamese" in systems:
        raise ValueError("the siamese system needs a doc_encoder")
    o = {"k": k, "algorithm": algorithm, "doc_scale": doc_scale, "query_scale": query_scale,
         "options": {"seismic": seismic},
         "min_query_idf": min_query_idf, "max_query_terms": max_query_terms, "fold_idf": fold_idf}
    rows = []
    with torch_threads(1):
        for corpus in corpora:
            pipes = _pipelines(corpus, engines, systems, Path(workdir), tokenizer, idf, doc_encoder, o, show_progress)
            runs = {key: pipe[0] for key, pipe in pipes.items()}
            found = {key: [run(q) for q in queries] for key, run in runs.items()}  # warm-up pass
            postings = {key: np.mean([sum(lengths.get(t, 0) for t in terms_of(q)) for q in queries])
                        if terms_of else np.nan for key, (_, terms_of, lengths) in pipes.items()}
            ref = _references(corpus, queries, {s for _, s in runs}, tokenizer, idf, doc_encoder, Path(workdir), k)
            times, keys = {key: {"wall": [], "cpu": []} for key in runs}, list(runs)
            bar = tqdm(total=repeats * len(queries), desc=f"time {corpus.name} ({len(corpus.texts):,} docs)",
                       disable=not show_progress)
            for rep in range(repeats):
                for qi, text in enumerate(queries):
                    shift = (qi + rep) % len(keys)  # rotate the order: no system always runs first
                    for key in keys[shift:] + keys[:shift]:
                        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
                        runs[key](text)  # client side: query encoding + retrieval
                        w1, c1 = time.perf_counter_ns(), time.thread_time_ns()
                        times[key]["wall"].append(w1 - w0)
                        times[key]["cpu"].append(c1 - c0)
                    bar.update(1)
            bar.close()
            for (engine, system), both in times.items():
                ms = np.asarray(both[clock], dtype=np.float64) / 1e6
                other = "cpu" if clock == "wall" else "wall"
                rows.append({"engine": engine, "system": system, "docs": len(corpus.texts),
                             "p50_ms": np.percentile(ms, 50), "p90_ms": np.percentile(ms, 90),
                             "p99_ms": np.percentile(ms, 99), "qps": 1000.0 / ms.mean(),
                             "top10_agreement": topk_agreement(found[(engine, system)], ref[system], k),
                             f"{other}_p50_ms": np.percentile(np.asarray(both[other]) / 1e6, 50),
                             "postings_per_query": postings[(engine, system)],
                             "corpus": corpus.name, "resampled": corpus.resampled, "n_queries": len(queries),
                             "repeats": repeats, "clock": clock, "algorithm": algorithm, "doc_scale": doc_scale,
                             "query_scale": query_scale, "fold_idf": fold_idf, "min_query_idf": min_query_idf,
                             "max_query_terms": max_query_terms})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------- entry point
def measure_latency(data_dir: str | os.PathLike | None = None, sizes: Sequence[str | int] = ("scifact", "real"),
                    n_queries: int = 300, engines: Sequence[str] = ("pisa",), systems: Sequence[str] = SYSTEMS,
                    model: str = "splade-tiny", idf_path: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = None, max_length: int = 256,
                    max_passages: int | None = None, resample_from: str = "real", seed: int = 0,
                    show_progress: bool = True, **options) -> pd.DataFrame:
    """The latency table for the notebook: one row per (engine, system, corpus size).

    model: "splade-tiny", an MLM path (with `idf_path`, default the MS MARCO table) or a saved ifsr
    model (SparseEncoder / OpenSearch layout, its own IDF). sizes: "scifact" (5,183 docs), "real"
    (every real passage at hand), or an int: that many documents resampled from `resample_from`
    ("real", or "scifact" when only SciFact is encoded with this model; flagged `resampled`);
    `max_passages` caps the pair passages in "real" (a quicker, partial corpus).
    Queries: `n_queries` SciFact test queries drawn with `seed`. `options` go to `latency_table`
    (k, algorithm, doc_scale, query_scale, min_query_idf, max_query_terms, fold_idf, repeats, clock,
    seismic). Vectors and indexes are cached under `cache_dir`. `table.attrs["provenance"]` holds the
    data and model checksums for the manifest.
    """
    data_dir = resolve_data_dir(data_dir)
    cache_dir = resolve_cache_dir(cache_dir)
    for size in sizes:
        if not (size in ("scifact", "real") or (isinstance(size, int) and size > 0)):
            raise ValueError(f"sizes take 'scifact', 'real' or positive ints, got {size!r}")
    if resample_from not in ("scifact", "real"):
        raise ValueError(f"resample_from must be 'scifact' or 'real', got {resample_from!r}")
    queries = scifact_queries(data_dir, n_queries, seed)
    idf_path = idf_path or default_idf_path(data_dir)
    doc_encoder, query_encoder, weights = load_encoders(model, idf_path, max_length)
    needed = {s for s in sizes if isinstance(s, str)} | ({resample_from} if any(isinstance(s, int) for s in sizes) else set())
    base = {w: real_corpus(data_dir, doc_encoder, cache_dir, model, weights, w, max_passages, show_progress)
            for w in ("scifact", "real") if w in needed}
    corpora = [base[s] if isinstance(s, str) else resample(base[resample_from], s, seed) for s in sizes]
    workdir = cache_dir / "latency-indexes" / f"{weights[:16]}-L{max_length}"
    table = latency_table(corpora, queries, doc_encoder.tokenizer, query_encoder.idf, doc_encoder, workdir,
                          engines, systems, show_progress=show_progress, **options)
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


def latency_ratios(df: pd.DataFrame, stat: str = "p50_ms") -> pd.DataFrame:
    """Per (engine, docs): inference-free / BM25 (BM25 on PISA, the same engine for PISA rows) and
    siamese / inference-free ratios of `stat`."""
    table = df.pivot_table(index=["engine", "docs"], columns="system", values=stat, aggfunc="first")
    bm25 = df[(df["system"] == "bm25") & (df["engine"] == "pisa")].set_index("docs")[stat]
    out = pd.DataFrame(index=table.index)
    if "inference-free" in table:
        out["if_over_bm25"] = [table.loc[i, "inference-free"] / bm25.get(i[1], np.nan) for i in table.index]
        if "siamese" in table:
            out["siamese_over_if"] = table["siamese"] / table["inference-free"]
    return out.reset_index()


def latency_plot(df: pd.DataFrame, path: str | os.PathLike, stat: str = "p50_ms") -> None:
    """`stat` vs corpus size (log x), one line per (engine, system); resampled sizes drawn hollow."""
    if stat not in df.columns:
        raise ValueError(f"no column {stat!r} in the latency table")
    fig = Figure(figsize=(6, 4))  # no pyplot: no backend is selected or changed
    ax = fig.subplots()
    for (engine, system), part in df.sort_values("docs").groupby(["engine", "system"], sort=True):
        line, = ax.plot(part["docs"], part[stat], marker="o", label=f"{system} ({engine})")
        if "resampled" in part:
            res = part[part["resampled"].astype(bool)]
            ax.plot(res["docs"], res[stat], "o", mfc="white", color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("documents (hollow: resampled corpus)")
    ax.set_ylabel(f"{stat.replace('_ms', '')} latency per query (ms)")
    ax.set_title("Client-side latency, single thread, top-10")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
