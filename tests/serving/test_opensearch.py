"""OpenSearch export: mapping and bulk files, query bodies in both forms, feature-name escaping."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import need_module
from serving_helpers import real_bits  # noqa: F401

from ifsr.serving.base import vocab_terms
from ifsr.serving.opensearch import escape_feature, export_opensearch, query_body, unescape_feature

need_module("opensearchpy", "opensearch-py")


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


@pytest.mark.parametrize("form", ["neural_sparse", "rank_feature"])
def test_opensearch_export_and_hand_scoring(tmp_path: Path, real_bits, form: str):
    encoder, query_encoder, ids, texts, docs, queries = real_bits
    vocab = vocab_terms(encoder.tokenizer)
    paths = export_opensearch(ids, docs, vocab, tmp_path, "scifact-ifsr", texts=texts, show_progress=False)
    mapping = json.loads(paths["mapping"].read_text())
    assert mapping["mappings"]["properties"]["sparse_embedding"] == {"type": "rank_features"}
    lines = paths["bulk"].read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 * len(ids)
    for i, (action, source) in enumerate(zip(lines[::2], lines[1::2])):
        action, source = json.loads(action), json.loads(source)
        assert action == {"index": {"_index": "scifact-ifsr", "_id": ids[i]}}
        feats = source["sparse_embedding"]
        assert len(feats) == docs[i].nnz and all(v > 0 and "." not in k for k, v in feats.items())
        assert source["text"] == texts[i]
    csc = docs.tocsc()
    for q in queries[:20]:
        body = query_body(q, query_encoder, form=form)
        assert json.loads(json.dumps(body)) == body and body["size"] == 10
        hand = score_bulk(paths["bulk"], body)
        qids = query_encoder.token_ids(q)
        exact = np.asarray(csc[:, qids] @ query_encoder.idf[qids]).ravel()
        assert set(hand) == {ids[i] for i in np.flatnonzero(exact > 0)}
        for doc, score in hand.items():
            assert score == pytest.approx(exact[ids.index(doc)], rel=1e-5)


def test_opensearch_query_forms_and_escaping(real_bits):
    encoder, query_encoder, *_ = real_bits
    vocab = vocab_terms(encoder.tokenizer)
    keys = [escape_feature(t) for t in vocab]
    assert len(set(keys)) == len(vocab) and not any("." in k for k in keys)
    assert all(unescape_feature(k) == t for k, t in zip(keys, vocab))
    body = query_body("Vitamin D. levels", query_encoder, form="neural_sparse")
    tokens = body["query"]["neural_sparse"]["sparse_embedding"]["query_tokens"]
    assert "%2E" in tokens and "vitamin" in tokens  # '.' is escaped the same way on both sides
    raw = query_body("Vitamin D. levels", query_encoder, escape_dots=False)
    assert "." in raw["query"]["neural_sparse"]["sparse_embedding"]["query_tokens"]
    clause = query_body("vitamin", query_encoder, form="rank_feature")["query"]["bool"]["should"][0]
    assert clause["rank_feature"]["field"] == "sparse_embedding.vitamin" and clause["rank_feature"]["linear"] == {}
    assert query_body("", query_encoder)["query"] == {"match_none": {}}
    with pytest.raises(ValueError):
        query_body("x", query_encoder, form="knn")
