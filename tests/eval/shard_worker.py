"""One process of the sharded encoding / scoring test (tests/eval/test_sharding.py), run alone or under
`python -m torch.distributed.run --nproc_per_node 2` (gloo, CPU).

    shard_worker.py OUT CACHE_DIR    rank 0 writes OUT (npz): the corpus CSR of 300 SciFact documents
                                     (splade-tiny, 19 uneven batches) and both teachers' candidate scores
"""
from __future__ import annotations

import sys

import numpy as np

from ifsr.core.encoder import DocumentEncoder
from ifsr.data.beir import load_beir
from ifsr.data.mining import Candidates
from ifsr.distill.teachers import DenseTeacher, SparseTeacher, score_candidates
from ifsr.distributed import init_from_env
from ifsr.eval.evaluate import encode_corpus, limit_corpus


def main(out: str, cache_dir: str) -> None:
    rank, world = init_from_env()
    ds = limit_corpus(load_beir("scifact", split="test"), 300)
    doc = DocumentEncoder.from_pretrained("splade-tiny", max_length=64)
    d = encode_corpus(doc, "splade-tiny", "weights-of-the-test", ds, cache_dir, batch_size=16, show_progress=False)
    ids, texts = ds.doc_ids, ds.doc_texts()
    cands = [Candidates(query_id=f"q{i}", query=texts[i][:60], positives=(ids[i],),
                        negatives=tuple(ids[(i * 7 + j) % len(ids)] for j in range(1, 5))) for i in range(11)]
    doc_text = dict(zip(ids, texts))
    arrays = {"data": d.data, "indices": d.indices, "indptr": d.indptr}
    for teacher in (DenseTeacher(max_length=64, show_progress=False), SparseTeacher(max_length=64, show_progress=False)):
        sc = score_candidates(teacher, cands, doc_text, cache_dir, "tiny", chunk_queries=3, chunk_docs=8,
                              show_progress=False)
        arrays[teacher.kind] = np.concatenate([sc[c.query_id] for c in cands])
    if rank == 0:
        np.savez(out, world=world, **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:3])
