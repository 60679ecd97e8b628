"""Client-side query latency on one engine: inference-free vs BM25 vs siamese (SPEC §4).

Protocol (what `measure_latency` times, per query, single thread, top-k):
- inference-free: tokenize + IDF lookup (no model) -> PISA weighted query on the impact index;
- bm25: raw text -> PISA's own tokenizer/stemmer/stopwords -> BM25 on the same documents' text;
- siamese: the document encoder (splade-tiny) encodes the query on CPU -> the same impact index.
torch and PISA run with 1 thread; a warm-up pass over all queries precedes the timed passes; systems
are interleaved per query so background load on a shared machine hits them alike.

Corpora: SciFact (title + " " + text), then every real passage at hand (SciFact + the distinct
passages of pairs/*.jsonl.gz), then a scale series resampled from those (text and vector together,
so BM25 and the sparse index see the same corpus; flagged `resampled`). Document vectors are
encoded once and cached on disk in chunks keyed by a content hash (model weights, max_length, texts).
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
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
        compute = lambda part=part: encoder.encode(part, batch_size=batch_size, show_progress=show_progress)  # noqa: E731
        blocks.append(sp.csr_matrix(cached_encode(key, compute, cache_dir), dtype=np.float32))
    if not blocks:
        return sp.csr_matrix((0, len(encoder.tokenizer)), dtype=np.float32)
    return sp.vstack(blocks, format="csr")


def beir_texts(folder: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(doc ids, texts) of a BEIR corpus.jsonl, text = title + " " + text, in file order."""
    ids, texts = [], []
    with open(Path(folder) / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            ids.append(str(row["_id"]))
            texts.append(f"{row.get('title', '')} {row.get('text', '')}".strip())
    return ids, texts


def pair_passages(folder: str | os.PathLike, exclude: set[str] = frozenset()) -> list[str]:
    """Distinct `positive` passages of pairs/*.jsonl.gz (files in name order, first appearance kept)."""
    seen: dict[str, None] = {}
    for path in sorted(Path(folder).glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                text = json.loads(line)["positive"]
                if text not in exclude:
                    seen.setdefault(text, None)
    return list(seen)


def beir_queries(folder: str | os.PathLike, split: str = "test") -> list[str]:
    """Texts of the judged queries of `split`, in qrels order of first appearance."""
    folder = Path(folder)
    table = {}
    with open(folder / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            table[str(row["_id"])] = row["text"]
    qids: dict[str, None] = {}
    with open(folder / "qrels" / f"{split}.tsv", encoding="utf-8") as f:
        next(f)  # header
        for line in f:
            qids.setdefault(line.split("\t")[0], None)
    return [table[q] for q in qids]


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
                which: str = "real", show_progress: bool = True) -> LatencyCorpus:
    """"scifact", or "real": SciFact + the distinct pair passages (every real passage at hand)."""
    if which not in ("scifact", "real"):
        raise ValueError(f"which must be 'scifact' or 'real', got {which!r}")
    _, texts = beir_texts(Path(data_dir) / "beir" / "scifact")
    vectors = encode_cached(encoder, texts, cache_dir, model, weights, show_progress=show_progress)
    if which == "scifact":
        return LatencyCorpus("scifact", texts, vectors, False)
    passages = pair_passages(Path(data_dir) / "pairs", exclude=set(texts))
    extra = encode_cached(encoder, passages, cache_dir, model, weights, show_progress=show_progress)
    return LatencyCorpus("real", texts + passages, sp.vstack([vectors, extra], format="csr"), False)


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
                   max_terms: int | None = None) -> Callable[[str], dict[str, float]]:
    """text -> PISA query {token: round(idf * query_scale)} through a table built once: the whole
    inference-free query side is `fast_token_ids` and table lookups (pruning as above)."""
    if max_terms is not None and max_terms <= 0:
        raise ValueError(f"max_terms must be positive, got {max_terms}")
    ids_of, terms = raw_token_ids(tokenizer), serving.vocab_terms(tokenizer)
    scaled = np.rint(np.asarray(idf, dtype=np.float64) * query_scale)
    keep = (scaled > 0) & (np.asarray(idf) >= min_idf)
    keep[list(set(tokenizer.all_special_ids))] = False
    table = {t: (terms[t], float(scaled[t])) for t in np.flatnonzero(keep).tolist()}

    def encode(text: str) -> dict[str, float]:
        hits = [table[t] for t in set(ids_of(text)) if t in table]
        if max_terms is not None and len(hits) > max_terms:
            hits = sorted(hits, key=lambda h: (-h[1], h[0]))[:max_terms]
        return dict(hits)
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
               idf: np.ndarray, doc_encoder, o: dict, show_progress: bool) -> dict[tuple[str, str], Callable]:
    """(engine, system) -> the whole client-side pipeline text -> top-k rows, for one corpus."""
    out: dict[tuple[str, str], Callable] = {}
    terms = serving.vocab_terms(tokenizer)
    if_query = inference_free_query(tokenizer, idf, o["min_query_idf"], o["max_query_terms"])
    siamese = siamese_query(doc_encoder) if "siamese" in systems else None
    if "pisa" in engines and set(systems) - {"bm25"}:
        path = _index_path(workdir, corpus, f"impact{o['doc_scale']:g}")
        if not (path / "pt_meta.json").is_file():
            serving.PisaImpactIndex.build(path, corpus.vectors, terms, o["doc_scale"], overwrite=True,
                                          show_progress=show_progress)
        pisa = serving.PisaImpactIndex(path, terms, o["algorithm"], o["k"], o["query_scale"])
        pisa_if = pisa_idf_query(tokenizer, idf, o["query_scale"], o["min_query_idf"], o["max_query_terms"])
        if "inference-free" in systems:
            out[("pisa", "inference-free")] = lambda text: pisa.search_prepared(pisa_if(text))[0]
        if siamese is not None:
            out[("pisa", "siamese")] = lambda text: pisa.search_ids(*siamese(text))[0]
    if "pisa" in engines and "bm25" in systems:
        path = _index_path(workdir, corpus, "bm25")
        if not (path / "pt_meta.json").is_file():
            serving.PisaBM25Index.build(path, corpus.texts, overwrite=True, show_progress=show_progress)
        bm25 = serving.PisaBM25Index(path, o["algorithm"], o["k"])
        out[("pisa", "bm25")] = lambda text: bm25.search(text)[0]
    if "seismic" in engines and set(systems) - {"bm25"}:
        seis = serving.SeismicImpactIndex(corpus.vectors, o["k"], **(o["seismic"] or {}))
        if "inference-free" in systems:
            out[("seismic", "inference-free")] = lambda text: seis.search_ids(*if_query(text))[0]
        if siamese is not None:
            out[("seismic", "siamese")] = lambda text: seis.search_ids(*siamese(text))[0]
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
                  min_query_idf: float = 0.0, max_query_terms: int | None = None, repeats: int = 1,
                  seismic: dict | None = None, show_progress: bool = True) -> pd.DataFrame:
    """Time every (engine, system) on every corpus; one row each (COLUMNS first, then details).

    A warm-up pass runs every pipeline on every query (its results give top10_agreement against
    `_references`); then `repeats` timed passes, systems interleaved per query in rotating order.
    Pruning options (min_query_idf, max_query_terms) apply to the inference-free query only.
    """
    bad = [e for e in engines if e not in ENGINES] + [s for s in systems if s not in SYSTEMS]
    if bad or not queries or repeats <= 0:
        raise ValueError(f"unknown engines/systems {bad}, or no queries, or repeats={repeats} (engines: "
                         f"{ENGINES}, systems: {SYSTEMS})")
    if doc_encoder is None and "siamese" in systems:
        raise ValueError("the siamese system needs a doc_encoder")
    o = {"k": k, "algorithm": algorithm, "doc_scale": doc_scale, "query_scale": query_scale, "seismic": seismic,
         "min_query_idf": min_query_idf, "max_query_terms": max_query_terms}
    rows = []
    with torch_threads(1):
        for corpus in corpora:
            runs = _pipelines(corpus, engines, systems, Path(workdir), tokenizer, idf, doc_encoder, o, show_progress)
            found = {key: [run(q) for q in queries] for key, run in runs.items()}  # warm-up pass
            ref = _references(corpus, queries, {s for _, s in runs}, tokenizer, idf, doc_encoder, Path(workdir), k)
            times, keys = {key: [] for key in runs}, list(runs)
            bar = tqdm(total=repeats * len(queries), desc=f"time {corpus.name} ({len(corpus.texts):,} docs)",
                       disable=not show_progress)
            for rep in range(repeats):
                for qi, text in enumerate(queries):
                    shift = (qi + rep) % len(keys)  # rotate the order: no system always runs first
                    for key in keys[shift:] + keys[:shift]:
                        t0 = time.perf_counter_ns()
                        runs[key](text)  # client side: query encoding + retrieval
                        times[key].append(time.perf_counter_ns() - t0)
                    bar.update(1)
            bar.close()
            for (engine, system), ns in times.items():
                ms = np.asarray(ns, dtype=np.float64) / 1e6
                rows.append({"engine": engine, "system": system, "docs": len(corpus.texts),
                             "p50_ms": np.percentile(ms, 50), "p90_ms": np.percentile(ms, 90),
                             "p99_ms": np.percentile(ms, 99), "qps": 1000.0 / ms.mean(),
                             "top10_agreement": serving.topk_agreement(found[(engine, system)], ref[system], k),
                             "corpus": corpus.name, "resampled": corpus.resampled, "n_queries": len(queries),
                             "repeats": repeats, "algorithm": algorithm, "doc_scale": doc_scale,
                             "query_scale": query_scale, "min_query_idf": min_query_idf,
                             "max_query_terms": max_query_terms})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------- entry point
