"""The paper's two ablations: FLOPS vs IDF-aware FLOPS (a lambda sweep), and single vs ensemble teacher.

Every run is cached under `runs_dir/<hash of its full config and data>`: the notebooks share runs
(the ensemble-minmax, IDF-aware run at the chosen lambda serves both ablations) and a crashed
run resumes from its last checkpoint.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ifsr.data import BeirSet, data_dir, load_beir, training_queries
from ifsr.pairs import load_pairs
from ifsr.train import TrainConfig, mlm_dir


@dataclasses.dataclass
class AblationConfig:
    """One preset of the replication (both notebooks read it). YAML: configs/<preset>.yaml."""

    preset: str = "smoke"
    train_dataset: str = "scifact"  # fine-tuning queries (train split) and corpus
    eval_datasets: list[str] = dataclasses.field(default_factory=lambda: ["scifact"])
    eval_split: str = "test"
    eval_max_length: int = 256
    corpus_limit: int | None = None  # smoke: first N documents (and queries judged inside them)
    train_query_limit: int | None = None  # smoke: first N training queries
    mining_depth: int = 50
    dense_teacher: str = "all-MiniLM-L6-v2"
    sparse_teacher: str = "splade-tiny"
    teacher_max_length: int = 256
    lambdas: list[float] = dataclasses.field(default_factory=lambda: [0.0005, 0.002, 0.008, 0.03])
    arms: list[str] = dataclasses.field(default_factory=lambda: ["idf", "ones"])
    teachers: list[str] = dataclasses.field(default_factory=lambda: ["dense", "sparse", "ensemble-minmax", "ensemble-raw"])
    teacher_lambda: float = 0.002  # lambda of the teacher ablation
    pretrain_pairs: int = 0  # >0: a pre-training stage on up to this many shared pairs per source
    pretrain_sources: list[str] | None = None  # pair files/sources to use (None: all)
    pretrain_steps: int = 0
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    idf_path: str | None = None  # default: <data_dir>/idf/msmarco_bert-base-uncased_idf.json
    data_dir: str | None = None
    cache_dir: str = ".cache/ifsr"
    runs_dir: str = "runs"
    seed: int = 0

    def __post_init__(self) -> None:
        from ifsr.losses import TEACHER_MODES

        if not self.arms or set(self.arms) - {"idf", "ones"}:
            raise ValueError(f"arms must be a non-empty list of 'idf' and/or 'ones', got {self.arms!r}")
        if not self.teachers or set(self.teachers) - set(TEACHER_MODES):
            raise ValueError(f"teachers must be a non-empty list from {TEACHER_MODES}, got {self.teachers!r}")


def _idf_path(cfg: AblationConfig) -> Path:
    return Path(cfg.idf_path) if cfg.idf_path else data_dir(cfg.data_dir) / "idf" / "msmarco_bert-base-uncased_idf.json"


def _limited(ds: BeirSet, cfg: AblationConfig) -> BeirSet:
    if cfg.corpus_limit is None:
        return ds
    from ifsr.evaluate import limit_corpus

    return limit_corpus(ds, cfg.corpus_limit)


def _teachers(cfg: AblationConfig):
    from ifsr.teachers import DenseTeacher, SparseTeacher

    return [DenseTeacher(cfg.dense_teacher, max_length=cfg.teacher_max_length),
            SparseTeacher(cfg.sparse_teacher, max_length=cfg.teacher_max_length)]


def _examples(cands, scores: list[dict[str, np.ndarray]], doc_text, n_neg: int) -> dict[str, list]:
    """One example per (query, positive): docs = [positive] + first n_neg negatives; label [2, G]."""
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


def finetune_dataset(cfg: AblationConfig):
    """SciFact-train (by default) queries, BM25 hard negatives, both teachers' raw scores (cached)."""
    import datasets

    from ifsr.mining import Bm25Index, mine_hard_negatives, save_candidates
    from ifsr.teachers import score_candidates

    ds = _limited(load_beir(cfg.train_dataset, split="train", data_dir=cfg.data_dir), cfg)
    tq = training_queries(ds)[: cfg.train_query_limit]
    index = Bm25Index().build(ds.doc_texts())
    cands = mine_hard_negatives({q: t for q, t, _ in tq}, {q: p for q, _, p in tq}, ds.doc_ids, index,
                                n_neg=cfg.train.n_neg, depth=cfg.mining_depth, seed=cfg.seed)
    Path(cfg.cache_dir).mkdir(parents=True, exist_ok=True)
    save_candidates(Path(cfg.cache_dir) / f"candidates_{cfg.train_dataset}_{cfg.preset}.jsonl.gz", cands)
    doc_text = dict(zip(ds.doc_ids, ds.doc_texts()))
    scores = [score_candidates(t, cands, doc_text, cfg.cache_dir, f"{ds.name}-train") for t in _teachers(cfg)]
    return datasets.Dataset.from_dict(_examples(cands, scores, doc_text, cfg.train.n_neg))


