"""`ifsr` command line: one subcommand = one run_<name> function and its row in COMMANDS.

    ifsr evaluate --model PATH_OR_NAME --data DIR_OR_NAME [--split test] [--idf PATH] --json OUT
    ifsr baselines [--preset smoke] [--datasets scifact cranfield] [--out-dir DIR]
    ifsr replicate --preset smoke [--force] [--only 02_idf_flops]
  train your own (README "Train your own"):
    ifsr idf --corpus DIR_OR_JSONL [--tokenizer splade-tiny] --out idf.json [--force]
    ifsr train --config configs/examples/train_scifact_tiny.yaml
    ifsr export --model DIR --format opensearch|sentence-transformers --out DIR [--corpus DIR] [--force]
    ifsr index --model DIR --corpus DIR [--engine pisa|exact|seismic] --out DIR [--force]
    ifsr search --index DIR --query TEXT [-k 10]

Add a subcommand by writing its run function and listing it, its help and its arguments in COMMANDS.
The work of the train-your-own commands and the input checks live in `ifsr.cli_steps`. Heavy modules
are imported inside the run functions, so a bad flag is refused at once, before any model is loaded.
Every refused input: one line `ifsr <command>: error: ...` on stderr, exit code 2 (`main`); Ctrl-C: one line,
exit code 130. Every flag has help text and shows its default (`HelpFormatter`).
"""
# Over 300 lines: one run_<name> per subcommand beside its argparse rows: a flag stays next to the work it feeds.
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from ifsr import cli_steps as steps
from ifsr.core.names import MAX_LENGTH
from ifsr.data.beir import CACHE_DIR
from ifsr.exp.config import PRESETS  # BaselinesConfig presets (no torch)

DATA_DIR_HELP = "data root holding beir/, idf/, pairs/ (default: $IFSR_DATA_DIR, else ./data)"
IDF_FILE = "an idf.json file (a JSON object of token -> idf)"


def _self_hits(value: str) -> bool | None:
    return {"auto": None, "on": True, "off": False}[value]


def run_evaluate(args: argparse.Namespace) -> int:
    steps.check_model_idf(args.model, args.idf, "evaluate")  # --idf with a model that carries its own: refused
    steps.check_max_length(args.model, args.max_length)
    cache_dir = steps.cache_dir_of(args.cache_dir, args.no_cache)
    if args.json:
        steps.check_out_file(args.json, "--json")
    from ifsr.distributed import init_from_env
    from ifsr.eval.evaluate import check_depth, evaluate_model
    from ifsr.manifest import atomic_write

    check_depth(args.k, "--k")

    rank, _ = init_from_env()  # under torchrun: the corpus encoding is split over the processes
    res = evaluate_model(args.model, args.data, split=args.split, idf_path=args.idf, max_length=args.max_length,
                         k=args.k, self_hits=_self_hits(args.self_hits), cache_dir=cache_dir,
                         data_dir=args.data_dir, batch_size=args.batch_size, show_progress=not args.quiet)
    res.update(steps.idf_record(args.model, args.idf))
    if rank != 0:
        return 0
    print(f"{res['dataset']}/{res['split']}: nDCG@10={res['nDCG@10']:.4f} R@100={res['R@100']:.4f} "
          f"flops={res['flops']:.3f} doc_nnz={res['doc_nnz']:.1f} query_nnz={res['query_nnz']:.1f} "
          f"({res['n_queries']} queries, {res['n_docs']} docs)")
    for note in res["warnings"]:
        print(f"ifsr evaluate: warning: {note}", file=sys.stderr)
    if args.json:
        atomic_write(Path(args.json), (json.dumps(res, indent=2) + "\n").encode("utf-8"))
    return 0


def run_baselines(args: argparse.Namespace) -> int:
    from ifsr.eval.baselines import baselines
    from ifsr.exp.config import preset_config
    from ifsr.tables import attrs_provenance, markdown_table, write_table

    config = preset_config(args.preset, datasets=args.datasets, corpus_limit=args.corpus_limit,
                           max_length=args.max_length, out_dir=args.out_dir, cache_dir=args.cache_dir,
                           data_dir=args.data_dir)
    steps.check_writable_dir(config.out_dir, "--out-dir")  # before minutes of scoring, not after
    if config.cache_dir is not None:
        steps.check_writable_dir(config.cache_dir, "--cache-dir")
    df = baselines(config)
    out = write_table(df, config, config.out_dir, "table", **attrs_provenance(df))
    print(markdown_table(df), end="")
    print(f"wrote {out}")
    return 0


