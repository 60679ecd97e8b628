"""BEIR sets (strict loading; named sets found or downloaded by `ifsr.data.download`), the data directory and
the cache directory.

BEIR layout (one directory per set)::

    corpus.jsonl       {"_id": str, "title": str (optional), "text": str}
    queries.jsonl      {"_id": str, "text": str}
    qrels/<split>.tsv  query-id <TAB> corpus-id <TAB> score   (optional header line)

Pairs and the leakage filter live in `ifsr.data.pairs`.

All parsers are strict: a malformed line raises ValueError naming the file, the 1-based line
number and the expected format. Nothing is read or downloaded at import time.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ifsr.data.download import looks_like_path, resolve_name
from ifsr.jsonl import bad_line, not_utf8, read_jsonl, string_field

log = logging.getLogger(__name__)

CORPUS_FORMAT = 'one JSON object a line: {"_id": str, "title": str (optional), "text": str}'
QUERIES_FORMAT = 'one JSON object a line: {"_id": str, "text": str}'
QRELS_FORMAT = "query-id<TAB>corpus-id<TAB>integer score (optional header 'query-id corpus-id score')"


def find_data_dir(root: str | os.PathLike = ".", environ: dict[str, str] | None = None) -> tuple[Path, str]:
    """The data directory to use and why (the one place that decides): $IFSR_DATA_DIR if set, else ../shared/data beside the
    repository if it exists, else ./data (the BEIR sets absent there are downloaded by name, when online;
    a set already on disk is never downloaded again)."""
    env = os.environ if environ is None else environ
    root = Path(root).resolve()
    if env.get("IFSR_DATA_DIR"):
        return Path(env["IFSR_DATA_DIR"]).resolve(), "$IFSR_DATA_DIR"
    shared = root.parent / "shared" / "data"
    if shared.is_dir():
        return shared, "../shared/data beside the repository"
    local = root / "data"
    if local.is_dir():
        return local, "./data"
    return local, "./data does not exist yet: BEIR sets will be downloaded into it by name (needs network)"


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data directory: ``path`` if given, else `find_data_dir`'s choice (read at call time)."""
    return Path(path) if path is not None else find_data_dir()[0]


_data_dir = data_dir  # load_beir's ``data_dir`` argument shadows the function

CACHE_DIR = ".cache/ifsr"  # the project's cache folder (git-ignored), relative to the working directory


def resolve_cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The cache directory (encodings, teacher scores): `path`, else $IFSR_CACHE_DIR (read now), else CACHE_DIR."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get("IFSR_CACHE_DIR") or CACHE_DIR).expanduser()

IDF_FILE = "idf/msmarco_bert-base-uncased_idf.json"  # the MS MARCO IDF table, under the data directory


def default_idf_path(data_dir: str | os.PathLike | None = None) -> Path:
    """The query-side IDF table used when none is given: IDF_FILE under `data_dir(data_dir)`."""
    return _data_dir(data_dir) / IDF_FILE


# ----------------------------------------------------------------------------- BEIR

@dataclass
class BeirSet:
    """One BEIR set with the qrels of one split. Dicts keep file order and are treated as
    read-only once built (doc_ids and query_ids are computed once and cached)."""

    name: str
    corpus: dict[str, dict[str, str]]  # doc id -> {"title", "text"}
    queries: dict[str, str]            # query id -> text (every query in queries.jsonl)
    qrels: dict[str, dict[str, int]]   # query id -> doc id -> score (this split)
    split: str = "test"
    root: Path | None = None           # directory it was read from (None: built in memory)
    files_sha256: str | None = field(default=None, repr=False)  # set by load_beir

    @cached_property
    def doc_ids(self) -> list[str]:
        return list(self.corpus)

    @cached_property
    def query_ids(self) -> list[str]:
        """Queries with at least one qrels row in this split, in queries.jsonl order."""
        return [qid for qid in self.queries if qid in self.qrels]

    def doc_texts(self) -> list[str]:
        """``title + " " + text`` (stripped; just the text if the title is empty), doc_ids order."""
        return [join_text(d["title"], d["text"]) for d in self.corpus.values()]

    def checksum(self) -> str:
        """sha256 over the bytes of corpus.jsonl, queries.jsonl and qrels/<split>.tsv, in that
        order, as hashed when load_beir read them (later edits to the files do not change it).

        For a set built in memory it hashes a canonical JSON dump of the three dicts.
        """
        if self.files_sha256 is not None:
            return self.files_sha256
        h = hashlib.sha256()
        for part in (self.corpus, self.queries, self.qrels):
            h.update(json.dumps(part, sort_keys=True, ensure_ascii=False).encode())
        return h.hexdigest()


