"""Broken saved model folders and unexportable weights (issue #13): a ValueError / FileNotFoundError
that names the folder or file and what is missing or broken, never a library traceback or a wrong
model loaded quietly. Folders are real saves of splade-tiny, then broken in tmp_path."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import SAMPLE_TEXTS

from ifsr.serving.export import load_model, load_opensearch, load_sparse_encoder, save_opensearch, save_sparse_encoder
from ifsr.serving.opensearch import export_opensearch

MLM = "document_0_Transformer"
STATIC = "query_0_SparseStaticEmbedding"
POOL = "document_1_SpladePooling"


@pytest.fixture(scope="module")
def saved(doc, query, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("saved")
    return {"st": save_sparse_encoder(doc, query, root / "st"), "os": save_opensearch(doc, query, root / "os")}


def broken(saved: dict[str, Path], layout: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved[layout], tmp_path / layout))


def truncate(file: Path, keep: int) -> None:
    with open(file, "r+b") as f:
        f.truncate(keep)


def test_intact_copies_load(saved, tmp_path, doc):
    for layout in ("st", "os"):
        d, _ = load_model(str(broken(saved, layout, tmp_path)), max_length=64, show_progress=False)
        np.testing.assert_allclose(d.encode(SAMPLE_TEXTS, show_progress=False).toarray(),
                                   doc.encode(SAMPLE_TEXTS, show_progress=False).toarray(), atol=1e-5)


@pytest.mark.parametrize("layout,folder", [("st", MLM), ("st", STATIC), ("os", "")])
def test_missing_weights_name_the_folder(saved, tmp_path, layout, folder):
    root = broken(saved, layout, tmp_path)
    (root / folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_model(str(root))
    assert f"{(root / folder) if folder else root}: no model weights" in str(e.value)
    assert "model.safetensors" in str(e.value)


@pytest.mark.parametrize("layout,folder", [("st", MLM), ("st", STATIC), ("os", "")])
@pytest.mark.parametrize("cut", ["header", "data"])
def test_truncated_weights_name_the_file(saved, tmp_path, layout, folder, cut):
    root = broken(saved, layout, tmp_path)
    file = root / folder / "model.safetensors"
    truncate(file, 1000 if cut == "header" else file.stat().st_size - 4096)
    with pytest.raises(ValueError) as e:
        load_model(str(root))
    assert str(file) in str(e.value) and "truncated" in str(e.value) and "expected" in str(e.value)


def test_no_router_config(saved, tmp_path):
    root = broken(saved, "st", tmp_path)
    (root / "router_config.json").unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_sparse_encoder(root)
    assert str(root) in str(e.value) and "no router_config.json" in str(e.value)


@pytest.mark.parametrize("layout,folder", [("st", MLM), ("st", STATIC), ("os", "")])
def test_no_tokenizer_is_said_not_an_idf_mismatch(saved, tmp_path, layout, folder):
    root = broken(saved, layout, tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (root / folder / name).unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_model(str(root))
    assert f"{(root / folder) if folder else root}: no tokenizer" in str(e.value)
    assert "IDF" not in str(e.value)


def test_bare_mlm_without_tokenizer_with_idf(saved, tmp_path, idf_file):
    root = broken(saved, "os", tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "idf.json"):
        (root / name).unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        load_model(str(root), idf_path=idf_file)


def test_opensearch_without_idf_json(saved, tmp_path):
    root = broken(saved, "os", tmp_path)
    (root / "idf.json").unlink()
    with pytest.raises(FileNotFoundError, match="no idf.json"):
        load_opensearch(root)


@pytest.mark.parametrize("pooling,activation", [("sum", "relu"), ("max", "log1p_relu"), ("sum", "log1p_relu")])
def test_pooling_ifsr_does_not_compute_is_refused(saved, tmp_path, pooling, activation):
    root = broken(saved, "st", tmp_path)
    cfg = root / POOL / "config.json"
    cfg.write_text(json.dumps({"pooling_strategy": pooling, "activation_function": activation,
                               "embedding_dimension": None}))
    with pytest.raises(ValueError) as e:
        load_model(str(root))
    msg = str(e.value)
    assert str(cfg) in msg and repr(pooling) in msg and repr(activation) in msg and "ifsr computes only max" in msg


def test_extra_document_module_is_refused(saved, tmp_path):
    root = broken(saved, "st", tmp_path)
    cfg = json.loads((root / "router_config.json").read_text())
    cfg["structure"]["document"].append(POOL)  # pooling twice
    (root / "router_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="routes are"):
        load_model(str(root))


def test_quiet_load_shows_no_weight_bar_and_restores_the_setting(saved, capfd):
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    for layout in ("st", "os"):
        load_model(str(saved[layout]), show_progress=False)
        assert "Loading weights" not in capfd.readouterr().err
        assert hf_logging.is_progress_bar_enabled() == before
    if before:
        load_model(str(saved["os"]))
        assert "Loading weights" in capfd.readouterr().err  # the default still shows it


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan, 1e300])
def test_export_opensearch_refuses_non_finite_weights(tmp_path, bad):
    m = sp.csr_matrix(np.array([[0.5, 1.0, 0.0], [2.0, 0.0, bad]], dtype=np.float64))
    with pytest.raises(ValueError) as e:
        export_opensearch(["a", "doc-b"], m, ["x", "y", "z"], tmp_path / "out", "idx", show_progress=False)
    assert "'doc-b'" in str(e.value) and "'z'" in str(e.value) and "finite" in str(e.value)
    assert not (tmp_path / "out").exists()  # nothing half-written
