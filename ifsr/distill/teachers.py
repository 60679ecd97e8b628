"""Teachers for ensemble distillation (SPEC §3) and their cached, resumable scores.

DenseTeacher:  any sentence-transformers model; s(q, d) = cos(e_q, e_d) (L2-normalised dot).
SparseTeacher: a siamese SPLADE (ifsr.core.encoder.DocumentEncoder on both queries and documents);
               s(q, d) = w(q) · w(d).

build_teacher() makes one from a config entry's kind: "dense", "sparse", or "module:Class" (another Teacher).
TeacherBank holds every teacher's vectors of every training example's query and candidates, so the
teachers' score of any batch query against any batch document (in-batch negatives) costs a dot product.

score_candidates() scores each query's candidate set (ifsr.data.mining.Candidates) in three cached steps:
  1. the distinct candidate texts, in chunks, encoded once each (ifsr.cache.cached_encode);
  2. per chunk of `chunk_queries` queries: encode those queries, dot products, write a chunk file;
  3. gather the chunks.
A killed run continues from the finished chunks; chunk boundaries and encoder batches are fixed by
the inputs, so a resumed run writes exactly what an uninterrupted one does. Under torchrun the chunks
of steps 1 and 2 are split over the ranks (ifsr.distributed) and every rank returns the same scores.
"""
# Over 300 lines: two teachers, their resumable score cache and the in-memory bank: one job, the teacher signal.
from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm

from ifsr.cache import (ENCODER_VERSION, SPARSE_DOC_TAG, Matrix, atomic_write, cached_encode, canonical_json, corpus_key,
                        key_of, load_arrays, save_arrays, texts_sha256, weights_checksum)
from ifsr.core.encoder import DocumentEncoder
from ifsr.core.retrieval import scores
from ifsr.data.mining import Candidates, candidates_checksum
from ifsr.distributed import gather_objects, is_main, merge_units, owned_units, rank_world
from ifsr.manifest import absent_files
from ifsr.models import resolve_model_path

SCORES_VERSION = 1  # bump when the scoring layout or function changes


