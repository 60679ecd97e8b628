"""Serving learned sparse vectors: PISA (impact index + its own BM25), Seismic, an OpenSearch export.

PISA (`pyterrier-pisa`, no Java needed): document weights become integer impacts
`max(1, round(w * doc_scale))` (every non-zero posting kept) written straight into PISA's binary
collection; the "quantized" scorer then scores `sum_t q_t * impact_t` where PISA takes the integer
query weight `round(q * query_scale)` (a term rounding to 0 is dropped: clamping it to 1 would inflate
it, e.g. '.' has idf 0.02). pyterrier-pisa passes that weight by repeating the
term that many times and PISA then sorts the repeated list, so a query costs O(sum of its integer
weights): query_scale 10 (not 100) keeps IDF queries (weights up to 15.6) cheap, while precision goes
to the document side (doc_scale 100); top-10 agreement with exact stays >= 0.99. Terms are the
vocabulary's token strings (`tokenizer.convert_ids_to_tokens`): with `stemmer='none'` PISA looks them
up verbatim ('##s', '!', '[unused0]', non-ASCII all round-trip; tested), so no id mapping is needed.

Exact reference: `exact_topk` ranks by float32 dot product, ties by score desc then row asc, the
order PISA's top-k also uses (documents are numbered by row).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

PISA_ALGORITHMS = ("block_max_wand", "block_max_maxscore", "maxscore", "wand", "ranked_or", "ranked_and")


def vocab_terms(tokenizer) -> list[str]:
    """Token string of every vocabulary id, in id order."""
    return tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))


# ------------------------------------------------------------------------------ exact reference
def exact_topk(ids: np.ndarray, values: np.ndarray, docs_csc: sp.csc_matrix,
               k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows of `docs_csc @ q` with a positive score; ties: score desc, then row asc."""
    scores = np.asarray(docs_csc[:, np.asarray(ids, dtype=np.int64)] @ np.asarray(values, dtype=np.float32)).ravel()
    positive = np.flatnonzero(scores > 0)
    if len(positive) > k:  # keep every tie of the k-th score, then order exactly
        kth = np.partition(scores[positive], len(positive) - k)[len(positive) - k]
        positive = positive[scores[positive] >= kth]
    order = np.lexsort((positive, -scores[positive]))[:k]
    return positive[order], scores[positive[order]]


def topk_agreement(found: Sequence[np.ndarray], reference: Sequence[np.ndarray], k: int = 10) -> float:
    """Mean over queries of |found@k ∩ reference@k| / max(|found@k|, |reference@k|) (1 when both empty)."""
    if len(found) != len(reference):
        raise ValueError(f"{len(found)} result lists vs {len(reference)} references")
    if not found:
        return float("nan")
    ratios = []
    for a, b in zip(found, reference):
        a, b = set(np.asarray(a)[:k].tolist()), set(np.asarray(b)[:k].tolist())
        ratios.append(len(a & b) / max(len(a), len(b)) if (a or b) else 1.0)
    return float(np.mean(ratios))


# ------------------------------------------------------------------------------------------ PISA
def _pisa():
    try:
        import pyterrier_pisa
    except ImportError as e:
        raise ImportError("the PISA engine needs pyterrier-pisa: pip install pyterrier-pisa") from e
    return pyterrier_pisa


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """Silence PISA's C++ logging (spdlog writes to file descriptors 1 and 2) while `enabled`."""
    if not enabled:
        yield
        return
    sys.stdout.flush(), sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1), os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def _prepare_dir(path: Path, overwrite: bool) -> None:
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


