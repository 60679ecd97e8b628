"""Training an inference-free student with sentence-transformers' SparseEncoderTrainer.

The student (`ifsr.distill.student.build_student`) is a SparseEncoder whose query route is a frozen
SparseStaticEmbedding (IDF for the paper's IDF-aware arm, ones for the plain-FLOPS arm) and whose
document route is an MLM with SPLADE max pooling. The objective is ifsr's `inference_free_loss`
(SPEC §2-3) on each query's candidates, with the teacher targets built per batch from cached raw
teacher scores. With
`in_batch_negatives`, each query's candidate set is the whole batch (SPEC §3), its teacher scores
looked up from cached teacher vectors (`ifsr.distill.teachers.TeacherBank`).

Engine: the Hugging Face / sentence-transformers trainer (AdamW, linear schedule with warm-up,
gradient accumulation, bf16, checkpoints, exact resume, multi-GPU through torchrun/accelerate).
"""
# Over 300 lines: the loss module, temperature calibration, callbacks and atomic checkpoints around one trainer.
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
from pathlib import Path

import datasets as hf_datasets
import numpy as np
import torch
from sentence_transformers import SparseEncoderTrainer, SparseEncoderTrainingArguments
from sentence_transformers.base.losses.merged_forward import embed_columns
from torch import nn
from transformers import TrainerCallback

from ifsr.config import save_config
from ifsr.core.objective import inference_free_loss, lambda_at, teacher_targets
from ifsr.distill.config import TrainConfig
from ifsr.distill.student import build_student, document_columns, document_mlm, save_student
from ifsr.distributed import barrier, gather_objects, gather_with_grad, global_count, is_main, rank_world

log = logging.getLogger(__name__)


