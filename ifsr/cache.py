"""On-disk caches for what is slow to recompute: corpus encodings, teacher scores.

Every cache entry is a pair of files:
    <key>.npz     the arrays (numpy .npz, no pickle), written atomically (tmp file + os.replace)
    <key>.json    sidecar: the key parts, sha256 and size of the .npz bytes, array shapes/dtypes,
                  and how long the computation took; written after the payload
An entry is valid only if the sidecar parses, names the same key parts, and the payload bytes hash
to the recorded sha256 with the recorded shapes. Anything else (killed mid-write, truncated, edited,
stale) counts as missing and is recomputed, never read as valid.

key = sha256 of the canonical JSON of the key parts (sorted keys, no whitespace).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from ifsr.manifest import atomic_write, sha256_dir

log = logging.getLogger(__name__)

# Bump when an encoder's output changes for the same weights, text and max length (invalidates caches).
ENCODER_VERSION = 1
# The encoder tag of the corpus-cache keys of ifsr's sparse document encoder (`ifsr.core.encoder.DocumentEncoder`:
# the sparse teacher, evaluation, the latency corpora). Its text is frozen: it names the class's first module, and
# changing it would re-key every cached corpus encoding.
SPARSE_DOC_TAG = "ifsr.models.DocumentEncoder"

Matrix = sp.csr_matrix | np.ndarray


# ----------------------------------------------------------------------------- keys

def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def key_of(parts: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of `parts` (must be JSON-serialisable)."""
    return hashlib.sha256(canonical_json(dict(parts)).encode()).hexdigest()


def texts_sha256(texts: Iterable[str]) -> str:
    """sha256 over a list of texts, each length-prefixed (so ["ab", "c"] != ["a", "bc"])."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def module_checksum(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes, bytes), for models not in a folder."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def weights_checksum(path: str | os.PathLike, module: torch.nn.Module | None = None) -> str:
    """`sha256_dir(path)` for a local model folder; else the loaded module's state-dict hash."""
    if os.path.isdir(path):
        return sha256_dir(path)
    if module is None:
        raise ValueError(f"{path}: not a local model folder; pass the loaded module to checksum its weights")
    return module_checksum(module)


def corpus_key(model: str, weights: str, encoder: str, dataset: str, texts: list[str], max_length: int,
               columns: np.ndarray | None = None) -> dict:
    """Key parts of a corpus encoding; shared by every caller so the same encoding is cached once.
    `columns`: the vocabulary ids of an encoding restricted to them (`DocumentEncoder.encode(columns=)`)."""
    parts = {"kind": "corpus-encoding", "model": model, "weights": weights, "encoder": encoder,
             "dataset": dataset, "texts": texts_sha256(texts), "n": len(texts),
             "max_length": int(max_length), "encoder_version": ENCODER_VERSION}
    if columns is not None:
        cols = np.unique(np.asarray(columns, dtype=np.int64))
        parts["columns"] = {"n": int(cols.size), "sha256": hashlib.sha256(cols.tobytes()).hexdigest()}
    return parts


# ----------------------------------------------------------------------------- files

def sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def save_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    """Payload first, sidecar (with the payload's sha256) last: a crash in between leaves no valid entry."""
    path = Path(path)
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    payload = buf.getvalue()
    atomic_write(path, payload)
    side = {**dict(meta), "sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload),
            "arrays": {k: [list(np.shape(v)), str(np.asarray(v).dtype)] for k, v in arrays.items()},
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write(sidecar_path(path), json.dumps(side, indent=1, ensure_ascii=False).encode())


def read_sidecar(path: str | os.PathLike) -> dict[str, Any] | None:
    try:
        side = json.loads(sidecar_path(Path(path)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return side if isinstance(side, dict) else None


def load_arrays(path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> dict[str, np.ndarray] | None:
    """The arrays of a valid entry, or None (missing, truncated, corrupt, or other `meta` values).

    `meta`: entries that the sidecar must hold with equal values (compared as canonical JSON).
    """
    path = Path(path)
    side = read_sidecar(path)
    if side is None or not path.is_file():
        return None
    for k, v in (meta or {}).items():
        if k not in side or canonical_json(side[k]) != canonical_json(v):
            log.warning("%s: cache entry made for other %r; recomputing", path, k)
            return None
    payload = path.read_bytes()
    if len(payload) != side.get("bytes") or hashlib.sha256(payload).hexdigest() != side.get("sha256"):
        log.warning("%s: truncated or corrupt (size/sha256 differ from its sidecar); recomputing", path)
        return None
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        log.warning("%s: unreadable (%s); recomputing", path, e)
        return None
    want = side.get("arrays", {})
    if set(want) != set(arrays) or any([list(a.shape), str(a.dtype)] != want[k] for k, a in arrays.items()):
        log.warning("%s: arrays differ from its sidecar; recomputing", path)
        return None
    return arrays


def matrix_to_arrays(m: Matrix) -> dict[str, np.ndarray]:
    if sp.issparse(m):
        c = sp.csr_matrix(m)
        return {"format": np.array("csr"), "data": c.data, "indices": c.indices, "indptr": c.indptr,
                "shape": np.asarray(c.shape, dtype=np.int64)}
    if isinstance(m, np.ndarray):
        return {"format": np.array("dense"), "array": m}
    raise ValueError(f"expected a scipy.sparse matrix or a numpy array, got {type(m).__name__}")


def arrays_to_matrix(a: Mapping[str, np.ndarray]) -> Matrix:
    if str(a["format"]) == "csr":
        return sp.csr_matrix((a["data"], a["indices"], a["indptr"]), shape=tuple(int(x) for x in a["shape"]))
    return a["array"]


# ----------------------------------------------------------------------------- encodings

def entry_path(key_parts: Mapping[str, Any], cache_dir: str | os.PathLike, kind: str = "encodings") -> Path:
    return Path(cache_dir) / kind / f"{key_of(key_parts)}.npz"


def cached_encode(key_parts: Mapping[str, Any], compute: Callable[[], Matrix],
                  cache_dir: str | os.PathLike | None) -> Matrix:
    """`compute()` once per key: later calls load the stored matrix (CSR or dense, as computed).

    key_parts: JSON-serialisable, e.g. `corpus_key(...)` (model name + weights checksum, dataset
    checksum, texts hash, max_length, ENCODER_VERSION). cache_dir None: no caching.
    """
    if cache_dir is None:
        return compute()
    parts = json.loads(canonical_json(dict(key_parts)))  # the form the sidecar stores
    path = entry_path(parts, cache_dir)
    arrays = load_arrays(path, {"key": parts})
    if arrays is not None:
        log.info("cache hit %s", path.name)
        return arrays_to_matrix(arrays)
    t0 = time.perf_counter()
    m = compute()
    seconds = time.perf_counter() - t0
    save_arrays(path, matrix_to_arrays(m), {"key": parts, "compute_seconds": round(seconds, 3)})
    return m


def cache_info(key_parts: Mapping[str, Any], cache_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar of a cached encoding (key, compute_seconds, sha256, ...), or None."""
    return read_sidecar(entry_path(json.loads(canonical_json(dict(key_parts))), cache_dir))
