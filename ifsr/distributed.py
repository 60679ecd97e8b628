"""Data-parallel helpers: who this process is, gathering with gradient, and splitting work into shards.

Launch with an existing engine; nothing here spawns processes:

    torchrun --nproc_per_node 4 -m ifsr.cli train configs/gpu.yaml     # one process per GPU
    torchrun --nproc_per_node 2 -m ifsr.cli evaluate MODEL scifact     # sharded corpus encoding

`init_from_env` joins the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, ...; NCCL on
GPUs, gloo on CPUs) and pins each rank to its local GPU; the Hugging Face / sentence-transformers trainer
then finds the group already up and trains with DistributedDataParallel. Without torchrun every helper
is the one-process identity, so the same code runs on a laptop.

Sharding rule (corpus encoding, teacher scoring): the work is cut into units whose boundaries depend
only on the inputs (encoder batches of the length-sorted corpus, cache chunks of candidates); rank r
computes units r, r + W, r + 2W, ... and the results are gathered in unit order. Each unit is computed
exactly as one process computes it, so the merged result is the one-process result, bit for bit.
"""
from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist
from sentence_transformers.util.distributed import all_gather_with_grad, get_rank, get_world_size

from ifsr.cache import arrays_to_matrix, cached_encode, canonical_json, entry_path, load_arrays

T = TypeVar("T")


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a process group."""
    return get_rank(), get_world_size()


def init_from_env(timeout_s: float = 1800.0) -> tuple[int, int]:
    """Join torchrun's process group if this process was launched by it (WORLD_SIZE > 1); else (0, 1).

    Called by entry points (the CLI, scripts), never at import: a library user decides."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        return rank_world()
    import datetime

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" then means this rank's GPU
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo",
                            timeout=datetime.timedelta(seconds=timeout_s))
    return rank_world()


def is_main() -> bool:
    """True on rank 0 (the process that writes shared files and prints)."""
    return get_rank() == 0


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Every rank's `x` concatenated along dim 0, differentiable (sentence-transformers' all_gather_with_grad;
    the backward sums each slice's gradient over ranks). The identity outside a process group."""
    return all_gather_with_grad(x) if get_world_size() > 1 else x


def global_count(n: int, device: torch.device | str = "cpu") -> int:
    """Sum of `n` over ranks (no gradient)."""
    if get_world_size() == 1:
        return n
    t = torch.tensor([n], dtype=torch.long, device=device)
    dist.all_reduce(t)
    return int(t.item())


def gather_objects(obj: T) -> list[T]:
    """[rank 0's obj, rank 1's obj, ...] on every rank (pickled through the process group); [obj] alone."""
    world = get_world_size()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def owned_units(n_units: int, rank: int, world: int) -> range:
    """The units rank `rank` of `world` computes: rank, rank + world, ... (round robin keeps ranks even
    when the units shrink along the list, as length-sorted batches do)."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, world) with world >= 1, got rank {rank}, world {world}")
    return range(rank, n_units, world)


def merge_units(per_rank: Sequence[dict[int, T]], n_units: int) -> list[T]:
    """Unit results gathered from every rank ({unit index: result} each), in unit order; refuses gaps."""
    merged: dict[int, T] = {}
    for part in per_rank:
        merged.update(part)
    missing = sorted(set(range(n_units)) - set(merged))
    if missing:
        raise ValueError(f"no rank computed unit(s) {missing[:5]}{'...' if len(missing) > 5 else ''} of {n_units}")
    return [merged[i] for i in range(n_units)]


def sharded_cached_encode(key_parts: dict[str, Any], encode_shard: Callable[[tuple[int, int]], sp.csr_matrix],
                          cache_dir: str | os.PathLike | None, plan: dict[str, Any]) -> sp.csr_matrix:
    """`ifsr.cache.cached_encode` split over the process group: the same matrix on every rank.

    encode_shard((rank, world)) returns the full-shape CSR with only that shard's rows filled (as
    `DocumentEncoder.encode(shard=...)` does); `plan` names what fixes the shard boundaries (e.g. the
    batch size) and goes into each shard's key. Each rank caches its shard, the shards are gathered and
    summed (their rows are disjoint), and rank 0 stores the merged matrix under `key_parts`, the
    one-process entry, so a later run of any size reads it. One process: plain cached_encode.
    """
    rank, world = rank_world()
    if world == 1:
        return cached_encode(key_parts, lambda: encode_shard((0, 1)), cache_dir)
    merged = None
    if cache_dir is not None:
        parts = json.loads(canonical_json(dict(key_parts)))
        arrays = load_arrays(entry_path(parts, cache_dir), {"key": parts})
        merged = arrays_to_matrix(arrays) if arrays is not None else None
    if all(gather_objects(merged is not None)):  # collective: every rank has it, or all compute
        return merged
    shard_key = {**key_parts, "shard": [rank, world], "plan": plan}
    mine = cached_encode(shard_key, lambda: encode_shard((rank, world)), cache_dir)
    total = functools.reduce(lambda a, b: a + b, gather_objects(sp.csr_matrix(mine))).tocsr().astype(np.float32)
    total.sort_indices()
    if rank == 0 and cache_dir is not None:
        cached_encode(key_parts, lambda: total, cache_dir)
    barrier()
    return total
