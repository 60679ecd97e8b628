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
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from ifsr.cache import texts_sha256
from ifsr.core.constants import GOAL_RATIO, MIN_AGREEMENT, PAPER_RATIO  # claim 4's thresholds
from ifsr.core.encoder import resolve_model_path
from ifsr.core.retrieval import to_run
from ifsr.data.beir import data_dir as resolve_data_dir, default_idf_path, resolve_cache_dir
from ifsr.data.mining import Bm25Index
from ifsr.eval.metrics import evaluate_run
from ifsr.eval.stats import median_ratio
from ifsr.exp.corpora import (LatencyCorpus, check_sizes, latency_corpora, load_encoders, provenance,
                              scifact_queries)
from ifsr.serving.base import vocab_terms
from ifsr.serving.engines import ENGINES, ExactEngine, parse_engine, topk_agreement
from ifsr.serving.pisa import PisaBM25Index, PisaImpactIndex, index_built, posting_lengths
from ifsr.serving.queryside import inference_free_query, pisa_idf_query, siamese_query, torch_threads

COLUMNS = ["engine", "system", "docs", "p50_ms", "p90_ms", "p99_ms", "qps", "qps_2threads", "top10_agreement",
           "delta_nDCG@10", "index_mb"]
SYSTEMS = ("inference-free", "bm25", "siamese")
PISA_OPTIONS = ("algorithm", "doc_scale", "bits", "query_scale")


# --------------------------------------------------------------------------------------- timing
def _index_path(workdir: str | os.PathLike, corpus: LatencyCorpus, kind: str, vectors: sp.csr_matrix | None = None) -> Path:
    """Index folder keyed by content, never by name: the texts (sha256), and for a vector index the
    vectors it holds (`vectors`, default the corpus's: shape, nnz, sums of data and indices). Indexes are
    reused across calls, so a query-side lever times the very index of its unpruned row."""
    parts = [kind, texts_sha256(corpus.texts)]
    if vectors is not None:
        m = sp.csr_matrix(vectors)
        parts += [m.shape, m.nnz, float(np.asarray(m.data, np.float64).sum()), int(m.indices.sum(dtype=np.int64))]
    key = hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:16]
    return Path(workdir) / f"pisa-{kind}-{key}"


def _bm25_path(workdir: str | os.PathLike, corpus: LatencyCorpus) -> Path:
    """PISA's BM25 index of a corpus: keyed by its texts alone, in one folder beside the models' index folders
    (`workdir`'s parent), so it is built once per corpus, not once per model or student."""
    return _index_path(Path(workdir).parent / "bm25", corpus, "bm25")


@dataclass
class _Pipe:
    run: Callable[[str], np.ndarray]  # text -> top-k rows: the whole client-side pipeline
    reference: str  # which exact top-k it is compared with (a key of `_reference`)
    size_bytes: float = float("nan")
    terms_of: Callable[[str], object] | None = None  # text -> index terms read (PISA), for postings_per_query
    lengths: dict[str, int] | None = None  # posting-list lengths of that index


class _Bm25Impacts:
    """BM25 as impact vectors over one corpus, built on first use (`Bm25Index.impact_matrix`)."""

    def __init__(self, texts: Sequence[str]):
        self.texts, self._index, self._matrix = texts, None, None

    @property
    def index(self) -> Bm25Index:
        if self._index is None:
            self._index = Bm25Index().build(list(self.texts))
        return self._index

    @property
    def matrix(self) -> sp.csr_matrix:
        if self._matrix is None:
            self._matrix = self.index.impact_matrix()
        return self._matrix


def _check_pisa(label: str, opts: Mapping[str, object]) -> None:
    """ValueError for PISA options that are unknown, or doc_scale with bits, or bits not in 1..32."""
    unknown = sorted(set(opts) - set(PISA_OPTIONS))
    if unknown:
        raise ValueError(f"engine setting {label!r}: unknown PISA options {unknown}; known: {list(PISA_OPTIONS)}")
    if "bits" in opts and "doc_scale" in opts:
        raise ValueError(f"engine setting {label!r}: give doc_scale or bits, not both")
    bits = opts.get("bits")
    if bits is not None and not (isinstance(bits, int) and 1 <= bits <= 32):
        raise ValueError(f"engine setting {label!r}: bits must be an integer in 1..32, got {bits!r}")


