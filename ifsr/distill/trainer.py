"""Training an inference-free student with sentence-transformers' SparseEncoderTrainer.

The student is a SparseEncoder whose query route is a frozen SparseStaticEmbedding (IDF for the
paper's IDF-aware arm, ones for the plain-FLOPS arm) and whose document route is an MLM with
SPLADE max pooling. The objective is ifsr's `inference_free_loss` (SPEC §2-3) on each query's
candidates, with the teacher targets built per batch from cached raw teacher scores. With
`in_batch_negatives`, each query's candidate set is the whole batch (SPEC §3), its teacher scores
looked up from cached teacher vectors (`ifsr.distill.teachers.TeacherBank`).

Engine: the Hugging Face / sentence-transformers trainer (AdamW, linear schedule with warm-up,
gradient accumulation, bf16, checkpoints, exact resume, multi-GPU through torchrun/accelerate).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn
from sentence_transformers.sparse_encoder.modules import Transformer
from transformers import TrainerCallback

from ifsr.core.objective import TEACHER_MODES, inference_free_loss, lambda_at, teacher_targets
from ifsr.core.encoder import mlm_max_logits


@dataclasses.dataclass
class TrainConfig:
    """One training run (a stage). Loaded from YAML by `ifsr.exp.config.load_config(TrainConfig, path)`."""

    student: str = "splade-tiny"  # model name/path, or a previous stage's output directory
    query_weights: str = "idf"  # "idf": IDF-aware arm (the paper); "ones": plain-FLOPS arm
    teacher: str = "ensemble-minmax"  # dense | sparse | ensemble-minmax | ensemble-raw
    teacher_scale: float = 30.0  # S, the teacher's inverse temperature
    lam: float = 0.002  # FLOPS weight lambda (batch form)
    lambda_warmup_steps: int = 200  # T of the quadratic warm-up
    flops_form: str = "batch"  # "batch" (SPLADE) or "per_slot" (reference code; ~G x larger)
    rank_loss: str = "kl"  # "kl" or "margin_mse"
    student_temperature: float | str = 1.0  # tau: ranking term on s(q, d) / tau; 1 = the paper; "auto": calibrated
    in_batch_negatives: bool = False  # C(q) = every document of the batch, not only q's own candidates
    steps: int = 2000
    batch_size: int = 8  # queries per device step; each brings 1 positive + n_neg negatives
    grad_accum: int = 1
    n_neg: int = 2
    lr: float = 2e-5
    weight_decay: float = 0.01
    warmup_steps: int = 200  # learning-rate warm-up
    max_length: int = 256  # document tokens in training
    seed: int = 0
    bf16: bool = False  # autocast bf16 (GPU)
    use_cpu: bool = True
    save_steps: int = 500
    logging_steps: int = 10

    def __post_init__(self) -> None:
        if self.query_weights not in ("idf", "ones"):
            raise ValueError(f"query_weights must be 'idf' or 'ones', got {self.query_weights!r}")
        if self.teacher not in TEACHER_MODES:
            raise ValueError(f"teacher must be one of {TEACHER_MODES}, got {self.teacher!r}")
        if self.flops_form not in ("batch", "per_slot"):
            raise ValueError(f"flops_form must be 'batch' or 'per_slot', got {self.flops_form!r}")
        tau = self.student_temperature
        if tau != "auto" and (isinstance(tau, str) or tau <= 0):
            raise ValueError(f"student_temperature must be positive or 'auto', got {tau!r}")
        if self.in_batch_negatives and self.rank_loss != "kl":
            raise ValueError("in_batch_negatives needs rank_loss 'kl' (margin_mse pairs slot 0 with its own negatives)")
        if self.steps <= 0 or self.batch_size <= 0 or self.n_neg < 1:
            raise ValueError("steps and batch_size must be positive and n_neg >= 1")


def mlm_dir(name_or_path: str) -> str:
    """The masked-LM folder of a model: itself, or a SparseEncoder directory's document Transformer folder."""
    from ifsr.core.encoder import _checked_path

    path = _checked_path(name_or_path)
    if not (Path(path) / "modules.json").is_file():
        return path
    modules = json.loads((Path(path) / "modules.json").read_text())
    if any(m["type"].endswith(".Transformer") and not m.get("path") for m in modules):
        return path  # a sentence-transformers model whose Transformer is the folder itself (all-MiniLM-L6-v2)
    found = sorted(Path(path).glob("*/tokenizer.json")) + sorted(Path(path).glob("*/*/tokenizer.json"))
    if not found:
        raise FileNotFoundError(f"{path}: no tokenizer.json in the SparseEncoder's module folders")
    return str(found[0].parent)


