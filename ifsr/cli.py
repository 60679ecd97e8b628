"""`ifsr` command line. One subcommand = one `add_<name>(subparsers)` that registers its arguments
and sets `func`; add a new one by writing that function and listing it in COMMANDS.

    ifsr evaluate --model PATH_OR_NAME --data DIR_OR_NAME [--split test] [--idf PATH] --json OUT
    ifsr baselines [--preset smoke] [--datasets scifact cranfield] [--out-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def _self_hits(value: str) -> bool | None:
    return {"auto": None, "on": True, "off": False}[value]


def run_evaluate(args: argparse.Namespace) -> int:
    from ifsr.eval.evaluate import evaluate_model

    res = evaluate_model(args.model, args.data, split=args.split, idf_path=args.idf, max_length=args.max_length,
                         k=args.k, self_hits=_self_hits(args.self_hits), cache_dir=args.cache_dir,
                         data_dir=args.data_dir, batch_size=args.batch_size, show_progress=not args.quiet)
    print(f"{res['dataset']}/{res['split']}: nDCG@10={res['nDCG@10']:.4f} R@100={res['R@100']:.4f} "
          f"flops={res['flops']:.3f} doc_nnz={res['doc_nnz']:.1f} query_nnz={res['query_nnz']:.1f} "
          f"({res['n_queries']} queries, {res['n_docs']} docs)")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="nDCG@10, R@100 and sparsity of an inference-free model on a BEIR split")
    p.add_argument("--model", required=True, help="saved ifsr model dir, or an MLM name/path with --idf")
    p.add_argument("--data", required=True, help="BEIR directory, or a set name under <data-dir>/beir")
    p.add_argument("--split", default="test")
    p.add_argument("--idf", default=None, help="idf.json to pair with a bare MLM")
    p.add_argument("--max-length", type=int, default=256, help="document max tokens (SPEC: 512; presets cut it)")
    p.add_argument("--k", type=int, default=100, help="retrieval depth")
    p.add_argument("--self-hits", choices=["auto", "on", "off"], default="auto",
                   help="drop hits whose doc id equals the query id (auto: only ArguAna, Quora)")
    p.add_argument("--cache-dir", default=None, help="cache document encodings here")
    p.add_argument("--data-dir", default=None, help="data directory (default $IFSR_DATA_DIR, else ./data)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", default=None, help="write the result dict here")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_evaluate)


def run_baselines(args: argparse.Namespace) -> int:
    from ifsr.eval.evaluate import baselines, markdown_table, preset_config, write_baselines

    config = preset_config(args.preset, datasets=args.datasets, corpus_limit=args.corpus_limit,
                           max_length=args.max_length, out_dir=args.out_dir, cache_dir=args.cache_dir,
                           data_dir=args.data_dir)
    df = baselines(config)
    out = write_baselines(df, config)
    print(markdown_table(df), end="")
    print(f"wrote {out}")
    return 0


def add_baselines(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("baselines", help="BM25, teachers, ensembles and the untrained inference-free model")
    p.add_argument("--preset", default="smoke", help="smoke (300-doc corpora), cpu or gpu")
    p.add_argument("--datasets", nargs="+", default=None)
    p.add_argument("--corpus-limit", type=int, default=None)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--out-dir", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=run_baselines)


def run_replicate(args: argparse.Namespace) -> int:
    from ifsr.replicate import replicate

    replicate(args.preset, root=args.root, force=args.force, data_dir=args.data_dir, only=args.only)
    return 0


def add_replicate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replicate", help="run every notebook of a preset with papermill into results/<preset>/")
    p.add_argument("--preset", required=True, help="smoke | cpu | gpu (configs/presets.yaml)")
    p.add_argument("--force", action="store_true", help="redo notebooks whose results are already finished")
    p.add_argument("--only", nargs="+", default=None, metavar="NOTEBOOK", help="e.g. 01_idf_flops")
    p.add_argument("--data-dir", default=None, help="data root (default: $IFSR_DATA_DIR or ./data)")
    p.add_argument("--root", default=".", help="the repository root (notebooks/, configs/, results/)")
    p.set_defaults(func=run_replicate)


# Subcommands, in help order.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_replicate, add_evaluate, add_baselines]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ifsr", description="inference-free learned sparse retrieval kit")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"ifsr {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