class InferenceFreeDistillLoss(nn.Module):
    """sentence-transformers loss module around `ifsr.core.objective.inference_free_loss`.

    Columns: query, doc_0 (positive), doc_1..doc_n (negatives); label [B, K, G] raw teacher scores, K =
    len(config.teacher_names), in that order. With `config.in_batch_negatives` the label is [B, K + 1, G]
    (`with_row_index`: row K holds the example's row number) and every query is scored against all B * G batch documents,
    the teacher scores coming from `bank`. Returns {"rank", "flops_penalty"}: the trainer sums and logs each term.
    The FLOPS weight is `lam` at the step given by `set_step` (the trainer's global step, `LambdaWarmup`).

    Data-parallel (torchrun, W processes, each with B of the global batch's W*B queries): FLOPS is taken
    over every rank's documents, gathered with gradient, and the ranking term is scaled so that DDP's
    gradient average equals the one-process gradient of the mean over all W*B queries. With in-batch
    negatives each query is scored against the whole global batch. One step of W processes therefore
    gives the one-process loss and gradient on the union batch (tests/distill/test_distributed.py).
    """

    def __init__(self, model, config: TrainConfig, bank=None):
        super().__init__()
        if config.in_batch_negatives and bank is None:
            raise ValueError("in_batch_negatives needs a TeacherBank (ifsr.distill.teachers.TeacherBank.build)")
        self.model, self.config, self.bank = model, config, bank
        self._step = 0

    def set_step(self, step: int) -> None:
        """The optimizer step about to run (0-based), for the quadratic lambda warm-up."""
        self._step = step

    @property
    def lam(self) -> float:
        """lambda_t = lambda * min(1, t / T)^2 at the current step (SPEC §2)."""
        return lambda_at(self._step, self.config.lam, self.config.lambda_warmup_steps)

    def forward(self, sentence_features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        q, *docs = embed_columns(self.model, sentence_features)  # q [B, V]; docs G x [B, V]
        d = torch.stack(docs, dim=1)  # [B, G, V] this rank's documents
        c = self.config
        _, world = rank_world()
        d_all = gather_with_grad(d)  # [W*B, G, V]: every rank's documents (d itself in one process)
        k = len(c.teacher_names)
        raw = labels.float()[:, :k]  # [B, K, G]
        if c.in_batch_negatives:
            rows = labels[:, k, 0].round().long()  # [B]
            all_rows = gather_objects(rows.cpu().numpy())  # the global batch, rank order = d_all's order
            raw = torch.from_numpy(self.bank.scores(rows.cpu().numpy(), np.concatenate(all_rows))).to(d.device)
            d = d_all.flatten(0, 1).unsqueeze(0).expand(d.shape[0], -1, -1)  # [B, W*B*G, V]: FLOPS mean unchanged
        target = teacher_targets(raw, c.teacher, scale=c.teacher_scale, names=c.teacher_names,
                                 weights=c.teacher_weights)  # [B, G] (or [B, W*B*G])
        lam = self.lam
        out = inference_free_loss(q.float(), d.float(), target, lam, flops_form=c.flops_form, rank_loss=c.rank_loss,
                                   temperature=c.student_temperature, flops_docs=d_all.float() if world > 1 else None)
        rank = out["rank"]
        if world > 1:  # DDP averages gradients over ranks: local mean * B * W / B_total is the global mean's share
            rank = rank * (q.shape[0] * world / global_count(q.shape[0], q.device))
        return {"rank": rank, "flops_penalty": lam * out["flops"]}


TEMPERATURE_GRID = tuple(2.0 ** (k / 2) for k in range(-2, 9))  # 0.5 ... 16


def calibrate_temperature(model, dataset, config: TrainConfig, n: int = 256) -> float:
    """The student temperature under which the *untrained* student's ranking loss is least, on the
    first `n` training examples (grid TEMPERATURE_GRID). The documents are weighted on the queries' token ids
    only (`document_columns`): the same scores as their full vectors, at a fraction of the MLM head's work.

    Why: a student that starts from a siamese SPLADE scores s = sum idf_j w_j, whose spread over a
    candidate set is ~2-4x the teacher's [0, S] targets (IDF multiplies every matched weight). Under
    KL the cheapest way down is then to shrink every document weight, which erases expansion terms;
    dividing the scores by tau removes that pull without changing any ranking. The rule is the same
    for every arm and start model; tau = 1 (the paper's form) is on the grid. In-batch runs are
    calibrated on the same own candidates (slot 0 .. n_neg), not on the batch.
    """
    dataset = flat_dataset(dataset)
    rows = dataset.select(range(min(n, len(dataset))))
    scores = candidate_scores(model, rows, config.n_neg + 1)  # [n, G]
    labels = torch.tensor(rows["label"], dtype=torch.float32)[:, :len(config.teacher_names)]  # [n, K, G]
    target = teacher_targets(labels, config.teacher, scale=config.teacher_scale, names=config.teacher_names,
                             weights=config.teacher_weights)  # [n, G]
    losses = [inference_free_loss(torch.ones(1, 1), scores[:, :, None], target, 0.0, rank_loss=config.rank_loss,
                                  temperature=t)["rank"].item() for t in TEMPERATURE_GRID]
    return TEMPERATURE_GRID[int(np.argmin(losses))]


def candidate_scores(model, rows, groups: int) -> torch.Tensor:
    """[n, G] the student's scores of each row's candidates doc_0 .. doc_{G-1}: sum_j q_j w_j(d), the documents
    weighted on the rows' query token ids only (`document_columns`; no other column enters a score)."""
    with torch.no_grad():
        q = model.encode_query(list(rows["query"]), convert_to_tensor=True).to_dense()  # [n, V]
        vocab = q.any(dim=0).nonzero().squeeze(1)  # [C]
        q = q[:, vocab]  # [n, C]
        return torch.stack([(q * document_columns(model, list(rows[f"doc_{g}"]), vocab)).sum(1)
                            for g in range(groups)], dim=1)


def flat_dataset(dataset):
    """A Dataset as is; a DatasetDict as its sources concatenated in sorted order (the row numbering
    `with_row_index` and `TeacherBank` share)."""
    if isinstance(dataset, hf_datasets.DatasetDict):
        return hf_datasets.concatenate_datasets([dataset[k] for k in sorted(dataset)])
    return dataset


def with_row_index(dataset):
    """label [K, G] -> [K + 1, G]: row K = [the example's row in `flat_dataset` order, 0, ...] (in-batch lookups).

    The row number rides in the label because sentence-transformers' collator turns exactly one label
    column into a tensor and tokenizes every other column as text; float32 holds it exactly below 2^24.
    """
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
    """Feeds the trainer's global step to the loss (quadratic lambda warm-up) and logs lambda.

    Each training-loss row of the log history (so `log.jsonl`) gets "lambda": the value the last step
    of its logging window used. (sentence-transformers' SpladeRegularizerWeightSchedulerCallback drives
    only a SpladeLoss, with T as a fraction of the run, and its logged weight never reaches the history.)
    """

    def __init__(self, loss: InferenceFreeDistillLoss):
        self.loss = loss

    def on_step_begin(self, args, state, control, **kwargs):
        self.loss.set_step(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:
            return
        logs["lambda"] = self.loss.lam  # what the console and later callbacks see
        row = state.log_history[-1] if state.log_history else {}
        if row.get("step") == state.global_step and "loss" in row:  # the row the trainer just appended
            row["lambda"] = self.loss.lam


def optimizer_steps_per_epoch(dataset, config: TrainConfig, world: int = 1) -> int:
    """Optimizer steps one pass over `dataset` gives each of `world` processes: full batches of
    `batch_size` (the last partial one is dropped; a DatasetDict is drawn round-robin, so its smallest
    source sets the count), dealt out to the processes, `grad_accum` of them a step."""
    sizes = [len(dataset[k]) for k in sorted(dataset)] if isinstance(dataset, hf_datasets.DatasetDict) else [len(dataset)]
    batches = min(n // config.batch_size for n in sizes) * len(sizes) if sizes else 0
    return -(-batches // world) // config.grad_accum


def check_trainable(dataset, config: TrainConfig, world: int = 1) -> None:
    """ValueError (with the counts) when `dataset` is too small for one full optimizer step: the trainer
    would take no step and save the untrained start as the trained model."""
    if optimizer_steps_per_epoch(dataset, config, world) >= 1:
        return
    if isinstance(dataset, hf_datasets.DatasetDict):
        sizes = ", ".join(f"{k}: {len(dataset[k])}" for k in sorted(dataset))
        rows = f"{sum(len(v) for v in dataset.values())} training examples ({sizes}; batches are drawn round-robin, " \
               "so the smallest source sets the count)"
    else:
        rows = f"{len(dataset)} training examples"
    procs = f" x {world} processes" if world > 1 else ""
    raise ValueError(f"{rows} are too few for one optimizer step of batch_size {config.batch_size}{procs} x grad_accum "
                     f"{config.grad_accum} (partial batches are dropped): lower batch_size or grad_accum, or train on "
                     "more queries")


CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")  # the HF trainer's checkpoint folders


def checkpoint_complete(folder: Path) -> bool:
    """A checkpoint the trainer can resume from: its trainer_state.json (the trainer writes it last, after
    the weights, optimizer, scheduler and RNG state) reads as JSON, and the model and optimizer files are there."""
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    weights = any(folder.rglob("*.safetensors")) or any(folder.rglob("pytorch_model.bin"))
    return (isinstance(state, dict) and "global_step" in state and weights and (folder / "optimizer.pt").is_file()
            and (folder / "scheduler.pt").is_file())


def last_complete_checkpoint(checkpoints: Path) -> tuple[Path | None, list[Path]]:
    """(the latest complete checkpoint under `checkpoints` or None, the incomplete checkpoint folders:
    a save killed midway leaves one without trainer_state.json)."""
    found = []
    if checkpoints.is_dir():
        for p in checkpoints.iterdir():
            m = CHECKPOINT.match(p.name)
            if m and p.is_dir():
                found.append((int(m.group(1)), p))
    complete, incomplete = [], []
    for step, p in sorted(found):
        (complete if checkpoint_complete(p) else incomplete).append(p)
    return (complete[-1] if complete else None), incomplete


def resume_checkpoint(checkpoints: Path) -> Path | None:
    """The checkpoint to resume from (the latest complete one), after the incomplete ones are deleted with a
    warning line each (rank 0 deletes; every process gets the same answer)."""
    last, incomplete = last_complete_checkpoint(checkpoints)
    barrier()  # every rank has looked before rank 0 deletes
    if is_main():
        for p in incomplete:
            log.warning("deleting incomplete checkpoint %s (its save was interrupted); resuming from %s", p,
                        last if last is not None else "the start")
            shutil.rmtree(p, ignore_errors=True)
    barrier()
    return last


def save_atomically(model_dir: Path, write) -> Path:
    """write(tmp) into a temporary folder beside `model_dir`, then rename it to `model_dir`: a kill midway
    leaves no `model_dir` (or the previous one), never half a model (`ifsr.exp.runs` takes
    model/modules.json as a finished run). Left-over temporary folders of killed saves are removed first."""
    for stale in model_dir.parent.glob(f".{model_dir.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = model_dir.parent / f".{model_dir.name}.tmp-{os.getpid()}"
    try:
        write(tmp)
        if model_dir.exists():
            shutil.rmtree(model_dir)
        os.replace(tmp, model_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return model_dir


def train(config: TrainConfig, train_dataset, idf, output_dir: str | os.PathLike, resume: bool = True,
          callbacks: list | None = None, bank=None) -> Path:
    """Train and save the student as a SparseEncoder directory at `output_dir/model`.

    `train_dataset`: a datasets.Dataset (or DatasetDict of single-source Datasets: each batch is
    then drawn from one source) with columns query, doc_0..doc_n, label. Checkpoints go to
    `output_dir/checkpoints`; with `resume`, the latest is picked up (exact on CPU, same seed).
    The per-step loss terms are written to `output_dir/log.jsonl`. `bank`: the teachers' vectors of
    `flat_dataset(train_dataset)`'s rows (`ifsr.distill.teachers.TeacherBank`), needed by `in_batch_negatives`.
    The saved model's special tokens are baked off (`ifsr.distill.student.save_student`).

    Before anything is created, a dataset too small for one optimizer step is refused (`check_trainable`).
    A checkpoint counts only once complete: on resume, incomplete ones (a save killed midway) are deleted
    and the latest complete one is taken (`resume_checkpoint`). The model folder appears whole or not at
    all (`save_atomically`).
    """
    config.validate()
    check_trainable(train_dataset, config, rank_world()[1])
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = build_student(config.student, idf, config.query_weights, config.max_length, config.seed)
    if config.student_temperature == "auto":  # resolved before training and written in train_config.yaml
        model.eval()
        config = dataclasses.replace(config, student_temperature=calibrate_temperature(model, train_dataset, config))
    if is_main():  # under torchrun, rank 0 writes the run's files; every rank trains
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
    last = resume_checkpoint(Path(args.output_dir)) if resume else None
    trainer.train(resume_from_checkpoint=str(last) if last is not None else None)
    model_dir = out / "model"
    if is_main():
        with open(out / "log.jsonl", "w", encoding="utf-8") as f:
            for row in trainer.state.log_history:
                f.write(json.dumps(row) + "\n")
        document = document_mlm(model)  # the trained MLM, saved as the standard two-module SparseEncoder
        save_atomically(model_dir, lambda tmp: save_student(document.auto_model, document.tokenizer, idf,
                                                            config.query_weights, config.max_length, tmp))
    barrier()  # no rank returns before the model is on disk
    return model_dir
