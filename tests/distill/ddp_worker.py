"""One process of the data-parallel tests (tests/distill/test_distributed.py), run alone or under
`python -m torch.distributed.run --nproc_per_node 2` (gloo, CPU).

    ddp_worker.py step  OUT IDF [--in-batch]   one loss + backward on the 8-example batch (each rank its half,
                                               the model wrapped in DistributedDataParallel); rank 0 writes
                                               the loss terms and every gradient to OUT (torch.save)
    ddp_worker.py train OUT IDF STUDENT        ifsr.distill.trainer.train for 3 steps, 4 queries a step in all
"""
from __future__ import annotations

import sys

import datasets
import numpy as np
import torch

from ifsr.core.encoder import load_tokenizer
from ifsr.core.idf import load_idf
from ifsr.distill.student import build_student
from ifsr.distill.trainer import InferenceFreeDistillLoss, train, with_row_index
from ifsr.distributed import gather_objects, init_from_env
from ifsr.exp.config import TrainConfig

WORDS = "cell protein gene lung cancer brain virus heat flow plate wing boundary layer pressure".split()


def dataset(n: int, g: int = 3, seed: int = 0) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    text = lambda k: " ".join(rng.choice(WORDS, k))  # noqa: E731
    cols = {"query": [text(3) for _ in range(n)]}
    for j in range(g):
        cols[f"doc_{j}"] = [text(int(rng.integers(4, 14))) for _ in range(n)]  # uneven lengths: padding differs
    cols["label"] = [(rng.random((2, g)) * [[1.0], [20.0]]).astype(np.float32).tolist() for _ in range(n)]
    return datasets.Dataset.from_dict(cols)


class BowBank:
    """Bag-of-WORDS teacher vectors of the toy dataset (a TeacherBank's `scores` contract)."""

    def __init__(self, ds: datasets.Dataset, g: int):
        vec = lambda t: np.array([t.split().count(w) for w in WORDS], np.float32)  # noqa: E731
        self.q = np.stack([vec(t) for t in ds["query"]])
        self.d = np.stack([vec(ds[f"doc_{j}"][i]) for i in range(len(ds)) for j in range(g)])
        self.g = g

    def scores(self, rows, candidate_rows=None):
        cand = rows if candidate_rows is None else candidate_rows
        cols = (np.asarray(cand)[:, None] * self.g + np.arange(self.g)).reshape(-1)
        s = self.q[np.asarray(rows)] @ self.d[cols].T
        return np.stack([s, 3 * s + 1], axis=1).astype(np.float32)


def step(out: str, idf_path: str, in_batch: bool) -> None:
    rank, world = init_from_env()
    idf = load_idf(idf_path, load_tokenizer("splade-tiny"))
    cfg = TrainConfig(lam=0.5, lambda_warmup_steps=0, max_length=32, in_batch_negatives=in_batch,
                      student_temperature=4.0)
    ds = dataset(8)
    bank = BowBank(ds, 3) if in_batch else None
    if in_batch:
        ds = with_row_index(ds)
    share = len(ds) // world
    part = ds.select(range(rank * share, (rank + 1) * share))  # this rank's half of the batch
    model = build_student("splade-tiny", idf, "idf", cfg.max_length, seed=0)
    model.eval()  # no dropout: every process computes the same function
    net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) if world > 1 else model
    loss = InferenceFreeDistillLoss(net, cfg, bank)
    feats = [model.preprocess(list(part["query"]), task="query")] + [
        model.preprocess(list(part[f"doc_{g}"]), task="document") for g in range(3)]
    terms = loss(feats, torch.tensor(list(part["label"])))
    sum(terms.values()).backward()  # DDP averages the gradients over ranks here
    values = {k: float(np.mean([t[k] for t in gather_objects({k: v.item() for k, v in terms.items()})]))
              for k in terms}  # what the trainer logs: the mean over ranks
    if rank == 0:
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        torch.save({"terms": values, "grads": grads}, out)


def train_run(out: str, idf_path: str, student: str) -> None:
    rank, world = init_from_env()
    idf = load_idf(idf_path, load_tokenizer("splade-tiny"))
    cfg = TrainConfig(student=student, steps=3, batch_size=4 // world, max_length=32, lr=1e-3, warmup_steps=1,
                      lam=0.05, lambda_warmup_steps=0, student_temperature=4.0, save_steps=100, logging_steps=1)
    train(cfg, dataset(16), idf, out)


if __name__ == "__main__":
    mode, out, idf_path, *rest = sys.argv[1:]
    if mode == "step":
        step(out, idf_path, "--in-batch" in rest)
    else:
        train_run(out, idf_path, rest[0])
    if torch.distributed.is_initialized():  # leave together: a rank that exits while the other still talks to
        torch.distributed.barrier()  # it (rank 0 saving) can abort in gloo's teardown ("terminate called ...")
        torch.distributed.destroy_process_group()
