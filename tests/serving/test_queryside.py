"""Client-side query encoders: the fast inference-free path equals the QueryEncoder, PISA query tables."""
from __future__ import annotations

import numpy as np
from serving_helpers import real_bits  # noqa: F401

from ifsr.serving.base import vocab_terms
from ifsr.serving.queryside import inference_free_query, pisa_idf_query


def test_fast_query_side_matches_query_encoder(real_bits):
    encoder, query_encoder, *_, queries = real_bits
    fast = inference_free_query(encoder.tokenizer, query_encoder.idf)
    for q in queries:
        ids, w = fast(q)
        assert np.array_equal(ids, query_encoder.token_ids(q))
        assert np.allclose(w, query_encoder.idf[ids])
    pruned = inference_free_query(encoder.tokenizer, query_encoder.idf, min_idf=2.0, max_terms=5)
    ids, w = pruned(queries[0])
    assert len(ids) <= 5 and (w >= 2.0).all()
    terms = vocab_terms(encoder.tokenizer)
    pisa_query = pisa_idf_query(encoder.tokenizer, query_encoder.idf, query_scale=10)
    for q in queries:  # the table-driven PISA query equals the generic path's integer weights
        ids = query_encoder.token_ids(q)
        scaled = np.rint(query_encoder.idf[ids].astype(np.float64) * 10)
        assert pisa_query(q) == {terms[i]: s for i, s in zip(ids, scaled) if s > 0}
    for q in queries[:10]:  # pruned: the same tokens on both paths
        top = pisa_idf_query(encoder.tokenizer, query_encoder.idf, 10, min_idf=2.0, max_terms=5)(q)
        ids, _ = inference_free_query(encoder.tokenizer, query_encoder.idf, min_idf=2.0, max_terms=5)(q)
        assert set(top) == {terms[i] for i in ids} and len(top) <= 5 and min(top.values()) >= 20