def pretrain_dataset(cfg: AblationConfig):
    """Shared query-passage pairs, in-source BM25 negatives; a DatasetDict keyed by source, so each
    training batch is drawn from a single source (sentence-transformers' multi-dataset sampler)."""
    import datasets

    from ifsr.pairs import filter_leakage
    from ifsr.mining import mine_in_source, passage_table
    from ifsr.teachers import score_candidates

    pairs = load_pairs(data_dir(cfg.data_dir) / "pairs", sources=cfg.pretrain_sources)
    evals = [load_beir(name, split=cfg.eval_split, data_dir=cfg.data_dir) for name in cfg.eval_datasets]
    pairs, _ = filter_leakage(pairs, evals)
    rng = np.random.default_rng(cfg.seed)
    by_src: dict[str, list] = {}
    for pair in pairs:
        by_src.setdefault(pair.source, []).append(pair)
    pairs = [p for src in sorted(by_src) for p in
             (by_src[src][i] for i in sorted(rng.permutation(len(by_src[src]))[: cfg.pretrain_pairs]))]
    cands = mine_in_source(pairs, n_neg=cfg.train.n_neg, depth=cfg.mining_depth, seed=cfg.seed)
    doc_text = passage_table(pairs)
    scores = [score_candidates(t, cands, doc_text, cfg.cache_dir, "pairs") for t in _teachers(cfg)]
    by_source: dict[str, list] = {}
    for c in cands:
        by_source.setdefault(c.source, []).append(c)
    parts = {src: datasets.Dataset.from_dict(_examples(cs, scores, doc_text, cfg.train.n_neg))
             for src, cs in sorted(by_source.items())}
    return datasets.DatasetDict({k: v for k, v in parts.items() if len(v) >= cfg.train.batch_size})


LATE_FIELDS = {"in_batch_negatives": False}  # TrainConfig fields added after runs were cached: hashed only when set


def run_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _train_key(train_cfg: TrainConfig) -> dict[str, Any]:
    """The run-hash view of a TrainConfig: a late field at its default is left out, so a run cached
    before the field existed keeps its directory (its training did not depend on it)."""
    return {k: v for k, v in dataclasses.asdict(train_cfg).items() if not (k in LATE_FIELDS and v == LATE_FIELDS[k])}


def _train(cfg: AblationConfig, train_cfg: TrainConfig, dataset, idf, out: Path) -> None:
    """One stage; with in-batch negatives, the teachers' vectors of every example are built first (cached)."""
    from ifsr.teachers import TeacherBank
    from ifsr.train import flat_dataset, train

    bank = None
    if train_cfg.in_batch_negatives:
        flat = flat_dataset(dataset)
        group = train_cfg.n_neg + 1
        bank = TeacherBank.build(_teachers(cfg), list(flat["query"]), [list(flat[f"doc_{g}"]) for g in range(group)],
                                 cfg.cache_dir)
    train(train_cfg, dataset, idf, out, bank=bank)


def trained_model(cfg: AblationConfig, train_cfg: TrainConfig, finetune_data) -> Path:
    """Train (or reuse) one student; the pre-training stage, if any, is shared by same-arm runs."""
    from ifsr.idf import load_idf
    from ifsr.models import load_tokenizer

    idf = load_idf(_idf_path(cfg), load_tokenizer(mlm_dir(train_cfg.student)))
    data_fp = [cfg.train_dataset, cfg.corpus_limit, cfg.train_query_limit, cfg.mining_depth, cfg.dense_teacher,
               cfg.sparse_teacher, cfg.teacher_max_length, cfg.seed, str(_idf_path(cfg))]
    if cfg.pretrain_pairs and cfg.pretrain_steps:
        pre_cfg = dataclasses.replace(train_cfg, steps=cfg.pretrain_steps)
        pre_dir = Path(cfg.runs_dir) / f"pre-{run_key(_train_key(pre_cfg), cfg.pretrain_pairs, data_fp)}"
        if not (pre_dir / "model" / "modules.json").is_file():
            _train(cfg, pre_cfg, pretrain_dataset(cfg), idf, pre_dir)
        train_cfg = dataclasses.replace(train_cfg, student=str(pre_dir / "model"))
    run_dir = Path(cfg.runs_dir) / run_key(_train_key(train_cfg), data_fp)
    if not (run_dir / "model" / "modules.json").is_file():
        _train(cfg, train_cfg, finetune_data() if callable(finetune_data) else finetune_data, idf, run_dir)
    return run_dir / "model"