NOT_OPTIONS = {"self", "cls", "docs", "k", "path", "terms", "reuse", "show_progress"}  # supplied by the study


def check_engine_setting(spec: str) -> None:
    """ValueError for an engine setting the study would refuse only once the corpora are encoded: an unknown
    engine or malformed setting (`parse_engine`), an option the engine does not take (PISA: PISA_OPTIONS;
    two-phase: its own check; the others: the keywords of their constructor and `from_docs`)."""
    import inspect

    name, opts = parse_engine(spec)
    cls = ENGINES[name]
    if name == "pisa":
        _check_pisa(spec, opts)
    elif hasattr(cls, "check"):
        cls.check(10, opts)
    elif opts:
        known = {p.name for f in (cls.__init__, cls.from_docs) for p in inspect.signature(f).parameters.values()
                 if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - NOT_OPTIONS
        unknown = sorted(set(opts) - known)
        if unknown:
            raise ValueError(f"engine setting {spec!r}: unknown {name} options {unknown}; known: {sorted(known)}")


def _pisa_pipes(corpus: LatencyCorpus, label: str, opts: dict, systems: Sequence[str], workdir: Path, tokenizer,
                idf: np.ndarray, siamese, o: dict, show_progress: bool) -> dict[tuple[str, str], _Pipe]:
    _check_pisa(label, opts)
    bits = opts.get("bits")
    algorithm = str(opts.get("algorithm", o["algorithm"]))
    doc_scale, query_scale = float(opts.get("doc_scale", o["doc_scale"])), float(opts.get("query_scale", o["query_scale"]))
    terms = vocab_terms(tokenizer)

    def impact_index(kind: str, vectors: Callable[[], sp.csr_matrix]) -> PisaImpactIndex:
        """One folder per (corpus, vectors, doc_scale or bits); the algorithm is a query-time option.
        bits: the scale that maps the largest weight to 2**bits - 1 (impacts of `bits` bits)."""
        m = vectors()
        scale = (2**bits - 1) / float(m.data.max()) if bits is not None and m.nnz else doc_scale
        path = _index_path(workdir, corpus, f"{kind}{f'-b{bits}' if bits is not None else f'{doc_scale:g}'}", m)
        if index_built(path):
            return PisaImpactIndex(path, terms, algorithm, o["k"], query_scale)
        return PisaImpactIndex.from_docs(m, o["k"], path=path, terms=terms, doc_scale=scale,
                                         algorithm=algorithm, query_scale=query_scale, reuse=True,
                                         show_progress=show_progress)
    out = {}
    if "inference-free" in systems:
        fold = o["fold_idf"]  # idf_j * w_j(d) stored as the impact: the query is binary, scores unchanged
        pisa = impact_index("impactidf" if fold else "impact",
                            lambda: (corpus.vectors @ sp.diags(np.asarray(idf, np.float32))).tocsr() if fold
                            else corpus.vectors)
        query = pisa_idf_query(tokenizer, idf, query_scale, o["min_query_idf"], o["max_query_terms"], fold)
        out[(label, "inference-free")] = _Pipe(lambda t: pisa.search_prepared(query(t))[0], "if-exact",
                                               pisa.size_bytes(), query, posting_lengths(pisa.path))
    if siamese is not None:
        plain = impact_index("impact", lambda: corpus.vectors)
        out[(label, "siamese")] = _Pipe(lambda t: plain.search_ids(*siamese(t))[0], "siamese-exact", plain.size_bytes(),
                                        lambda t: plain.query_dict(*siamese(t)), posting_lengths(plain.path))
    if "bm25" in systems:
        path = _bm25_path(workdir, corpus)
        bm25 = PisaBM25Index.from_texts(corpus.texts, o["k"], path=path, algorithm=algorithm, reuse=True,
                                        show_progress=show_progress)
        out[(label, "bm25")] = _Pipe(lambda t: bm25.search(t)[0], "bm25-pisa", bm25.size_bytes(), bm25.query_terms,
                                     posting_lengths(path))
    return out


def _pipelines(corpus: LatencyCorpus, engines: Sequence[str], systems: Sequence[str], workdir: Path, tokenizer,
               idf: np.ndarray, doc_encoder, bm25: _Bm25Impacts, o: dict,
               show_progress: bool, built: EngineCache | None = None) -> dict[tuple[str, str], _Pipe]:
    """(engine setting, system) -> its pipeline, for one corpus. `built`: the indexes of the engines other than
    PISA (whose indexes are folders), shared across calls when given."""
    out: dict[tuple[str, str], _Pipe] = {}
    built = EngineCache(len(engines) * 2 + 1) if built is None else built
    if_query = inference_free_query(tokenizer, idf, o["min_query_idf"], o["max_query_terms"])
    siamese = siamese_query(doc_encoder) if "siamese" in systems else None
    for spec in engines:
        name, opts = parse_engine(spec)
        label = spec.replace(" ", "")
        if name == "pisa":
            out.update(_pisa_pipes(corpus, label, opts, systems, workdir, tokenizer, idf, siamese, o, show_progress))
            continue
        cls = ENGINES[name]
        size = lambda e: float(e.size_bytes()) if hasattr(e, "size_bytes") else float("nan")  # noqa: E731
        index_opts = {k: v for k, v in opts.items() if k not in cls.query_options}
        query_opts = {k: v for k, v in opts.items() if k in cls.query_options}

        def build(kind: str, vectors: Callable[[], sp.csr_matrix]):
            """One index per (engine, index-time options, vectors), shared by its query-time settings."""
            m = vectors()
            key = (name, tuple(sorted(index_opts.items())), kind, _index_path("", corpus, kind, m).name)
            engine = built.get(key, lambda: cls.from_docs(m, o["k"], **index_opts))
            return engine.with_query_options(**query_opts) if query_opts else engine
        if set(systems) - {"bm25"}:  # any other registered engine: built from the vectors, searched by ids and weights
            engine = build("vectors", lambda: corpus.vectors)
            if "inference-free" in systems:
                out[(label, "inference-free")] = _Pipe(lambda t, e=engine: e.search_ids(*if_query(t))[0], "if-exact",
                                                       size(engine))
            if siamese is not None:
                out[(label, "siamese")] = _Pipe(lambda t, e=engine: e.search_ids(*siamese(t))[0], "siamese-exact",
                                                size(engine))
        if "bm25" in systems:
            engine = build("bm25", lambda: bm25.matrix)
            out[(label, "bm25")] = _Pipe(lambda t, e=engine: e.search_ids(*bm25.index.query_vector(t))[0],
                                         "bm25-impacts", size(engine))
    return out


class EngineCache:
    """Built in-memory indexes by content key, the `size` most recently used kept (an index of 1M documents
    takes minutes to build and a GB or two to hold): query-time settings of one index, and the rows of a lever
    study that share one, reuse it."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size, self._items = size, {}

    def get(self, key: tuple, build: Callable[[], object]) -> object:
        if key in self._items:
            self._items[key] = self._items.pop(key)  # most recent last
        else:
            while len(self._items) >= self.size:
                self._items.pop(next(iter(self._items)))
            self._items[key] = build()
        return self._items[key]


TIE_DEPTH = 100  # how deep each reference ranks, so that a document tied with its 10th counts as agreeing


def _reference(key: str, corpus: LatencyCorpus, queries: Sequence[str], tokenizer, idf, doc_encoder,
               bm25: _Bm25Impacts, workdir: Path, depth: int, o: Mapping[str, object]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Exact (rows, scores) per query to `depth` for one reference: the exact engine on the same
    inference-free query the engine is given (pruned by o's min_query_idf / max_query_terms, the function
    the engine must reproduce; what the pruning costs is the nDCG@10 change) or the siamese query; PISA's
    exhaustive ranked_or over its BM25 index; the exact engine on BM25 impacts."""
    if key == "bm25-pisa":
        exhaustive = PisaBM25Index(_bm25_path(workdir, corpus), "ranked_or", depth)
        return [tuple(map(np.asarray, exhaustive.search(q))) for q in queries]
    if key == "bm25-impacts":
        exact = ExactEngine.from_docs(bm25.matrix, depth)
        return [exact.search_ids(*bm25.index.query_vector(q)) for q in queries]
    exact = ExactEngine.from_docs(corpus.vectors, depth)
    encode = (inference_free_query(tokenizer, idf, o["min_query_idf"], o["max_query_terms"]) if key == "if-exact"
              else siamese_query(doc_encoder))
    return [exact.search_ids(*encode(q)) for q in queries]


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
    o = {"k": k, "algorithm": algorithm, "doc_scale": doc_scale, "query_scale": query_scale,
         "min_query_idf": min_query_idf, "max_query_terms": max_query_terms, "fold_idf": fold_idf}
    other = "cpu" if clock == "wall" else "wall"
    rows, kept = [], {}
    with torch_threads(1):
        for corpus in corpora:
            bm25 = _Bm25Impacts(corpus.texts)
            active = [e for e in engines if timed_on(e, len(corpus.texts))]
            if not active:
                continue
            plan = {e: list(systems) if bm25_engine is None else [s for s in systems if s != "bm25"] for e in active}
            if bm25_engine is not None and "bm25" in systems:
                plan.setdefault(bm25_engine, []).append("bm25")
            pipes, cache = {}, engine_cache if engine_cache is not None else EngineCache(2 * len(plan) + 1)
            for spec, mine in plan.items():
                pipes.update(_pipelines(corpus, [spec], mine, Path(workdir), tokenizer, idf, doc_encoder, bm25, o,
                                        show_progress, cache))
            found = {key: [p.run(q) for q in queries] for key, p in pipes.items()}  # warm-up pass
            deep = {r: _reference(r, corpus, queries, tokenizer, idf, doc_encoder, bm25, Path(workdir),
                                  max(k, TIE_DEPTH), o) for r in dict.fromkeys(p.reference for p in pipes.values())}
            refs = {r: [ids[:k] for ids, _ in lists] for r, lists in deep.items()}
            agree = {key: topk_agreement(found[key], refs[p.reference], k, ties=deep[p.reference])
                     for key, p in pipes.items()}
            judged = query_ids is not None and qrels is not None and corpus.doc_ids is not None
            ndcg = (lambda hits: ranked_ndcg(hits, query_ids, corpus.doc_ids, qrels, k)) if judged else (lambda hits: np.nan)
            ref_ndcg = {r: ndcg(hits) for r, hits in refs.items()}
            times = {key: {"wall": np.zeros((repeats, len(queries))), "cpu": np.zeros((repeats, len(queries)))}
                     for key in pipes}
            keys = list(pipes)
            bar = tqdm(total=repeats * len(queries), desc=f"time {corpus.name} ({len(corpus.texts):,} docs)",
                       disable=not show_progress)
            for rep in range(repeats):
                for qi, text in enumerate(queries):
                    shift = (qi + rep) % len(keys)  # rotate the order: no system always runs first
                    for key in keys[shift:] + keys[:shift]:
                        run = pipes[key].run
                        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
                        run(text)  # client side: query encoding + retrieval
                        w1, c1 = time.perf_counter_ns(), time.thread_time_ns()
                        times[key]["wall"][rep, qi] = (w1 - w0) / 1e6
                        times[key]["cpu"][rep, qi] = (c1 - c0) / 1e6
                    bar.update(1)
            bar.close()
            qps2 = {}
            with ThreadPoolExecutor(max_workers=2) as pool:
                for key, pipe in pipes.items():
                    t0 = time.perf_counter()
                    list(pool.map(pipe.run, queries))
                    qps2[key] = len(queries) / (time.perf_counter() - t0)
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
                    pairs = {"bm25": (engine, "bm25") if (engine, "bm25") in pipes else None, "best_bm25": fastest,
                             "siamese": (engine, "siamese") if (engine, "siamese") in pipes else None}
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
