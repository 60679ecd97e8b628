"""Training data of the ablations: each example is a query, its positive and n_neg BM25 negatives,
with every teacher's raw scores of those documents (cached) as the label [K, 1 + n_neg], K teachers in the
order of `AblationConfig.members` (the default: dense, sparse).

Fine-tuning reads a BEIR train split (SciFact by default); pre-training reads the shared query-passage
pairs, one dataset per source. `cfg` is an `ifsr.exp.config.AblationConfig`.
"""
from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np

from ifsr.data.beir import BeirSet, data_dir, default_idf_path, dev_split, load_beir, training_queries
from ifsr.data.mining import Bm25Index, mine_hard_negatives, mine_in_source, passage_table
from ifsr.data.pairs import filter_leakage, load_pairs
from ifsr.distill.teachers import build_teacher, score_candidates
from ifsr.eval.evaluate import limit_corpus
from ifsr.exp.config import AblationConfig


def idf_path(cfg: AblationConfig) -> Path:
    return Path(cfg.idf_path) if cfg.idf_path else default_idf_path(cfg.data_dir)


def limited(ds: BeirSet, cfg: AblationConfig) -> BeirSet:
    if cfg.corpus_limit is None:
        return ds
    return limit_corpus(ds, cfg.corpus_limit)


def build_teachers(cfg: AblationConfig) -> list:
    """The ensemble's teachers in label order (`AblationConfig.members`), each at `teacher_max_length`."""
    return [build_teacher(m["kind"], m["model"], max_length=cfg.teacher_max_length, device=cfg.device)
            for m in cfg.members()]


def _examples(cands, scores: list[dict[str, np.ndarray]], doc_text, n_neg: int) -> dict[str, list]:
    """One example per (query, positive): docs = [positive] + first n_neg negatives; label [K, G] (K teachers)."""
    rows: dict[str, list] = {"query": [], **{f"doc_{g}": [] for g in range(n_neg + 1)}, "label": []}
    for c in cands:
        if len(c.negatives) < n_neg:
            continue
        ids = list(c.doc_ids)
        negs = [ids.index(d) for d in c.negatives[:n_neg]]
        for p in c.positives:
            slots = [ids.index(p)] + negs
            rows["query"].append(c.query)
            for g, j in enumerate(slots):
                rows[f"doc_{g}"].append(doc_text[ids[j]])
            rows["label"].append([[float(s[c.query_id][j]) for j in slots] for s in scores])
    return rows


def finetune_candidates(cfg: AblationConfig) -> tuple[list, dict[str, str], str]:
    """(candidates, doc id -> text, the scores' dataset name) of fine-tuning: SciFact-train (by default) queries
    less the dev split (`dev_queries`), BM25 hard negatives."""
    ds, _ = dev_split(limited(load_beir(cfg.train_dataset, split="train", data_dir=cfg.data_dir), cfg),
                      cfg.dev_queries, cfg.seed)  # the dev queries are never trained on
    tq = training_queries(ds)[: cfg.train_query_limit]
    index = Bm25Index().build(ds.doc_texts())
    cands = mine_hard_negatives({q: t for q, t, _ in tq}, {q: p for q, _, p in tq}, ds.doc_ids, index,
                                n_neg=cfg.finetune_train().n_neg, depth=cfg.mining_depth, seed=cfg.seed)
    Path(cfg.cache_dir).mkdir(parents=True, exist_ok=True)
    return cands, dict(zip(ds.doc_ids, ds.doc_texts())), f"{ds.name}-train"


def finetune_dataset(cfg: AblationConfig):
    """The fine-tuning candidates (`finetune_candidates`) with both teachers' raw scores (cached)."""
    cands, doc_text, name = finetune_candidates(cfg)
    scores = [score_candidates(t, cands, doc_text, cfg.cache_dir, name) for t in build_teachers(cfg)]
    return datasets.Dataset.from_dict(_examples(cands, scores, doc_text, cfg.finetune_train().n_neg))


def pretrain_pairs(cfg: AblationConfig) -> list:
    """The pre-training pairs: those of `pretrain_sources` with no eval query or document, up to `pretrain_pairs` a
    source drawn with `seed` (file order kept), sources sorted. A pairs folder holding exactly these (in this order,
    ifsr.exp.carry.trim_pairs) gives them back unchanged: none leaks, and no source has more than the cap."""
    pairs = load_pairs(data_dir(cfg.data_dir) / "pairs", sources=cfg.pretrain_sources)
    evals = [load_beir(name, split=cfg.eval_split, data_dir=cfg.data_dir) for name in cfg.eval_datasets]
    pairs, _ = filter_leakage(pairs, evals)
    rng = np.random.default_rng(cfg.seed)
    by_src: dict[str, list] = {}
    for pair in pairs:
        by_src.setdefault(pair.source, []).append(pair)
    return [p for src in sorted(by_src) for p in
            (by_src[src][i] for i in sorted(rng.permutation(len(by_src[src]))[: cfg.pretrain_pairs]))]


def pretrain_candidates(cfg: AblationConfig) -> tuple[list, dict[str, str], str]:
    """(candidates, passage id -> text, the scores' dataset name) of pre-training: the drawn pairs
    (`pretrain_pairs`) with in-source BM25 negatives."""
    pairs = pretrain_pairs(cfg)
    return mine_in_source(pairs, n_neg=cfg.train.n_neg, depth=cfg.mining_depth, seed=cfg.seed), passage_table(pairs), "pairs"


def pretrain_dataset(cfg: AblationConfig):
    """Shared query-passage pairs, in-source BM25 negatives; a DatasetDict keyed by source, so each
    training batch is drawn from a single source (sentence-transformers' multi-dataset sampler)."""
    cands, doc_text, name = pretrain_candidates(cfg)
    scores = [score_candidates(t, cands, doc_text, cfg.cache_dir, name) for t in build_teachers(cfg)]
    by_source: dict[str, list] = {}
    for c in cands:
        by_source.setdefault(c.source, []).append(c)
    parts = {src: datasets.Dataset.from_dict(_examples(cs, scores, doc_text, cfg.train.n_neg))
             for src, cs in sorted(by_source.items())}
    return datasets.DatasetDict({k: v for k, v in parts.items() if len(v) >= cfg.train.batch_size})
