"""The latency study's pipelines: for one corpus and each engine setting, the client-side search of every
system (inference-free, BM25, siamese) as one callable, the indexes behind them, and the exact rankings their
top-10 agreement is measured against (`ifsr.exp.latency.latency_table` times them).

Indexes are keyed by content, never by name (`index_path`): PISA's are folders reused across calls (BM25's keyed
by the texts alone, one per corpus: `bm25_path`), the in-memory engines' are kept in an `EngineCache`.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ifsr.cache import texts_sha256
from ifsr.data.mining import Bm25Index
from ifsr.exp.corpora import LatencyCorpus
from ifsr.serving.base import vocab_terms
from ifsr.serving.engines import ENGINES, ExactEngine, parse_engine
from ifsr.serving.pisa import PisaBM25Index, PisaImpactIndex, index_built, posting_lengths
from ifsr.serving.queryside import inference_free_query, pisa_idf_query, siamese_query

PISA_OPTIONS = ("algorithm", "doc_scale", "bits", "query_scale")


def index_path(workdir: str | os.PathLike, corpus: LatencyCorpus, kind: str, vectors: sp.csr_matrix | None = None) -> Path:
    """Index folder keyed by content, never by name: the texts (sha256), and for a vector index the
    vectors it holds (`vectors`, default the corpus's: shape, nnz, sums of data and indices). Indexes are
    reused across calls, so a query-side lever times the very index of its unpruned row."""
    parts = [kind, texts_sha256(corpus.texts)]
    if vectors is not None:
        m = sp.csr_matrix(vectors)
        parts += [m.shape, m.nnz, float(np.asarray(m.data, np.float64).sum()), int(m.indices.sum(dtype=np.int64))]
    key = hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:16]
    return Path(workdir) / f"pisa-{kind}-{key}"


def bm25_path(workdir: str | os.PathLike, corpus: LatencyCorpus) -> Path:
    """PISA's BM25 index of a corpus: keyed by its texts alone, in one folder beside the models' index folders
    (`workdir`'s parent), so it is built once per corpus, not once per model or student."""
    return index_path(Path(workdir).parent / "bm25", corpus, "bm25")


@dataclass
class Pipe:
    run: Callable[[str], np.ndarray]  # text -> top-k rows: the whole client-side pipeline
    reference: str  # which exact top-k it is compared with (a key of `reference_rankings`)
    size_bytes: float = float("nan")
    terms_of: Callable[[str], object] | None = None  # text -> index terms read (PISA), for postings_per_query
    lengths: dict[str, int] | None = None  # posting-list lengths of that index


class Bm25Impacts:
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


def check_pisa(label: str, opts: Mapping[str, object]) -> None:
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
        check_pisa(spec, opts)
    elif hasattr(cls, "check"):
        cls.check(10, opts)
    elif opts:
        known = {p.name for f in (cls.__init__, cls.from_docs) for p in inspect.signature(f).parameters.values()
                 if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - NOT_OPTIONS
        unknown = sorted(set(opts) - known)
        if unknown:
            raise ValueError(f"engine setting {spec!r}: unknown {name} options {unknown}; known: {sorted(known)}")


def _pisa_pipes(corpus: LatencyCorpus, label: str, opts: dict, systems: Sequence[str], workdir: Path, tokenizer,
                idf: np.ndarray, siamese, o: dict, show_progress: bool) -> dict[tuple[str, str], Pipe]:
    check_pisa(label, opts)
    bits = opts.get("bits")
    algorithm = str(opts.get("algorithm", o["algorithm"]))
    doc_scale, query_scale = float(opts.get("doc_scale", o["doc_scale"])), float(opts.get("query_scale", o["query_scale"]))
    terms = vocab_terms(tokenizer)

    def impact_index(kind: str, vectors: Callable[[], sp.csr_matrix]) -> PisaImpactIndex:
        """One folder per (corpus, vectors, doc_scale or bits); the algorithm is a query-time option.
        bits: the scale that maps the largest weight to 2**bits - 1 (impacts of `bits` bits)."""
        m = vectors()
        scale = (2**bits - 1) / float(m.data.max()) if bits is not None and m.nnz else doc_scale
        path = index_path(workdir, corpus, f"{kind}{f'-b{bits}' if bits is not None else f'{doc_scale:g}'}", m)
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
        out[(label, "inference-free")] = Pipe(lambda t: pisa.search_prepared(query(t))[0], "if-exact",
                                               pisa.size_bytes(), query, posting_lengths(pisa.path))
    if siamese is not None:
        plain = impact_index("impact", lambda: corpus.vectors)
        out[(label, "siamese")] = Pipe(lambda t: plain.search_ids(*siamese(t))[0], "siamese-exact", plain.size_bytes(),
                                        lambda t: plain.query_dict(*siamese(t)), posting_lengths(plain.path))
    if "bm25" in systems:
        path = bm25_path(workdir, corpus)
        bm25 = PisaBM25Index.from_texts(corpus.texts, o["k"], path=path, algorithm=algorithm, reuse=True,
                                        show_progress=show_progress)
        out[(label, "bm25")] = Pipe(lambda t: bm25.search(t)[0], "bm25-pisa", bm25.size_bytes(), bm25.query_terms,
                                     posting_lengths(path))
    return out


def pipelines(corpus: LatencyCorpus, engines: Sequence[str], systems: Sequence[str], workdir: Path, tokenizer,
               idf: np.ndarray, doc_encoder, bm25: Bm25Impacts, o: dict,
               show_progress: bool, built: EngineCache | None = None) -> dict[tuple[str, str], Pipe]:
    """(engine setting, system) -> its pipeline, for one corpus. `built`: the indexes of the engines other than
    PISA (whose indexes are folders), shared across calls when given."""
    out: dict[tuple[str, str], Pipe] = {}
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
            key = (name, tuple(sorted(index_opts.items())), kind, index_path("", corpus, kind, m).name)
            engine = built.get(key, lambda: cls.from_docs(m, o["k"], **index_opts))
            return engine.with_query_options(**query_opts) if query_opts else engine
        if set(systems) - {"bm25"}:  # any other registered engine: built from the vectors, searched by ids and weights
            engine = build("vectors", lambda: corpus.vectors)
            if "inference-free" in systems:
                out[(label, "inference-free")] = Pipe(lambda t, e=engine: e.search_ids(*if_query(t))[0], "if-exact",
                                                       size(engine))
            if siamese is not None:
                out[(label, "siamese")] = Pipe(lambda t, e=engine: e.search_ids(*siamese(t))[0], "siamese-exact",
                                                size(engine))
        if "bm25" in systems:
            engine = build("bm25", lambda: bm25.matrix)
            out[(label, "bm25")] = Pipe(lambda t, e=engine: e.search_ids(*bm25.index.query_vector(t))[0],
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


def reference_rankings(key: str, corpus: LatencyCorpus, queries: Sequence[str], tokenizer, idf, doc_encoder,
               bm25: Bm25Impacts, workdir: Path, depth: int, o: Mapping[str, object]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Exact (rows, scores) per query to `depth` for one reference: the exact engine on the same
    inference-free query the engine is given (pruned by o's min_query_idf / max_query_terms, the function
    the engine must reproduce; what the pruning costs is the nDCG@10 change) or the siamese query; PISA's
    exhaustive ranked_or over its BM25 index; the exact engine on BM25 impacts."""
    if key == "bm25-pisa":
        exhaustive = PisaBM25Index(bm25_path(workdir, corpus), "ranked_or", depth)
        return [tuple(map(np.asarray, exhaustive.search(q))) for q in queries]
    if key == "bm25-impacts":
        exact = ExactEngine.from_docs(bm25.matrix, depth)
        return [exact.search_ids(*bm25.index.query_vector(q)) for q in queries]
    exact = ExactEngine.from_docs(corpus.vectors, depth)
    encode = (inference_free_query(tokenizer, idf, o["min_query_idf"], o["max_query_terms"]) if key == "if-exact"
              else siamese_query(doc_encoder))
    return [exact.search_ids(*encode(q)) for q in queries]
