"""Will a preset fit one device window? Planned work x measured CPU-miniature cost / an assumed GPU speed-up.

    python benchmarks/gpu_plan.py --preset gpu-quick            # the estimate, a line per kind of work
    python benchmarks/gpu_plan.py --preset gpu --gpu-tflops 50  # another assumption

1. The plan: `ifsr.exp.work.preset_work` counts every distinct training stage's optimizer steps, the
   documents encoded for evaluation and the texts the teachers encode (nothing is trained); by default
   only what the device does after `scripts/gpu_replicate.sh prepare` (which runs the baselines notebook
   and the dense teacher's scoring here, ifsr.exp.carry); `--unprepared`: the whole preset.
2. Unit costs, measured here on CPU in miniature, at each work item's own model and length: one AdamW
   step on `--mini` queries x group documents (scaled linearly to the step's batch), and the encoding of
   `--mini-docs` SciFact documents (the longest, so each is near the length cap) by the code the work runs:
   the dense teacher, the sparse encoder on every column (baselines, the doc-nnz sample), or on the eval
   queries' vocabulary only (the students' evaluation, `qvocab`: SciFact's test queries' columns).
3. The speed-up: this CPU's measured fp32 matrix-product rate against `--gpu-tflops`, the rate assumed
   for these small models on the device (default 100 TFLOP/s: an eighth of the 788 TFLOP/s bf16 that
   an H200 here ran on large products, .library/device/KINDS.md; small hidden sizes run far below peak),
   Every cost of compute here is in CPU seconds (process time, all threads), so a busy machine does not
   inflate it (the GEMM rate too: per CPU second). What does not speed up is added at its CPU cost:
   tokenization (measured here per text, at the
   length), `--step-floor-ms` per optimizer step (kernel launches, optimizer, trainer bookkeeping: tiny
   models are launch-bound on a GPU), each training stage's own cost outside its steps (building the
   student, calibrating its temperature, the trainer, saving the model; and each checkpoint it saves),
   measured here by training a miniature stage (`stage_seconds`, wall seconds: more on a busy machine) and
   doubled for what a device adds (placing the model, each stage's first kernels), unless `--stage-s`
   gives it, and `--overhead-s` per notebook (kernel start, imports, CUDA's start). Every assumption is
   printed beside the result; the estimate is a check, not a promise. A blind first run should use at
   most `--margin` (0.6) of the window: the verdict says whether it does.
Prints per item: count, CPU s/unit, CPU total, GPU estimate; then the total against the 600 s window.
"""
from __future__ import annotations

import argparse
import functools
import sys
import time

from _args import REPO, anchor_to_repo, nonnegative_float, positive_float, positive_int  # this checkout first on sys.path


def cpu_gemm_tflops(n: int = 1536, reps: int = 5) -> float:
    """This CPU's fp32 matrix-product rate (TFLOP/s per CPU second): the best of `reps` products."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        a @ b
        best = min(best, time.process_time() - t0)
    return 2 * n**3 / best / 1e12


@functools.lru_cache(maxsize=1)
def scifact_texts() -> tuple[str, ...]:
    from ifsr.data.beir import load_beir

    return tuple(load_beir("scifact").doc_texts())


def long_texts(n: int) -> list[str]:
    return sorted(scifact_texts(), key=len, reverse=True)[:n]


STAGE_DEVICE_FACTOR = 2.0  # a stage's measured CPU cost outside its steps, doubled for the device's additions


def stage_seconds(model_name: str, max_length: int, group: int, reps: int = 3) -> tuple[float, float]:
    """(fixed, checkpoint): wall seconds of one training stage outside its optimizer steps (build the student,
    calibrate its temperature, set up the trainer, save the model) and of one checkpoint, from miniature stages
    of ifsr.distill.trainer.train (2 queries a step): 1 step saving 1 checkpoint, 2 steps saving 2, 2 steps
    saving none; wall seconds (CPU seconds would count the thread pool's spin-waits, ~10x here; a busy machine
    inflates wall time, which errs on the safe side), the mean of `reps` (each a difference of times: a minimum
    would pick its noise). The trainer's own log lines are kept off stdout."""
    import contextlib
    import io
    import tempfile

    import datasets
    import numpy as np

    from ifsr.core.encoder import load_tokenizer
    from ifsr.core.idf import load_idf
    from ifsr.data.beir import default_idf_path
    from ifsr.distill.student import mlm_dir
    from ifsr.distill.trainer import train
    from ifsr.exp.config import TrainConfig

    idf = load_idf(default_idf_path(), load_tokenizer(mlm_dir(model_name)))
    docs, n = long_texts(16 * group), 16
    rows = {"query": [d[:60] for d in docs[:n]], **{f"doc_{g}": docs[g * n:(g + 1) * n] for g in range(group)},
            "label": np.random.default_rng(0).random((n, 2, group)).tolist()}
    data = datasets.Dataset.from_dict(rows)

    def wall(steps: int, save_steps: int) -> float:
        cfg = TrainConfig(student=model_name, steps=steps, batch_size=2, n_neg=group - 1, max_length=max_length,
                          save_steps=save_steps, logging_steps=1, warmup_steps=0, lambda_warmup_steps=0,
                          student_temperature="auto", use_cpu=True)
        with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
            t0 = time.perf_counter()
            train(cfg, data, idf, out, resume=False)
            return time.perf_counter() - t0

    wall(1, 1)  # warm-up
    fixed, ckpt = [], []
    for _ in range(reps):
        one, two, bare = wall(1, 1), wall(2, 1), wall(2, 100)  # F + S + C, F + 2S + 2C, F + 2S
        ckpt.append(max(0.0, two - bare))
        fixed.append(max(0.0, one - 2 * (two - one) + (two - bare)))  # F = (F+S+C) - (S+C) - S
    return sum(fixed) / reps, sum(ckpt) / reps


