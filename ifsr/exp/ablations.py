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

import pandas as pd

from ifsr.data.beir import load_beir
from ifsr.distill.trainer import TrainConfig, mlm_dir
from ifsr.distill.trainsets import build_teachers, finetune_dataset, idf_path, limited, pretrain_dataset


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
    device: str = "auto"  # teachers and evaluation encoding: auto = cuda if available (training: train.use_cpu)

    def __post_init__(self) -> None:
        from ifsr.core.objective import TEACHER_MODES

        if not self.arms or set(self.arms) - {"idf", "ones"}:
            raise ValueError(f"arms must be a non-empty list of 'idf' and/or 'ones', got {self.arms!r}")
        if not self.teachers or set(self.teachers) - set(TEACHER_MODES):
            raise ValueError(f"teachers must be a non-empty list from {TEACHER_MODES}, got {self.teachers!r}")


LATE_FIELDS = {"in_batch_negatives": False}  # TrainConfig fields added after runs were cached: hashed only when set


def run_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _train_key(train_cfg: TrainConfig) -> dict[str, Any]:
    """The run-hash view of a TrainConfig: a late field at its default is left out, so a run cached
    before the field existed keeps its directory (its training did not depend on it)."""
    return {k: v for k, v in dataclasses.asdict(train_cfg).items() if not (k in LATE_FIELDS and v == LATE_FIELDS[k])}


def _train(cfg: AblationConfig, train_cfg: TrainConfig, dataset, idf, out: Path) -> None:
    """One stage; with in-batch negatives, the teachers' vectors of every example are built first (cached)."""
    from ifsr.distill.teachers import TeacherBank
    from ifsr.distill.trainer import flat_dataset, train

    bank = None
    if train_cfg.in_batch_negatives:
        flat = flat_dataset(dataset)
        group = train_cfg.n_neg + 1
        bank = TeacherBank.build(build_teachers(cfg), list(flat["query"]), [list(flat[f"doc_{g}"]) for g in range(group)],
                                 cfg.cache_dir)
    train(train_cfg, dataset, idf, out, bank=bank)


def trained_model(cfg: AblationConfig, train_cfg: TrainConfig, finetune_data) -> Path:
    """Train (or reuse) one student; the pre-training stage, if any, is shared by same-arm runs."""
    from ifsr.core.idf import load_idf
    from ifsr.core.encoder import load_tokenizer

    idf = load_idf(idf_path(cfg), load_tokenizer(mlm_dir(train_cfg.student)))
    data_fp = [cfg.train_dataset, cfg.corpus_limit, cfg.train_query_limit, cfg.mining_depth, cfg.dense_teacher,
               cfg.sparse_teacher, cfg.teacher_max_length, cfg.seed, str(idf_path(cfg))]
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
    from ifsr.eval.evaluate import encode_corpus, judged_run, self_hits_for
    from ifsr.serving.export import load_sparse_encoder
    from ifsr.core.idf import load_idf
    from ifsr.manifest import sha256_dir
    from ifsr.eval.metrics import evaluate_run, per_query, sparsity_row
    from ifsr.core.encoder import DocumentEncoder, QueryEncoder, resolve_model_path
    from ifsr.eval.retrieval import sparse_topk
    from ifsr.distill.teachers import resolve_device

    if (Path(model_dir) / "modules.json").is_file():  # a trained student
        doc, _ = load_sparse_encoder(model_dir)
    else:  # a model name or MLM directory: the untrained start
        doc = DocumentEncoder.from_pretrained(str(model_dir))
        model_dir = Path(resolve_model_path(str(model_dir)))
    doc.max_length = cfg.eval_max_length
    doc.to(resolve_device(cfg.device))
    query = QueryEncoder(doc.tokenizer, load_idf(idf_path(cfg), doc.tokenizer))
    rows = []
    for name in cfg.eval_datasets:
        ds = limited(load_beir(name, split=cfg.eval_split, data_dir=cfg.data_dir), cfg)
        d = encode_corpus(doc, str(model_dir), sha256_dir(model_dir), ds, cfg.cache_dir)  # [nd, V]
        q = query.encode([ds.queries[i] for i in ds.query_ids], binary=query_weights == "ones")  # [nq, V]
        sh = self_hits_for(ds.name)
        run, qrels = judged_run(ds, *sparse_topk(q, d, k=100 + int(sh)), 100, sh)
        rows.append({"dataset": ds.name, **evaluate_run(run, qrels), **sparsity_row(q, d),
                     "per_query": per_query(run, qrels, "nDCG@10")})
    return rows


