"""What made a result: commit, config, data and model checksums, wall time, machine.

Written as `manifest.json` beside every table and figure under results/.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import torch


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# A copy of a model folder that leaves files out (the device carry: `slim_copy`) lists them here with their
# sha256, so that `sha256_dir` of the copy equals that of the whole folder (cache and run keys stay the same).
ABSENT_FILES = "ifsr-absent.json"


def sha256_dir(path: str | os.PathLike, suffixes: tuple[str, ...] = (".json", ".safetensors", ".bin", ".txt", ".pt")) -> str:
    """A checksum of a model directory: the files that change numbers, by relative name and content.

    Files listed in ABSENT_FILES count with their listed sha256, as if present; one listed and present is an error."""
    root = Path(path)
    digests = {f.relative_to(root).as_posix(): sha256_file(f) for f in root.rglob("*")
               if f.is_file() and f.suffix in suffixes and f.name != ABSENT_FILES}
    absent = absent_files(root)
    if clash := sorted(set(absent) & set(digests)):
        raise ValueError(f"{root / ABSENT_FILES}: lists {clash} as left out, but they are there")
    digests.update(absent)
    h = hashlib.sha256()
    for name in sorted(digests, key=PurePosixPath):  # Path order, as the folder walk always was
        h.update(name.encode())
        h.update(digests[name].encode())
    return h.hexdigest()


def absent_files(path: str | os.PathLike) -> dict[str, str]:
    """{relative name: sha256} of the files a slim copy of a model folder left out; {} for a whole folder."""
    f = Path(path) / ABSENT_FILES
    return json.loads(f.read_text()) if f.is_file() else {}


def slim_copy(src: str | os.PathLike, dst: str | os.PathLike, leave_out: list[str]) -> Path:
    """Copy the folder `src` to `dst` without the files `leave_out` (names relative to src), listing them with
    their sha256 in dst/ABSENT_FILES: `sha256_dir(dst) == sha256_dir(src)`, and nothing can load the weights
    left out (only cached outputs of that model are usable where the copy goes)."""
    src, dst = Path(src), Path(dst)
    missing = [n for n in leave_out if not (src / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{src}: no files {missing} to leave out")
    if dst.exists():
        raise FileExistsError(f"{dst} exists")
    shutil.copytree(src, dst, ignore=lambda d, names: [n for n in names if
                                                        (Path(d) / n).relative_to(src).as_posix() in leave_out])
    atomic_write(dst / ABSENT_FILES, json.dumps({n: sha256_file(src / n) for n in sorted(leave_out)}, indent=1).encode())
    return dst


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


# The CPU instruction-set extensions that change speed (and, through other float kernels, the last digits) of fp32
# and bf16 work; a manifest names those its machine had.
CPU_ISA = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_features(cpuinfo: str) -> dict[str, Any]:
    """The CPU model and which of CPU_ISA its first processor lists, from the text of /proc/cpuinfo."""
    first = cpuinfo.split("\n\n", 1)[0].splitlines()
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first if ":" in line)}
    flags = set(fields.get("flags", "").split())
    return {"cpu": fields.get("model name"), "cpu_isa": [f for f in CPU_ISA if f in flags]}


def machine() -> dict[str, Any]:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            info.update(cpu_features(f.read()))
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


class Manifest:
    """Collects provenance while a job runs; `write(dir)` adds wall time and saves manifest.json. `written`: when
    this object was made (`ifsr.tables.write_table` makes it as it writes the tables; a notebook's whole wall time is
    the runner's `wall_seconds`)."""

    def __init__(self, config: dict[str, Any], repo: str | os.PathLike = "."):
        self.start = time.time()
        self.data: dict[str, Any] = {"git": git_commit(repo), "config": config, "data": {}, "models": {},
                                     "machine": machine(), "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

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

