"""`ifsr` command line: one subcommand = one run_<name> function and its row in COMMANDS.

    ifsr evaluate --model PATH_OR_NAME --data DIR_OR_NAME [--split test] [--idf PATH] --json OUT
    ifsr baselines [--preset smoke] [--datasets scifact cranfield] [--out-dir DIR]
    ifsr replicate --preset smoke [--force] [--only 01_idf_flops]

Add a subcommand by writing its run function and listing it, its help and its arguments in COMMANDS.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ifsr.eval.baselines import baselines
from ifsr.eval.evaluate import evaluate_model
from ifsr.exp.config import preset_config
from ifsr.replicate import replicate
from ifsr.report.tables import attrs_provenance, markdown_table, write_table

DATA_DIR_HELP = "data root holding beir/, idf/, pairs/ (default: $IFSR_DATA_DIR, else ./data)"


def _self_hits(value: str) -> bool | None:
    return {"auto": None, "on": True, "off": False}[value]


def run_evaluate(args: argparse.Namespace) -> int:
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


def run_baselines(args: argparse.Namespace) -> int:
    config = preset_config(args.preset, datasets=args.datasets, corpus_limit=args.corpus_limit,
                           max_length=args.max_length, out_dir=args.out_dir, cache_dir=args.cache_dir,
                           data_dir=args.data_dir)
    df = baselines(config)
    out = write_table(df, config, config.out_dir, "table", **attrs_provenance(df))
    print(markdown_table(df), end="")
    print(f"wrote {out}")
    return 0


def run_replicate(args: argparse.Namespace) -> int:
    replicate(args.preset, root=args.root, force=args.force, data_dir=args.data_dir, only=args.only)
    return 0


Arguments = dict[str, dict[str, Any]]  # flag -> argparse.add_argument keywords

# Subcommands in help order: (name, run function, help, arguments).
COMMANDS: list[tuple[str, Callable[[argparse.Namespace], int], str, Arguments]] = [
    ("replicate", run_replicate, "run every notebook of a preset with papermill into results/<preset>/", {
        "--preset": {"required": True, "help": "smoke | cpu | gpu (configs/presets.yaml)"},
        "--force": {"action": "store_true", "help": "redo notebooks whose results are already finished"},
        "--only": {"nargs": "+", "default": None, "metavar": "NOTEBOOK", "help": "e.g. 01_idf_flops"},
        "--data-dir": {"default": None, "help": DATA_DIR_HELP},
        "--root": {"default": ".", "help": "the repository root (notebooks/, configs/, results/)"}}),
    ("evaluate", run_evaluate, "nDCG@10, R@100 and sparsity of an inference-free model on a BEIR split", {
        "--model": {"required": True, "help": "saved ifsr model dir, or an MLM name/path with --idf"},
        "--data": {"required": True, "help": "BEIR directory, or a set name under <data-dir>/beir"},
        "--split": {"default": "test"},
        "--idf": {"default": None, "help": "idf.json to pair with a bare MLM"},
        "--max-length": {"type": int, "default": 256, "help": "document max tokens (SPEC: 512; presets cut it)"},
        "--k": {"type": int, "default": 100, "help": "retrieval depth"},
        "--self-hits": {"choices": ["auto", "on", "off"], "default": "auto",
                        "help": "drop hits whose doc id equals the query id (auto: only ArguAna, Quora)"},
        "--cache-dir": {"default": None, "help": "cache document encodings here"},
        "--data-dir": {"default": None, "help": DATA_DIR_HELP},
        "--batch-size": {"type": int, "default": 32},
        "--json": {"default": None, "help": "write the result dict here"},
        "--quiet": {"action": "store_true", "help": "no progress bars"}}),
    ("baselines", run_baselines, "BM25, teachers, ensembles and the untrained inference-free model", {
        "--preset": {"default": "smoke", "help": "smoke (300-doc corpora), cpu or gpu"},
        "--datasets": {"nargs": "+", "default": None},
        "--corpus-limit": {"type": int, "default": None},
        "--max-length": {"type": int, "default": None},
        "--out-dir": {"default": None},
        "--cache-dir": {"default": None},
        "--data-dir": {"default": None, "help": DATA_DIR_HELP}}),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ifsr", description="inference-free learned sparse retrieval kit")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_, arguments in COMMANDS:
        p = sub.add_parser(name, help=help_)
        for flag, kwargs in arguments.items():
            p.add_argument(flag, **kwargs)
        p.set_defaults(func=func)
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