def step_seconds_per_query(model_name: str, max_length: int, group: int, mini: int, reps: int = 2) -> float:
    """Seconds of one training step per query (mini queries x group docs, forward + backward + AdamW)."""
    import numpy as np
    import torch

    from ifsr.core.encoder import load_tokenizer
    from ifsr.core.idf import load_idf
    from ifsr.data.beir import default_idf_path
    from ifsr.distill.student import build_student, mlm_dir
    from ifsr.distill.trainer import InferenceFreeDistillLoss
    from ifsr.exp.config import TrainConfig

    idf = load_idf(default_idf_path(), load_tokenizer(mlm_dir(model_name)))
    model = build_student(model_name, idf, "idf", max_length, seed=0)
    model.train()
    cfg = TrainConfig(max_length=max_length, n_neg=group - 1, lam=0.01, lambda_warmup_steps=0, student_temperature=1.0)
    loss = InferenceFreeDistillLoss(model, cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    docs = long_texts(mini * group)
    labels = torch.tensor(np.random.default_rng(0).random((mini, 2, group)), dtype=torch.float32)

    def once() -> float:
        feats = [model.preprocess([d[:60] for d in docs[:mini]], task="query")] + [
            model.preprocess(docs[g * mini:(g + 1) * mini], task="document") for g in range(group)]
        t0 = time.process_time()
        sum(loss(feats, labels).values()).backward()
        opt.step()
        opt.zero_grad()
        return time.process_time() - t0

    once()  # warm-up
    return min(once() for _ in range(reps)) / mini


@functools.lru_cache(maxsize=1)
def eval_query_columns():
    """The vocabulary ids of SciFact's test queries (the larger eval set; ifsr.core.encoder.query_columns)."""
    from ifsr.core.encoder import QueryEncoder, load_tokenizer, query_columns
    from ifsr.core.idf import load_idf
    from ifsr.data.beir import default_idf_path, load_beir
    from ifsr.distill.student import mlm_dir

    tok = load_tokenizer(mlm_dir("splade-tiny"))
    ds = load_beir("scifact")
    return query_columns(QueryEncoder(tok, load_idf(default_idf_path(), tok)).encode(list(ds.queries.values())))


def encode_seconds_per_doc(model_name: str, max_length: int, n: int, dense: bool, query_vocab: bool = False,
                           reps: int = 2) -> float:
    """Seconds to encode one long document: the dense teacher (SentenceTransformer), or the sparse MLM encoder of
    the evaluation (ifsr.core.encoder.DocumentEncoder), on every column or only the eval queries' (`query_vocab`)."""
    from ifsr.core.encoder import DocumentEncoder
    from ifsr.distill.teachers import DenseTeacher

    texts = long_texts(n)
    if dense:
        t = DenseTeacher(model_name, max_length=max_length, batch_size=n, show_progress=False)
        run = t.encode_docs
    else:
        enc = DocumentEncoder.from_pretrained(model_name, max_length=max_length)
        cols = eval_query_columns() if query_vocab else None
        run = lambda texts: enc.encode(texts, batch_size=n, show_progress=False, columns=cols)  # noqa: E731
    run(texts[:2])  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        run(texts)
        best = min(best, time.process_time() - t0)
    return best / n


def tokenize_seconds_per_text(model_name: str, max_length: int, n: int = 256) -> float:
    from ifsr.core.encoder import load_tokenizer
    from ifsr.distill.student import mlm_dir

    import random

    tok = load_tokenizer(mlm_dir(model_name))
    texts = random.Random(0).sample(list(scifact_texts()), n)  # typical lengths, not the longest
    tok(texts[:4], truncation=True, max_length=max_length)  # warm-up
    t0 = time.process_time()
    tok(texts, truncation=True, max_length=max_length)
    return (time.process_time() - t0) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="gpu-quick", help="a preset of configs/presets.yaml (default: gpu-quick)")
    ap.add_argument("--gpu-tflops", type=positive_float, default=100.0,
                    help="assumed effective device rate (TFLOP/s; default: 100)")
    ap.add_argument("--overhead-s", type=nonnegative_float, default=6.0,
                    help="seconds per notebook that do not speed up: kernel start, imports (default: 6)")
    ap.add_argument("--stage-s", type=nonnegative_float, default=None,
                    help="seconds per training stage outside its steps, checkpoints included (default: measured "
                         f"here on a miniature stage, x{STAGE_DEVICE_FACTOR:g})")
    ap.add_argument("--margin", type=positive_float, default=0.6,
                    help="the share of the window a blind first run may use (default: 0.6)")
    ap.add_argument("--step-floor-ms", type=nonnegative_float, default=10.0,
                    help="per optimizer step, not sped up (default: 10)")
    ap.add_argument("--window-s", type=positive_float, default=600.0, help="the device window (default: 600)")
    ap.add_argument("--mini", type=positive_int, default=2, help="queries of the timed CPU step (default: 2)")
    ap.add_argument("--unprepared", action="store_true",
                    help="plan the whole preset on the device (default: what is left after `gpu_replicate.sh "
                         "prepare`, which runs the baselines and the dense teacher's scoring here)")
    ap.add_argument("--mini-docs", type=positive_int, default=16,
                    help="documents of the timed CPU encoding (default: 16)")
    args = ap.parse_args(argv)
    anchor_to_repo()

    from ifsr.exp.work import preset_work

    try:  # the repository's presets and configs, wherever this runs from
        planned = preset_work(args.preset, root=REPO, prepared=not args.unprepared)
    except ValueError as e:  # an unknown preset, a bad presets.yaml or config: one line, exit 2
        print(f"gpu_plan: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    work, notebooks, stages = planned.items, planned.notebooks, planned.stages
    cpu = cpu_gemm_tflops()
    speedup = args.gpu_tflops / cpu
    trained = [w for w in work if w.kind == "train"]
    if args.stage_s is not None or not trained:
        stage_s, ckpt_s, stage_how = args.stage_s or 0.0, 0.0, "given"
    else:  # the student's own stage, at its training length
        fixed_cpu, ckpt_cpu = stage_seconds(trained[0].model, trained[0].max_length, trained[0].group)
        stage_s, ckpt_s = STAGE_DEVICE_FACTOR * fixed_cpu, STAGE_DEVICE_FACTOR * ckpt_cpu
        stage_how = (f"measured here {fixed_cpu:.1f} s a stage + {ckpt_cpu:.2f} s a checkpoint, "
                     f"x{STAGE_DEVICE_FACTOR:g}")
    print(f"preset {args.preset}: {notebooks} notebooks; CPU fp32 GEMM {cpu * 1e3:.0f} GFLOP/s per CPU second here; "
          f"assumed device {args.gpu_tflops:.0f} TFLOP/s effective -> speed-up {speedup:.0f}x; "
          f"{stage_s:.1f} s per training stage ({stage_how}), {args.overhead_s:.0f} s per notebook and "
          f"{args.step_floor_ms:.0f} ms per step not sped up; "
          f"tokenization at its CPU cost, each eval corpus once")
    print("the whole preset on the device" if args.unprepared else
          "left for the device after `scripts/gpu_replicate.sh prepare` (baselines and dense-teacher scores made here)")
    print(f"{'work':<8} {'model':<18} {'len':>4} {'batch':>9} {'count':>9} {'CPU s/unit':>11} {'CPU total s':>12} "
          f"{'GPU est s':>10}")
    total = 0.0
    for w in work:
        tok = tokenize_seconds_per_text(w.model, w.max_length)
        if w.kind == "train":
            per = step_seconds_per_query(w.model, w.max_length, w.group, args.mini) * w.batch_size
            shape = f"{w.batch_size}x{w.group}"
            unsped = tok * w.batch_size * (w.group + 1) + args.step_floor_ms / 1e3
        else:
            per = encode_seconds_per_doc(w.model, w.max_length, args.mini_docs, w.dense, w.query_vocab)
            shape = "qvocab" if w.query_vocab else "-"
            unsped = tok * w.tokenized / w.count  # an eval corpus is tokenized once for every student
        cpu_total = per * w.count
        gpu = cpu_total / speedup + unsped * w.count
        total += gpu
        print(f"{w.kind:<8} {w.model:<18} {w.max_length:>4} {shape:>9} {w.count:>9} {per:>11.4f} {cpu_total:>12.0f} "
              f"{gpu:>10.1f}")
    fixed = stage_s * stages + ckpt_s * planned.checkpoints + args.overhead_s * notebooks
    total += fixed
    share = total / args.window_s
    verdict = (f"fits, within the {args.margin:g} margin of a blind first run" if share <= args.margin else
               f"fits the window but NOT the {args.margin:g} margin of a blind first run" if share <= 1 else
               "does NOT fit")
    print(f"fixed: {stages} training stages x {stage_s:.1f} s + {planned.checkpoints} checkpoints x {ckpt_s:.2f} s "
          f"+ {notebooks} notebooks x {args.overhead_s:.0f} s = {fixed:.0f} s")
    print(f"estimated device time {total:.0f} s = {share:.2f} x the {args.window_s:.0f} s window: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
