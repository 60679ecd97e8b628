"""Training step cost: ifsr's training student vs sentence-transformers' own SPLADE pieces.

All run in sentence-transformers' SparseEncoderTrainer (ifsr does not have its own loop) on
splade-tiny with a frozen IDF query route, the same batches and the same settings:
  ifsr        the fused document module (ifsr.distill.student.FusedSpladeDocument) + ifsr's loss
              (per-batch min-max ensemble targets + IDF-aware FLOPS on documents);
  ifsr-inbatch  as `ifsr`, with in-batch negatives: every query scored against all batch documents,
              the teachers' cross-pair scores looked up from a bank of (random) teacher vectors;
  ifsr-dense  ST's Transformer(fill-mask) + SpladePooling(max) + ifsr's loss (isolates the fusion);
  st          ST's Transformer(fill-mask) + SpladePooling(max) + SpladeLoss(SparseDistillKLDivLoss)
              on precomputed targets with FlopsLoss on documents.
Each runs in its own process so peak memory (max RSS) is its own. Prints steps/s, peak memory and
the ratios to `st`.

    python benchmarks/train_step.py --steps 6 --batch-size 8 --max-length 128 [--docs 8]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from _args import anchor_to_repo, max_length, positive_int  # also puts this checkout first on sys.path

IMPLS = ("ifsr", "ifsr-inbatch", "ifsr-dense", "st")  # `st` last: the reference of the ratios


def one(impl: str, steps: int, batch_size: int, max_length: int, docs: int = 3) -> dict:
    import datasets
    import numpy as np
    import torch

    from ifsr.core.idf import load_idf
    from ifsr.core.encoder import load_tokenizer
    from ifsr.distill.student import build_student
    from ifsr.distill.trainer import InferenceFreeDistillLoss
    from ifsr.exp.config import TrainConfig
    from ifsr.data.beir import default_idf_path, load_beir

    torch.manual_seed(0)
    texts = load_beir("scifact").doc_texts()
    rng = np.random.default_rng(0)
    n = steps * batch_size
    pick = lambda: [texts[i] for i in rng.integers(0, len(texts), n)]  # noqa: E731
    rows = {"query": [t[:80] for t in pick()], **{f"doc_{k}": pick() for k in range(docs)}}
    labels = rng.random((n, 2, docs)).astype(np.float32)
    idf = load_idf(default_idf_path(), load_tokenizer("splade-tiny"))
    cfg = TrainConfig(steps=steps, batch_size=batch_size, max_length=max_length, lam=0.01, lambda_warmup_steps=1)
    model = build_student("splade-tiny", idf, "idf", max_length, seed=0, fused=impl in ("ifsr", "ifsr-inbatch"))
    if impl == "ifsr-inbatch":
        import dataclasses

        from ifsr.distill.teachers import Teacher, TeacherBank

        cfg = dataclasses.replace(cfg, in_batch_negatives=True)
        teachers = [Teacher(), Teacher()]  # the base class: dot products of the bank's vectors
        bank = TeacherBank(teachers, [rng.random((n, 64), dtype=np.float32)] * 2,
                           [rng.random((n * docs, 64), dtype=np.float32)] * 2, group=docs)
        loss = InferenceFreeDistillLoss(model, cfg, bank)
        rows["label"] = [lab + [[float(i)] + [0.0] * (docs - 1)] for i, lab in enumerate(labels.tolist())]  # with_row_index
    elif impl in ("ifsr", "ifsr-dense"):
        loss = InferenceFreeDistillLoss(model, cfg)
        rows["label"] = labels.tolist()
    else:
        from sentence_transformers.sparse_encoder.losses import SparseDistillKLDivLoss, SpladeLoss

        from ifsr.core.objective import teacher_targets

        loss = SpladeLoss(model, SparseDistillKLDivLoss(model, temperature=1.0), document_regularizer_weight=0.01,
                          query_regularizer_weight=None)
        rows["label"] = teacher_targets(torch.tensor(labels), "ensemble-minmax").tolist()  # precomputed
    from sentence_transformers import SparseEncoderTrainer, SparseEncoderTrainingArguments

    args = SparseEncoderTrainingArguments(
        output_dir="/tmp/ifsr_bench_train", max_steps=steps, per_device_train_batch_size=batch_size,
        learning_rate=2e-5, use_cpu=True, report_to="none", save_strategy="no", logging_steps=1000,
        disable_tqdm=True, seed=0,
        router_mapping={"query": "query", **{f"doc_{k}": "document" for k in range(docs)}})
    trainer = SparseEncoderTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_dict(rows), loss=loss)
    t = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t
    return {"impl": impl, "steps_per_s": steps / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=positive_int, default=6, help="optimizer steps timed (default: 6)")
    ap.add_argument("--batch-size", type=positive_int, default=8, help="queries per batch (default: 8)")
    ap.add_argument("--max-length", type=max_length, default=128, help="document tokens, 1..512 (default: 128)")
    ap.add_argument("--docs", type=positive_int, default=3,
                    help="documents per query, the positive and its negatives (default: 3; cpu's stage 2: 8)")
    ap.add_argument("--repeats", type=positive_int, default=2, help="runs of each implementation (default: 2)")
    ap.add_argument("--impl", choices=IMPLS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    anchor_to_repo()
    if args.impl:
        print(json.dumps(one(args.impl, args.steps, args.batch_size, args.max_length, args.docs)))
        return 0
    results = {impl: [] for impl in IMPLS}
    for _ in range(args.repeats):  # alternate, each in a fresh process
        for impl in IMPLS:
            child = subprocess.run([sys.executable, __file__, "--impl", impl, "--steps", str(args.steps),
                                    "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
                                    "--docs", str(args.docs)],
                                   capture_output=True, text=True)
            if child.returncode != 0:  # the child's own error, not a CalledProcessError traceback
                print(child.stderr[-3000:], file=sys.stderr, end="")
                print(f"train_step: error: the {impl} run failed (exit {child.returncode}); its stderr is above",
                      file=sys.stderr)
                return 1
            results[impl].append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(f"batch {args.batch_size} queries x {args.docs} documents, max length {args.max_length}, {args.steps} steps")
    for impl, rs in results.items():
        sps = sorted(r["steps_per_s"] for r in rs)[len(rs) // 2]
        mem = max(r["peak_rss_mb"] for r in rs)
        print(f"{impl:>5}: {sps:.3f} steps/s, peak RSS {mem:.0f} MB")
    for impl in IMPLS[:-1]:
        ratios = [a["steps_per_s"] / b["steps_per_s"] for a, b in zip(results[impl], results["st"])]
        mem = [a["peak_rss_mb"] / b["peak_rss_mb"] for a, b in zip(results[impl], results["st"])]
        print(f"steps/s ratio {impl} / st: {sorted(ratios)[len(ratios) // 2]:.3f} "
              f"(per pair: {', '.join(f'{r:.3f}' for r in ratios)}); peak memory ratio {max(mem):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
