"""What made a result: commit, config, data and model checksums, wall time, machine.

Written as `manifest.json` beside every table and figure under results/.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_dir(path: str | os.PathLike, suffixes: tuple[str, ...] = (".json", ".safetensors", ".bin", ".txt", ".pt")) -> str:
    """A checksum of a model directory: the files that change numbers, by relative name and content."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in suffixes):
        h.update(str(f.relative_to(root)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def atomic_write_with(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call write(tmp) on a temporary file beside `path`, then rename it over `path`: a reader sees the
    old file or the whole new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` atomically (`atomic_write_with`), fsynced before the rename."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    atomic_write_with(path, write)


def git_commit(repo: str | os.PathLike = ".") -> dict[str, Any]:
    """HEAD and whether tracked code differs from it (outputs under results/ do not count)."""
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False).stdout.strip()

    return {"commit": run("rev-parse", "HEAD") or None, "dirty": bool(run("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"))}


def machine() -> dict[str, Any]:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


class Manifest:
    """Collects provenance while a job runs; `write(dir)` adds wall time and saves manifest.json."""

    def __init__(self, config: dict[str, Any], repo: str | os.PathLike = "."):
        self.start = time.time()
        self.data: dict[str, Any] = {"git": git_commit(repo), "config": config, "data": {}, "models": {},
                                     "machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def add_data(self, name: str, checksum: str) -> None:
        self.data["data"][name] = checksum

    def add_model(self, name: str, checksum: str) -> None:
        self.data["models"][name] = checksum

    def write(self, out_dir: str | os.PathLike, **extra: Any) -> Path:
        self.data["wall_seconds"] = round(time.time() - self.start, 1)
        self.data.update(extra)
        path = Path(out_dir) / "manifest.json"
        atomic_write(path, json.dumps(self.data, indent=2, default=str).encode("utf-8"))
        return path