def evaluate_trained(cfg: AblationConfig, model_dir: Path, query_weights: str = "idf") -> list[dict[str, Any]]:
    """Exact inference-free retrieval of a trained model on each eval set; per-query nDCG@10 kept."""
    from ifsr.evaluate import encode_corpus
    from ifsr.export import load_sparse_encoder
    from ifsr.idf import load_idf
    from ifsr.manifest import sha256_dir
    from ifsr.metrics import evaluate_run, per_query, sparsity_row
    from ifsr.models import QueryEncoder
    from ifsr.retrieval import sparse_topk, to_run

    from ifsr.models import DocumentEncoder, resolve_model_path

    if (Path(model_dir) / "modules.json").is_file():  # a trained student
        doc, _ = load_sparse_encoder(model_dir)
    else:  # a model name or MLM directory: the untrained start
        doc = DocumentEncoder.from_pretrained(str(model_dir))
        model_dir = Path(resolve_model_path(str(model_dir)))
    doc.max_length = cfg.eval_max_length
    query = QueryEncoder(doc.tokenizer, load_idf(_idf_path(cfg), doc.tokenizer))
    rows = []
    for name in cfg.eval_datasets:
        ds = _limited(load_beir(name, split=cfg.eval_split, data_dir=cfg.data_dir), cfg)
        d = encode_corpus(doc, str(model_dir), sha256_dir(model_dir), ds, cfg.cache_dir)  # [nd, V]
        q = query.encode([ds.queries[i] for i in ds.query_ids], binary=query_weights == "ones")  # [nq, V]
        idx, sc = sparse_topk(q, d, k=100)
        run = to_run(ds.query_ids, ds.doc_ids, idx, sc)
        qrels = {i: ds.qrels[i] for i in ds.query_ids}
        rows.append({"dataset": ds.name, **evaluate_run(run, qrels), **sparsity_row(q, d),
                     "per_query": per_query(run, qrels, "nDCG@10")})
    return rows


def idf_flops_sweep(cfg: AblationConfig) -> pd.DataFrame:
    """curve.csv rows: one per (dataset, arm, lambda). Arms are evaluated with the query weights they
    were trained with (idf / ones); the plain arm is also shown with IDF queries at inference."""
    data = _lazy(lambda: finetune_dataset(cfg))
    rows = []
    for r in evaluate_trained(cfg, cfg.train.student):  # the start, under the same evaluation settings
        rows.append({"dataset": r["dataset"], "arm": "untrained", "lambda": float("nan"), "nDCG@10": r["nDCG@10"],
                     "R@100": r["R@100"], "flops": r["flops"], "doc_nnz": r["doc_nnz"],
                     "query_nnz": r["query_nnz"], "model": cfg.train.student})
    for arm in cfg.arms:
        for lam in cfg.lambdas:
            tc = dataclasses.replace(cfg.train, query_weights=arm, teacher="ensemble-minmax", lam=lam)
            model = trained_model(cfg, tc, data)
            tau = _trained_temperature(model)
            views = [("idf-flops", "idf")] if arm == "idf" else [("flops", "ones"), ("flops+idf-query", "idf")]
            for label, qw in views:
                for r in evaluate_trained(cfg, model, qw):
                    rows.append({"dataset": r["dataset"], "arm": label, "lambda": lam, "nDCG@10": r["nDCG@10"],
                                 "R@100": r["R@100"], "flops": r["flops"], "doc_nnz": r["doc_nnz"],
                                 "query_nnz": r["query_nnz"], "student_temperature": tau, "model": str(model)})
    return pd.DataFrame(rows)


def _trained_temperature(model_dir: Path) -> float:
    """The student temperature a run trained with ("auto" is resolved in its train_config.yaml)."""
    import yaml

    return float(yaml.safe_load((Path(model_dir).parent / "train_config.yaml").read_text())["student_temperature"])


