"""Bad command-line inputs: exit code 2, one line `ifsr <command>: error: ...`, no traceback, and the
check runs before any work (no model loaded, nothing encoded). Each of the four evaluate cases
crashed or was silently ignored before issue 13 (README's report of the base checkout)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cli_helpers import ROOT, assert_one_line_error, ifsr, write_beir


@pytest.fixture()
def tiny(tmp_path):
    return write_beir(tmp_path / "tiny")


@pytest.fixture()
def saved_model(tmp_path):
    """Enough of a saved SparseEncoder folder for the checks (they run before anything loads it)."""
    d = tmp_path / "model"
    d.mkdir()
    (d / "modules.json").write_text("[]")
    return d


def test_evaluate_refuses_idf_with_a_saved_model(saved_model, tiny, tmp_path):
    """Before: --idf was silently ignored, even a missing file, and the JSON did not say which IDF was used."""
    proc = ifsr("evaluate", "--model", saved_model, "--data", tiny, "--idf", tmp_path / "missing.json")
    assert_one_line_error(proc, "evaluate", "--idf", "carries its own IDF")


def test_evaluate_max_length_above_the_models_positions(splade_tiny_path, idf_file, tiny):
    """Before: a RuntimeError traceback from the embeddings once a document passed 512 tokens."""
    proc = ifsr("evaluate", "--model", splade_tiny_path, "--idf", idf_file, "--data", tiny, "--max-length", 1024)
    assert_one_line_error(proc, "evaluate", "--max-length 1024", "512", "max_position_embeddings")


def test_evaluate_idf_is_a_directory(splade_tiny_path, tiny, tmp_path):
    """Before: an IsADirectoryError traceback after the model had loaded."""
    proc = ifsr("evaluate", "--model", splade_tiny_path, "--idf", tmp_path, "--data", tiny)
    assert_one_line_error(proc, "evaluate", f"--idf {tmp_path} is a directory", "idf.json")


def test_evaluate_cache_dir_is_a_file(splade_tiny_path, idf_file, tiny, tmp_path):
    """Before: a NotADirectoryError traceback once the corpus had been encoded (the work lost)."""
    (tmp_path / "cache").write_text("")
    proc = ifsr("evaluate", "--model", splade_tiny_path, "--idf", idf_file, "--data", tiny, "--cache-dir",
                tmp_path / "cache")
    assert_one_line_error(proc, "evaluate", "--cache-dir", "regular file", "expected a directory")


def test_index_no_cache_with_a_cache_dir_is_refused_before_any_output(splade_tiny_path, idf_file, tiny, tmp_path):
    proc = ifsr("index", "--model", splade_tiny_path, "--idf", idf_file, "--corpus", tiny, "--out", tmp_path / "index",
                "--cache-dir", tmp_path / "cache", "--no-cache")
    assert_one_line_error(proc, "index", "--no-cache with --cache-dir", "expected one of the two")
    assert not (tmp_path / "index").exists() and not (tmp_path / "cache").exists()


def test_idf_bad_jsonl_line_names_file_and_line(tmp_path):
    bad = tmp_path / "docs.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 3}\n')
    proc = ifsr("idf", "--corpus", bad, "--out", tmp_path / "idf.json")
    assert_one_line_error(proc, "idf", f"{bad}:2", "'text'")
    assert not (tmp_path / "idf.json").exists()


def test_idf_out_is_a_directory(tiny, tmp_path):
    assert_one_line_error(ifsr("idf", "--corpus", tiny, "--out", tmp_path), "idf", "--out", "is a directory")


@pytest.mark.parametrize("text, fragment", [("lamda: 0.1\n", "unknown key(s) ['lamda']"),
                                            ("train: [unclosed\n", "while parsing"),
                                            ("train:\n  steps: 0\n", "steps must be an integer >= 1, got 0")])
def test_train_bad_config(text, fragment, tmp_path):
    config = tmp_path / "my.yaml"
    config.write_text(text)
    assert_one_line_error(ifsr("train", "--config", config), "train", fragment)


@pytest.mark.parametrize("line, fragment", [
    ('steps: "four"', "steps must be an integer >= 1, got 'four'"), ("steps: 2.5", "steps must be an integer"),
    ('use_cpu: "no"', "use_cpu must be true or false"), ("lam: -0.5", "lam must be a finite number >= 0"),
    ("max_length: 100000", "max_length must be an integer from 1 to 512"),
    ("grad_accum: 0", "grad_accum must be an integer >= 1"), ("rank_loss: x", "rank_loss must be one of")])
def test_train_bad_training_value_creates_nothing(line, fragment, tmp_path):
    """Issue 31: these gave a traceback after the runs folder existed, or trained (use_cpu "no" read as true).
    Now one line, exit 2, and neither runs_dir nor cache_dir is created."""
    config = tmp_path / "bad.yaml"
    config.write_text(f"runs_dir: {tmp_path / 'runs'}\ncache_dir: {tmp_path / 'cache'}\ntrain:\n  {line}\n")
    assert_one_line_error(ifsr("train", "--config", config), "train", fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


@pytest.mark.parametrize("line, fragment", [
    ("ensemble: [{name: a, kind: dense}]", "ensemble[0] must be {name, kind, model, weight (optional)}"),
    ("ensemble: [{name: dense, kind: dense, model: m, weight: 0}]", "ensemble[0].weight must be a positive number"),
    ("ensemble: [{name: a, kind: dense, model: m}]", "teachers must be a non-empty list from ['a', 'ensemble-minmax'")])
def test_train_bad_teacher_list_names_the_file_and_creates_nothing(line, fragment, tmp_path):
    """Teachers as a list: a bad member is one line naming the config file, exit 2, no folder made."""
    config = tmp_path / "bad.yaml"
    config.write_text(f"runs_dir: {tmp_path / 'runs'}\ncache_dir: {tmp_path / 'cache'}\n{line}\n")
    assert_one_line_error(ifsr("train", "--config", config), "train", f"{config}: ", fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_train_missing_config(tmp_path):
    assert_one_line_error(ifsr("train", "--config", tmp_path / "no.yaml"), "train", "no such file")


def test_export_refuses_idf_with_a_saved_model_and_a_busy_out(saved_model, tmp_path, idf_file):
    proc = ifsr("export", "--model", saved_model, "--idf", idf_file, "--format", "opensearch", "--out", tmp_path / "o")
    assert_one_line_error(proc, "export", "carries its own IDF")
    proc = ifsr("export", "--model", saved_model, "--format", "opensearch", "--out", tmp_path)
    assert_one_line_error(proc, "export", "--out", "not empty")


def test_index_out_is_a_file(splade_tiny_path, idf_file, tiny, tmp_path):
    (tmp_path / "f").write_text("")
    proc = ifsr("index", "--model", splade_tiny_path, "--idf", idf_file, "--corpus", tiny, "--engine", "exact",
                "--out", tmp_path / "f")
    assert_one_line_error(proc, "index", "--out", "regular file")


def test_search_on_a_folder_that_is_not_an_index(tmp_path):
    assert_one_line_error(ifsr("search", "--index", tmp_path, "--query", "x"), "search", "index.json")
    (tmp_path / "index.json").write_text(json.dumps({"engine": "no-such-engine"}))
    assert_one_line_error(ifsr("search", "--index", tmp_path, "--query", "x"), "search", "no known engine")


# ----------------------------------------------------------------------------- issue 31

def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys, tmp_path):
    """Before: a KeyboardInterrupt traceback from any command."""
    from ifsr import cli, cli_steps

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_steps, "search_index", interrupted)
    assert cli.main(["search", "--index", str(tmp_path), "--query", "lung"]) == 130
    assert capsys.readouterr().err == "ifsr search: interrupted\n"


def test_plain_oserror_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    """Before: an OSError that is none of FileNotFoundError, PermissionError ... (a read-only file system, a
    name that cannot be fetched offline) was a traceback."""
    import errno

    from ifsr import cli, cli_steps

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "idf.json"))

    monkeypatch.setattr(cli_steps, "compute_idf", read_only)
    assert cli.main(["idf", "--corpus", str(tmp_path), "--out", str(tmp_path / "idf.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ifsr idf: error: [Errno 30] Read-only file system") and err.count("\n") == 1


def test_idf_tokenizer_that_does_not_exist_offline(tiny, tmp_path, monkeypatch):
    """Before: an OSError traceback ("... check your internet connection")."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    proc = ifsr("idf", "--corpus", tiny, "--tokenizer", "no-such-tokenizer", "--out", tmp_path / "idf.json")
    assert_one_line_error(proc, "idf")
    assert not (tmp_path / "idf.json").exists()