class PisaSearcher:
    """One PISA retrieval context, queried one query at a time through the C extension (no pandas)."""

    def __init__(self, path: str | Path, scorer: str, algorithm: str = "block_max_wand", k: int = 10,
                 stops: str = "none", verbose: bool = False, **scorer_args: float):
        if algorithm not in PISA_ALGORITHMS:
            raise ValueError(f"algorithm must be one of {PISA_ALGORITHMS}, got {algorithm!r}")
        pp = _pisa()
        index = pp.PisaIndex(str(path), threads=1, stops=stops)
        if not index.built():
            raise FileNotFoundError(f"no PISA index at {path}")
        with _quiet(not verbose):  # the first context per scorer compresses the index and logs to fd 2
            self.retriever = pp.PisaRetrieve(index, scorer, num_results=k, threads=1, query_algorithm=algorithm,
                                             **scorer_args)
        self._retrieve, self.algorithm, self.k, self.path = pp._pisathon.retrieve, algorithm, k, Path(path)
        self.weighted = scorer == "quantized"
        self._qidx = np.empty(k, dtype=np.int32)
        self._docnos = np.empty(k, dtype=object)
        self._ranks = np.empty(k, dtype=np.int32)
        self._scores = np.empty(k, dtype=np.float32)

    def _run(self, query: str | dict[str, float], pretokenised: bool) -> tuple[np.ndarray, np.ndarray]:
        n = self._retrieve(self.retriever._ctxt, self.algorithm, [(0, query)], k=self.k, threads=1,
                           query_weighted=int(self.weighted), pretokenised=pretokenised, result_qidxs=self._qidx,
                           result_docnos=self._docnos, result_ranks=self._ranks, result_scores=self._scores)
        return np.array([int(d) for d in self._docnos[:n]], dtype=np.int64), self._scores[:n].copy()