def bm25_reference(cfg: AblationConfig) -> dict[str, dict[str, float]]:
    """BM25's per-query nDCG@10 on each eval set ({dataset name: {qid: value}}), for paired tests."""
    from ifsr.eval.evaluate import bm25_per_query

    sets = [limited(load_beir(n, split=cfg.eval_split, data_dir=cfg.data_dir), cfg) for n in cfg.eval_datasets]
    return {ds.name: bm25_per_query(ds) for ds in sets}


def _vs_bm25(r: dict[str, Any], bm25: dict[str, dict[str, float]], seed: int) -> dict[str, float]:
    from ifsr.eval.metrics import paired_randomization_test

    ref = bm25[r["dataset"]]
    return {"bm25_nDCG@10": sum(ref.values()) / len(ref),
            "p_value_vs_bm25": paired_randomization_test(r["per_query"], ref, seed=seed)}


def idf_flops_sweep(cfg: AblationConfig) -> pd.DataFrame:
    """curve.csv rows: one per (dataset, arm, lambda). Arms are evaluated with the query weights they
    were trained with (idf / ones); the plain arm is also shown with IDF queries at inference. Every
    row has a paired randomization test against BM25 on the same queries (`p_value_vs_bm25`)."""
    data = _lazy(lambda: finetune_dataset(cfg))
    bm25 = bm25_reference(cfg)
    rows = []
    for r in evaluate_trained(cfg, cfg.train.student):  # the start, under the same evaluation settings
        rows.append({"dataset": r["dataset"], "arm": "untrained", "lambda": float("nan"), "nDCG@10": r["nDCG@10"],
                     "R@100": r["R@100"], "flops": r["flops"], "doc_nnz": r["doc_nnz"],
                     "query_nnz": r["query_nnz"], **_vs_bm25(r, bm25, cfg.seed), "model": cfg.train.student})
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
                                 "query_nnz": r["query_nnz"], **_vs_bm25(r, bm25, cfg.seed),
                                 "student_temperature": tau, "model": str(model)})
    return pd.DataFrame(rows)


def _trained_temperature(model_dir: Path) -> float:
    """The student temperature a run trained with ("auto" is resolved in its train_config.yaml)."""
    import yaml

    return float(yaml.safe_load((Path(model_dir).parent / "train_config.yaml").read_text())["student_temperature"])


def teacher_ablation(cfg: AblationConfig) -> pd.DataFrame:
    """table.csv rows: one per (dataset, teacher), with a paired randomization test vs ensemble-minmax."""
    from ifsr.eval.metrics import paired_randomization_test

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

    from ifsr.exp.config import load_config

    overrides = {k: v for k, v in overrides.items() if v is not None}
    if train_overrides:
        with open(config_path, encoding="utf-8") as f:
            base = (yaml.safe_load(f) or {}).get("train") or {}
        overrides["train"] = {**base, **train_overrides}
    return load_config(AblationConfig, config_path, **overrides)


def write_results(table: pd.DataFrame, cfg: AblationConfig, out_dir: str | Path, name: str) -> Path:
    """<name>.csv, <name>.md, config.yaml and manifest.json (commit, data and model checksums)."""
    from ifsr.exp.config import save_config
    from ifsr.eval.evaluate import markdown_table
    from ifsr.manifest import Manifest, sha256_dir, sha256_file
    from ifsr.core.encoder import resolve_model_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / f"{name}.csv", index=False)
    (out / f"{name}.md").write_text(markdown_table(table.drop(columns=["model"], errors="ignore")) + "\n")
    save_config(cfg, out / "config.yaml")
    manifest = Manifest(dataclasses.asdict(cfg))
    for ds in sorted(set(cfg.eval_datasets) | {cfg.train_dataset}):
        manifest.add_data(ds, load_beir(ds, split=cfg.eval_split, data_dir=cfg.data_dir).checksum())
    manifest.add_data("idf", sha256_file(idf_path(cfg)))
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
