"""Latency benchmark: inference-free vs BM25 vs siamese per engine setting and corpus size, and the levers.

    python benchmarks/latency.py --sizes scifact real 1000000 --n-queries 300 \
        --engines pisa "pisa(algorithm=block_max_wand)" bmp "bmp(bsize=64,alpha=0.9)" \
        --levers none query-top-k=8 doc-top-k=64 lambda=0.08 --lever-engine bmp --lever-size real \
        --lever-students configs/cpu.yaml

Prints the table, then per corpus size and engine setting: inference-free / BM25 p50 on the same engine,
inference-free / the fastest BM25 of that size (95% intervals over queries), siamese / inference-free,
top-10 agreement with exact scoring and the nDCG@10 change; then the best ratio among settings that
agree >= 0.99; then each lever's nDCG@10 change and p50. The paper's target: inference-free ~ 1.1x BM25.
"""
from __future__ import annotations

import argparse
import functools
from pathlib import Path

from _args import (anchor_to_repo, max_length, nonnegative_float, out_file, positive_float,  # this checkout first
                   positive_int, repo_path)

from ifsr.exp.ablations import lambda_student  # noqa: E402
from ifsr.exp.latency import SYSTEMS, latency_plot, latency_ratios, measure_latency  # noqa: E402
from ifsr.exp.pipelines import check_engine_setting  # noqa: E402
from ifsr.exp.levers import lever_plot, lever_table, parse_levers  # noqa: E402
from ifsr.report.claims import best_ratio  # noqa: E402


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


