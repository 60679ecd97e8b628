"""Tests for ifsr.data.pairs (pre-training pairs, text normalisation, leakage filter) and ifsr.jsonl."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ifsr.data.beir import BeirSet, load_beir
from ifsr.data.pairs import Pair, filter_leakage, load_pairs, normalize_text
from ifsr.jsonl import bad_line, read_jsonl, string_field


def _write_pairs(path: Path, rows) -> None:
    with gzip.open(path, "wt") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


def test_load_pairs_and_source_selection(tmp_path):
    _write_pairs(tmp_path / "b.jsonl.gz", [{"query": "q1", "positive": "p1", "source": "b_x"},
                                           {"query": "q2", "positive": "p2", "source": "b_y"}])
    _write_pairs(tmp_path / "a.jsonl.gz", [{"query": "q0", "positive": "p0", "source": "a"}])
    assert load_pairs(tmp_path) == [Pair("q0", "p0", "a"), Pair("q1", "p1", "b_x"), Pair("q2", "p2", "b_y")]
    assert [p.query for p in load_pairs(tmp_path, ["b_y"])] == ["q2"]        # by source field
    assert [p.query for p in load_pairs(tmp_path, ["b"])] == ["q1", "q2"]    # by file name
    with pytest.raises(ValueError, match="unknown pair sources"):
        load_pairs(tmp_path, ["nope"])


def test_load_pairs_malformed(tmp_path):
    _write_pairs(tmp_path / "x.jsonl.gz", [{"query": "q", "positive": "p", "source": "x"},
                                           {"query": "q", "positive": ["p"], "source": "x"}])
    with pytest.raises(ValueError, match=r"x\.jsonl\.gz:2: 'positive' is list.*expected"):
        load_pairs(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_pairs(tmp_path / "empty")


def test_normalize_text():
    assert normalize_text("  What is\tthe   CAUSE?! ") == "what is the cause"
    assert normalize_text("«Hi», there.") == "hi», there"  # inner punctuation kept
    assert normalize_text("$5 + C++") == "$5 + c++"         # symbols (S*) are not punctuation
    assert normalize_text("up 3%.") == "up 3"                # % is punctuation (Po)
    assert normalize_text("ﬁne") == "fine"                   # NFKC
    assert normalize_text("...") == ""


def test_filter_leakage_counts(caplog):
    ev = BeirSet("ev", {"d1": {"title": "Title", "text": "Body text here."},
                        "d2": {"title": "", "text": "Another doc"}},
                 {"q1": "Is it leaked?", "q2": "unjudged query"}, {"q1": {"d1": 1}})
    pairs = [Pair("is it LEAKED", "fresh passage", "s"),        # eval query
             Pair("new q", "title body text here", "s"),         # title + text
             Pair("new q2", "BODY TEXT HERE", "s"),              # text alone
             Pair("is it leaked", "another doc", "s"),           # both: counted as query
             Pair("unjudged query", "clean", "s"),               # q2 has no qrels: kept
             Pair("ok", "Another doc, extended", "s")]           # kept
    with caplog.at_level("INFO", logger="ifsr.data.pairs"):
        kept, counts = filter_leakage(pairs, [ev])
    assert counts == {"kept": 2, "dropped_query": 2, "dropped_passage": 2}
    assert kept == [pairs[4], pairs[5]]
    assert "dropped_query" in caplog.text


def test_read_jsonl_and_string_field(tmp_path):
    path = tmp_path / "x.jsonl.gz"
    _write_pairs(path, [{"_id": 7, "text": "a"}, "", {"_id": "b"}, "[1]"])
    rows = read_jsonl(path, "FMT")
    assert next(rows) == (1, {"_id": 7, "text": "a"})
    assert next(rows) == (3, {"_id": "b"})  # blank line 2 skipped, numbering kept
    with pytest.raises(ValueError, match=r"x\.jsonl\.gz:4: not a JSON object \(list\); expected FMT"):
        next(rows)
    assert string_field({"_id": 7}, "_id", path, 1, "FMT", allow_int=True) == "7"
    assert string_field({}, "title", path, 1, "FMT", default="") == ""
    with pytest.raises(ValueError, match=r":5: '_id' is int, not a string; expected FMT"):
        string_field({"_id": 7}, "_id", path, 5, "FMT")
    with pytest.raises(ValueError, match=r":2: missing 'text'"):
        string_field({}, "text", path, 2, "FMT")
    assert str(bad_line(Path("f"), 3, "bad", "FMT")) == "f:3: bad; expected FMT"


# ----------------------------------------------------------------------------- real data

@pytest.mark.data
def test_real_pairs_no_leak_into_scifact(data_root):
    pairs = load_pairs(data_root / "pairs")
    assert len(pairs) == 54109
    sf = load_beir("scifact", data_dir=data_root, download=False)
    kept, counts = filter_leakage(pairs, [sf])
    assert counts == {"kept": 54109, "dropped_query": 0, "dropped_passage": 0}  # README's claim
