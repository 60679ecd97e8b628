"""Tests for ifsr.data.beir: BEIR loading (strict parsing, download path), the data directory, IDF default."""
from __future__ import annotations

import hashlib
import json
import urllib.error
from pathlib import Path

import pytest

from conftest import zip_dirs
from ifsr.data import download
from ifsr.data.beir import BeirSet, data_dir, default_idf_path, join_text, load_beir, training_queries

CORPUS = [
    {"_id": "d1", "title": "Alpha", "text": "first doc "},
    {"_id": "d2", "title": "", "text": "second doc"},
    {"_id": "d3", "text": "third doc, no title key"},
]
QUERIES = [
    {"_id": "q1", "text": "query one"},
    {"_id": "q2", "text": "query two"},  # unjudged in test
    {"_id": "q3", "text": "query three"},
]
QRELS = {"test": "query-id\tcorpus-id\tscore\nq3\td2\t1\nq1\td1\t2\nq1\td3\t0\n",
         "train": "q2\td3\t1\n"}


def write_beir(root: Path, corpus=CORPUS, queries=QUERIES, qrels=QRELS,
               corpus_text: str | None = None, queries_text: str | None = None) -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text(
        corpus_text if corpus_text is not None else "".join(json.dumps(d) + "\n" for d in corpus))
    (root / "queries.jsonl").write_text(
        queries_text if queries_text is not None else "".join(json.dumps(q) + "\n" for q in queries))
    for split, text in qrels.items():
        (root / "qrels" / f"{split}.tsv").write_text(text)
    return root


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("IFSR_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no ../shared/data beside it: ./data
    assert data_dir() == (tmp_path / "data").resolve()
    monkeypatch.setenv("IFSR_DATA_DIR", str(tmp_path))  # read at call time, after import
    assert data_dir() == tmp_path
    assert data_dir("elsewhere") == Path("elsewhere")
    assert default_idf_path() == tmp_path / "idf" / "msmarco_bert-base-uncased_idf.json"
    assert default_idf_path("elsewhere") == Path("elsewhere/idf/msmarco_bert-base-uncased_idf.json")


def test_join_text():
    assert join_text(" Title ", " body ") == "Title body"
    assert join_text("  ", " body ") == "body"


def test_load_beir_parses_tiny_set(tmp_path):
    s = load_beir(str(write_beir(tmp_path / "tiny")), download=False)
    assert s.name == "tiny"
    assert s.doc_ids == ["d1", "d2", "d3"]
    assert s.doc_texts() == ["Alpha first doc", "second doc", "third doc, no title key"]
    assert s.query_ids == ["q1", "q3"]  # only judged ones, queries.jsonl order
    assert s.qrels == {"q3": {"d2": 1}, "q1": {"d1": 2, "d3": 0}}  # header skipped, 0 kept
    assert s.queries["q2"] == "query two"
    assert load_beir(str(tmp_path / "tiny"), split="train").query_ids == ["q2"]


def test_load_beir_by_name_from_env_dir(tmp_path, monkeypatch):
    write_beir(tmp_path / "beir" / "tiny")
    monkeypatch.setenv("IFSR_DATA_DIR", str(tmp_path))
    assert load_beir("tiny", download=False).doc_ids == ["d1", "d2", "d3"]
    assert load_beir("tiny", data_dir=tmp_path, download=False).query_ids == ["q1", "q3"]


def test_missing_split_lists_available(tmp_path):
    write_beir(tmp_path / "tiny")
    with pytest.raises(FileNotFoundError) as e:
        load_beir(str(tmp_path / "tiny"), split="dev")
    assert "dev.tsv" in str(e.value) and "['test', 'train']" in str(e.value)


@pytest.mark.parametrize("kind,text,lineno,what", [
    ("corpus", '{"_id": "d1", "text": "ok"}\n{"_id": "d2", "text": "bad"\n', 2, "invalid JSON"),
    ("corpus", '{"_id": "d1", "text": "ok"}\n\n{"title": "t", "text": "x"}\n', 3, "missing '_id'"),
    ("corpus", '{"_id": "d1", "text": 5}\n', 1, "'text' is int"),
    ("corpus", '{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n', 2, "duplicate _id"),
    ("queries", '{"_id": "q1", "text": "a"}\n[1, 2]\n', 2, "not a JSON object"),
    ("queries", '{"_id": "q1"}\n', 1, "missing 'text'"),
    ("qrels", "query-id\tcorpus-id\tscore\nq1\td1\n", 2, "2 tab-separated columns"),
    ("qrels", "q1\td1\t1\nq1\td2\t1\tx\n", 2, "4 tab-separated columns"),
    ("qrels", "q1\td1\t1\nq1\td2\t1.5\n", 2, "not an integer"),
])
def test_malformed_lines_name_file_and_line(tmp_path, kind, text, lineno, what):
    kw = {"corpus": {"corpus_text": text}, "queries": {"queries_text": text},
          "qrels": {"qrels": {"test": text}}}[kind]
    root = write_beir(tmp_path / "bad", **kw)
    fname = {"corpus": "corpus.jsonl", "queries": "queries.jsonl", "qrels": "test.tsv"}[kind]
    with pytest.raises(ValueError) as e:
        load_beir(str(root), download=False)
    msg = str(e.value)
    assert f"{fname}:{lineno}:" in msg and what in msg and "expected" in msg


def test_checksum_is_sha256_of_the_three_files(tmp_path):
    root = write_beir(tmp_path / "tiny")
    s = load_beir(str(root))
    raw = b"".join((root / f).read_bytes() for f in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"))
    assert s.checksum() == hashlib.sha256(raw).hexdigest()
    (root / "qrels" / "test.tsv").write_text(QRELS["test"].replace("\t2\n", "\t1\n"))
    assert s.checksum() == hashlib.sha256(raw).hexdigest()  # hashed at load time
    assert load_beir(str(root)).checksum() != s.checksum()
    assert load_beir(str(root), split="train").checksum() != s.checksum()


def test_download_verifies_md5_and_unzips(tmp_path, monkeypatch):
    blob = zip_dirs({"scifact": write_beir(tmp_path / "src")})
    monkeypatch.setitem(download.BEIR_MD5, "scifact", hashlib.md5(blob).hexdigest())
    urls = []
    monkeypatch.setattr(download, "fetch", lambda url, dest: (urls.append(url), Path(dest).write_bytes(blob)))
    s = load_beir("scifact", data_dir=tmp_path / "d")
    assert urls == [download.BEIR_URL.format(name="scifact")]
    assert s.doc_ids == ["d1", "d2", "d3"] and s.query_ids == ["q1", "q3"]
    assert sorted(p.name for p in (tmp_path / "d" / "beir").iterdir()) == ["scifact"]  # zip removed
    load_beir("scifact", data_dir=tmp_path / "d")  # second call reads the files, no fetch
    assert len(urls) == 1


def test_download_md5_mismatch_is_an_error(tmp_path, monkeypatch):
    blob = zip_dirs({"scifact": write_beir(tmp_path / "src")})
    monkeypatch.setattr(download, "fetch", lambda url, dest: Path(dest).write_bytes(blob))
    with pytest.raises(ValueError, match="md5 mismatch"):
        load_beir("scifact", data_dir=tmp_path / "d")
    assert list((tmp_path / "d" / "beir").iterdir()) == []  # nothing extracted, nothing left


def test_offline_names_dir_and_url(tmp_path, monkeypatch):
    def offline(url, dest):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(download, "fetch", offline)
    with pytest.raises(FileNotFoundError) as e:
        load_beir("nfcorpus", data_dir=tmp_path)
    assert str(tmp_path / "beir" / "nfcorpus") in str(e.value)
    assert download.BEIR_URL.format(name="nfcorpus") in str(e.value)


def test_no_fetch_when_download_off_or_name_unknown(tmp_path, monkeypatch):
    def boom(url, dest):
        raise AssertionError("network touched")
    monkeypatch.setattr(download, "fetch", boom)
    with pytest.raises(FileNotFoundError, match="download disabled"):
        load_beir("scifact", data_dir=tmp_path, download=False)
    with pytest.raises(FileNotFoundError, match="no md5 known"):
        load_beir("cranfield", data_dir=tmp_path)


def test_training_queries_keeps_positive_scores_only():
    s = BeirSet("t", {"a": {"title": "", "text": "x"}, "b": {"title": "", "text": "y"}},
                {"1": "one", "2": "two", "3": "three"},
                {"1": {"b": 1, "a": 0}, "2": {"a": 0}, "3": {"a": 2, "zz": 1, "b": 1}})
    assert training_queries(s) == [("1", "one", ["b"]), ("3", "three", ["a", "b"])]


# ----------------------------------------------------------------------------- real data

@pytest.mark.data
def test_real_scifact_and_cranfield(data_root):
    sf = load_beir("scifact", data_dir=data_root, download=False)
    assert (len(sf.doc_ids), len(sf.query_ids)) == (5183, 300)
    assert len(sf.queries) == 1109
    tr = load_beir("scifact", split="train", data_dir=data_root, download=False)
    assert len(tr.query_ids) == 809 and len(training_queries(tr)) == 809
    cr = load_beir("cranfield", data_dir=data_root, download=False)
    assert (len(cr.doc_ids), len(cr.query_ids)) == (1400, 225)
    assert sf.checksum() != cr.checksum()
    mem = BeirSet("m", sf.corpus, sf.queries, sf.qrels)  # in memory: hash of the content
    assert mem.checksum() == BeirSet("m", dict(sf.corpus), dict(sf.queries), dict(sf.qrels)).checksum()


def test_dev_split_holds_out_a_fixed_draw_of_queries(data_root):
    """Issue 27: the dev split is n queries of the training split with their qrels, the same draw every time,
    disjoint from what stays for training; 0 gives no dev set; n out of range is refused."""
    from ifsr.data.beir import dev_split, training_queries

    ds = load_beir("scifact", split="train", data_dir=data_root)
    train, dev = dev_split(ds, 200)
    assert len(dev.query_ids) == 200 and len(train.query_ids) == len(ds.query_ids) - 200
    assert not set(dev.query_ids) & set(train.query_ids) and dev.split == "dev" and train.split == "train"
    assert all(dev.qrels[q] == ds.qrels[q] for q in dev.query_ids) and dev.corpus is ds.corpus
    assert dev_split(ds, 200)[1].query_ids == dev.query_ids  # fixed
    assert dev_split(ds, 200, seed=1)[1].query_ids != dev.query_ids
    trained_on = {q for q, _, _ in training_queries(train)}
    assert trained_on and trained_on <= set(train.query_ids) and not trained_on & set(dev.query_ids)
    assert train.checksum() != ds.checksum() != dev.checksum()
    assert dev_split(ds, 0) == (ds, None)
    for bad in (-1, len(ds.query_ids)):
        with pytest.raises(ValueError, match="dev_queries"):
            dev_split(ds, bad)
