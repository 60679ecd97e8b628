"""BM25 search and hard-negative mining, with a checksum of the mined candidate lists.

Ranking ties are broken by document index: order is (score desc, doc index asc), always
(``ifsr.core.retrieval.top_k``).
Randomness comes only from explicit seeds; a query's draws depend on (seed, its id), not on the
order or subset of queries mined alongside it.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import bm25s
import numpy as np
import scipy.sparse as sp
import Stemmer
from tqdm.auto import tqdm

from ifsr.core.retrieval import top_k
from ifsr.data.pairs import Pair, normalize_text

SEARCH_BATCH = 256  # queries scored at once by Bm25Index.search (memory: SEARCH_BATCH x n_docs floats)

# ----------------------------------------------------------------------------- BM25


class Bm25Index:
    """BM25 over ``bm25s``: lowercase, ``\\w\\w+`` tokens, bm25s English stopwords, Snowball
    English stemmer (PyStemmer), Lucene scoring (idf = ln(1 + (N - df + .5)/(df + .5)),
    tf part tf / (tf + k1 (1 - b + b dl/avgdl))). A repeated query term counts once per repeat."""

    def __init__(self, k1: float = 1.2, b: float = 0.75, method: str = "lucene",
                 stopwords: str | list[str] | None = "en", stemmer: str | None = "english",
                 show_progress: bool = False) -> None:
        if method not in ("lucene", "robertson", "atire", "bm25l", "bm25+"):
            raise ValueError(f"unknown BM25 method {method!r}")
        self.k1, self.b, self.method = k1, b, method
        self.stopwords = stopwords
        self.stemmer = Stemmer.Stemmer(stemmer) if stemmer else None
        self.show_progress = show_progress
        self._bm25: bm25s.BM25 | None = None
        self.n_docs = 0

    def _tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        return bm25s.tokenize(list(texts), stopwords=self.stopwords, stemmer=self.stemmer,
                              return_ids=False, show_progress=False)

    def build(self, doc_texts: Sequence[str]) -> Bm25Index:
        if len(doc_texts) == 0:
            raise ValueError("cannot build a BM25 index over zero documents")
        tokens = self._tokenize(doc_texts)
        if not any(tokens):
            raise ValueError("no indexable tokens (words of 2+ characters, not stopwords) in the documents")
        self._bm25 = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        self._bm25.index(tokens, show_progress=self.show_progress)
        self.n_docs = len(doc_texts)
        return self

    def scores(self, query_text: str) -> np.ndarray:
        """float32 BM25 score of every document for one query."""
        return self._scores(self._tokenize([query_text])[0])

    def _scores(self, tokens: list[str]) -> np.ndarray:
        if self._bm25 is None:
            raise ValueError("index not built: call build(doc_texts) first")
        vocab = self._bm25.vocab_dict
        ids = [vocab[t] for t in tokens if t in vocab]
        if not ids:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.asarray(self._bm25.get_scores_from_ids(ids), dtype=np.float32)

    def impact_matrix(self) -> sp.csr_matrix:
        """BM25 as learned-sparse vectors: CSR [n_docs, vocabulary], entry (d, t) = the BM25 score term t
        contributes to document d (idf and length normalization folded in; what bm25s precomputes). A
        query's scores are this matrix times `query_vector(text)`, which any vector engine can serve."""
        if self._bm25 is None:
            raise ValueError("index not built: call build(doc_texts) first")
        s = self._bm25.scores
        return sp.csc_matrix((np.asarray(s["data"], np.float32), s["indices"], s["indptr"]),
                             shape=(self.n_docs, len(s["indptr"]) - 1)).tocsr()

    def query_vector(self, query_text: str) -> tuple[np.ndarray, np.ndarray]:
        """(vocabulary ids ascending, float32 counts) of one query's indexed tokens: `scores` equals
        `impact_matrix() @ counts` (a repeated term counts once per repeat, as in `scores`)."""
        if self._bm25 is None:
            raise ValueError("index not built: call build(doc_texts) first")
        vocab, width = self._bm25.vocab_dict, len(self._bm25.scores["indptr"]) - 1  # bm25s may add "" past it
        ids, counts = np.unique(np.asarray([vocab[t] for t in self._tokenize([query_text])[0]
                                            if vocab.get(t, width) < width], dtype=np.int64), return_counts=True)
        return ids, counts.astype(np.float32)

    def search(self, query_texts: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query: (indices int64 [nq, k'], scores float32 [nq, k']), k' = min(k, n_docs),
        ordered by score desc then doc index asc (every document is ranked, score 0 included)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if self._bm25 is None:
            raise ValueError("index not built: call build(doc_texts) first")
        k = min(k, self.n_docs)
        idx = np.zeros((len(query_texts), k), dtype=np.int64)
        val = np.zeros((len(query_texts), k), dtype=np.float32)
        tokens = self._tokenize(query_texts) if len(query_texts) else []
        for start in tqdm(range(0, len(tokens), SEARCH_BATCH), desc="BM25 search", disable=not self.show_progress):
            s = np.stack([self._scores(t) for t in tokens[start:start + SEARCH_BATCH]])  # [b, n_docs]
            idx[start:start + len(s)], val[start:start + len(s)] = top_k(s, k)
        return idx, val


# ----------------------------------------------------------------------------- candidates

@dataclass(frozen=True)
class Candidates:
    """A query and the documents to score it against: positives first, then hard negatives.

    ``positives`` holds every positive (the trainer picks one per step); ``negatives`` are in
    mined rank order (hardest first). Ids are corpus doc ids, or passage ids (passage_id) for
    pairs.
    """

    query_id: str
    query: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]
    source: str = ""

    @property
    def doc_ids(self) -> tuple[str, ...]:
        return self.positives + self.negatives

    def to_json(self) -> dict[str, Any]:
        return {"query_id": self.query_id, "query": self.query, "positives": list(self.positives),
                "negatives": list(self.negatives), "source": self.source}