def files_sha256(paths: list[Path]) -> str:
    """sha256 over the concatenated bytes of ``paths``."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def join_text(title: str, text: str) -> str:
    """A document's text: ``title + " " + text``, stripped; just the text if the title is empty."""
    title, text = title.strip(), text.strip()
    return f"{title} {text}" if title else text


def _read_by_id(path: Path, fmt: str, value) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n, obj in read_jsonl(path, fmt):
        key = string_field(obj, "_id", path, n, fmt, allow_int=True)
        if key in out:
            raise bad_line(path, n, f"duplicate _id {key!r}", fmt)
        out[key] = value(obj, n)
    return out


def read_corpus(path: Path) -> dict[str, dict[str, str]]:
    return _read_by_id(path, CORPUS_FORMAT, lambda o, n: {
        "title": string_field(o, "title", path, n, CORPUS_FORMAT, default=""),
        "text": string_field(o, "text", path, n, CORPUS_FORMAT)})


def read_queries(path: Path) -> dict[str, str]:
    return _read_by_id(path, QUERIES_FORMAT, lambda o, n: string_field(o, "text", path, n, QUERIES_FORMAT))


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query id -> doc id -> score. A repeated (query-id, corpus-id) pair with the same score is
    logged as a warning (it changes nothing); with a different score it is an error naming both lines."""
    qrels: dict[str, dict[str, int]] = {}
    first_line: dict[tuple[str, str], int] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                cols = line.split("\t")
                if n == 1 and cols[0].strip().lower() in ("query-id", "query_id", "qid"):
                    continue  # header
                if len(cols) != 3:
                    raise bad_line(path, n, f"{len(cols)} tab-separated columns, not 3", QRELS_FORMAT)
                qid, did, score = (c.strip() for c in cols)
                try:
                    value = int(score)
                except ValueError:
                    raise bad_line(path, n, f"score {score!r} is not an integer", QRELS_FORMAT) from None
                rel = qrels.setdefault(qid, {})
                if did in rel:
                    seen = first_line[(qid, did)]
                    if rel[did] != value:
                        raise bad_line(path, n, f"query {qid!r}, doc {did!r} judged again with score {value} "
                                       f"(line {seen} gave {rel[did]})", f"one row per (query-id, corpus-id); "
                                       f"{QRELS_FORMAT}")
                    log.warning("%s:%d: duplicate row for query %r, doc %r (same score as line %d); "
                                "expected one row per (query-id, corpus-id)", path, n, qid, did, seen)
                else:
                    first_line[(qid, did)] = n
                rel[did] = value
    except UnicodeDecodeError:
        raise not_utf8(path, QRELS_FORMAT) from None
    return qrels


def load_beir(name_or_path: str, split: str = "test", data_dir: str | os.PathLike | None = None,
              download: bool = True) -> BeirSet:
    """Load a BEIR set: an existing directory, else ``<data_dir>/beir/<name>``, else download it.

    ``name`` may be ``cqadupstack/android``-style; the download then fetches the parent zip. A name
    that looks like a path (see `ifsr.data.download.looks_like_path`) must be an existing directory. Nothing is
    downloaded into an existing ``<data_dir>/beir/<set>``.
    Raises FileNotFoundError if the set is absent and cannot be downloaded, or if the split has no
    qrels file (the message lists the splits there are); ValueError on malformed files (including
    no documents, no queries, no qrels rows, or no qrels query in queries.jsonl) or a bad md5.
    """
    if os.path.isdir(name_or_path):
        root = Path(name_or_path)
    elif looks_like_path(name_or_path):
        raise FileNotFoundError(f"no such directory: {name_or_path} (expected a BEIR directory with "
                                f"corpus.jsonl, queries.jsonl and qrels/)")
    else:
        root = resolve_name(name_or_path, _data_dir(data_dir) / "beir", download)
    if not (root / "queries.jsonl").is_file() or not (root / "corpus.jsonl").is_file():
        raise FileNotFoundError(f"{root} lacks corpus.jsonl or queries.jsonl")
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
        raise FileNotFoundError(f"no qrels for split {split!r}: {qrels_path} is missing; "
                                f"available splits: {splits}")
    digest = files_sha256([root / "corpus.jsonl", root / "queries.jsonl", qrels_path])
    s = BeirSet(name=root.name, corpus=read_corpus(root / "corpus.jsonl"),
                queries=read_queries(root / "queries.jsonl"), qrels=read_qrels(qrels_path),
                split=split, root=root, files_sha256=digest)
    for what, part, file, fmt in (("documents", s.corpus, "corpus.jsonl", CORPUS_FORMAT),
                                  ("queries", s.queries, "queries.jsonl", QUERIES_FORMAT)):
        if not part:
            raise ValueError(f"{root / file}: no {what} (the file is empty); expected {fmt}")
    if not s.qrels:
        raise ValueError(f"{qrels_path}: no qrels rows for split {split!r} (the file is empty or only a "
                         f"header); expected {QRELS_FORMAT}")
    if not s.query_ids:
        raise ValueError(f"{qrels_path}: none of its {len(s.qrels)} queries is in {root / 'queries.jsonl'} "
                         f"(e.g. {list(s.qrels)[:3]}); expected query ids of queries.jsonl")
    missing_q = [q for q in s.qrels if q not in s.queries]
    missing_d = {d for rel in s.qrels.values() for d in rel if d not in s.corpus}
    if missing_q or missing_d:
        log.warning("%s/%s: qrels name %d queries and %d docs absent from the files",
                    s.name, split, len(missing_q), len(missing_d))
    return s


def dev_split(ds: BeirSet, n_dev: int, seed: int = 0) -> tuple[BeirSet, BeirSet | None]:
    """(train, dev) of a training split: `n_dev` of its judged queries (a fixed draw by `seed`) move to a dev
    set, with their qrels; the rest stay for training. Settings are chosen on dev, never on a test split.
    n_dev 0: (ds, None)."""
    if n_dev < 0 or n_dev >= len(ds.query_ids):
        raise ValueError(f"{ds.name} {ds.split}: dev_queries must be in [0, {len(ds.query_ids)}), got {n_dev}")
    if n_dev == 0:
        return ds, None
    dev = {ds.query_ids[i] for i in np.random.default_rng(seed).choice(len(ds.query_ids), n_dev, replace=False)}
    part = lambda keep, split: BeirSet(name=ds.name, corpus=ds.corpus, queries=ds.queries, split=split,  # noqa: E731
                                       root=ds.root, qrels={q: r for q, r in ds.qrels.items() if keep(q)})
    return part(lambda q: q not in dev, ds.split), part(lambda q: q in dev, "dev")


def training_queries(beir_set: BeirSet) -> list[tuple[str, str, list[str]]]:
    """(query id, query text, positive doc ids) for each query of the split with a score > 0 doc.

    Positives keep qrels file order; docs absent from the corpus are left out.
    """
    out = []
    for qid in beir_set.query_ids:
        pos = [d for d, s in beir_set.qrels[qid].items() if s > 0 and d in beir_set.corpus]
        if pos:
            out.append((qid, beir_set.queries[qid], pos))
    return out