class FusedSpladeDocument(Transformer):
    """Transformer(fill-mask) + SpladePooling(max, relu) as one module, the max fused into the MLM head
    (`ifsr.core.encoder.mlm_max_logits`): the same vectors and gradients without the [B, L, V] logits
    (benchmarks/train_step.py). Only the training student uses it; `train` saves the standard pair."""

    def forward(self, features: dict, **kwargs) -> dict:
        pooled = mlm_max_logits(self.auto_model, features["input_ids"], features["attention_mask"])  # [B, V]
        features["sentence_embedding"] = torch.log1p(torch.relu(pooled))  # [B, V]
        return features

    def get_embedding_dimension(self) -> int:
        return self.auto_model.config.vocab_size


def build_student(name_or_path: str, idf, query_weights: str, max_length: int, seed: int, fused: bool = True):
    """SparseEncoder(Router(query: SparseStaticEmbedding(weight, frozen), document: MLM + SpladePooling(max))).

    `fused`: the document route is one `FusedSpladeDocument` (training); else the standard
    Transformer(fill-mask) + SpladePooling(max, relu) pair (saved models)."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import Router, SparseStaticEmbedding, SpladePooling

    path = mlm_dir(name_or_path)
    with torch.random.fork_rng(devices=[]):  # a new MLM head (MiniLM) is initialised from `seed`
        torch.manual_seed(seed)
        kind = FusedSpladeDocument if fused else Transformer
        doc_modules = [kind(path, transformer_task="fill-mask", max_seq_length=max_length, unpad_inputs=False)]
    if not fused:
        doc_modules.append(SpladePooling(pooling_strategy="max", activation_function="relu"))
    tokenizer = doc_modules[0].tokenizer
    weight = query_weight_vector(idf, tokenizer, query_weights)  # [V]
    query = SparseStaticEmbedding(tokenizer=tokenizer, weight=weight, frozen=True)
    router = Router.for_query_document(query_modules=[query], document_modules=doc_modules)
    return SparseEncoder(modules=[router], similarity_fn_name="dot", device="cpu")


def query_weight_vector(idf, tokenizer, kind: str) -> torch.Tensor:
    """[V] query-side weights: idf (IDF-aware arm) or ones (plain arm); 0 on special tokens."""
    w = torch.as_tensor(idf, dtype=torch.float32).clone() if kind == "idf" else torch.ones(len(tokenizer))
    w[sorted(set(tokenizer.all_special_ids))] = 0.0
    return w


class InferenceFreeDistillLoss(nn.Module):
    """sentence-transformers loss module around `ifsr.core.objective.inference_free_loss`.

    Columns: query, doc_0 (positive), doc_1..doc_n (negatives); label [B, 2, G] raw teacher scores
    (dense, sparse). With `config.in_batch_negatives` the label is [B, 3, G] (`with_row_index`: row 2
    holds the example's row number) and every query is scored against all B * G batch documents,
    the teacher scores coming from `bank`. Returns {"rank", "flops_penalty"}: the trainer sums and logs each term.
    """

    def __init__(self, model, config: TrainConfig, bank=None):
        super().__init__()
        if config.in_batch_negatives and bank is None:
            raise ValueError("in_batch_negatives needs a TeacherBank (ifsr.distill.teachers.TeacherBank.build)")
        self.model, self.config, self.bank, self.step = model, config, bank, 0

    def forward(self, sentence_features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        q, *docs = embed_columns(self.model, sentence_features)  # q [B, V]; docs G x [B, V]
        d = torch.stack(docs, dim=1)  # [B, G, V]
        c = self.config
        raw = labels.float()[:, :2]  # [B, 2, G]
        if c.in_batch_negatives:
            rows = labels[:, 2, 0].round().long().cpu().numpy()  # [B]
            raw = torch.from_numpy(self.bank.scores(rows)).to(d.device)  # [B, 2, B*G]
            d = d.flatten(0, 1).unsqueeze(0).expand(d.shape[0], -1, -1)  # [B, B*G, V]: FLOPS mean unchanged
        target = teacher_targets(raw, c.teacher, scale=c.teacher_scale)  # [B, G] (or [B, B*G])
        lam = lambda_at(self.step, c.lam, c.lambda_warmup_steps)
        out = inference_free_loss(q.float(), d.float(), target, lam, flops_form=c.flops_form, rank_loss=c.rank_loss,
                                   temperature=c.student_temperature)
        return {"rank": out["rank"], "flops_penalty": lam * out["flops"]}


TEMPERATURE_GRID = tuple(2.0 ** (k / 2) for k in range(-2, 9))  # 0.5 ... 16


def calibrate_temperature(model, dataset, config: TrainConfig, n: int = 256) -> float:
    """The student temperature under which the *untrained* student's ranking loss is least, on the
    first `n` training examples (grid TEMPERATURE_GRID).

    Why: a student that starts from a siamese SPLADE scores s = sum idf_j w_j, whose spread over a
    candidate set is ~2-4x the teacher's [0, S] targets (IDF multiplies every matched weight). Under
    KL the cheapest way down is then to shrink every document weight, which erases expansion terms;
    dividing the scores by tau removes that pull without changing any ranking. The rule is the same
    for every arm and start model; tau = 1 (the paper's form) is on the grid. In-batch runs are
    calibrated on the same own candidates (slot 0 .. n_neg), not on the batch.
    """
    dataset = flat_dataset(dataset)
    rows = dataset.select(range(min(n, len(dataset))))
    cols = [f"doc_{g}" for g in range(config.n_neg + 1)]
    with torch.no_grad():
        q = model.encode_query(list(rows["query"]), convert_to_tensor=True).to_dense()  # [n, V]
        scores = torch.stack([(q * model.encode_document(list(rows[c]), convert_to_tensor=True).to_dense()).sum(1)
                              for c in cols], dim=1)  # [n, G]
    target = teacher_targets(torch.tensor(rows["label"], dtype=torch.float32)[:, :2], config.teacher,
                             scale=config.teacher_scale)  # [n, G]
    losses = [inference_free_loss(torch.ones(1, 1), scores[:, :, None], target, 0.0, rank_loss=config.rank_loss,
                                  temperature=t)["rank"].item() for t in TEMPERATURE_GRID]
    return TEMPERATURE_GRID[int(np.argmin(losses))]


def flat_dataset(dataset):
    """A Dataset as is; a DatasetDict as its sources concatenated in sorted order (the row numbering
    `with_row_index` and `TeacherBank` share)."""
    import datasets as hf_datasets

    if isinstance(dataset, hf_datasets.DatasetDict):
        return hf_datasets.concatenate_datasets([dataset[k] for k in sorted(dataset)])
    return dataset


def with_row_index(dataset):
    """label [2, G] -> [3, G]: row 2 = [the example's row in `flat_dataset` order, 0, ...] (in-batch lookups)."""
    import datasets as hf_datasets

    def add(part, offset: int):
        return part.map(lambda ex, i: {"label": ex["label"] + [[float(offset + i)] + [0.0] * (len(ex["label"][0]) - 1)]},
                        with_indices=True, desc="row index")

    if sum(len(p) for p in (dataset.values() if isinstance(dataset, hf_datasets.DatasetDict) else [dataset])) > 2**24:
        raise ValueError("with_row_index: more than 2^24 rows cannot be numbered exactly in a float32 label")
    if isinstance(dataset, hf_datasets.DatasetDict):
        out, offset = {}, 0
        for k in sorted(dataset):
            out[k], offset = add(dataset[k], offset), offset + len(dataset[k])
        return hf_datasets.DatasetDict(out)
    return add(dataset, 0)


class LambdaWarmup(TrainerCallback):
    """Feeds the trainer's global step to the loss for the quadratic lambda warm-up."""

    def __init__(self, loss: InferenceFreeDistillLoss):
        self.loss = loss

    def on_step_begin(self, args, state, control, **kwargs):
        self.loss.step = state.global_step


def train(config: TrainConfig, train_dataset, idf, output_dir: str | os.PathLike, resume: bool = True,
          callbacks: list | None = None, bank=None) -> Path:
    """Train and save the student as a SparseEncoder directory at `output_dir/model`.

    `train_dataset`: a datasets.Dataset (or DatasetDict of single-source Datasets: each batch is
    then drawn from one source) with columns query, doc_0..doc_n, label. Checkpoints go to
    `output_dir/checkpoints`; with `resume`, the latest is picked up (exact on CPU, same seed).
    The per-step loss terms are written to `output_dir/log.jsonl`. `bank`: the teachers' vectors of
    `flat_dataset(train_dataset)`'s rows (`ifsr.distill.teachers.TeacherBank`), needed by `in_batch_negatives`.
    """
    from sentence_transformers import SparseEncoderTrainer, SparseEncoderTrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    from ifsr.exp.config import save_config

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = build_student(config.student, idf, config.query_weights, config.max_length, config.seed)
    if config.student_temperature == "auto":  # resolved before training and written in train_config.yaml
        model.eval()
        config = dataclasses.replace(config, student_temperature=calibrate_temperature(model, train_dataset, config))
    save_config(config, out / "train_config.yaml")
    columns = ["query"] + [f"doc_{g}" for g in range(config.n_neg + 1)]
    args = SparseEncoderTrainingArguments(
        output_dir=str(out / "checkpoints"), max_steps=config.steps, per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.lr, weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps, lr_scheduler_type="linear", seed=config.seed, data_seed=config.seed,
        bf16=config.bf16, use_cpu=config.use_cpu, logging_steps=config.logging_steps, save_steps=config.save_steps,
        save_total_limit=2, report_to="none", dataloader_drop_last=True, disable_tqdm=False,
        router_mapping={col: ("query" if col == "query" else "document") for col in columns},
        multi_dataset_batch_sampler="round_robin",
    )
    if config.in_batch_negatives:
        train_dataset = with_row_index(train_dataset)
    loss = InferenceFreeDistillLoss(model, config, bank)
    trainer = SparseEncoderTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss,
                                   callbacks=[LambdaWarmup(loss), *(callbacks or [])])
    last = get_last_checkpoint(args.output_dir) if resume and Path(args.output_dir).is_dir() else None
    trainer.train(resume_from_checkpoint=last)
    with open(out / "log.jsonl", "w", encoding="utf-8") as f:
        for row in trainer.state.log_history:
            f.write(json.dumps(row) + "\n")
    document = next(m for k, route in model[0].sub_modules.items() if k == "document" for m in route)
    document.save(str(out / "mlm"))  # the trained MLM, then the standard two-module SparseEncoder from it
    build_student(str(out / "mlm"), idf, config.query_weights, config.max_length, config.seed,
                  fused=False).save(str(out / "model"))
    shutil.rmtree(out / "mlm")
    return out / "model"