def test_jsonl_corpus_with_an_id_twice_is_refused_with_file_and_line(tmp_path):
    """Before: indexed (both documents kept under one id); a BEIR directory's corpus.jsonl was already refused."""
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"_id": "a", "text": "one"}\n{"_id": "b", "text": "two"}\n{"_id": "a", "text": "three"}\n')
    proc = ifsr("idf", "--corpus", docs, "--out", tmp_path / "idf.json")
    assert_one_line_error(proc, "idf", f"{docs}:3:", "duplicate _id 'a' (line 1 has it)")
    assert not (tmp_path / "idf.json").exists()


def test_idf_refuses_an_existing_out_unless_force(tiny, tmp_path, splade_tiny_path):
    """Before: `ifsr idf --out` silently replaced an existing file (a model's idf.json, say)."""
    out = tmp_path / "idf.json"
    out.write_text("keep me")
    proc = ifsr("idf", "--corpus", tiny, "--out", out, "--quiet")
    assert_one_line_error(proc, "idf", f"--out {out} already exists", "--force")
    assert out.read_text() == "keep me"
    proc = ifsr("idf", "--corpus", tiny, "--out", out, "--quiet", "--force")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(json.loads(out.read_text())) == 30522 and not list(tmp_path.glob(".idf.json*"))  # no leftovers