def run_replicate(args: argparse.Namespace) -> int:
    from ifsr.replicate import replicate

    replicate(args.preset, root=args.root, force=args.force, data_dir=args.data_dir, only=args.only)
    return 0


def run_idf(args: argparse.Namespace) -> int:
    out = steps.check_out_file(args.out, "--out", new=not args.force)
    info = steps.compute_idf(args.corpus, args.tokenizer, out, limit=args.limit, show_progress=not args.quiet,
                             force=args.force)
    print(f"wrote {out}: idf of {info['vocab']} tokens over {info['n_docs']} documents "
          f"({info['seen']} seen; unseen tokens get 1.0)")
    return 0


def run_train(args: argparse.Namespace) -> int:
    run = steps.train_from_config(args.config, data_dir=args.data_dir, runs_dir=args.runs_dir,
                                  cache_dir=args.cache_dir)
    from ifsr.distributed import is_main

    if not is_main():  # under torchrun rank 0 reports
        return 0
    print(f"model: {run.model_dir}")
    print(f"training config (tau resolved): {run.model_dir.parent / 'train_config.yaml'}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    steps.export_index_name(args.corpus, args.index_name)  # before the --out folder is made
    steps.check_model_idf(args.model, args.idf, "export")
    steps.check_max_length(args.model, args.max_length)
    cache_dir = steps.cache_dir_of(args.cache_dir, args.no_cache)
    out = steps.check_writable_dir(args.out, "--out", empty=not args.force)
    written = steps.export_model(args.model, args.format, out, idf=args.idf, max_length=args.max_length,
                                 corpus=args.corpus, limit=args.limit, index_name=args.index_name,
                                 batch_size=args.batch_size, show_progress=not args.quiet, force=args.force,
                                 cache_dir=cache_dir)
    for what, path in written.items():
        print(f"{what}: {path}")
    return 0


def run_index(args: argparse.Namespace) -> int:
    engine = args.engine or steps.default_engine()
    steps.check_engine(engine)
    steps.check_model_idf(args.model, args.idf, "index")
    steps.check_max_length(args.model, args.max_length)
    cache_dir = steps.cache_dir_of(args.cache_dir, args.no_cache)
    out = steps.check_writable_dir(args.out, "--out", empty=not args.force)
    meta = steps.build_index(args.model, args.corpus, engine, out, idf=args.idf, max_length=args.max_length,
                             limit=args.limit, batch_size=args.batch_size, show_progress=not args.quiet,
                             force=args.force, cache_dir=cache_dir)
    print(f"index: {out} ({meta['engine']}, {meta['n_docs']} documents, {meta['doc_nnz']:.1f} terms a document)")
    return 0


def run_search(args: argparse.Namespace) -> int:
    hits, approximate = steps.search_index(args.index, args.query, args.k)
    if approximate:
        print("note: this engine is approximate: the hits may differ from exact scoring", file=sys.stderr)
    for rank, (doc_id, score) in enumerate(hits, 1):
        print(f"{rank}\t{doc_id}\t{score:.4f}")
    if not hits:
        print("no hits (no query token is in the index)", file=sys.stderr)
    return 0


Arguments = dict[str, dict[str, Any]]  # flag -> argparse.add_argument keywords


def _preset_names() -> str:
    """The presets of this checkout's configs/presets.yaml (what `replicate --preset` accepts with --root .)."""
    try:
        names = list(yaml.safe_load((REPO / "configs" / "presets.yaml").read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, TypeError):
        return "a preset of <root>/configs/presets.yaml"
    return " | ".join(names) + " (<root>/configs/presets.yaml)"


REPO = Path(__file__).resolve().parents[1]
MODEL_HELP = "saved ifsr model dir (SparseEncoder or OpenSearch layout), or an MLM name/path with --idf"
CORPUS_HELP = 'BEIR directory (corpus.jsonl), or a JSONL file with a "text" field (and "_id", each once)'
FORCE_HELP = "replace an existing output (default: refuse it)"
MAX_LENGTH_HELP = ("document max tokens (default: the model's own: the length a saved model was trained or exported "
                   f"with, else {MAX_LENGTH}; the same for evaluate, export and index)")
CACHE_ARGS: Arguments = {  # the one corpus encoding of evaluate, export --corpus and index
    "--cache-dir": {"default": None, "help": "cache the corpus encoding here, shared by evaluate, export and index: "
                                             "one entry per model weights, corpus texts and max length (default: "
                                             f"$IFSR_CACHE_DIR, else {CACHE_DIR})"},
    "--no-cache": {"action": "store_true", "help": "encode the corpus without reading or writing the cache"}}
ENCODE_ARGS: Arguments = {  # the document side of export --corpus and index
    "--idf": {"default": None, "help": f"{IDF_FILE} to pair with a bare MLM (refused with a saved model; "
                                       "default: the saved model's own)"},
    "--max-length": {"type": int, "default": None, "help": MAX_LENGTH_HELP},
    "--limit": {"type": int, "default": None, "help": "only the first N documents of --corpus (default: all)"},
    "--batch-size": {"type": int, "default": 32, "help": "documents encoded at once"},
    "--force": {"action": "store_true", "help": "replace a non-empty --out (default: refuse it)"},
    **CACHE_ARGS,
    "--quiet": {"action": "store_true", "help": "no progress bars"}}

# Subcommands in help order: (name, run function, help, arguments). Every flag has help text; its default is
# shown by HelpFormatter below, or said in the text where the default is not a plain value (None: "default: ...").
COMMANDS: list[tuple[str, Callable[[argparse.Namespace], int], str, Arguments]] = [
    ("replicate", run_replicate, "run every notebook of a preset with papermill into results/<preset>/", {
        "--preset": {"required": True, "help": _preset_names()},
        "--force": {"action": "store_true", "help": "redo notebooks whose results are already finished"},
        "--only": {"nargs": "+", "default": None, "metavar": "NOTEBOOK",
                   "help": "only these entries of the preset, e.g. 02_idf_flops (default: every one)"},
        "--data-dir": {"default": None, "help": DATA_DIR_HELP},
        "--root": {"default": ".", "help": "the repository root (notebooks/, configs/, results/)"}}),
    ("evaluate", run_evaluate, "nDCG@10, R@100 and sparsity of an inference-free model on a BEIR split", {
        "--model": {"required": True, "help": MODEL_HELP},
        "--data": {"required": True, "help": "BEIR directory, or a set name under <data-dir>/beir"},
        "--split": {"default": "test", "help": "qrels split: <data>/qrels/<split>.tsv"},
        "--idf": {"default": None, "help": f"{IDF_FILE} to pair with a bare MLM (refused with a saved model; "
                                           "default: the saved model's own)"},
        "--max-length": {"type": int, "default": None, "help": MAX_LENGTH_HELP},
        "--k": {"type": int, "default": 100, "help": "retrieval depth (at least 100, the depth of R@100)"},
        "--self-hits": {"choices": ["auto", "on", "off"], "default": "auto",
                        "help": "drop hits whose doc id equals the query id (auto: only ArguAna, Quora)"},
        **CACHE_ARGS,
        "--data-dir": {"default": None, "help": DATA_DIR_HELP},
        "--batch-size": {"type": int, "default": 32, "help": "documents encoded at once"},
        "--json": {"default": None, "help": "write the result dict here, with the IDF file's sha256 (default: none)"},
        "--quiet": {"action": "store_true", "help": "no progress bars"}}),
    ("baselines", run_baselines, "BM25, teachers, ensembles and the untrained inference-free model", {
        "--preset": {"default": "smoke", "choices": list(PRESETS),
                     "help": "smoke: 300-doc corpora; the others: whole corpora"},
        "--datasets": {"nargs": "+", "default": None, "help": "BEIR set names (default: scifact cranfield)"},
        "--corpus-limit": {"type": int, "default": None,
                           "help": "first N documents of each corpus (default: the preset's, smoke 300, else all)"},
        "--max-length": {"type": int, "default": None, "help": "document max tokens (default: 256)"},
        "--out-dir": {"default": None, "help": "folder of the table (default: results/smoke/baselines)"},
        "--cache-dir": {"default": None, "help": "cache encodings and teacher scores here (default: .cache/ifsr)"},
        "--data-dir": {"default": None, "help": DATA_DIR_HELP}}),
    ("idf", run_idf, "IDF table of a corpus: ln(1 + (N - df + 0.5) / (df + 0.5)) per token, unseen 1.0", {
        "--corpus": {"required": True, "help": CORPUS_HELP},
        "--tokenizer": {"default": "splade-tiny", "help": "tokenizer name/path (splade-tiny: bert-base-uncased's)"},
        "--out": {"required": True, "help": "idf.json to write (atomically); refused if it exists, unless --force"},
        "--limit": {"type": int, "default": None, "help": "only the first N documents (default: all)"},
        "--force": {"action": "store_true", "help": "replace an existing --out (default: refuse it)"},
        "--quiet": {"action": "store_true", "help": "no progress bar"}}),
    ("train", run_train, "train an inference-free student from a config (pre-training if set, then fine-tuning)", {
        "--config": {"required": True, "help": "AblationConfig YAML, e.g. configs/examples/train_scifact_tiny.yaml"},
        "--runs-dir": {"default": None, "help": "override the config's runs_dir (default: the config's)"},
        "--cache-dir": {"default": None, "help": "override the config's cache_dir (default: the config's)"},
        "--data-dir": {"default": None, "help": DATA_DIR_HELP}}),
    ("export", run_export, "write a model as OpenSearch or sentence-transformers files (+ a corpus's bulk file)", {
        "--model": {"required": True, "help": MODEL_HELP},
        "--format": {"required": True, "choices": ["opensearch", "sentence-transformers"], "help": "the layout"},
        "--out": {"required": True, "help": "new or empty directory (written aside, then renamed)"},
        "--corpus": {"default": None, "help": f"also encode this corpus into <out>/bulk (mapping.json, bulk.ndjson): "
                                              f"{CORPUS_HELP} (default: none)"},
        "--index-name": {"default": None, "help": "OpenSearch index name in the bulk file: lowercase, no spaces, none "
                                                  "of \\/*?\"<>|,#: (default: the corpus name)"},
        **ENCODE_ARGS}),
    ("index", run_index, "encode a corpus and build a search index folder", {
        "--model": {"required": True, "help": MODEL_HELP},
        "--corpus": {"required": True, "help": CORPUS_HELP},
        "--engine": {"choices": ["exact", "pisa", "seismic"], "default": None,
                     "help": "exact | pisa | seismic (approximate) (default: pisa if pyterrier-pisa is installed, "
                             "else exact)"},
        "--out": {"required": True, "help": "new or empty directory (written aside, then renamed)"},
        **ENCODE_ARGS}),
    ("search", run_search, "top-k documents of a query on an `ifsr index` folder (IDF query side, no model)", {
        "--index": {"required": True, "help": "folder written by `ifsr index`"},
        "--query": {"required": True, "help": "the query text"},
        "-k": {"type": int, "default": 10, "help": "hits to print"}}),
]


class HelpFormatter(argparse.HelpFormatter):
    """Each flag's help ends with its default, unless the flag is required, an on/off switch, or the help
    already says its default (flags whose default is None say what None means)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_ = action.help or ""
        if (action.required or "default" in help_ or action.default in (None, argparse.SUPPRESS)
                or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))):
            return help_
        return f"{help_} (default: %(default)s)"


# Bad inputs reported as `ifsr <command>: error: ...` (exit 2). Not every exception: a bug must still
# show its traceback. InputError (ifsr.cli_steps) is a ValueError.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
               PermissionError, yaml.YAMLError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ifsr", description="inference-free learned sparse retrieval kit")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_, arguments in COMMANDS:
        p = sub.add_parser(name, help=help_, description=help_, formatter_class=HelpFormatter)
        for flag, kwargs in arguments.items():
            p.add_argument(flag, **kwargs)
        p.set_defaults(func=func)
    return parser


def _quiet_stdout() -> None:
    """After a broken pipe (`ifsr search ... | head`): point stdout at /dev/null, so that the flush at
    exit does not raise again (Python's documented recipe, docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (e.g. captured in tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand. A user error is one line and exit 2 (USER_ERRORS, and any other OSError: a
    read-only folder, a model or tokenizer name that cannot be fetched offline); Ctrl-C is one line and
    exit 130; a reader that closes the pipe early (`| head`) ends it quietly (exit 141, as SIGPIPE would)."""
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a reader gone (`| head`) shows here, not in the flush at exit
        return code
    except KeyboardInterrupt:
        print(f"ifsr {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 141
    except (*USER_ERRORS, OSError) as e:
        message = " ".join(str(e).split())  # one line (YAML errors span several)
        print(f"ifsr {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
