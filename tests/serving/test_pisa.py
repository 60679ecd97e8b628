"""PISA engines: the impact index against the exact engine, input checks, BM25 over text, vocabulary terms."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import need_module
from serving_helpers import agreement_with_exact, exact_rows, real_bits, zipf_corpus, zipf_queries  # noqa: F401

from ifsr.serving.base import vocab_terms
from ifsr.serving.engines import topk_agreement
from ifsr.serving.pisa import PisaBM25Index, PisaImpactIndex
from ifsr.serving.queryside import pisa_idf_query

need_module("pyterrier_pisa", "pyterrier-pisa")


@pytest.mark.parametrize("algorithm", ["block_max_wand", "maxscore", "ranked_or"])
def test_pisa_impact_agrees_with_exact(tmp_path: Path, algorithm: str):
    docs = zipf_corpus(3000, 400, seed=0)
    terms = [f"t{j}" for j in range(400)]
    terms[:4] = ["##s", ".", "é", "[unused0]"]  # '##', punctuation, non-ASCII, brackets stay verbatim
    index = PisaImpactIndex.from_docs(docs, 10, path=tmp_path / "idx", terms=terms, doc_scale=100,
                                      algorithm=algorithm, show_progress=False)
    assert agreement_with_exact(index, docs, zipf_queries(200, 400, seed=1)) >= 0.99
    rows, _ = index.search({"##s": 1.0, ".": 2.0})  # the token-string form reaches the same postings
    assert len(rows) > 0


def test_pisa_build_refuses_bad_input(tmp_path: Path):
    docs = zipf_corpus(10, 5, seed=0)
    with pytest.raises(ValueError):
        PisaImpactIndex.build(tmp_path / "a", docs, ["a", "b", "c", "d", "d"], show_progress=False)
    with pytest.raises(ValueError):
        PisaImpactIndex.build(tmp_path / "b", docs, ["a", "b c", "c", "d", "e"], show_progress=False)
    with pytest.raises(ValueError):
        PisaImpactIndex.build(tmp_path / "c", docs, list("abcde"), doc_scale=0, show_progress=False)
    PisaImpactIndex.build(tmp_path / "d", docs, list("abcde"), show_progress=False)
    with pytest.raises(FileExistsError):
        PisaImpactIndex.build(tmp_path / "d", docs, list("abcde"), show_progress=False)
    with pytest.raises(ValueError):
        PisaImpactIndex(tmp_path / "d", list("abcde"), algorithm="nope")
    reused = PisaImpactIndex.from_docs(docs, 3, path=tmp_path / "d", terms=list("abcde"), reuse=True)
    assert reused.path == tmp_path / "d"  # an index already built is opened, not rebuilt


def test_pisa_bm25_on_text(tmp_path: Path):
    texts = ["the cat sat on the mat", "dogs chase cats", "a treatise on zebras and zebra crossings",
             "nothing relevant here", "cat cat cat food"]
    index = PisaBM25Index.from_texts(texts, 3, path=tmp_path / "bm25", show_progress=False)
    rows, scores = index.search("zebra")
    assert rows[0] == 2 and scores[0] > 0  # porter2 stems zebras/zebra alike
    exhaustive = PisaBM25Index(tmp_path / "bm25", algorithm="ranked_or", k=3)
    assert index.search("cat mat")[0].tolist() == exhaustive.search("cat mat")[0].tolist()
    assert index.query_terms("the cats") == ["cat"]


def test_every_vocab_token_roundtrips_through_pisa(tmp_path: Path, real_bits):
    encoder = real_bits[0]
    terms = vocab_terms(encoder.tokenizer)
    keep = np.setdiff1d(np.arange(len(terms)), encoder.tokenizer.all_special_ids)
    docs = sp.csr_matrix((np.ones(len(keep), np.float32), (np.arange(len(keep)), keep)), shape=(len(keep), len(terms)))
    index = PisaImpactIndex.from_docs(docs, 1, path=tmp_path / "vocab", terms=terms, algorithm="ranked_or",
                                      show_progress=False)
    rows = [index.search_ids(np.array([t]), np.array([1.0]))[0] for t in keep]
    assert all(len(r) == 1 and r[0] == i for i, r in enumerate(rows))


def test_pisa_real_vectors_agree_with_exact(tmp_path: Path, real_bits):
    encoder, query_encoder, _, _, docs, queries = real_bits
    terms = vocab_terms(encoder.tokenizer)
    index = PisaImpactIndex.from_docs(docs, 10, path=tmp_path / "real", terms=terms, show_progress=False)
    qv = [(query_encoder.token_ids(q), query_encoder.idf[query_encoder.token_ids(q)]) for q in queries]
    assert agreement_with_exact(index, docs, qv) >= 0.99
    folded = (docs @ sp.diags(query_encoder.idf)).tocsr()  # idf_j * w_j(d) as impacts, binary query
    index = PisaImpactIndex.from_docs(folded, 10, path=tmp_path / "folded", terms=terms, show_progress=False)
    query = pisa_idf_query(encoder.tokenizer, query_encoder.idf, 10, folded=True)
    assert set(query(queries[0]).values()) == {1.0}
    found = [index.search_prepared(query(q))[0] for q in queries]
    assert topk_agreement(found, exact_rows(docs, qv)) >= 0.99