def resolve_device(device: str = "auto") -> str:
    """"auto" -> "cuda" when available, else "cpu"; anything else passes unchanged."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class Teacher:
    """Shared logic; subclasses set name, checksum, max_length and the two encoders. A teacher's score
    is the dot product of its vectors (`ifsr.core.retrieval.scores`)."""

    name: str
    checksum: str
    max_length: int
    kind: str
    encoder_tag: str  # what computes the document vectors; same tag + weights = same corpus cache entry
    show_progress: bool = True

    def encode_queries(self, texts: Sequence[str]) -> Matrix:
        raise NotImplementedError

    def encode_docs(self, texts: Sequence[str]) -> Matrix:
        raise NotImplementedError

    def key_parts(self) -> dict:
        return {"teacher": self.name, "weights": self.checksum, "kind": self.kind, "max_length": self.max_length}

    def score(self, query_texts: list[str], candidate_texts: list[list[str]]) -> list[np.ndarray]:
        """s(query_i, c) for each candidate c of query i; every distinct text is encoded once."""
        if len(query_texts) != len(candidate_texts):
            raise ValueError(f"{len(query_texts)} queries but {len(candidate_texts)} candidate lists")
        uq, q_of = _distinct(query_texts)
        ud, d_of = _distinct([t for c in candidate_texts for t in c])
        q = self.encode_queries(uq)  # [nuq, ·]
        d = self.encode_docs(ud)  # [nud, ·]
        rows, start = [], 0
        for cands in candidate_texts:
            rows.append(d_of[start:start + len(cands)])
            start += len(cands)
        return gather_scores(q, q_of, d, rows)


class DenseTeacher(Teacher):
    """A sentence-transformers bi-encoder, cosine scores. Its weights load on the first encode: a slim copy of
    its folder (`ifsr.manifest.slim_copy`, the device carry) has the same checksum, so its cached outputs
    are found, and only a text missing from the cache needs the weights."""

    kind = "dense-cosine"
    encoder_tag = "sentence-transformers"

    def __init__(self, name: str = "all-MiniLM-L6-v2", max_length: int = 256, batch_size: int = 64,
                 device: str = "cpu", show_progress: bool = True):
        self.path, self.device = resolve_model_path(name), resolve_device(device)
        self.name, self.max_length, self.batch_size, self.show_progress = name, max_length, batch_size, show_progress
        self._model: SentenceTransformer | None = None
        self.checksum = weights_checksum(self.path, None if os.path.isdir(self.path) else self.model)

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            if left_out := sorted(absent_files(self.path)):
                raise FileNotFoundError(
                    f"dense teacher {self.name!r}: {self.path} is a copy without {left_out}, and some texts' "
                    f"encodings or scores are not in the cache (key weights={self.checksum[:12]}...)")
            self._model = SentenceTransformer(self.path, device=self.device)
            self._model.max_seq_length = self.max_length
        return self._model

    def _encode(self, texts: Sequence[str], fn) -> np.ndarray:
        e = fn(list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
               show_progress_bar=self.show_progress)
        return np.asarray(e, dtype=np.float32).reshape(len(texts), -1)  # [n, D], unit rows

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.model.encode_query)  # model's query prompt, if it has one

    def encode_docs(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.model.encode_document)


class SparseTeacher(Teacher):
    kind = "splade-siamese"
    encoder_tag = SPARSE_DOC_TAG

    def __init__(self, name: str = "splade-tiny", max_length: int = 256, batch_size: int = 32,
                 show_progress: bool = True, seed: int = 0, device: str = "cpu"):
        self.encoder = DocumentEncoder.from_pretrained(name, max_length=max_length, seed=seed)
        self.encoder.to(resolve_device(device))
        self.name, self.max_length, self.batch_size, self.show_progress = name, max_length, batch_size, show_progress
        self.checksum = weights_checksum(resolve_model_path(name), self.encoder.mlm)

    def encode_queries(self, texts: Sequence[str]) -> sp.csr_matrix:
        return self.encode_docs(texts)  # siamese: one encoder for both sides

    def encode_docs(self, texts: Sequence[str]) -> sp.csr_matrix:
        return self.encoder.encode(list(texts), batch_size=self.batch_size, show_progress=self.show_progress)


# ----------------------------------------------------------------------------- helpers

TEACHER_KINDS: dict[str, type[Teacher]] = {"dense": DenseTeacher, "sparse": SparseTeacher}


def build_teacher(kind: str, model: str, **kwargs) -> Teacher:
    """A teacher of `kind` ("dense", "sparse", or "module:Class", a Teacher subclass in a module of its own: adding
    a teacher is that file and a config entry) on `model`, with the class's keyword settings."""
    if kind in TEACHER_KINDS:
        cls = TEACHER_KINDS[kind]
    else:
        module, _, name = kind.partition(":")
        try:
            cls = getattr(importlib.import_module(module), name) if module and name else None
        except (ImportError, AttributeError):
            cls = None
        if not (isinstance(cls, type) and issubclass(cls, Teacher)):
            raise ValueError(f"teacher kind {kind!r}: expected one of {sorted(TEACHER_KINDS)} or 'module:Class' naming "
                             f"an importable ifsr.distill.teachers.Teacher subclass")
    return cls(model, **kwargs)


