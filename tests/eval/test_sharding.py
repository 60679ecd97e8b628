"""Sharded corpus encoding and teacher scoring (2 gloo processes under torchrun) give exactly the
one-process CSR and scores, cache each shard, and leave the merged entry a one-process run reads."""
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("shard_worker.py")


@pytest.mark.slow
def test_two_processes_give_the_one_process_matrix_and_scores(data_root, splade_tiny_path, minilm_path, launch, tmp_path):
    launch(WORKER, str(tmp_path / "one.npz"), str(tmp_path / "cache1"), procs=1)
    launch(WORKER, str(tmp_path / "two.npz"), str(tmp_path / "cache2"), procs=2)
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert int(one["world"]) == 1 and int(two["world"]) == 2
    assert one["indptr"].shape == (301,) and one["data"].size > 1000
    for k in ("data", "indices", "indptr", "dense-cosine", "splade-siamese"):
        assert np.array_equal(one[k], two[k]), k  # bit for bit
    shards = sorted((tmp_path / "cache2" / "encodings").glob("*.npz"))
    before = {p.name for p in shards}
    launch(WORKER, str(tmp_path / "again.npz"), str(tmp_path / "cache2"), procs=1)  # reads the merged entries
    after = {p.name for p in (tmp_path / "cache2" / "encodings").glob("*.npz")}
    assert after == before  # nothing recomputed: the 2-process run left the one-process entries
    again = np.load(tmp_path / "again.npz")
    assert all(np.array_equal(one[k], again[k]) for k in ("data", "indices", "dense-cosine", "splade-siamese"))
