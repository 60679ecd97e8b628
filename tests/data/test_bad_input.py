"""Bad data files (issue #13): every one is a ValueError / FileNotFoundError naming the file, the
1-based line where there is one, and what was expected; no traceback from deeper down, no download
over an existing data directory."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from ifsr.core.idf import load_idf

from conftest import zip_dirs
from ifsr.data import download
from ifsr.data.beir import load_beir
from ifsr.data.pairs import load_pairs

CORPUS = '{"_id": "d1", "title": "Alpha", "text": "first doc"}\n{"_id": "d2", "text": "second doc"}\n'
QUERIES = '{"_id": "q1", "text": "query one"}\n{"_id": "q2", "text": "query two"}\n'
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"


def write_set(root: Path, corpus: bytes | str = CORPUS, queries: bytes | str = QUERIES,
              qrels: bytes | str = QRELS) -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    for rel, content in (("corpus.jsonl", corpus), ("queries.jsonl", queries), ("qrels/test.tsv", qrels)):
        (root / rel).write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def no_network(monkeypatch) -> list[str]:
    urls: list[str] = []

    def boom(url, dest):
        urls.append(url)
        raise AssertionError(f"network touched: {url}")
    monkeypatch.setattr(download, "fetch", boom)
    return urls


def test_valid_set_still_loads(tmp_path):
    s = load_beir(str(write_set(tmp_path / "ok")), download=False)
    assert s.doc_ids == ["d1", "d2"] and s.query_ids == ["q1", "q2"]
    assert s.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}


# ----------------------------------------------------------------------------- 4. empty files

@pytest.mark.parametrize("kind,file,what", [
    ("corpus", "corpus.jsonl", "no documents"),
    ("queries", "queries.jsonl", "no queries"),
])
def test_empty_corpus_or_queries_is_refused_at_load(tmp_path, kind, file, what):
    root = write_set(tmp_path / "e", **{kind: "\n"})  # blank lines only
    with pytest.raises(ValueError) as e:
        load_beir(str(root), download=False)
    assert f"{root / file}: {what}" in str(e.value) and "expected" in str(e.value)


@pytest.mark.parametrize("qrels", ["", "query-id\tcorpus-id\tscore\n", "\n\n"])
def test_empty_qrels_split_is_refused_naming_the_file(tmp_path, qrels):
    root = write_set(tmp_path / "e", qrels=qrels)
    with pytest.raises(ValueError) as e:
        load_beir(str(root), download=False)
    assert str(root / "qrels" / "test.tsv") in str(e.value) and "no qrels rows" in str(e.value)


def test_qrels_naming_no_known_query_is_refused(tmp_path):
    root = write_set(tmp_path / "e", qrels="qx\td1\t1\n")
    with pytest.raises(ValueError) as e:
        load_beir(str(root), download=False)
    assert str(root / "qrels" / "test.tsv") in str(e.value) and "queries.jsonl" in str(e.value)


def test_metrics_backstop_still_refuses_empty_qrels():
    from ifsr.eval.metrics import evaluate_run
    with pytest.raises(ValueError, match="qrels is empty"):
        evaluate_run({"q": {"d": 1.0}}, {}, ["nDCG@10"])


# ----------------------------------------------------------------------------- 5. not UTF-8

@pytest.mark.parametrize("kind,content,file,line", [
    ("corpus", b'{"_id": "d1", "text": "ok"}\n{"_id": "d2", "text": "caf\xe9 \xff"}\n', "corpus.jsonl", 2),
    ("corpus", b'{"_id": "d1", "text": "a"}\r\n\r\n{"_id": "d2", "text": "\xc3"}\r\n', "corpus.jsonl", 3),
    ("corpus", b'{"_id": "d1", "text": "a"}\r{"_id": "d2", "text": "\x80"}\r', "corpus.jsonl", 2),
    ("queries", b'{"_id": "q1", "text": "\xfe"}\n', "queries.jsonl", 1),
    ("qrels", b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td\xe92\t1\n", "qrels/test.tsv", 3),
])
def test_non_utf8_names_file_and_line(tmp_path, kind, content, file, line):
    root = write_set(tmp_path / "u", **{kind: content})
    with pytest.raises(ValueError) as e:
        load_beir(str(root), download=False)
    msg = str(e.value)
    assert not isinstance(e.value, UnicodeDecodeError)
    assert msg.startswith(f"{root / file}:{line}:") and "expected UTF-8" in msg


def test_non_utf8_pairs_file_names_line(tmp_path):
    import gzip
    with gzip.open(tmp_path / "p.jsonl.gz", "wb") as f:
        f.write(b'{"query": "q", "positive": "p", "source": "s"}\n{"query": "\xff", "positive": "p", "source": "s"}\n')
    with pytest.raises(ValueError) as e:
        load_pairs(tmp_path)
    assert not isinstance(e.value, UnicodeDecodeError)
    assert str(e.value).startswith(f"{tmp_path / 'p.jsonl.gz'}:2:") and "expected UTF-8" in str(e.value)


def test_non_utf8_idf_names_file_and_line(tmp_path):
    path = tmp_path / "idf.json"
    path.write_bytes(b'{"a": 1.0,\n "b\xff": 2.0}\n')
    with pytest.raises(ValueError) as e:
        load_idf(path, tokenizer=None)
    assert not isinstance(e.value, UnicodeDecodeError)
    assert str(e.value).startswith(f"{path}:2:") and "expected UTF-8" in str(e.value)


# ----------------------------------------------------------------------------- 10. duplicates

def test_conflicting_duplicate_qrels_row_is_refused(tmp_path):
    root = write_set(tmp_path / "d", qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq1\td1\t0\n")
    with pytest.raises(ValueError) as e:
        load_beir(str(root), download=False)
    msg = str(e.value)
    assert msg.startswith(f"{root / 'qrels' / 'test.tsv'}:4:") and "line 2" in msg and "expected" in msg


def test_repeated_identical_qrels_row_warns_with_line(tmp_path, caplog):
    root = write_set(tmp_path / "d", qrels="q1\td1\t1\nq2\td2\t1\nq1\td1\t1\n")
    with caplog.at_level(logging.WARNING, logger="ifsr.data.beir"):
        s = load_beir(str(root), download=False)
    assert s.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    assert f"{root / 'qrels' / 'test.tsv'}:3: duplicate row" in caplog.text and "line 1" in caplog.text


@pytest.mark.parametrize("text,line", [
    ('{"a": 1.0, "b": 2.0, "a": 3.0}', 1),
    ('{\n  "a": 1.0,\n  "b": 2.0,\n  "\\u0061": 3.0\n}\n', 4),  # the same token, escaped
])
def test_duplicate_idf_token_is_refused_with_line(tmp_path, text, line):
    path = tmp_path / "idf.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as e:
        load_idf(path, tokenizer=None)
    msg = str(e.value)
    assert msg.startswith(f"{path}:{line}:") and "'a' appears twice" in msg and "expected" in msg


def test_real_idf_file_with_a_token_repeated_is_refused(idf_file, tokenizer, tmp_path):
    text = Path(idf_file).read_text(encoding="utf-8").rstrip()
    assert text.endswith("}")
    path = tmp_path / "idf.json"
    path.write_text(text[:-1] + ', "the": 99.0}', encoding="utf-8")  # was silently last-wins
    with pytest.raises(ValueError) as e:
        load_idf(path, tokenizer)
    assert str(e.value).startswith(f"{path}:1:") and "'the' appears twice" in str(e.value)


class _TinyTokenizer:
    """Just what load_idf reads of a tokenizer: three tokens, [PAD] special."""
    all_special_ids = [0]

    def get_vocab(self):
        return {"[PAD]": 0, "a": 1, "b": 2}

    def __len__(self):
        return 3


@pytest.mark.parametrize("value", ["1e300", "-1e300", "3.5e38", "NaN", "Infinity"])
def test_idf_weight_not_finite_in_float32_is_refused_with_file_and_token(tmp_path, value):
    """Issue 31: 1e300 is finite in JSON but inf in float32; it loaded, `ifsr index` wrote an index that
    `ifsr search` refused and `ifsr evaluate` printed an nDCG@10 from inf weights."""
    path = tmp_path / "idf.json"
    path.write_text('{"[PAD]": 0, "a": 1.5, "b": %s}' % value, encoding="utf-8")
    with pytest.raises(ValueError) as e:
        load_idf(path, _TinyTokenizer())
    assert str(e.value).startswith(f"{path}: token 'b' has weight") and "expected" in str(e.value)
    path.write_text('{"[PAD]": 0, "a": 1.5, "b": 3.4e38}', encoding="utf-8")  # the largest float32 still loads
    assert load_idf(path, _TinyTokenizer())[2] == pytest.approx(3.4e38, rel=1e-6)


def test_real_idf_file_loads_unchanged(idf_file, tokenizer):
    import numpy as np
    with open(idf_file, encoding="utf-8") as f:
        table = json.load(f)  # the reading before duplicate keys were checked
    want = np.zeros(len(tokenizer), dtype=np.float32)
    vocab = tokenizer.get_vocab()
    for t, w in table.items():
        want[vocab[t]] = w
    np.testing.assert_array_equal(load_idf(idf_file, tokenizer), want)


# ----------------------------------------------------------------------------- 6. names and paths

def test_relative_path_that_looks_like_a_path_is_no_such_directory(tmp_path, monkeypatch):
    urls = no_network(monkeypatch)
    (tmp_path / "sets").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        load_beir("sets/doesnotexist", data_dir=tmp_path / "d")
    assert "no such directory: sets/doesnotexist" in str(e.value) and "BEIR set" not in str(e.value)
    assert urls == []


def test_unknown_subset_of_an_existing_set_never_downloads_over_it(tmp_path, monkeypatch):
    urls = no_network(monkeypatch)
    write_set(tmp_path / "beir" / "scifact")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(FileNotFoundError) as e:
        load_beir("scifact/typo", data_dir=tmp_path)
    assert str(tmp_path / "beir" / "scifact") in str(e.value) and "'typo'" in str(e.value)
    assert "nothing downloaded" in str(e.value)
    assert urls == [] and sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_incomplete_existing_set_is_not_downloaded_over(tmp_path, monkeypatch):
    urls = no_network(monkeypatch)
    (tmp_path / "beir" / "nfcorpus" / "qrels").mkdir(parents=True)  # e.g. an interrupted unzip
    with pytest.raises(FileNotFoundError) as e:
        load_beir("nfcorpus", data_dir=tmp_path)
    assert "no corpus.jsonl" in str(e.value) and "nothing downloaded" in str(e.value) and urls == []


def test_subset_of_an_official_set_without_subsets_is_refused_offline(tmp_path, monkeypatch):
    urls = no_network(monkeypatch)
    with pytest.raises(FileNotFoundError, match="'scifact' has no subsets"):
        load_beir("scifact/typo", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="'cqadupstack' has the subsets"):
        load_beir("cqadupstack/typo", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="cqadupstack/<subset>"):
        load_beir("cqadupstack", data_dir=tmp_path)
    assert urls == [] and not (tmp_path / "beir").exists()


def test_cqadupstack_subset_downloads_once_then_reads_subsets(tmp_path, monkeypatch):
    assert "cqadupstack" in download.BEIR_MD5
    blob = zip_dirs({"cqadupstack/android": write_set(tmp_path / "src" / "a"),
                      "cqadupstack/gaming": write_set(tmp_path / "src" / "g")})
    monkeypatch.setitem(download.BEIR_MD5, "cqadupstack", hashlib.md5(blob).hexdigest())
    urls: list[str] = []
    monkeypatch.setattr(download, "fetch", lambda url, dest: (urls.append(url), Path(dest).write_bytes(blob)))
    monkeypatch.chdir(tmp_path)  # no ./cqadupstack here: the name is a set name
    s = load_beir("cqadupstack/android", data_dir=tmp_path / "d")
    assert s.name == "android" and s.doc_ids == ["d1", "d2"]
    assert urls == [download.BEIR_URL.format(name="cqadupstack")]
    assert load_beir("cqadupstack/gaming", data_dir=tmp_path / "d").doc_ids == ["d1", "d2"]
    with pytest.raises(FileNotFoundError) as e:
        load_beir("cqadupstack/english", data_dir=tmp_path / "d")  # an official subset missing locally
    assert "['android', 'gaming']" in str(e.value) and "nothing downloaded" in str(e.value)
    assert len(urls) == 1
