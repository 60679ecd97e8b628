"""Each train-your-own subcommand run as `python -m ifsr.cli ...` on tiny sets: idf, train, evaluate,
export, index, search (the README's "Train your own" chain)."""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from cli_helpers import DOCS, ROOT, ifsr, write_beir

from ifsr.cli_steps import read_texts
from ifsr.exp.config import AblationConfig, load_config

EXAMPLE = ROOT / "configs" / "examples" / "train_scifact_tiny.yaml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_beir(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root, splade_tiny_path, minilm_path):
    """`ifsr train` on the example config, cut further: 100 documents, 4 queries, 2 steps of 2 queries."""
    tmp = tmp_path_factory.mktemp("train")
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg.update(corpus_limit=100, train_query_limit=4, mining_depth=10, teacher_max_length=32)
    cfg["train"].update(steps=2, batch_size=2, max_length=32, save_steps=1)
    (tmp / "my.yaml").write_text(yaml.safe_dump(cfg))
    proc = ifsr("train", "--config", tmp / "my.yaml", "--runs-dir", tmp / "runs", "--cache-dir", tmp / "cache",
                "--data-dir", data_root.resolve())
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("model: ")]
    assert len(lines) == 1, proc.stdout
    return tmp, lines[0].removeprefix("model: ")


def test_example_config_loads_and_every_key_is_commented():
    cfg = load_config(AblationConfig, EXAMPLE)  # unknown keys would raise
    assert cfg.train.student == "splade-tiny" and cfg.corpus_limit
    for line in EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and line.strip() != "train:":
            assert "#" in line, f"uncommented key: {line}"


def test_idf_of_a_beir_dir_follows_the_formula(tiny, tmp_path, splade_tiny_path):
    out = tmp_path / "idf.json"
    proc = ifsr("idf", "--corpus", tiny, "--tokenizer", "splade-tiny", "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"wrote {out}" in proc.stdout and "over 4 documents" in proc.stdout
    idf = json.loads(out.read_text())
    assert len(idf) == 30522 and not list(tmp_path.glob(".*tmp"))  # written atomically, no leftovers
    assert idf["lung"] == pytest.approx(math.log1p((4 - 1 + 0.5) / (1 + 0.5)))  # in 1 of the 4 documents
    assert idf["[unused5]"] == 1.0 and idf["[CLS]"] == 1.0  # unseen and special tokens: 1.0


def test_idf_reads_a_jsonl_file_like_the_beir_dir(tiny, tmp_path):
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({"title": t, "text": x}) + "\n" for _, t, x in DOCS))
    assert read_texts(jsonl)[1] == read_texts(tiny)[1]  # title + " " + text, the same texts
    assert read_texts(jsonl)[0] == ["1", "2", "3", "4"]  # no _id: the line number


def test_train_writes_a_model_and_says_where(trained):
    tmp, model = trained
    assert (tmp / "runs").as_posix() in model and (ROOT / model / "modules.json").is_file()