def teacher_ablation(cfg: AblationConfig) -> pd.DataFrame:
    """table.csv rows: one per (dataset, teacher), with a paired randomization test vs ensemble-minmax."""
    from ifsr.metrics import paired_randomization_test

    data = _lazy(lambda: finetune_dataset(cfg))
    results = {}
    for teacher in cfg.teachers:
        tc = dataclasses.replace(cfg.train, query_weights="idf", teacher=teacher, lam=cfg.teacher_lambda)
        model = trained_model(cfg, tc, data)
        results[teacher] = (model, evaluate_trained(cfg, model))
    rows = []
    for teacher, (model, evals) in results.items():
        for r in evals:
            ref = next((e for e in results.get("ensemble-minmax", (None, []))[1] if e["dataset"] == r["dataset"]), None)
            p = paired_randomization_test(r["per_query"], ref["per_query"], seed=cfg.seed) if ref else float("nan")
            rows.append({"dataset": r["dataset"], "teacher": teacher, "nDCG@10": r["nDCG@10"], "R@100": r["R@100"],
                         "flops": r["flops"], "p_value_vs_ensemble_minmax": p,
                         "student_temperature": _trained_temperature(model), "model": str(model)})
    return pd.DataFrame(rows)


class _lazy:
    """Build the fine-tuning data only if some run actually needs training."""

    def __init__(self, make):
        self.make, self.value = make, None

    def __call__(self):
        if self.value is None:
            self.value = self.make()
        return self.value


def configure(config_path: str, train_overrides: dict[str, Any] | None = None, **overrides: Any) -> AblationConfig:
    """The preset's YAML, then the notebook's non-None parameters on top. `train_overrides`: TrainConfig
    keys set over the YAML's `train` mapping (a preset variant, e.g. {in_batch_negatives: true})."""
    import yaml

    from ifsr.config import load_config

    overrides = {k: v for k, v in overrides.items() if v is not None}
    if train_overrides:
        with open(config_path, encoding="utf-8") as f:
            base = (yaml.safe_load(f) or {}).get("train") or {}
        overrides["train"] = {**base, **train_overrides}
    return load_config(AblationConfig, config_path, **overrides)


def write_results(table: pd.DataFrame, cfg: AblationConfig, out_dir: str | Path, name: str) -> Path:
    """<name>.csv, <name>.md, config.yaml and manifest.json (commit, data and model checksums)."""
    from ifsr.config import save_config
    from ifsr.evaluate import markdown_table
    from ifsr.manifest import Manifest, sha256_dir, sha256_file
    from ifsr.models import resolve_model_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / f"{name}.csv", index=False)
    (out / f"{name}.md").write_text(markdown_table(table.drop(columns=["model"], errors="ignore")) + "\n")
    save_config(cfg, out / "config.yaml")
    manifest = Manifest(dataclasses.asdict(cfg))
    for ds in sorted(set(cfg.eval_datasets) | {cfg.train_dataset}):
        manifest.add_data(ds, load_beir(ds, split=cfg.eval_split, data_dir=cfg.data_dir).checksum())
    manifest.add_data("idf", sha256_file(_idf_path(cfg)))
    for m in sorted({cfg.dense_teacher, cfg.sparse_teacher, cfg.train.student}):
        manifest.add_model(m, sha256_dir(resolve_model_path(m)))
    for model in sorted(set(table.get("model", []))):
        manifest.add_model(model, sha256_dir(resolve_model_path(model)))
    manifest.write(out)
    return out


def plot_curve(curve: pd.DataFrame, path: str | Path) -> Path:
    """nDCG@10 against the FLOPS metric, one line per arm, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    sets = sorted(curve["dataset"].unique())
    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 4), squeeze=False)
    for ax, name in zip(axes[0], sets):
        for arm, part in curve[curve["dataset"] == name].groupby("arm"):
            part = part.sort_values("flops")
            ax.plot(part["flops"], part["nDCG@10"], marker="o", label=arm)
            for _, r in part.dropna(subset=["lambda"]).iterrows():
                ax.annotate(f"λ={r['lambda']:g}", (r["flops"], r["nDCG@10"]), fontsize=7, alpha=0.7)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%.3g"))  # narrow ranges: no 1.2x10^0 labels
        ax.xaxis.set_minor_formatter(ticker.FormatStrFormatter("%.3g"))
        ax.set(title=name, xlabel="FLOPS (Σ_j p_q(j)·p_d(j), log scale)", ylabel="nDCG@10")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