def engine_arg(text: str) -> str:
    """An engine setting the study accepts, options included (checked now, not after the corpora are encoded)."""
    try:
        check_engine_setting(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))
    return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="default $IFSR_DATA_DIR or data (ifsr.data.beir.data_dir)")
    ap.add_argument("--sizes", nargs="+", type=size_arg, default=["scifact", "real"],
                    help="'scifact', 'real' (all real passages) or N (resampled, see --resample-from)")
    ap.add_argument("--n-queries", type=positive_int, default=300)
    ap.add_argument("--cache-dir", default=None, help="vectors + indexes (default $IFSR_CACHE_DIR or .cache/ifsr)")
    ap.add_argument("--engines", nargs="+", type=engine_arg, default=["pisa"],
                    help="engine settings: name or name(key=value,...), e.g. 'bmp(bsize=64,alpha=0.9)'")
    ap.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    ap.add_argument("--model", default="splade-tiny")
    ap.add_argument("--max-length", type=max_length, default=256)
    ap.add_argument("--max-passages", type=positive_int, default=None,
                    help="cap the pair passages of 'real' (a partial corpus when encoding all is too slow)")
    ap.add_argument("--resample-from", choices=["real", "scifact"], default="real",
                    help="corpus the integer sizes are resampled from ('scifact' needs only SciFact encoded)")
    ap.add_argument("--algorithm", default="maxscore", help="PISA query algorithm, the same for every system")
    ap.add_argument("--doc-scale", type=positive_float, default=100.0)
    ap.add_argument("--query-scale", type=positive_float, default=10.0)
    ap.add_argument("--min-query-idf", type=nonnegative_float, default=0.0,
                    help="prune inference-free query tokens below this idf")
    ap.add_argument("--max-query-terms", type=positive_int, default=None, help="keep this many highest-idf query tokens")
    ap.add_argument("--no-fold-idf", dest="fold_idf", action="store_false",
                    help="inference-free on the plain index with integer query weights (default: idf folded "
                         "into the impacts, binary query)")
    ap.add_argument("--repeats", type=positive_int, default=1)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: elapsed time; cpu: thread CPU time (steadier on a loaded shared machine)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--levers", nargs="+", default=[], help="the reference first (e.g. 'none'), then e.g. query-top-k=8 query-min-idf=3 "
                    "doc-top-k=64 lambda=0.08 lambda=0.08+query-min-idf=2 'lambda=0.08@seismic' (timed on --lever-engine, or the engine after '@', over --lever-size)")
    ap.add_argument("--lever-engine", type=engine_arg, default=None)
    ap.add_argument("--lever-size", type=size_arg, default="scifact")
    ap.add_argument("--lever-students", type=repo_path, default=None, help="ablation YAML (e.g. configs/cpu.yaml) whose idf-flops "
                    "students the lambda=X levers time (trained when absent)")
    ap.add_argument("--lever-seeds", type=positive_int, default=1, help="training seeds of each lambda=X lever's student "
                    "(the YAML's first seeds; its ratio and nDCG@10 change are then over seeds too)")
    ap.add_argument("--lever-out", type=out_file, default=None, help="write the lever table as CSV")
    ap.add_argument("--out", type=out_file, default=None, help="write the table as CSV")
    ap.add_argument("--plot", type=out_file, default=None, help="write p50 vs corpus size as PNG")
    args = ap.parse_args(argv)
    anchor_to_repo()

    try:
        levers = parse_levers(args.levers)
    except ValueError as e:
        ap.error(str(e))
    if levers and not args.lever_engine:
        ap.error("--levers needs --lever-engine")
    if any(lv.lam is not None for lv in levers) and not args.lever_students:
        ap.error("a lambda= lever needs --lever-students")
    cache = Path(args.cache_dir).expanduser() if args.cache_dir else None
    df = measure_latency(args.data_dir, args.sizes, args.n_queries, args.engines, args.systems, args.model,
                         cache_dir=cache, max_length=args.max_length, max_passages=args.max_passages,
                         resample_from=args.resample_from, seed=args.seed, algorithm=args.algorithm,
                         doc_scale=args.doc_scale,
                         query_scale=args.query_scale, min_query_idf=args.min_query_idf,
                         max_query_terms=args.max_query_terms, fold_idf=args.fold_idf, repeats=args.repeats,
                         clock=args.clock)
    other = "cpu_p50_ms" if args.clock == "wall" else "wall_p50_ms"
    cols = ["engine", "system", "docs", "distinct_docs", "p50_ms", "p90_ms", "p99_ms", "qps", "qps_2threads", other,
            "top10_agreement", "delta_nDCG@10", "index_mb"]
    print(df[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print()
    print(f"clock: {args.clock} (p50/p90/p99/qps); {other}: the other clock; intervals: 95% bootstrap over the "
          f"{args.repeats} timing pass(es) and the queries (and a lambda lever's training seeds); p: two-sided, against 1.0x")
    ci = lambda r, c: (f"{r[c]:.2f}x [{r[c + '_lo']:.2f}, {r[c + '_hi']:.2f}] p {r[c + '_p']:.3g}"  # noqa: E731
                       if r[c] == r[c] else "-")
    for _, r in latency_ratios(df).iterrows():
        print(f"{r['engine']:28s} docs={int(r['docs']):>9,}  IF/BM25 (same engine) {ci(r, 'if_over_bm25')}  "
              f"IF/fastest BM25 ({r['best_bm25_engine']}) {ci(r, 'if_over_best_bm25')}  "
              f"siamese/IF {r['siamese_over_if']:.1f}x  top-10 agreement {r['top10_agreement']:.3f}  "
              f"nDCG@10 change {r['delta_nDCG@10']:+.4f}")
    best = best_ratio(df)
    print("best (top-10 agreement >= 0.99, largest corpus): " + ("none" if best is None else
          f"{best['engine']} at {int(best['docs']):,} docs: {ci(best, 'if_over_best_bm25')} the fastest BM25 "
          f"({best['best_bm25_engine']}), {ci(best, 'if_over_bm25')} BM25 on its own engine"))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)
    if args.plot:
        latency_plot(df, args.plot)
    if levers:
        students = None if not args.lever_students else functools.partial(
            lambda_student, args.lever_students, data_dir=args.data_dir, cache_dir=cache)
        lev = lever_table(levers, args.lever_engine, args.lever_size, args.data_dir, args.model, cache,
                          args.max_length, args.n_queries, args.seed, args.repeats, args.resample_from,
                          args.max_passages, students=students, seeds=args.lever_seeds)
        print()
        for _, r in lev.iterrows():
            print(f"lever {r['lever']:26s} {r['value']!s:>6}  nDCG@10 SciFact {r['nDCG@10 scifact']:.4f} "
                  f"({r['delta scifact']:+.4f} [{r['delta scifact lo']:+.4f}, {r['delta scifact hi']:+.4f}])  "
                  f"Cranfield {r['nDCG@10 cranfield']:.4f} ({r['delta cranfield']:+.4f} "
                  f"[{r['delta cranfield lo']:+.4f}, {r['delta cranfield hi']:+.4f}])  "
                  f"p50 {r['p50_ms']:.3f} ms ({r['p50_ms'] / lev['p50_ms'].iloc[0]:.2f}x unpruned)  "
                  f"IF/BM25 {ci(r, 'if_over_bm25')}  top-10 agreement {r['top10_agreement']:.3f}  "
                  f"doc nnz {r['doc_nnz']:.1f}")
        if args.lever_out:
            Path(args.lever_out).parent.mkdir(parents=True, exist_ok=True)
            lev.to_csv(args.lever_out, index=False)
            lever_plot(lev, Path(args.lever_out).with_suffix(".png"))


if __name__ == "__main__":
    main()
