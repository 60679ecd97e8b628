"""PISA engines (`pyterrier-pisa`, no Java): a learned-sparse impact index and PISA's own BM25 over text.

Impact index: document weights become integer impacts `max(1, round(w * doc_scale))` (every non-zero
posting kept) written straight into PISA's binary collection; the "quantized" scorer then scores
`sum_t q_t * impact_t` where PISA takes the integer query weight `round(q * query_scale)` (a term
rounding to 0 is dropped: clamping it to 1 would inflate it, e.g. '.' has idf 0.02). pyterrier-pisa
passes that weight by repeating the term that many times and PISA then sorts the repeated list, so a
query costs O(sum of its integer weights): query_scale 10 (not 100) keeps IDF queries (weights up to
15.6) cheap, while precision goes to the document side (doc_scale 100); top-10 agreement with exact
stays >= 0.99. Terms are the vocabulary's token strings (`vocab_terms`): with `stemmer='none'` PISA
looks them up verbatim ('##s', '!', '[unused0]', non-ASCII all round-trip; tested), so no id mapping
is needed. Documents are numbered by row, and PISA's top-k breaks ties by that number, as the exact
engine does.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from ifsr.serving.base import Engine, TextEngine, silenced_native_output

PISA_ALGORITHMS = ("block_max_wand", "block_max_maxscore", "maxscore", "wand", "ranked_or", "ranked_and")
PISA_MODULE, PISA_PACKAGE = "pyterrier_pisa", "pyterrier-pisa"


def prepare_dir(path: Path, overwrite: bool) -> None:
    """Create `path` empty: refuse a non-empty one unless `overwrite` (then it is removed first)."""
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to rebuild it")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)


def posting_lengths(path: str | Path) -> dict[str, int]:
    """Posting-list length of every term of a PISA index folder (read from its inv.docs headers)."""
    docs = np.memmap(Path(path) / "inv.docs", dtype=np.uint32, mode="r")
    lengths, pos = {}, 2
    for term in (Path(path) / "fwd.terms").read_text(encoding="utf-8").splitlines():
        lengths[term] = int(docs[pos])
        pos += lengths[term] + 1
    return lengths


def index_bytes(path: str | Path) -> int:
    """Bytes of what PISA searches: the compressed index, block-max (wand) data and lexicons; not the
    uncompressed binary collection it was built from (inv.*) nor the plain-text forward files."""
    skip = ("inv.", "fwd.documents", "fwd.terms", "fwd.frequencies", "fwd.sizes", "fwd.docs")
    files = [f for f in Path(path).iterdir() if f.is_file() and not f.name.startswith(skip)]
    return int(sum(f.stat().st_size for f in files))


def index_built(path: str | Path) -> bool:
    """Whether `path` holds a finished PISA index (its pt_meta.json is written last)."""
    return (Path(path) / "pt_meta.json").is_file()


class PisaSearcher:
    """One PISA retrieval context, queried one query at a time through the C extension (no pandas)."""

    def __init__(self, pp, path: str | Path, scorer: str, algorithm: str = "block_max_wand", k: int = 10,
                 stops: str = "none", verbose: bool = False, **scorer_args: float):
        if algorithm not in PISA_ALGORITHMS:
            raise ValueError(f"algorithm must be one of {PISA_ALGORITHMS}, got {algorithm!r}")
        index = pp.PisaIndex(str(path), threads=1, stops=stops)
        if not index.built():
            raise FileNotFoundError(f"no PISA index at {path}")
        with silenced_native_output(not verbose):  # the first context per scorer compresses the index, logs to fd 2
            self.retriever = pp.PisaRetrieve(index, scorer, num_results=k, threads=1, query_algorithm=algorithm,
                                             **scorer_args)
        self.retrieve, self.algorithm, self.k = pp._pisathon.retrieve, algorithm, k
        self.weighted = scorer == "quantized"
        self.qidx = np.empty(k, dtype=np.int32)
        self.docnos = np.empty(k, dtype=object)
        self.ranks = np.empty(k, dtype=np.int32)
        self.scores = np.empty(k, dtype=np.float32)

    def run(self, query: str | dict[str, float], pretokenised: bool) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (rows, scores) of one query: raw text, or {term: weight} when `pretokenised`."""
        n = self.retrieve(self.retriever._ctxt, self.algorithm, [(0, query)], k=self.k, threads=1,
                          query_weighted=int(self.weighted), pretokenised=pretokenised, result_qidxs=self.qidx,
                          result_docnos=self.docnos, result_ranks=self.ranks, result_scores=self.scores)
        return np.array([int(d) for d in self.docnos[:n]], dtype=np.int64), self.scores[:n].copy()


