"""Pre-training query-passage pairs and the leakage filter against evaluation sets.

Pairs layout: ``<dir>/*.jsonl.gz``, one ``{"query", "positive", "source"}`` object a line; parsing is
strict (a malformed line raises ValueError naming the file, line and expected format).
"""
from __future__ import annotations

import logging
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ifsr.data.beir import BeirSet, join_text
from ifsr.jsonl import read_jsonl, string_field

log = logging.getLogger(__name__)

PAIRS_FORMAT = 'one JSON object a line: {"query": str, "positive": str, "source": str}'


@dataclass(frozen=True)
class Pair:
    query: str
    positive: str
    source: str


def load_pairs(directory: str | os.PathLike, sources: list[str] | None = None) -> list[Pair]:
    """Read every ``*.jsonl.gz`` in ``directory`` (sorted by file name, file order within).

    ``sources`` keeps pairs whose ``source`` field, or whose file name without ``.jsonl.gz``, is
    listed (so ``stackexchange`` selects all three stackexchange_* sources). An unknown name is a
    ValueError listing the known ones.
    """
    d = Path(directory)
    files = sorted(d.glob("*.jsonl.gz"))
    if not files:
        raise FileNotFoundError(f"no *.jsonl.gz pair files in {d.resolve()}")
    want = set(sources) if sources is not None else None
    pairs: list[Pair] = []
    known: set[str] = set()
    for path in files:
        stem = path.name[: -len(".jsonl.gz")]
        known.add(stem)
        for n, obj in read_jsonl(path, PAIRS_FORMAT):
            p = Pair(*(string_field(obj, k, path, n, PAIRS_FORMAT) for k in ("query", "positive", "source")))
            known.add(p.source)
            if want is None or p.source in want or stem in want:
                pairs.append(p)
    if want is not None and want - known:
        raise ValueError(f"unknown pair sources {sorted(want - known)}; known: {sorted(known)}")
    return pairs


# ----------------------------------------------------------------------------- leakage

_WS = re.compile(r"\s+")


def _is_edge(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch)[0] == "P"


def normalize_text(s: str) -> str:
    """Text key for leakage checks: NFKC, lowercase, whitespace runs -> one space, and Unicode
    punctuation (categories P*, e.g. . ? ! " % ») stripped at both ends only ("What is X?" ==
    "what is x"). Inner punctuation and symbols at the ends ($, +) are kept, so distinct strings
    rarely collide."""
    s = _WS.sub(" ", unicodedata.normalize("NFKC", s).lower())
    i, j = 0, len(s)
    while i < j and _is_edge(s[i]):
        i += 1
    while j > i and _is_edge(s[j - 1]):
        j -= 1
    return s[i:j]


def filter_leakage(pairs: list[Pair], eval_sets: list[BeirSet]) -> tuple[list[Pair], dict[str, int]]:
    """Drop pairs whose query equals a judged eval query, or whose passage equals an eval document.

    Equality is on normalize_text. Eval queries: each set's query_ids (those judged in its
    split). Eval documents: each doc's ``title + text`` and its ``text`` alone (a passage that
    copies an abstract without its title is still a leak). A pair matching both counts as
    ``dropped_query``. Returns (kept pairs, {"kept", "dropped_query", "dropped_passage"}).
    """
    bad_q: set[str] = set()
    bad_d: set[str] = set()
    for s in eval_sets:
        bad_q.update(normalize_text(s.queries[q]) for q in s.query_ids)
        for doc in s.corpus.values():
            bad_d.add(normalize_text(join_text(doc["title"], doc["text"])))
            bad_d.add(normalize_text(doc["text"]))
    bad_q.discard("")
    bad_d.discard("")
    kept: list[Pair] = []
    counts = {"kept": 0, "dropped_query": 0, "dropped_passage": 0}
    for p in pairs:
        if normalize_text(p.query) in bad_q:
            counts["dropped_query"] += 1
        elif normalize_text(p.positive) in bad_d:
            counts["dropped_passage"] += 1
        else:
            kept.append(p)
    counts["kept"] = len(kept)
    log.info("leakage filter against %s: %s", [s.name for s in eval_sets], counts)
    return kept, counts