class Searcher(Protocol):
    def search(self, query_texts: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]: ...


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")])


def _draw(pool: list[str], n: int, rng: np.random.Generator) -> tuple[str, ...]:
    """n of pool without replacement, returned in pool (rank) order."""
    picked = np.sort(rng.choice(len(pool), size=n, replace=False))
    return tuple(pool[i] for i in picked)


def mine_hard_negatives(queries: Mapping[str, str], positives: Mapping[str, Sequence[str]],
                        doc_ids: Sequence[str], index: Searcher | None, n_neg: int, depth: int,
                        seed: int, ranking: Mapping[str, Sequence[str]] | None = None,
                        source: str = "") -> list[Candidates]:
    """Candidates for each query in ``queries`` (qid -> text), in that order.

    Negatives: ``n_neg`` drawn uniformly without replacement from the query's top-``depth``
    ranking with its positives removed. The ranking is ``index.search`` (rows aligned with
    ``doc_ids``; any teacher with that method plugs in) or, if given, ``ranking`` (qid -> doc ids,
    best first, e.g. a cached teacher run). ``positives``: qid -> positive doc ids (all kept).
    """
    if n_neg < 0 or depth < n_neg:
        raise ValueError(f"need 0 <= n_neg <= depth, got n_neg={n_neg}, depth={depth}")
    qids = list(queries)
    if ranking is None:
        if index is None:
            raise ValueError("give an index or a precomputed ranking")
        most = max((len(positives.get(q, ())) for q in qids), default=0)
        rows, _ = index.search([queries[q] for q in qids], depth + most)
        ranking = {q: [doc_ids[j] for j in row] for q, row in zip(qids, rows)}
    out = []
    for q in qids:
        pos = tuple(positives.get(q, ()))
        if not pos:
            raise ValueError(f"query {q!r} has no positives")
        if q not in ranking:
            raise ValueError(f"query {q!r} is missing from the ranking")
        ps = set(pos)
        pool = [d for d in ranking[q] if d not in ps][:depth]
        if len(pool) < n_neg:
            raise ValueError(f"query {q!r}: only {len(pool)} non-positive docs ranked, need {n_neg}")
        out.append(Candidates(q, queries[q], pos, _draw(pool, n_neg, _rng(seed, q)), source))
    return out


def passage_id(source: str, text: str) -> str:
    """Content id of a pre-training passage: ``<source>:<sha256(normalize_text(text))[:16]>``."""
    return f"{source}:{hashlib.sha256(normalize_text(text).encode()).hexdigest()[:16]}"


def passage_table(pairs: Sequence[Pair]) -> dict[str, str]:
    """passage_id -> text (first text seen) for every positive in ``pairs``; rebuilds the texts
    behind mine_in_source's ids without storing them."""
    table: dict[str, str] = {}
    for p in pairs:
        table.setdefault(passage_id(p.source, p.positive), p.positive)
    return table


def mine_in_source(pairs: Sequence[Pair], n_neg: int, depth: int, seed: int,
                   show_progress: bool = False) -> list[Candidates]:
    """One Candidates per pair (same order; query_id = the pair's index as a string).

    Per source: BM25 over that source's distinct passages (by normalized text); negatives drawn
    as in mine_hard_negatives from the top-``depth``, excluding the pair's positive and every
    other passage paired with the same normalized query in that source (not false negatives).
    Ids are passage_id()s; passage_table(pairs) maps them back to text.
    """
    if n_neg < 0 or depth < n_neg:
        raise ValueError(f"need 0 <= n_neg <= depth, got n_neg={n_neg}, depth={depth}")
    by_source: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        by_source.setdefault(p.source, []).append(i)
    out: list[Candidates | None] = [None] * len(pairs)
    for src, members in by_source.items():
        pid_of = {i: passage_id(src, pairs[i].positive) for i in members}
        texts: dict[str, str] = {}
        own_of: dict[str, set[str]] = {}  # normalized query -> its positives' ids
        for i in members:
            texts.setdefault(pid_of[i], pairs[i].positive)
            own_of.setdefault(normalize_text(pairs[i].query), set()).add(pid_of[i])
        pids = list(texts)
        most = max(len(v) for v in own_of.values())
        index = Bm25Index(show_progress=show_progress).build(list(texts.values()))
        queries = list(dict.fromkeys(pairs[i].query for i in members))
        rows, _ = index.search(queries, depth + most)
        ranked = dict(zip(queries, rows))
        for i in members:
            p = pairs[i]
            own = own_of[normalize_text(p.query)]
            pool = [pids[j] for j in ranked[p.query] if pids[j] not in own][:depth]
            if len(pool) < n_neg:
                raise ValueError(f"source {src!r} has too few passages for {n_neg} negatives")
            out[i] = Candidates(str(i), p.query, (pid_of[i],),
                                _draw(pool, n_neg, _rng(seed, f"{i}\t{p.query}")), src)
    return [c for c in out if c is not None]


# ----------------------------------------------------------------------------- checksum

def _line(c: Candidates) -> str:
    return json.dumps(c.to_json(), ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"


def candidates_checksum(cands: Sequence[Candidates]) -> str:
    """sha256 of the candidates' canonical JSONL: one sorted-key, compact JSON object a line."""
    h = hashlib.sha256()
    for c in cands:
        h.update(_line(c).encode())
    return h.hexdigest()
