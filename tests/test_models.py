"""The one model resolver (ifsr.models): offline names to their wheels' folders, saved layouts, without torch."""
import json
import subprocess
import sys

import pytest

from ifsr.models import OPENSEARCH, SPARSE_ENCODER, resolve_model_path, saved_layout


def test_names_resolve_to_their_wheels_and_paths_pass_unchanged(splade_tiny_path, tmp_path):
    assert resolve_model_path("splade-tiny") == splade_tiny_path
    assert resolve_model_path(tmp_path) == str(tmp_path) and resolve_model_path("org/hub-name") == "org/hub-name"


def test_saved_layouts(tmp_path):
    assert saved_layout(tmp_path) is None and saved_layout("splade-tiny") is None  # a bare masked LM
    (tmp_path / "os").mkdir()
    (tmp_path / "os" / "idf.json").write_text(json.dumps({"a": 1.0}))
    assert saved_layout(tmp_path / "os") == OPENSEARCH
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "modules.json").write_text("[]")
    assert saved_layout(str(tmp_path / "st")) == SPARSE_ENCODER


def test_a_missing_wheel_names_the_pip_package(monkeypatch):
    import ifsr.models as models

    monkeypatch.setitem(models.OFFLINE_MODELS, "ghost", ("no_such_module_ifsr", "model"))
    monkeypatch.setitem(models.WHEELS, "no_such_module_ifsr", "ghost-wheel")
    with pytest.raises(FileNotFoundError, match="pip install ghost-wheel"):
        resolve_model_path("ghost")


def test_the_cli_resolves_with_the_same_resolver_and_no_torch():
    """cli_steps' model checks use ifsr.models (no second resolver) and import no torch."""
    code = ("import sys, ifsr.cli_steps as c, ifsr.models as m; assert c.resolve_model_path is m.resolve_model_path; "
            "assert c.saved_layout is m.saved_layout; assert str(c.model_path('splade-tiny')) == "
            "m.resolve_model_path('splade-tiny'); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