def _distinct(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Distinct texts in first-appearance order, and each input's position among them."""
    pos: dict[str, int] = {}
    of = np.fromiter((pos.setdefault(t, len(pos)) for t in texts), dtype=np.int64, count=len(texts))
    return list(pos), of


def _stack(blocks: list[Matrix]) -> Matrix:
    return sp.vstack(blocks, format="csr") if sp.issparse(blocks[0]) else np.concatenate(blocks)


def gather_scores(q: Matrix, q_of: np.ndarray, d: Matrix, d_rows: list[np.ndarray],
                  block: int = 256) -> list[np.ndarray]:
    """Scores of query row q_of[i] against document rows d_rows[i], float32, `block` queries at a time."""
    out: list[np.ndarray] = []
    for s in range(0, len(d_rows), block):
        rows = d_rows[s:s + block]
        union = np.unique(np.concatenate(rows)) if rows else np.zeros(0, np.int64)
        sim = scores(q[q_of[s:s + block]], d[union])  # [b, |union|]
        for i, r in enumerate(rows):
            out.append(sim[i, np.searchsorted(union, r)].astype(np.float32))
    return out


def corpus_encoding(teacher: Teacher, doc_texts: list[str], cache_dir: str | os.PathLike | None,
                    dataset: str) -> Matrix:
    """The teacher's encoding of a whole corpus [nd, ·], cached (same key as ifsr.eval.evaluate's)."""
    key = corpus_key(teacher.name, teacher.checksum, teacher.encoder_tag, dataset, doc_texts, teacher.max_length)
    return cached_encode(key, lambda: teacher.encode_docs(doc_texts), cache_dir)


def full_corpus_scores(teacher: Teacher, queries: list[str], doc_texts: list[str],
                       cache_dir: str | os.PathLike | None, dataset: str) -> np.ndarray:
    """s(q, d) for every query and every document, float32 [nq, nd] (cached, with the doc encodings)."""
    def compute() -> np.ndarray:
        d = corpus_encoding(teacher, doc_texts, cache_dir, dataset)  # [nd, ·]
        return scores(teacher.encode_queries(queries), d)  # [nq, nd]

    key = {**teacher.key_parts(), "what": "full-corpus-scores", "dataset": dataset,
           "queries": texts_sha256(queries), "docs": texts_sha256(doc_texts), "version": SCORES_VERSION}
    return np.asarray(cached_encode(key, compute, cache_dir), dtype=np.float32)


def score_candidates(teacher: Teacher, candidates: list[Candidates], doc_text: Mapping[str, str],
                     cache_dir: str | os.PathLike, dataset: str, chunk_queries: int = 256,
                     chunk_docs: int = 4096, show_progress: bool = True) -> dict[str, np.ndarray]:
    """query_id -> teacher scores float32 [len(c.doc_ids)] in c.doc_ids order (positives first).

    Cached under cache_dir/teacher_scores/<key>/ with key = teacher name + weights checksum +
    dataset + candidates_checksum(candidates) (+ chunk size); resumable chunk by chunk.
    """
    # Over 60 lines: the chunked, resumable cache walk: its keys, chunks and checks read best in one piece.
    if chunk_queries <= 0 or chunk_docs <= 0:
        raise ValueError(f"chunk sizes must be positive, got {chunk_queries}, {chunk_docs}")
    ids = [c.query_id for c in candidates]
    if len(set(ids)) != len(ids):
        raise ValueError("candidates have duplicate query_ids")
    texts = []
    for c in candidates:
        for did in c.doc_ids:
            if did not in doc_text:
                raise ValueError(f"query {c.query_id!r}: candidate {did!r} has no text in doc_text")
            texts.append(doc_text[did])
    key = {**teacher.key_parts(), "dataset": dataset, "candidates": candidates_checksum(candidates),
           "chunk_queries": chunk_queries, "version": SCORES_VERSION}
    root = Path(cache_dir) / "teacher_scores" / key_of(json.loads(canonical_json(key)))
    atomic_write(root / "key.json", json.dumps(key, indent=1).encode())  # for people browsing the cache

    # 1. distinct candidate texts, encoded once, in fixed chunks (each cached on its own); lazily:
    #    a rerun whose score chunks are all done never touches them. Under torchrun, rank r encodes
    #    chunks r, r + W, ... and every rank gets them all (ifsr.distributed).
    rank, world = rank_world()
    ud, d_of = _distinct(texts)
    encoded: list[Matrix] = []

    def docs() -> Matrix:
        if not encoded:
            n_chunks = -(-len(ud) // chunk_docs)
            mine = {}
            for i in tqdm(owned_units(n_chunks, rank, world), desc=f"{teacher.name}: encode candidates",
                          disable=not (show_progress and is_main())):
                part = ud[i * chunk_docs:(i + 1) * chunk_docs]
                mine[i] = cached_encode({**teacher.key_parts(), "what": "texts", "texts": texts_sha256(part),
                                         "n": len(part), "encoder_version": ENCODER_VERSION},
                                        lambda part=part: teacher.encode_docs(part), cache_dir)
            blocks = merge_units(gather_objects(mine), n_chunks)
            if not blocks:
                raise ValueError("no candidate documents to score")
            encoded.append(_stack(blocks))
        return encoded[0]

    starts = np.cumsum([0] + [len(c.doc_ids) for c in candidates])

    # 2. queries, chunk by chunk (rank r: chunks r, r + W, ...); a finished chunk is a file and is never recomputed
    n_chunks = -(-len(candidates) // chunk_queries)
    work = {}
    for ci in owned_units(n_chunks, rank, world):
        chunk = candidates[ci * chunk_queries:(ci + 1) * chunk_queries]
        meta = {"key": json.loads(canonical_json(key)), "query_ids": [c.query_id for c in chunk],
                "lengths": [len(c.doc_ids) for c in chunk]}
        path = root / f"chunk_{ci:06d}.npz"
        arrays = load_arrays(path, meta)
        if arrays is not None and arrays["scores"].shape != (sum(meta["lengths"]),):
            arrays = None  # cannot happen with an intact sidecar; recompute rather than trust it
        work[ci] = (chunk, meta, path, None if arrays is None else arrays["scores"])
    if any(gather_objects(any(w[3] is None for w in work.values()))):
        docs()  # collective under torchrun: every rank takes part when any rank has a chunk to score
    bar = tqdm(work.items(), desc=f"{teacher.name}: score candidates", disable=not (show_progress and is_main()))
    flats = {}
    for ci, (chunk, meta, path, flat) in bar:
        if flat is None:
            uq, q_of = _distinct([c.query for c in chunk])
            rows = [d_of[starts[ci * chunk_queries + i]:starts[ci * chunk_queries + i + 1]] for i in range(len(chunk))]
            per_query = gather_scores(teacher.encode_queries(uq), q_of, docs(), rows)
            flat = np.concatenate(per_query).astype(np.float32) if per_query else np.zeros(0, np.float32)
            save_arrays(path, {"scores": flat}, meta)
        bar.set_postfix(cached=work[ci][3] is not None)
        flats[ci] = flat

    # 3. every chunk's scores, in chunk order, on every rank
    out: dict[str, np.ndarray] = {}
    for ci, flat in enumerate(merge_units(gather_objects(flats), n_chunks)):
        chunk = candidates[ci * chunk_queries:(ci + 1) * chunk_queries]
        lengths = [len(c.doc_ids) for c in chunk]
        for c, piece in zip(chunk, np.split(flat, np.cumsum(lengths)[:-1])):
            out[c.query_id] = piece
    return out


class TeacherBank:
    """Teacher vectors of each training example's query and its G candidates (in-batch negatives).

    queries[k]: teacher k's vectors [n, ·] of the n examples' queries; docs[k]: [n * G, ·], example-major
    (row i * G + g = doc_g of example i). `scores(rows)` gives every teacher's score of each chosen
    example's query against every chosen example's candidates: the candidate set C(q) = the whole batch.
    """

    def __init__(self, teachers: Sequence[Teacher], queries: list[Matrix], docs: list[Matrix], group: int):
        if not (len(teachers) == len(queries) == len(docs)):
            raise ValueError(f"{len(teachers)} teachers, {len(queries)} query and {len(docs)} doc matrices")
        if any(d.shape[0] != q.shape[0] * group for q, d in zip(queries, docs)):
            raise ValueError(f"each doc matrix must have {group} rows per query row")
        self.teachers, self.queries, self.docs, self.group = list(teachers), queries, docs, group

    @classmethod
    def build(cls, teachers: Sequence[Teacher], query_texts: list[str], doc_texts: list[list[str]],
              cache_dir: str | os.PathLike | None) -> "TeacherBank":
        """query_texts [n]; doc_texts [G][n] (the dataset's doc_0..doc_{G-1} columns). Each distinct
        text is encoded once per teacher, cached under the texts' hash."""
        group = len(doc_texts)
        flat = [doc_texts[g][i] for i in range(len(query_texts)) for g in range(group)]  # example-major
        uq, q_of = _distinct(query_texts)
        ud, d_of = _distinct(flat)
        queries, docs = [], []
        for t in teachers:
            q = cached_encode({**t.key_parts(), "what": "bank-queries", "texts": texts_sha256(uq),
                               "encoder_version": ENCODER_VERSION}, lambda t=t: t.encode_queries(uq), cache_dir)
            d = cached_encode({**t.key_parts(), "what": "bank-docs", "texts": texts_sha256(ud),
                               "encoder_version": ENCODER_VERSION}, lambda t=t: t.encode_docs(ud), cache_dir)
            queries.append(q[q_of])
            docs.append(d[d_of])
        return cls(teachers, queries, docs, group)

    def scores(self, rows: np.ndarray, candidate_rows: np.ndarray | None = None) -> np.ndarray:
        """Raw teacher scores float32 [b, K, c * G] of example rows[i]'s query against the candidates
        of candidate_rows[0], candidate_rows[1], ... (default `rows`; column j * G + g is doc_g of
        example candidate_rows[j]). Data-parallel training passes the whole global batch as candidate_rows."""
        rows = np.asarray(rows, dtype=np.int64)
        cand = rows if candidate_rows is None else np.asarray(candidate_rows, dtype=np.int64)
        cols = (cand[:, None] * self.group + np.arange(self.group)[None, :]).reshape(-1)  # [c * G]
        return np.stack([scores(q[rows], d[cols]) for q, d in zip(self.queries, self.docs)], axis=1)