def test_a_second_writer_into_one_out_is_refused(tmp_path):
    """Before: two `ifsr index` into one --out both passed the emptiness check and both wrote (the last won,
    file by file). Now each writes aside and renames: the one that finds --out taken is refused, the other's
    folder is left whole, nothing of the loser remains; with force the new folder replaces it."""
    from ifsr.cli_steps import InputError, write_dir

    out = tmp_path / "out"
    out.mkdir()

    def write(tmp):
        (tmp / "mine").write_text("second")
        (out / "theirs").write_text("first")  # the other run finished meanwhile

    with pytest.raises(InputError, match="no longer empty .*--force"):
        write_dir(out, "--out", False, write)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and sorted(p.name for p in out.iterdir()) == ["theirs"]
    assert write_dir(out, "--out", True, lambda tmp: (tmp / "mine").write_text("x") and "done") == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and sorted(p.name for p in out.iterdir()) == ["mine"]

    def fail(tmp):
        (tmp / "half").write_text("")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_dir(tmp_path / "new", "--out", False, fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no half-written folder left


@pytest.mark.parametrize("name, why", [("My Index/../*?", "' ' '*' '/' '?'"), ("-x", "starts with '-'"),
                                       ("..", "is . or .."), ("Scifact", "uppercase"), ("a" * 256, "256 bytes")])
def test_export_refuses_an_index_name_opensearch_refuses(saved_model, tiny, tmp_path, name, why):
    """Before: written into bulk.ndjson, refused only by OpenSearch. Now refused before the model loads, and
    --out is not created."""
    proc = ifsr("export", "--model", saved_model, "--format", "opensearch", "--out", tmp_path / "o",
                "--corpus", tiny, f"--index-name={name}")
    assert_one_line_error(proc, "export", "--index-name", "OpenSearch refuses it", why)
    assert not (tmp_path / "o").exists()


def test_export_refuses_a_corpus_name_opensearch_refuses(saved_model, tmp_path):
    corpus = write_beir(tmp_path / "My Corpus")
    proc = ifsr("export", "--model", saved_model, "--format", "opensearch", "--out", tmp_path / "o", "--corpus", corpus)
    assert_one_line_error(proc, "export", "the index name from --corpus", "'my corpus'", "--index-name")


def test_baselines_out_dir_that_is_a_file_is_refused_at_once(tmp_path):
    """Before: minutes of scoring, then a traceback."""
    (tmp_path / "f").write_text("")
    proc = ifsr("baselines", "--out-dir", tmp_path / "f")
    assert_one_line_error(proc, "baselines", "--out-dir", "regular file")


def test_search_refuses_a_query_that_is_not_utf8_and_a_short_doc_ids(splade_tiny_path, idf_file, tiny, tmp_path):
    """Issue 31: non-UTF-8 bytes in --query, and an index whose doc_ids.json lost rows: one line, exit 2."""
    out = tmp_path / "index"
    proc = ifsr("index", "--model", splade_tiny_path, "--idf", idf_file, "--corpus", tiny, "--engine", "exact",
                "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    raw = subprocess.run([sys.executable, "-m", "ifsr.cli", "search", "--index", str(out), "--query", b"lung \xff\xfe"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert_one_line_error(raw, "search", "--query", "UTF-8")
    ids = json.loads((out / "doc_ids.json").read_text())
    (out / "doc_ids.json").write_text(json.dumps(ids[:-1]))
    assert_one_line_error(ifsr("search", "--index", out, "--query", "lung"), "search", "doc_ids.json",
                          f"{len(ids) - 1} document ids", f"{len(ids)} documents")

