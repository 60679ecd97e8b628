"""Client-side query latency on one engine: inference-free vs BM25 vs siamese (SPEC §4).

`measure_latency(...)` returns one row per (engine, system, corpus size) with COLUMNS first;
`latency_ratios(df)` and `latency_plot(df, path)` summarise it. What is timed, per query, single
thread (torch and PISA at 1 thread), top-k, after a warm-up pass over every query:
- inference-free: tokenize + IDF lookup (no model) -> PISA weighted query on the impact index;
- bm25: raw text -> PISA's own tokenizer, porter2, stopwords -> BM25 over the same documents' text;
- siamese: the document encoder encodes the query on CPU -> the same impact index.
Systems are interleaved per query in rotating order, so background load hits them alike.

Corpora: SciFact (title + " " + text); every real passage at hand (SciFact + the distinct passages
of pairs/*.jsonl.gz); a scale series resampled from those (text and vector together, so BM25 and the
sparse index see the same corpus; flagged `resampled`). Document vectors are encoded once, in
chunks cached through `ifsr.cache` (model + weights checksum + texts hash + max_length).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from ifsr import serving

COLUMNS = ["engine", "system", "docs", "p50_ms", "p90_ms", "p99_ms", "qps", "top10_agreement"]
SYSTEMS = ("inference-free", "bm25", "siamese")
ENGINES = ("pisa", "seismic")


def default_cache_dir() -> Path:
    """$IFSR_CACHE_DIR, else `.cache/ifsr` (the project's cache folder, git-ignored)."""
    return Path(os.environ.get("IFSR_CACHE_DIR") or ".cache/ifsr").expanduser()


# ----------------------------------------------------------------------------------------- corpora
@dataclass(frozen=True)
class LatencyCorpus:
    name: str
    texts: list[str]
    vectors: sp.csr_matrix  # [n, V] document weights, row i <-> texts[i]
    resampled: bool


def encode_cached(encoder, texts: Sequence[str], cache_dir: str | os.PathLike, model: str, weights: str,
                  chunk: int = 2048, batch_size: int = 32, show_progress: bool = True) -> sp.csr_matrix:
    """`encoder.encode(texts)` in chunks, each an `ifsr.cache` entry keyed by model name + weights
    checksum + the chunk's texts + max_length (a killed run resumes at the first missing chunk)."""
    from ifsr.cache import ENCODER_VERSION, cached_encode, texts_sha256
    from ifsr.teachers import DOC_ENCODER_TAG

    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    blocks = []
    for start in tqdm(range(0, len(texts), chunk), desc="encode corpus (cached chunks)", disable=not show_progress):
        part = list(texts[start : start + chunk])
        key = {"kind": "latency-corpus-chunk", "model": model, "weights": weights, "encoder": DOC_ENCODER_TAG,
               "texts": texts_sha256(part), "n": len(part), "max_length": int(encoder.max_length),
               "encoder_version": ENCODER_VERSION}
        def compute(part: list[str] = part) -> sp.csr_matrix:
            return encoder.encode(part, batch_size=batch_size, show_progress=show_progress)
        blocks.append(sp.csr_matrix(cached_encode(key, compute, cache_dir), dtype=np.float32))
    if not blocks:
        return sp.csr_matrix((0, len(encoder.tokenizer)), dtype=np.float32)
    return sp.vstack(blocks, format="csr")


def resample(corpus: LatencyCorpus, n_docs: int, seed: int) -> LatencyCorpus:
    """`n_docs` documents drawn from `corpus`: a subsample without replacement when smaller, else the
    whole corpus plus extra rows drawn with replacement. Text and vector travel together."""
    if n_docs <= 0:
        raise ValueError(f"n_docs must be positive, got {n_docs}")
    n = len(corpus.texts)
    rng = np.random.default_rng(seed)
    if n_docs <= n:
        rows = np.sort(rng.choice(n, size=n_docs, replace=False))
    else:
        rows = np.concatenate([np.arange(n), rng.integers(0, n, size=n_docs - n)])
    return LatencyCorpus(f"resampled-{n_docs}-seed{seed}", [corpus.texts[i] for i in rows], corpus.vectors[rows], True)


def real_corpus(data_dir: str | os.PathLike, encoder, cache_dir: str | os.PathLike, model: str, weights: str,
                which: str = "real", max_passages: int | None = None, show_progress: bool = True) -> LatencyCorpus:
    """"scifact", or "real": SciFact + the distinct pair passages not in SciFact (every real passage
    at hand), SciFact first; `max_passages` keeps the first that many passages (named "real[:n]")."""
    from ifsr.data import load_beir, load_pairs

    if which not in ("scifact", "real"):
        raise ValueError(f"which must be 'scifact' or 'real', got {which!r}")
    texts = load_beir("scifact", "test", data_dir=data_dir, download=False).doc_texts()
    vectors = encode_cached(encoder, texts, cache_dir, model, weights, show_progress=show_progress)
    if which == "scifact":
        return LatencyCorpus("scifact", texts, vectors, False)
    seen = set(texts)
    passages = list(dict.fromkeys(p.positive for p in load_pairs(Path(data_dir) / "pairs") if p.positive not in seen))
    name = "real" if max_passages is None or max_passages >= len(passages) else f"real[:{max_passages}]"
    passages = passages[:max_passages]
    extra = encode_cached(encoder, passages, cache_dir, model, weights, show_progress=show_progress)
    return LatencyCorpus(name, texts + passages, sp.vstack([vectors, extra], format="csr"), False)


def scifact_queries(data_dir: str | os.PathLike, n: int | None = None, seed: int = 0) -> list[str]:
    """SciFact test queries (those with qrels), or `n` of them drawn with `seed` (file order kept)."""
    from ifsr.data import load_beir

    ds = load_beir("scifact", "test", data_dir=data_dir, download=False)
    queries = [ds.queries[q] for q in ds.query_ids]
    if n is not None and n < len(queries):
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        queries = [queries[i] for i in np.sort(np.random.default_rng(seed).choice(len(queries), n, replace=False))]
    return queries


# ----------------------------------------------------------------------------------- query sides
_PIECES = re.compile(r"[a-z0-9]+|[!-/:-@\[-`{-~]")  # BERT pre-tokens of lowercased printable ASCII
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\[]")  # control chars (and '[': added tokens)


def raw_token_ids(tokenizer) -> Callable[[str], list[int]]:
    """text -> token ids (order and repeats kept, no [CLS]/[SEP]) equal to the tokenizer's (tested), fast.

    For printable-ASCII text with an uncased BERT tokenizer, BERT's normalizer and pre-tokenizer reduce
    to lowercase + a regex split; whole-word pieces are looked up in the vocabulary, other pieces go
    through the WordPiece model alone. Any other text goes through the full Rust tokenizer."""
    backend = tokenizer.backend_tokenizer
    norm, pre = backend.normalizer, backend.pre_tokenizer
    bert = type(norm).__name__ == "BertNormalizer" and norm.lowercase and type(pre).__name__ == "BertPreTokenizer"
    words = {t: i for t, i in tokenizer.get_vocab().items() if not t.startswith("##")}
    model = backend.model

    def ids_of(text: str) -> list[int]:
        if not (bert and text.isascii()) or _CONTROL.search(text):
            return backend.encode(text, add_special_tokens=False).ids
        raw = []
        for piece in _PIECES.findall(text.lower()):
            hit = words.get(piece)
            raw.extend([hit] if hit is not None else [t.id for t in model.tokenize(piece)])
        return raw
    return ids_of


def fast_token_ids(tokenizer) -> Callable[[str], np.ndarray]:
    """Distinct non-special token ids, ascending: `QueryEncoder.token_ids` through `raw_token_ids`."""
    raw_ids = raw_token_ids(tokenizer)
    special = np.zeros(len(tokenizer), dtype=bool)
    special[list(set(tokenizer.all_special_ids))] = True

    def ids_of(text: str) -> np.ndarray:
        ids = np.unique(np.asarray(raw_ids(text), dtype=np.int64))
        return ids[~special[ids]]
    return ids_of


def inference_free_query(tokenizer, idf: np.ndarray, min_idf: float = 0.0,
                         max_terms: int | None = None) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
    """text -> (ids, idf weights); optional pruning: drop tokens with idf < min_idf, keep the
    `max_terms` highest-idf tokens. Without pruning this is exactly the QueryEncoder vector."""
    if max_terms is not None and max_terms <= 0:
        raise ValueError(f"max_terms must be positive, got {max_terms}")
    ids_of, idf = fast_token_ids(tokenizer), np.asarray(idf, dtype=np.float32)

    def encode(text: str) -> tuple[np.ndarray, np.ndarray]:
        ids = ids_of(text)
        w = idf[ids]
        if min_idf > 0:
            ids, w = ids[w >= min_idf], w[w >= min_idf]
        if max_terms is not None and len(ids) > max_terms:
            top = np.argsort(-w, kind="stable")[:max_terms]
            ids, w = ids[top], w[top]
        return ids, w
    return encode


def pisa_idf_query(tokenizer, idf: np.ndarray, query_scale: float, min_idf: float = 0.0,
                   max_terms: int | None = None, folded: bool = False) -> Callable[[str], dict[str, float]]:
    """text -> PISA query {token: round(idf * query_scale)} through a table built once: the whole
    inference-free query side is `raw_token_ids` and table lookups (pruning as above). folded=True:
    the index holds idf_j * w_j(d) already, so every kept token gets weight 1 (same scores)."""
    if max_terms is not None and max_terms <= 0:
        raise ValueError(f"max_terms must be positive, got {max_terms}")
    ids_of, terms = raw_token_ids(tokenizer), serving.vocab_terms(tokenizer)
    idf = np.asarray(idf, dtype=np.float32)
    scaled = np.rint(idf.astype(np.float64) * query_scale)
    keep = (scaled > 0) & (idf >= min_idf)
    keep[list(set(tokenizer.all_special_ids))] = False
    table = {t: (terms[t], 1.0 if folded else float(scaled[t])) for t in np.flatnonzero(keep).tolist()}
    rank = {t: (-float(idf[t]), t) for t in table}  # max_terms order: idf desc, then id (as above)

    def encode(text: str) -> dict[str, float]:
        ids = [t for t in set(ids_of(text)) if t in table]
        if max_terms is not None and len(ids) > max_terms:
            ids = sorted(ids, key=rank.__getitem__)[:max_terms]
        return dict(table[t] for t in ids)
    return encode


def siamese_query(doc_encoder) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
    """text -> (ids, weights) from the document encoder run on the query (CPU, one query)."""
    tok = doc_encoder.tokenizer

    @torch.inference_mode()
    def encode(text: str) -> tuple[np.ndarray, np.ndarray]:
        enc = tok(text, truncation=True, max_length=doc_encoder.max_length, return_tensors="pt")
        w = doc_encoder(enc["input_ids"], enc["attention_mask"])[0]  # [V]
        ids = torch.nonzero(w).ravel()
        return ids.numpy(), w[ids].numpy()
    return encode


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    terms = serving.vocab_terms(tokenizer)
    if_query = inference_free_query(tokenizer, idf, o["min_query_idf"], o["max_query_terms"])
    siamese = siamese_query(doc_encoder) if "siamese" in systems else None
    def impact_index(kind: str, vectors: Callable[[], sp.csr_matrix]) -> serving.PisaImpactIndex:
        path = _index_path(workdir, corpus, f"{kind}{o['doc_scale']:g}")
        if not (path / "pt_meta.json").is_file():
            serving.PisaImpactIndex.build(path, vectors(), terms, o["doc_scale"], overwrite=True,
                                          show_progress=show_progress)
        return serving.PisaImpactIndex(path, terms, o["algorithm"], o["k"], o["query_scale"])

    if "pisa" in engines and "inference-free" in systems:
        fold = o["fold_idf"]  # idf_j * w_j(d) stored as the impact: the query is binary, scores unchanged
        pisa = impact_index("impactidf" if fold else "impact",
                            lambda: (corpus.vectors @ sp.diags(np.asarray(idf, np.float32))).tocsr() if fold
                            else corpus.vectors)
        pisa_if = pisa_idf_query(tokenizer, idf, o["query_scale"], o["min_query_idf"], o["max_query_terms"], fold)
        out[("pisa", "inference-free")] = (lambda t: pisa.search_prepared(pisa_if(t))[0], pisa_if,
                                           serving.posting_lengths(pisa.path))
    if "pisa" in engines and siamese is not None:
        plain = impact_index("impact", lambda: corpus.vectors)
        out[("pisa", "siamese")] = (lambda t: plain.search_ids(*siamese(t))[0],
                                    lambda t: plain.query_dict(*siamese(t)),
                                    serving.posting_lengths(plain.path))
    if "pisa" in engines and "bm25" in systems:
        path = _index_path(workdir, corpus, "bm25")
        if not (path / "pt_meta.json").is_file():
            serving.PisaBM25Index.build(path, corpus.texts, overwrite=True, show_progress=show_progress)
        bm25 = serving.PisaBM25Index(path, o["algorithm"], o["k"])
        out[("pisa", "bm25")] = (lambda t: bm25.search(t)[0], bm25.query_terms, serving.posting_lengths(path))
    if "seismic" in engines and set(systems) - {"bm25"}:
        seis = serving.SeismicImpactIndex(corpus.vectors, o["k"], **(o["seismic"] or {}))
        if "inference-free" in systems:
            out[("seismic", "inference-free")] = (lambda t: seis.search_ids(*if_query(t))[0], None, None)
        if siamese is not None:
            out[("seismic", "siamese")] = (lambda t: seis.search_ids(*siamese(t))[0], None, None)
    return out


def _references(corpus: LatencyCorpus, queries: Sequence[str], systems: set[str], tokenizer, idf, doc_encoder,
                workdir: Path, k: int) -> dict[str, list[np.ndarray]]:
    """Exact top-k per system: scipy float scores of the unpruned query vector (ties by row); bm25:
    PISA's exhaustive ranked_or over the same BM25 index."""
    ref = {}
    csc = corpus.vectors.tocsc() if systems - {"bm25"} else None
    if "inference-free" in systems:
        full = inference_free_query(tokenizer, idf)
        ref["inference-free"] = [serving.exact_topk(*full(q), csc, k)[0] for q in queries]
    if "siamese" in systems:
        siamese = siamese_query(doc_encoder)
        ref["siamese"] = [serving.exact_topk(*siamese(q), csc, k)[0] for q in queries]
    if "bm25" in systems:
        exhaustive = serving.PisaBM25Index(_index_path(workdir, corpus, "bm25"), "ranked_or", k)
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
                         f"{ENGINES}, systems: {SYSTEMS})")
    if doc_encoder is None and "siamese" in systems:
        raise ValueError("the siamese system needs a doc_encoder")
    o = {"k": k, "algorithm": algorithm, "doc_scale": doc_scale, "query_scale": query_scale, "seismic": seismic,
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
                             "top10_agreement": serving.topk_agreement(found[(engine, system)], ref[system], k),
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
                    max_passages: int | None = None, seed: int = 0, show_progress: bool = True,
                    **options) -> pd.DataFrame:
    """The latency table for the notebook: one row per (engine, system, corpus size).

    model: "splade-tiny", an MLM path (with `idf_path`, default the MS MARCO table) or a saved ifsr
    model (SparseEncoder / OpenSearch layout, its own IDF). sizes: "scifact" (5,183 docs), "real"
    (every real passage at hand), or an int: that many documents resampled from "real" (flagged
    `resampled`); `max_passages` caps the pair passages in "real" (a quicker, partial corpus).
    Queries: `n_queries` SciFact test queries drawn with `seed`. `options` go to `latency_table`
    (k, algorithm, doc_scale, query_scale, min_query_idf, max_query_terms, fold_idf, repeats, clock,
    seismic). Vectors and indexes are cached under `cache_dir`.
    """
    from ifsr.cache import weights_checksum
    from ifsr.export import load_model
    from ifsr.models import resolve_model_path

    data_dir = Path(data_dir or os.environ.get("IFSR_DATA_DIR") or "data")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    for size in sizes:
        if not (size in ("scifact", "real") or (isinstance(size, int) and size > 0)):
            raise ValueError(f"sizes take 'scifact', 'real' or positive ints, got {size!r}")
    queries = scifact_queries(data_dir, n_queries, seed)
    idf_path = idf_path or data_dir / "idf" / "msmarco_bert-base-uncased_idf.json"
    doc_encoder, query_encoder = load_model(model, idf_path, max_length)  # any saved ifsr layout, or MLM + IDF
    doc_encoder.max_length = max_length
    doc_encoder.eval()
    weights = weights_checksum(resolve_model_path(model), doc_encoder.mlm)
    base = {w: real_corpus(data_dir, doc_encoder, cache_dir, model, weights, w, max_passages, show_progress)
            for w in ("scifact", "real") if w in sizes or (w == "real" and any(isinstance(s, int) for s in sizes))}
    corpora = [base[s] if isinstance(s, str) else resample(base["real"], s, seed) for s in sizes]
    workdir = cache_dir / "latency-indexes" / f"{weights[:16]}-L{max_length}"
    return latency_table(corpora, queries, doc_encoder.tokenizer, query_encoder.idf, doc_encoder, workdir,
                         engines, systems, show_progress=show_progress, **options)


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if stat not in df.columns:
        raise ValueError(f"no column {stat!r} in the latency table")
    fig, ax = plt.subplots(figsize=(6, 4))
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
    plt.close(fig)
