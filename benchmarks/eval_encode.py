"""Evaluation encoding (issue 27): the documents on the evaluation queries' vocabulary vs every column, and
against another checkout of ifsr (e.g. the commit before the batched head), at 128 and 512 tokens.

Variants, on the same documents (a fixed sample of SciFact's corpus), alternated A B C A B C so a shared
machine's drift hits each:
  full       DocumentEncoder.encode: every vocabulary column (indexing, export, latency)
  queries    DocumentEncoder.encode(columns=query_columns(q)): the columns SciFact's test queries use
  reference  --reference DIR: that checkout's DocumentEncoder.encode (every column), in a subprocess
Prints the median time of each, docs/s, and the speed-up of each against `reference` (or `full`), and checks
that `queries` equals `full` on its columns bit for bit.

    git worktree add /tmp/ifsr-base 5d71e98
    python benchmarks/eval_encode.py --docs 256 --lengths 128 512 --repeats 3 --reference /tmp/ifsr-base
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _args import anchor_to_repo, positive_int as positive  # also puts this checkout first on sys.path

CHILD = """
import sys, time, json
sys.path.insert(0, {repo!r})
from ifsr.core.encoder import DocumentEncoder
texts = json.load(open({texts!r}))
doc = DocumentEncoder.from_pretrained("splade-tiny", max_length={length})
doc.encode(texts[:8], show_progress=False)  # warm-up
t = time.perf_counter(); doc.encode(texts, batch_size={batch}, show_progress=False); print(time.perf_counter() - t)
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=positive, default=256, help="documents (a fixed sample of SciFact; default 256)")
    ap.add_argument("--lengths", type=positive, nargs="+", default=[128, 512], help="max lengths (default 128 512)")
    ap.add_argument("--batch-size", type=positive, default=32, help="documents per batch (default 32)")
    ap.add_argument("--repeats", type=positive, default=3, help="timed runs of each variant (default 3)")
    ap.add_argument("--reference", default=None, help="another ifsr checkout to time as `reference` (default: none)")
    ap.add_argument("--data-dir", default=None, help="data directory (default: ifsr.data.beir.find_data_dir)")
    args = ap.parse_args(argv)
    if args.reference is not None and not (Path(args.reference) / "ifsr" / "core" / "encoder.py").is_file():
        ap.error(f"--reference {args.reference}: not an ifsr checkout (no ifsr/core/encoder.py)")
    if any(n > 512 for n in args.lengths):
        ap.error(f"--lengths: at most 512 (BERT's positions), got {args.lengths}")
    anchor_to_repo()

    import json
    import tempfile

    from ifsr.core.encoder import DocumentEncoder, QueryEncoder, query_columns
    from ifsr.core.idf import load_idf
    from ifsr.data.beir import default_idf_path, load_beir

    ds = load_beir("scifact", split="test", data_dir=args.data_dir)
    texts = ds.doc_texts()
    pick = np.sort(np.random.default_rng(0).choice(len(texts), size=min(args.docs, len(texts)), replace=False))
    texts = [texts[i] for i in pick]
    base = DocumentEncoder.from_pretrained("splade-tiny")
    q = QueryEncoder(base.tokenizer, load_idf(default_idf_path(args.data_dir), base.tokenizer))
    cols = query_columns(q.encode([ds.queries[i] for i in ds.query_ids]))
    print(f"{len(texts)} SciFact documents, batch {args.batch_size}, {len(cols)} query columns of "
          f"{base.mlm.config.vocab_size} ({len(cols) / base.mlm.config.vocab_size:.1%})")
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts))
        for length in args.lengths:
            doc = base.with_max_length(length)
            runs = {"full": lambda: doc.encode(texts, batch_size=args.batch_size, show_progress=False),
                    "queries": lambda: doc.encode(texts, batch_size=args.batch_size, show_progress=False, columns=cols)}
            full, part = runs["full"](), runs["queries"]()  # warm-up and the exactness check
            same = (full[:, cols] != part[:, cols]).nnz == 0 and part.nnz == full[:, cols].nnz
            times: dict[str, list[float]] = {k: [] for k in (["reference"] if args.reference else []) + list(runs)}
            for _ in range(args.repeats):
                if args.reference:
                    code = CHILD.format(repo=str(Path(args.reference).resolve()), texts=str(texts_file), length=length,
                                        batch=args.batch_size)
                    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
                    times["reference"].append(float(out.stdout.strip().splitlines()[-1]))
                for name, fn in runs.items():
                    t = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t)
            med = {k: statistics.median(v) for k, v in times.items()}
            ref = "reference" if args.reference else "full"
            print(f"max_length {length}: query columns equal to the full vectors bit for bit: {same}")
            for name, v in med.items():
                print(f"  {name:>9}: median {v:7.2f} s ({len(texts) / v:6.1f} docs/s), speed-up vs {ref} "
                      f"{med[ref] / v:5.2f}x (runs {', '.join(f'{x:.2f}' for x in times[name])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