def test_evaluate_records_the_idf_used(trained, tiny, tmp_path):
    _, model = trained
    out = tmp_path / "eval.json"
    proc = ifsr("evaluate", "--model", model, "--data", tiny, "--max-length", 32, "--json", out, "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    (weights,) = (ROOT / model).glob("query_*_SparseStaticEmbedding/model.safetensors")
    assert res["idf_file"] == str(weights) and res["idf_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_export_opensearch_with_bulk_and_sentence_transformers(trained, tiny, tmp_path):
    _, model = trained
    os_dir, st_dir = tmp_path / "os", tmp_path / "st"
    proc = ifsr("export", "--model", model, "--format", "opensearch", "--out", os_dir, "--corpus", tiny, "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (os_dir / "idf.json").is_file() and (os_dir / "config.json").is_file()
    bulk = (os_dir / "bulk" / "bulk.ndjson").read_text().splitlines()
    assert len(bulk) == 2 * len(DOCS) and json.loads(bulk[0])["index"] == {"_index": tiny.name, "_id": "d1"}
    proc = ifsr("export", "--model", model, "--format", "sentence-transformers", "--out", st_dir, "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (st_dir / "modules.json").is_file() and f"model: {st_dir}" in proc.stdout


LONG_DOC = " ".join(text for _, _, text in DOCS * 4)  # about 100 tokens: cut at 64, it is another vector


@pytest.fixture(scope="module")
def saved_at_64(doc, query, tmp_path_factory):
    """A SparseEncoder directory of splade-tiny at 64 tokens (the `doc` fixture's length), as training saves one."""
    from ifsr.serving.export import save_sparse_encoder

    return save_sparse_encoder(doc, query, tmp_path_factory.mktemp("saved") / "model")


def test_export_of_an_opensearch_model_keeps_its_max_length(saved_at_64, doc, tmp_path):
    """Issue 31: a model trained at 64, exported to the OpenSearch layout and from there to
    sentence-transformers, reloaded at 512 and its document vectors changed (max difference 0.24)."""
    from sentence_transformers import SparseEncoder

    from ifsr.serving.export import load_model

    os_dir, st_dir = tmp_path / "os", tmp_path / "st"
    for source, fmt, out in ((saved_at_64, "opensearch", os_dir), (os_dir, "sentence-transformers", st_dir)):
        proc = ifsr("export", "--model", source, "--format", fmt, "--out", out, "--quiet")
        assert proc.returncode == 0, proc.stderr[-3000:]
    want = doc.encode([LONG_DOC], show_progress=False).toarray()
    assert np.abs(doc.with_max_length(512).encode([LONG_DOC], show_progress=False).toarray() - want).max() > 0.01
    for path in (os_dir, st_dir):
        again, _ = load_model(str(path))
        assert again.max_length == 64, path
        np.testing.assert_allclose(again.encode([LONG_DOC], show_progress=False).toarray(), want, atol=1e-5)
    st = SparseEncoder(str(st_dir), device="cpu")
    assert st.max_seq_length == 64
    got = st.encode_document([LONG_DOC], convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_evaluate_index_and_export_default_to_the_models_own_length(saved_at_64, tiny, tmp_path):
    """Issue 31: `evaluate` defaulted to 256 tokens while `index` and `export` used the model's own (64), so the
    index was not what was evaluated. Every verb now encodes at the model's length unless told otherwise."""
    out, index = tmp_path / "eval.json", tmp_path / "index"
    proc = ifsr("evaluate", "--model", saved_at_64, "--data", tiny, "--json", out, "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = ifsr("index", "--model", saved_at_64, "--corpus", tiny, "--out", index, "--engine", "exact", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(out.read_text())["max_length"] == json.loads((index / "index.json").read_text())["max_length"] == 64
    for verb in ("evaluate", "export", "index"):
        assert "the model's own" in " ".join(ifsr(verb, "--help").stdout.split()), verb


def test_evaluate_export_and_index_share_one_corpus_encoding(saved_at_64, doc, tiny, tmp_path, monkeypatch, capsys):
    """Issue 31: the walk-through's evaluate, export --corpus and index each re-encoded the same corpus. Now the
    first encodes it into the content-keyed cache and the other two read it: one encoder call in all, and the
    index holds exactly the vectors of a cold encode."""
    import scipy.sparse as sp

    from ifsr.cli import main
    from ifsr.core.encoder import DocumentEncoder

    calls, encode = [], DocumentEncoder.encode
    monkeypatch.setattr(DocumentEncoder, "encode", lambda self, texts, *a, **kw: calls.append(len(texts))
                        or encode(self, texts, *a, **kw))
    cache, model = str(tmp_path / "cache"), str(saved_at_64)
    for argv in (["evaluate", "--model", model, "--data", str(tiny)],
                 ["export", "--model", model, "--format", "opensearch", "--out", str(tmp_path / "os"), "--corpus", str(tiny)],
                 ["index", "--model", model, "--corpus", str(tiny), "--out", str(tmp_path / "index"), "--engine", "exact"]):
        assert main([*argv, "--cache-dir", cache, "--quiet"]) == 0, capsys.readouterr().err
    assert calls == [len(DOCS)]  # evaluate's; export and index read it from the cache
    assert len(list((tmp_path / "cache" / "encodings").glob("*.npz"))) == 1
    cold = encode(doc, read_texts(tiny)[1], show_progress=False)
    stored = sp.load_npz(tmp_path / "index" / "docs.npz")
    assert (stored != cold).nnz == 0 and stored.nnz == cold.nnz > 0
    assert main(["index", "--model", model, "--corpus", str(tiny), "--out", str(tmp_path / "again"), "--engine", "exact",
                 "--no-cache", "--quiet"]) == 0
    assert calls == [len(DOCS)] * 2  # --no-cache encodes


def test_index_then_search_on_the_default_engine(tiny, tmp_path, splade_tiny_path, idf_file):
    """The default engine: PISA when pyterrier-pisa imports, else exact (both were run by hand, and seismic)."""
    index = tmp_path / "index"
    proc = ifsr("index", "--model", splade_tiny_path, "--idf", idf_file, "--corpus", tiny, "--out", index,
                "--max-length", 64, "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((index / "index.json").read_text())
    from ifsr.serving.engines import ENGINES

    assert meta["engine"] == ("pisa" if ENGINES["pisa"].is_available() else "exact") and meta["n_docs"] == len(DOCS)
    proc = ifsr("search", "--index", index, "--query", "what clears particles from the lung", "-k", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    hits = [line.split("\t") for line in proc.stdout.splitlines()]
    assert 1 <= len(hits) <= 2 and hits[0][:2] == ["1", "d1"] and float(hits[0][2]) > 0


@pytest.fixture(scope="module")
def exact_index(tiny, tmp_path_factory, splade_tiny_path, idf_file):
    index = tmp_path_factory.mktemp("exact") / "index"
    proc = ifsr("index", "--model", splade_tiny_path, "--idf", idf_file, "--corpus", tiny, "--out", index,
                "--engine", "exact", "--max-length", 64, "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return index


def _hits(proc) -> list[tuple[str, float]]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [(line.split("\t")[1], float(line.split("\t")[2])) for line in proc.stdout.splitlines()]


def test_pisa_search_prints_real_scores_and_force_replaces_an_index(exact_index, tiny, tmp_path, splade_tiny_path,
                                                                     idf_file):
    """Issue 31: PISA printed its quantized integer scores (35971.0 where exact printed 35.68). Now they are
    divided back by the quantization scale; and `--force` replaces a non-empty --out (refused without it)."""
    from ifsr.serving.engines import ENGINES

    if not ENGINES["pisa"].is_available():
        pytest.skip("pyterrier-pisa is not installed")
    index = tmp_path / "index"
    shutil.copytree(exact_index, index)
    args = ["index", "--model", splade_tiny_path, "--idf", idf_file, "--corpus", tiny, "--out", index,
            "--engine", "pisa", "--max-length", 64, "--quiet"]
    proc = ifsr(*args)
    assert proc.returncode == 2 and "not empty" in proc.stderr and "--force" in proc.stderr
    assert json.loads((index / "index.json").read_text())["engine"] == "exact"
    assert ifsr(*args, "--force").returncode == 0
    assert json.loads((index / "index.json").read_text())["engine"] == "pisa" and not (index / "docs.npz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]  # nothing left aside
    query = "what clears particles from the lung"
    exact = _hits(ifsr("search", "--index", exact_index, "--query", query, "-k", 3))
    pisa = _hits(ifsr("search", "--index", index, "--query", query, "-k", 3))
    assert [d for d, _ in pisa] == [d for d, _ in exact]
    for (_, p), (_, e) in zip(pisa, exact):
        assert p == pytest.approx(e, rel=0.05)


def test_approximate_engine_says_so(exact_index, tmp_path, capsys):
    """Issue 31: Seismic's top-5 differed from exact and nothing said it was approximate. An index folder on an
    approximate engine (two-phase here: Seismic is not installed everywhere) prints a note; exact does not."""
    from ifsr.cli import main

    index = tmp_path / "index"
    shutil.copytree(exact_index, index)
    meta = json.loads((index / "index.json").read_text())
    (index / "index.json").write_text(json.dumps({**meta, "engine": "two-phase"}))
    assert main(["search", "--index", str(exact_index), "--query", "lung", "-k", "2"]) == 0
    assert "approximate" not in capsys.readouterr().err
    assert main(["search", "--index", str(index), "--query", "lung", "-k", "2"]) == 0
    out, err = capsys.readouterr()
    assert "note: this engine is approximate" in err and out.startswith("1\td1\t")


def test_search_into_a_closed_pipe_exits_quietly(exact_index):
    """Issue 31: `ifsr search ... | head` ended in a BrokenPipeError traceback."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "ifsr.cli", "search", "--index", str(exact_index), "--query",
                             "lung", "-k", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    proc.stdout.close()  # the reader is gone before the first hit is printed
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141, err
    assert err == "", err
