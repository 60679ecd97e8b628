"""Corpora and queries for the latency study (SPEC §4): SciFact, all real passages, resampled series.

SciFact; every real passage at hand; scale series resampled from those (text and vector together,
flagged `resampled`). Document vectors are encoded once, in chunks cached through `ifsr.cache`
(model + weights checksum + texts hash + max_length), so a killed encoding resumes at its first
missing chunk.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ifsr.cache import weights_checksum
from ifsr.data.beir import files_sha256, load_beir
from ifsr.data.pairs import load_pairs
from ifsr.manifest import sha256_dir, sha256_file
from ifsr.eval.evaluate import encode_texts
from ifsr.models import resolve_model_path, saved_layout
from ifsr.serving.export import load_model



@dataclass(frozen=True)
class LatencyCorpus:
    name: str
    texts: list[str]
    vectors: sp.csr_matrix  # [n, V] document weights, row i <-> texts[i]
    resampled: bool
    doc_ids: list[str] | None = None  # row i's id for qrels (SciFact ids; other rows never relevant)
    distinct: int | None = None  # rows that are distinct real documents (the rest are resampled copies)


CHUNK = 2048  # documents to a cache entry of a latency corpus (ifsr.eval.evaluate.encode_texts(chunk=))


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
    ids = None
    if corpus.doc_ids is not None:  # a copy is a distractor: its own id, never relevant
        ids = [corpus.doc_ids[r] if i < n else f"{corpus.doc_ids[r]}#copy{i}" for i, r in enumerate(rows.tolist())]
    return LatencyCorpus(f"resampled-{n_docs}-seed{seed}", [corpus.texts[i] for i in rows], corpus.vectors[rows], True,
                         ids, min(n, n_docs))


def real_corpus(data_dir: str | os.PathLike, encoder, cache_dir: str | os.PathLike, model: str, weights: str,
                which: str = "real", max_passages: int | None = None, show_progress: bool = True) -> LatencyCorpus:
    """"scifact", or "real": SciFact + the distinct pair passages not in SciFact (every real passage
    at hand), SciFact first; `max_passages` keeps the first that many passages (named "real[:n]")."""
    if which not in ("scifact", "real"):
        raise ValueError(f"which must be 'scifact' or 'real', got {which!r}")
    ds = load_beir("scifact", "test", data_dir=data_dir, download=False)
    texts = ds.doc_texts()
    vectors = encode_texts(encoder, texts, weights, cache_dir, show_progress=show_progress, model=model, chunk=CHUNK)
    if which == "scifact":
        return LatencyCorpus("scifact", texts, vectors, False, list(ds.doc_ids), len(texts))
    seen = set(texts)
    passages = list(dict.fromkeys(p.positive for p in load_pairs(Path(data_dir) / "pairs") if p.positive not in seen))
    name = "real" if max_passages is None or max_passages >= len(passages) else f"real[:{max_passages}]"
    passages = passages[:max_passages]
    extra = encode_texts(encoder, passages, weights, cache_dir, show_progress=show_progress, model=model, chunk=CHUNK)
    ids = list(ds.doc_ids) + [f"passage:{i}" for i in range(len(passages))]
    return LatencyCorpus(name, texts + passages, sp.vstack([vectors, extra], format="csr"), False, ids,
                         len(ids))


def check_sizes(sizes: Sequence[str | int], resample_from: str = "real") -> None:
    """ValueError unless every size is "scifact", "real" or a positive int, and `resample_from` is
    "scifact" or "real" (checked before anything is loaded)."""
    for size in sizes:
        if not (size in ("scifact", "real") or (isinstance(size, int) and not isinstance(size, bool) and size > 0)):
            raise ValueError(f"sizes take 'scifact', 'real' or positive ints, got {size!r}")
    if resample_from not in ("scifact", "real"):
        raise ValueError(f"resample_from must be 'scifact' or 'real', got {resample_from!r}")


def latency_corpora(sizes: Sequence[str | int], data_dir: str | os.PathLike, encoder, cache_dir: str | os.PathLike,
                    model: str, weights: str, resample_from: str = "real", max_passages: int | None = None,
                    seed: int = 0, show_progress: bool = True) -> list[LatencyCorpus]:
    """The corpus of each size: "scifact", "real" (`real_corpus`), or an int: that many documents
    resampled (`resample`, with `seed`) from `resample_from`. Only the base corpora a size needs are
    encoded. The one corpus builder of the latency table and the lever study."""
    check_sizes(sizes, resample_from)
    needed = {s for s in sizes if isinstance(s, str)} | ({resample_from} if any(isinstance(s, int) for s in sizes) else set())
    base = {w: real_corpus(data_dir, encoder, cache_dir, model, weights, w, max_passages, show_progress)
            for w in ("scifact", "real") if w in needed}
    return [base[s] if isinstance(s, str) else resample(base[resample_from], s, seed) for s in sizes]


def scifact_queries(data_dir: str | os.PathLike, n: int | None = None, seed: int = 0,
                    with_qrels: bool = False) -> list[str] | tuple[list[str], list[str], dict[str, dict[str, int]]]:
    """SciFact test queries (those with qrels), or `n` of them drawn with `seed` (file order kept);
    with_qrels: (query ids, texts, qrels of those queries)."""
    ds = load_beir("scifact", "test", data_dir=data_dir, download=False)
    qids = list(ds.query_ids)
    if n is not None and n < len(qids):
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        qids = [qids[i] for i in np.sort(np.random.default_rng(seed).choice(len(qids), n, replace=False))]
    texts = [ds.queries[q] for q in qids]
    return (qids, texts, {q: dict(ds.qrels[q]) for q in qids}) if with_qrels else texts


def provenance(data_dir: str | os.PathLike, model_path: str | os.PathLike,
               idf_path: str | os.PathLike) -> tuple[dict[str, str], dict[str, str]]:
    """(data checksums, model checksums) behind a latency table: SciFact test, the pair files, the IDF
    table and the document model's files (sha256), for the manifest written beside the table. A saved
    ifsr model carries its own IDF (hashed with the model), so `idf_path` is then not recorded."""
    pairs = sorted((Path(data_dir) / "pairs").glob("*.jsonl.gz"))
    data = {"scifact-test": load_beir("scifact", "test", data_dir=data_dir, download=False).checksum(),
            "pairs": files_sha256(pairs) if pairs else "absent"}
    if saved_layout(model_path) is None:
        data["idf"] = sha256_file(idf_path)
    return data, {str(model_path): sha256_dir(model_path)}


def load_encoders(model: str, idf_path: str | os.PathLike, max_length: int):
    """(document encoder in eval mode at `max_length`, query encoder, weights checksum): the model as
    the latency study and the engine check use it (any saved ifsr layout, or an MLM + `idf_path`)."""
    doc, query = load_model(model, idf_path, max_length)
    doc.eval()
    return doc, query, weights_checksum(resolve_model_path(model), doc.mlm)
