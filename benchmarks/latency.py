"""Latency benchmark: inference-free vs BM25 vs siamese on the same engine, per corpus size.

    python benchmarks/latency.py --sizes scifact real 1000000 --n-queries 300 --cache-dir ~/.cache/ifsr

Prints the table, then for every corpus size the p50 ratios inference-free / BM25 (same engine:
PISA) and siamese / inference-free. The paper's target: inference-free <= 1.1x BM25.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ifsr.serving.engines import ENGINES  # noqa: E402
from ifsr.serving.latency import SYSTEMS, latency_plot, latency_ratios, measure_latency  # noqa: E402


def size_arg(text: str) -> str | int:
    if text in ("scifact", "real"):
        return text
    try:
        value = int(float(text))  # accepts 1e6
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is 'scifact', 'real' or a number of documents, got {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a size must be positive, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="default $IFSR_DATA_DIR or data (ifsr.data.beir.data_dir)")
    ap.add_argument("--sizes", nargs="+", type=size_arg, default=["scifact", "real"],
                    help="'scifact', 'real' (all real passages) or N (resampled, see --resample-from)")
    ap.add_argument("--n-queries", type=int, default=300)
    ap.add_argument("--cache-dir", default=None, help="vectors + indexes (default $IFSR_CACHE_DIR or .cache/ifsr)")
    ap.add_argument("--engines", nargs="+", choices=list(ENGINES), default=["pisa"])
    ap.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    ap.add_argument("--model", default="splade-tiny")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--max-passages", type=int, default=None,
                    help="cap the pair passages of 'real' (a partial corpus when encoding all is too slow)")
    ap.add_argument("--resample-from", choices=["real", "scifact"], default="real",
                    help="corpus the integer sizes are resampled from ('scifact' needs only SciFact encoded)")
    ap.add_argument("--algorithm", default="maxscore", help="PISA query algorithm, the same for every system")
    ap.add_argument("--doc-scale", type=float, default=100.0)
    ap.add_argument("--query-scale", type=float, default=10.0)
    ap.add_argument("--min-query-idf", type=float, default=0.0, help="prune inference-free query tokens below this idf")
    ap.add_argument("--max-query-terms", type=int, default=None, help="keep this many highest-idf query tokens")
    ap.add_argument("--no-fold-idf", dest="fold_idf", action="store_false",
                    help="inference-free on the plain index with integer query weights (default: idf folded "
                         "into the impacts, binary query)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: elapsed time; cpu: thread CPU time (steadier on a loaded shared machine)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the table as CSV")
    ap.add_argument("--plot", default=None, help="write p50 vs corpus size as PNG")
    args = ap.parse_args(argv)

    cache = Path(args.cache_dir).expanduser() if args.cache_dir else None
    df = measure_latency(args.data_dir, args.sizes, args.n_queries, args.engines, args.systems, args.model,
                         cache_dir=cache, max_length=args.max_length, max_passages=args.max_passages,
                         resample_from=args.resample_from, seed=args.seed, algorithm=args.algorithm,
                         doc_scale=args.doc_scale,
                         query_scale=args.query_scale, min_query_idf=args.min_query_idf,
                         max_query_terms=args.max_query_terms, fold_idf=args.fold_idf, repeats=args.repeats,
                         clock=args.clock)
    other = "cpu_p50_ms" if args.clock == "wall" else "wall_p50_ms"
    cols = ["engine", "system", "docs", "resampled", "p50_ms", "p90_ms", "p99_ms", "qps", other, "top10_agreement",
            "postings_per_query"]
    print(df[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print()
    print(f"clock: {args.clock} (p50/p90/p99/qps); {other}: the other clock")
    for _, row in latency_ratios(df).iterrows():
        parts = [f"{row['engine']:8s} docs={int(row['docs']):>9,}"]
        if "if_over_bm25" in row:
            bm25 = "BM25" if row["engine"] == "pisa" else "PISA BM25"
            parts.append(f"inference-free/{bm25} p50 = {row['if_over_bm25']:.2f}x")
        if "siamese_over_if" in row:
            parts.append(f"siamese/inference-free p50 = {row['siamese_over_if']:.2f}x")
        print("  ".join(parts))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)
    if args.plot:
        latency_plot(df, args.plot)


if __name__ == "__main__":
    main()