class PisaImpactIndex(Engine):
    """Learned-sparse impact index: `build` it from a CSR [n, V] (or `from_docs`), then `search_ids` / `search`."""

    name, requires, package = "pisa", PISA_MODULE, PISA_PACKAGE

    def __init__(self, path: str | Path, terms: Sequence[str], algorithm: str = "block_max_wand", k: int = 10,
                 query_scale: float = 10.0):
        if query_scale <= 0:
            raise ValueError(f"query_scale must be positive, got {query_scale}")
        self.searcher = PisaSearcher(self.dependency(), path, "quantized", algorithm, k)
        self.path, self.algorithm, self.k = Path(path), algorithm, k
        self.terms, self.query_scale = np.asarray(terms, dtype=object), float(query_scale)
        # a score / score_scale is on the float vectors' scale (sum_t q_t d_t up to rounding): the impacts
        # carry doc_scale (recorded by `build` in pt_meta.json; 100 before it was), the query weights query_scale
        meta = self.path / "pt_meta.json"
        doc_scale = json.loads(meta.read_text()).get("ifsr_doc_scale", 100.0) if meta.is_file() else 100.0
        self.score_scale = float(doc_scale) * self.query_scale

    @classmethod
    def from_docs(cls, docs: sp.csr_matrix, k: int = 10, *, path: str | Path, terms: Sequence[str],
                  doc_scale: float = 100.0, algorithm: str = "block_max_wand", query_scale: float = 10.0,
                  reuse: bool = False, show_progress: bool = True) -> PisaImpactIndex:
        """Build the index of `docs` at `path` and open it. reuse=True: an index already built there is
        opened as it is (keep one folder per corpus and doc_scale), a partial one is rebuilt."""
        if not (reuse and index_built(path)):
            cls.build(path, docs, terms, doc_scale, overwrite=reuse, show_progress=show_progress)
        return cls(path, terms, algorithm, k, query_scale)

    @classmethod
    def build(cls, path: str | Path, docs: sp.csr_matrix, terms: Sequence[str], doc_scale: float = 100.0,
              overwrite: bool = False, terms_per_chunk: int = 4096, show_progress: bool = True) -> Path:
        """Write PISA's inverted files for `docs` (row i -> docno "i"); returns the index folder."""
        if doc_scale <= 0:
            raise ValueError(f"doc_scale must be positive, got {doc_scale}")
        if docs.shape[1] != len(terms):
            raise ValueError(f"docs have {docs.shape[1]} columns but there are {len(terms)} terms")
        if len(set(terms)) != len(terms) or any(not t or any(c.isspace() for c in t) for t in terms):
            raise ValueError("terms must be distinct, non-empty and free of whitespace")
        path = Path(path)
        prepare_dir(path, overwrite)
        n = docs.shape[0]
        csc = sp.csc_matrix(docs, dtype=np.float32, copy=True)  # posting lists = columns
        csc.data[csc.data < 0] = 0
        csc.eliminate_zeros()
        csc.sort_indices()  # doc ids ascending inside each posting list
        csc.data = np.maximum(1.0, np.rint(csc.data * doc_scale))  # integer impacts; no posting is lost
        counts = np.diff(csc.indptr)
        present = np.flatnonzero(counts)
        present = present[np.argsort(np.asarray([terms[j] for j in present], dtype=object), kind="stable")]
        (path / "fwd.documents").write_text("".join(f"{i}\n" for i in range(n)))
        (path / "fwd.terms").write_text("".join(f"{terms[j]}\n" for j in present), encoding="utf-8")
        sizes = np.bincount(csc.indices, weights=csc.data, minlength=n)  # document "lengths": sum of impacts
        np.concatenate([[n], sizes]).astype(np.uint32).tofile(path / "inv.sizes")
        with open(path / "inv.docs", "wb") as f_docs, open(path / "inv.freqs", "wb") as f_freqs:
            np.asarray([1, n], dtype=np.uint32).tofile(f_docs)
            chunks = range(0, len(present), terms_per_chunk)
            for start in tqdm(chunks, desc="write PISA postings", disable=not show_progress):
                cols = present[start : start + terms_per_chunk]
                for target, arr in ((f_docs, csc.indices), (f_freqs, csc.data)):
                    blocks = []
                    for j in cols:  # [length, postings...] per term
                        blocks += [[counts[j]], arr[csc.indptr[j] : csc.indptr[j + 1]]]
                    np.concatenate(blocks).astype(np.uint32).tofile(target)
        pp = cls.dependency()
        with silenced_native_output(True):
            pp._pisathon.build_binlex(str(path / "fwd.documents"), str(path / "fwd.doclex"))
            pp._pisathon.build_binlex(str(path / "fwd.terms"), str(path / "fwd.termlex"))
        meta = {"type": "sparse_index", "format": "pisa", "package_hint": "pyterrier-pisa", "stemmer": "none",
                "ifsr_doc_scale": doc_scale}
        (path / "pt_meta.json").write_text(json.dumps(meta))
        return path

    def size_bytes(self) -> int:
        return index_bytes(self.path)

    def query_dict(self, ids: np.ndarray, values: np.ndarray) -> dict[str, float]:
        """Integer PISA weights {term: round(value * query_scale)}; terms rounding to 0 are dropped."""
        scaled = np.rint(np.asarray(values, dtype=np.float64) * self.query_scale)
        keep = scaled > 0
        return dict(zip(self.terms[np.asarray(ids)[keep]].tolist(), scaled[keep].tolist()))

    def search_ids(self, ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (rows, quantized scores) for a query given as vocabulary ids and float weights."""
        return self.searcher.run(self.query_dict(ids, weights), pretokenised=True)

    def search(self, weights: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Top-k for a query given as {token string: float weight}."""
        scaled = {t: float(round(w * self.query_scale)) for t, w in weights.items()}
        return self.searcher.run({t: w for t, w in scaled.items() if w > 0}, pretokenised=True)

    def search_prepared(self, weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Top-k for a query already in PISA's form: {term: integer weight as float, > 0}."""
        return self.searcher.run(weights, pretokenised=True)


class PisaBM25Index(TextEngine):
    """PISA's own BM25 over raw text (its English tokenizer, porter2, Terrier stopwords)."""

    name, requires, package = "pisa-bm25", PISA_MODULE, PISA_PACKAGE

    def __init__(self, path: str | Path, algorithm: str = "block_max_wand", k: int = 10, k1: float = 0.9,
                 b: float = 0.4):
        self.searcher = PisaSearcher(self.dependency(), path, "bm25", algorithm, k, stops="terrier",
                                     bm25_k1=k1, bm25_b=b)
        self.path, self.algorithm, self.k = Path(path), algorithm, k

    @classmethod
    def from_texts(cls, texts: Sequence[str], k: int = 10, *, path: str | Path, algorithm: str = "block_max_wand",
                   reuse: bool = False, show_progress: bool = True, **bm25: float) -> PisaBM25Index:
        """Build the BM25 index of `texts` at `path` and open it (reuse: as in `PisaImpactIndex.from_docs`)."""
        if not (reuse and index_built(path)):
            cls.build(path, texts, overwrite=reuse, show_progress=show_progress)
        return cls(path, algorithm, k, **bm25)

    @classmethod
    def build(cls, path: str | Path, texts: Sequence[str], overwrite: bool = False, show_progress: bool = True) -> Path:
        path = Path(path)
        prepare_dir(path, overwrite)
        pp = cls.dependency()
        bar = tqdm(texts, desc="PISA BM25 index", disable=not show_progress)
        docs = ({"docno": str(i), "text": t} for i, t in enumerate(bar))
        with silenced_native_output(not show_progress):
            pp.PisaIndex(str(path), text_field="text", stemmer="porter2", threads=1, overwrite=True).index(docs)
        return path

    def size_bytes(self) -> int:
        return index_bytes(self.path)

    def search(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        return self.searcher.run(text, pretokenised=False)

    @classmethod
    def query_terms(cls, text: str) -> list[str]:
        """The index terms PISA's BM25 query path keeps (English tokenizer, porter2, no stopwords)."""
        pp = cls.dependency()
        stops = set(pp.tokenize(" ".join(pp._STOPWORDS["terrier"]), "porter2"))
        return [t for t in dict.fromkeys(pp.tokenize(text, "porter2")) if t not in stops]
