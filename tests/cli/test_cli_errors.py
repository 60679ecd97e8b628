"""Bad command-line inputs: exit code 2, one line `ifsr <command>: error: ...`, no traceback, and the
check runs before any work (no model loaded, nothing encoded). Each of the four evaluate cases
crashed or was silently ignored before issue 13 (README's report of the base checkout)."""
from __future__ import annotations

import json

import pytest
from cli_helpers import assert_one_line_error, ifsr, write_beir


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