def measure_latency(data_dir: str | os.PathLike | None = None, sizes: Sequence[str | int] = ("scifact", "real"),
                    n_queries: int = 300, engines: Sequence[str] = ("pisa",), systems: Sequence[str] = SYSTEMS,
                    model: str = "splade-tiny", idf_path: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = None, max_length: int = 256, seed: int = 0,
                    show_progress: bool = True, **options) -> pd.DataFrame:
    """The latency table for the notebook: one row per (engine, system, corpus size).

    sizes: "scifact" (5,183 docs), "real" (every real passage at hand), or an int: that many documents
    resampled from "real" (flagged `resampled`). Queries: `n_queries` SciFact test queries drawn with
    `seed`. `options` go to `latency_table` (k, algorithm, doc_scale, query_scale, min_query_idf,
    max_query_terms, repeats, seismic). Vectors and indexes are cached under `cache_dir`.
    """
    from ifsr.cache import weights_checksum
    from ifsr.models import DocumentEncoder, QueryEncoder, resolve_model_path

    data_dir = Path(data_dir or os.environ.get("IFSR_DATA_DIR", "data"))
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    for size in sizes:
        if not (size in ("scifact", "real") or (isinstance(size, int) and size > 0)):
            raise ValueError(f"sizes take 'scifact', 'real' or positive ints, got {size!r}")
    doc_encoder = DocumentEncoder.from_pretrained(model, max_length=max_length)
    doc_encoder.eval()
    idf_path = idf_path or data_dir / "idf" / "msmarco_bert-base-uncased_idf.json"
    query_encoder = QueryEncoder.from_idf_file(doc_encoder.tokenizer, idf_path)
    weights = weights_checksum(resolve_model_path(model), doc_encoder.mlm)
    base = {w: real_corpus(data_dir, doc_encoder, cache_dir, model, weights, w, show_progress) for w in
            ("scifact", "real") if w in sizes or (w == "real" and any(isinstance(s, int) for s in sizes))}
    corpora = [base[s] if isinstance(s, str) else resample(base["real"], s, seed) for s in sizes]
    queries = beir_queries(data_dir / "beir" / "scifact", "test")
    if n_queries <= 0:
        raise ValueError(f"n_queries must be positive, got {n_queries}")
    if n_queries < len(queries):
        rows = np.sort(np.random.default_rng(seed).choice(len(queries), size=n_queries, replace=False))
        queries = [queries[i] for i in rows]
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