class PisaImpactIndex(PisaSearcher):
    """Learned-sparse impact index: `build` it from a CSR [n, V], then `search_ids` / `search`."""

    def __init__(self, path: str | Path, terms: Sequence[str], algorithm: str = "block_max_wand", k: int = 10,
                 query_scale: float = 10.0):
        if query_scale <= 0:
            raise ValueError(f"query_scale must be positive, got {query_scale}")
        super().__init__(path, "quantized", algorithm, k)
        self.terms, self.query_scale = np.asarray(terms, dtype=object), float(query_scale)

    @staticmethod
    def build(path: str | Path, docs: sp.csr_matrix, terms: Sequence[str], doc_scale: float = 100.0,
              overwrite: bool = False, terms_per_chunk: int = 4096, show_progress: bool = True) -> Path:
        """Write PISA's inverted files for `docs` (row i -> docno "i"); returns the index folder."""
        if doc_scale <= 0:
            raise ValueError(f"doc_scale must be positive, got {doc_scale}")
        if docs.shape[1] != len(terms):
            raise ValueError(f"docs have {docs.shape[1]} columns but there are {len(terms)} terms")
        if len(set(terms)) != len(terms) or any(not t or any(c.isspace() for c in t) for t in terms):
            raise ValueError("terms must be distinct, non-empty and free of whitespace")
        path = Path(path)
        _prepare_dir(path, overwrite)
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
        pp = _pisa()
        with _quiet(True):
            pp._pisathon.build_binlex(str(path / "fwd.documents"), str(path / "fwd.doclex"))
            pp._pisathon.build_binlex(str(path / "fwd.terms"), str(path / "fwd.termlex"))
        meta = {"type": "sparse_index", "format": "pisa", "package_hint": "pyterrier-pisa", "stemmer": "none",
                "ifsr_doc_scale": doc_scale}
        (path / "pt_meta.json").write_text(json.dumps(meta))
        return path

    def query_dict(self, ids: np.ndarray, values: np.ndarray) -> dict[str, float]:
        """Integer PISA weights {term: round(value * query_scale)}; terms rounding to 0 are dropped."""
        scaled = np.rint(np.asarray(values, dtype=np.float64) * self.query_scale)
        keep = scaled > 0
        return dict(zip(self.terms[np.asarray(ids)[keep]].tolist(), scaled[keep].tolist()))

    def search_ids(self, ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (rows, quantized scores) for a query given as vocabulary ids and float weights."""
        return self._run(self.query_dict(ids, values), pretokenised=True)

    def search(self, weights: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Top-k for a query given as {token string: float weight}."""
        scaled = {t: float(round(w * self.query_scale)) for t, w in weights.items()}
        return self._run({t: w for t, w in scaled.items() if w > 0}, pretokenised=True)

    def search_prepared(self, weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Top-k for a query already in PISA's form: {term: integer weight as float, > 0}."""
        return self._run(weights, pretokenised=True)


class PisaBM25Index(PisaSearcher):
    """PISA's own BM25 over raw text (its English tokenizer, porter2, Terrier stopwords)."""

    def __init__(self, path: str | Path, algorithm: str = "block_max_wand", k: int = 10, k1: float = 0.9,
                 b: float = 0.4):
        super().__init__(path, "bm25", algorithm, k, stops="terrier", bm25_k1=k1, bm25_b=b)

    @staticmethod
    def build(path: str | Path, texts: Sequence[str], overwrite: bool = False, show_progress: bool = True) -> Path:
        path = Path(path)
        _prepare_dir(path, overwrite)
        pp = _pisa()
        bar = tqdm(texts, desc="PISA BM25 index", disable=not show_progress)
        docs = ({"docno": str(i), "text": t} for i, t in enumerate(bar))
        with _quiet(not show_progress):
            pp.PisaIndex(str(path), text_field="text", stemmer="porter2", threads=1, overwrite=True).index(docs)
        return path

    def search(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        return self._run(text, pretokenised=False)

    @staticmethod
    def query_terms(text: str) -> list[str]:
        """The index terms PISA's BM25 query path keeps (English tokenizer, porter2, no stopwords)."""
        pp = _pisa()
        from pyterrier_pisa.stopwords import _STOPWORDS

        stops = set(pp.tokenize(" ".join(_STOPWORDS["terrier"]), "porter2"))
        return [t for t in dict.fromkeys(pp.tokenize(text, "porter2")) if t not in stops]


# --------------------------------------------------------------------------------------- Seismic
class SeismicImpactIndex:
    """Seismic (approximate: pruned, clustered posting lists) over the same CSR vectors."""

    def __init__(self, docs: sp.csr_matrix, k: int = 10, n_postings: int = 3500, centroid_fraction: float = 0.1,
                 summary_energy: float = 0.4, query_cut: int = 64, heap_factor: float = 0.9, verbose: bool = False):
        try:
            import seismic
        except ImportError as e:
            raise ImportError("the Seismic engine needs pyseismic-lsr: pip install pyseismic-lsr") from e
        docs = sp.csr_matrix(docs, dtype=np.float32)
        docs.sort_indices()
        data = seismic.SeismicDataset(dim=docs.shape[1])
        data.add_documents_by_id([str(i) for i in range(docs.shape[0])], docs.indices.astype(np.int64),
                                 docs.data.astype(np.float32), docs.indptr.astype(np.int64))
        with _quiet(not verbose):  # Seismic prints its build log to stdout
            self.index = seismic.SeismicIndex.build_from_dataset(
                data, n_postings=n_postings, centroid_fraction=centroid_fraction, summary_energy=summary_energy)
        self.k, self.query_cut, self.heap_factor = k, query_cut, heap_factor
        self._dtype = seismic.get_seismic_string()

    def search_ids(self, ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        comps = np.asarray([str(i) for i in ids], dtype=self._dtype)
        hits = self.index.search("q", comps, np.asarray(values, dtype=np.float32), k=self.k,
                                 query_cut=self.query_cut, heap_factor=self.heap_factor)
        return np.array([int(h[2]) for h in hits], dtype=np.int64), np.array([h[1] for h in hits], dtype=np.float32)


# ------------------------------------------------------------------------------------ OpenSearch
def escape_feature(token: str) -> str:
    """Percent-escape '%' and '.': a `rank_feature` query names `<field>.<feature>` and splits at the
    last dot, so a raw '.' in a feature name cannot be addressed (Elasticsearch < 8.16 rejects it)."""
    return token.replace("%", "%25").replace(".", "%2E")


def unescape_feature(key: str) -> str:
    return re.sub(r"%(25|2E)", lambda m: "%" if m.group(1) == "25" else ".", key)


def export_opensearch(doc_ids: Sequence[str], doc_csr: sp.csr_matrix, vocab: Sequence[str], out_dir: str | Path,
                      index_name: str, field: str = "sparse_embedding", texts: Sequence[str] | None = None,
                      escape_dots: bool = True, show_progress: bool = True) -> dict[str, Path]:
    """Write `mapping.json` (a `rank_features` field, plus `text` for BM25 when given) and `bulk.ndjson`
    (action line + source line per document; zeros and non-normal floats dropped)."""
    if len(doc_ids) != doc_csr.shape[0] or (texts is not None and len(texts) != len(doc_ids)):
        raise ValueError("doc_ids, doc_csr rows and texts must have the same length")
    if doc_csr.shape[1] != len(vocab):
        raise ValueError(f"doc_csr has {doc_csr.shape[1]} columns, vocab has {len(vocab)} tokens")
    keys = np.asarray([escape_feature(t) if escape_dots else t for t in vocab], dtype=object)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from opensearchpy.helpers.field import Keyword, RankFeatures, Text
    from opensearchpy.helpers.mapping import Mapping

    props = Mapping()  # opensearch-py's own mapping types
    props.field("id", Keyword())
    props.field(field, RankFeatures())
    if texts is not None:
        props.field("text", Text())
    mapping = {"settings": {"index": {"number_of_shards": 1}}, "mappings": props.to_dict()}
    (out / "mapping.json").write_text(json.dumps(mapping, indent=2))
    csr = sp.csr_matrix(doc_csr, dtype=np.float32)
    tiny = np.finfo(np.float32).tiny  # Lucene FeatureField takes positive normal floats only
    with open(out / "bulk.ndjson", "w", encoding="utf-8") as f:
        for i in tqdm(range(csr.shape[0]), desc="OpenSearch bulk", disable=not show_progress):
            row = slice(csr.indptr[i], csr.indptr[i + 1])
            vals, cols = csr.data[row], csr.indices[row]
            ok = vals >= tiny
            source = {"id": str(doc_ids[i]), field: dict(zip(keys[cols[ok]].tolist(), vals[ok].tolist()))}
            if texts is not None:
                source["text"] = texts[i]
            f.write(json.dumps({"index": {"_index": index_name, "_id": str(doc_ids[i])}}) + "\n")
            f.write(json.dumps(source, ensure_ascii=False) + "\n")
    return {"mapping": out / "mapping.json", "bulk": out / "bulk.ndjson"}


def query_body(query_text: str, query_encoder, form: str = "neural_sparse", field: str = "sparse_embedding",
               size: int = 10, escape_dots: bool = True) -> dict:
    """OpenSearch search body for an inference-free query: IDF weights on the query's distinct tokens.

    form="neural_sparse": `{"neural_sparse": {field: {"query_tokens": {token: idf}}}}` (raw vector);
    form="rank_feature": bool/should of `rank_feature` clauses, `linear` function, boost = idf, so the
    score is sum_t idf_t * value_t. Both score alike (Lucene keeps 9 significant bits of each value).
    """
    from opensearchpy.helpers.query import Bool, MatchNone, RankFeature

    ids = query_encoder.token_ids(query_text)
    tokens = query_encoder.tokenizer.convert_ids_to_tokens([int(i) for i in ids])
    weights = {(escape_feature(t) if escape_dots else t): float(query_encoder.idf[i]) for t, i in zip(tokens, ids)}
    if form not in ("neural_sparse", "rank_feature"):
        raise ValueError(f"form must be 'neural_sparse' or 'rank_feature', got {form!r}")
    if not weights:
        return {"size": size, "query": MatchNone().to_dict()}
    if form == "neural_sparse":  # the neural-search plugin's query: not in opensearch-py's DSL
        return {"size": size, "query": {"neural_sparse": {field: {"query_tokens": weights}}}}
    should = [RankFeature(field=f"{field}.{k}", linear={}, boost=w) for k, w in weights.items()]
    return {"size": size, "query": Bool(should=should).to_dict()}


def score_bulk(bulk_path: str | Path, body: dict, field: str = "sparse_embedding") -> dict[str, float]:
    """Score every document of an exported bulk file for a `query_body` by hand (no server, no 9-bit rounding)."""
    query = body["query"]
    if "neural_sparse" in query:
        weights = query["neural_sparse"][field]["query_tokens"]
    elif "bool" in query:
        clauses = [c["rank_feature"] for c in query["bool"]["should"]]
        weights = {c["field"][len(field) + 1 :]: c["boost"] for c in clauses}
    else:
        weights = {}
    scores = {}
    with open(bulk_path, encoding="utf-8") as f:
        for action, source in zip(f, f):
            doc = json.loads(source)
            score = sum(w * doc[field][k] for k, w in weights.items() if k in doc[field])
            if score > 0:
                scores[json.loads(action)["index"]["_id"]] = score
    return scores
