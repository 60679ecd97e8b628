"""ifsr's strict BEIR loader against the `beir` package's own (`GenericDataLoader`), a second, independent reader.

ifsr reads BEIR folders itself (`ifsr.data.beir.load_beir`) so that a malformed line is reported with its file
and line and the run stops with exit code 2; `beir` is the design card's reference for the format. On the two
sets at hand, both must read the same documents, the same judged queries and the same judgments."""
from __future__ import annotations

import pytest

from ifsr.data.beir import load_beir


@pytest.mark.parametrize("name", ["scifact", "cranfield"])
def test_ifsr_reads_the_same_set_as_beirs_own_loader(name, data_root):
    loader = pytest.importorskip("beir.datasets.data_loader")
    folder = data_root / "beir" / name
    corpus, queries, qrels = loader.GenericDataLoader(data_folder=str(folder)).load(split="test")
    ours = load_beir(name, split="test", data_dir=data_root, download=False)
    assert {d: {"title": v.get("title", ""), "text": v["text"]} for d, v in corpus.items()} == {
        d: {"title": v["title"], "text": v["text"]} for d, v in ours.corpus.items()}
    assert queries == {q: ours.queries[q] for q in ours.query_ids}  # beir keeps the judged queries only
    assert {q: dict(r) for q, r in qrels.items()} == {q: dict(r) for q, r in ours.qrels.items()}
    assert len(ours.query_ids) == len(queries) > 0 and len(ours.doc_ids) == len(corpus) > 0
