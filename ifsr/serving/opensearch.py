"""OpenSearch export of learned-sparse vectors (`rank_features` bulk files), query bodies, and hand scoring."""
from __future__ import annotations

import importlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

OPENSEARCH_MODULE, OPENSEARCH_PACKAGE = "opensearchpy", "opensearch-py"


def is_available() -> bool:
    """Whether opensearch-py (used for its mapping and query DSL types) is installed."""
    try:
        importlib.import_module(OPENSEARCH_MODULE)
    except ImportError:
        return False
    return True


def require_opensearch() -> None:
    if not is_available():
        raise ImportError(f"the OpenSearch export needs {OPENSEARCH_PACKAGE}: pip install {OPENSEARCH_PACKAGE}")


INDEX_NAME_FORBIDDEN = '\\/*?"<>|,#: '  # OpenSearch's refused characters (':' since Elasticsearch 7), and the space


def check_index_name(name: str, what: str = "index name") -> str:
    """`name` if OpenSearch accepts it as an index name, else ValueError saying why: lowercase, none of
    \\ / * ? " < > | , # : or a space, not starting with - _ +, not . or .., at most 255 bytes (UTF-8)."""
    bad = sorted({c for c in name if c in INDEX_NAME_FORBIDDEN})
    why = ("it is empty" if not name else
           f"it holds {' '.join(repr(c) for c in bad)}" if bad else
           "it has uppercase letters" if name != name.lower() else
           f"it starts with {name[0]!r}" if name[0] in "-_+" else
           "it is . or .." if name in (".", "..") else
           f"it is {len(name.encode())} bytes long" if len(name.encode()) > 255 else None)
    if why:
        raise ValueError(f"{what} {name!r}: OpenSearch refuses it ({why}); expected lowercase, no spaces, none of "
                         f'\\ / * ? " < > | , # :, not starting with - _ +, not . or .., at most 255 bytes')
    return name


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
    (action line + source line per document; zeros and non-normal floats dropped). A non-finite weight
    (inf, NaN, or a float64 beyond float32's range) is a ValueError naming the document."""
    if len(doc_ids) != doc_csr.shape[0] or (texts is not None and len(texts) != len(doc_ids)):
        raise ValueError("doc_ids, doc_csr rows and texts must have the same length")
    if doc_csr.shape[1] != len(vocab):
        raise ValueError(f"doc_csr has {doc_csr.shape[1]} columns, vocab has {len(vocab)} tokens")
    check_index_name(index_name)
    keys = np.asarray([escape_feature(t) if escape_dots else t for t in vocab], dtype=object)
    csr = sp.csr_matrix(doc_csr, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(csr.data))
    if bad.size:  # json.dumps would write Infinity / NaN, which is not JSON: refuse before writing anything
        row = int(np.searchsorted(csr.indptr, bad[0], side="right")) - 1
        rows = np.unique(np.searchsorted(csr.indptr, bad, side="right") - 1)
        raise ValueError(f"document {str(doc_ids[row])!r} (row {row}) has weight {float(csr.data[bad[0]])} for "
                         f"token {vocab[int(csr.indices[bad[0]])]!r} ({rows.size} documents have non-finite "
                         f"weights); expected finite weights (a bulk file cannot hold Infinity or NaN)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    require_opensearch()
    from opensearchpy.helpers.field import Keyword, RankFeatures, Text
    from opensearchpy.helpers.mapping import Mapping

    props = Mapping()  # opensearch-py's own mapping types
    props.field("id", Keyword())
    props.field(field, RankFeatures())
    if texts is not None:
        props.field("text", Text())
    mapping = {"settings": {"index": {"number_of_shards": 1}}, "mappings": props.to_dict()}
    (out / "mapping.json").write_text(json.dumps(mapping, indent=2))
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
    require_opensearch()
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
