"""Document encoding: ifsr's DocumentEncoder.encode vs sentence-transformers' SparseEncoder.encode_document.

Same model (splade-tiny exported by ifsr.serving.export.save_sparse_encoder), same texts, same max length
and batch size; runs alternate A B A B so drift of a shared machine hits both. Prints the median
time of each and the ratio ifsr / sentence-transformers (< 1: ifsr is faster), and checks the
vectors agree.

    python benchmarks/encode.py --docs 256 --max-length 256 --repeats 3
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from _args import anchor_to_repo, max_length, positive_int  # also puts this checkout first on sys.path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="scifact", help="BEIR set name or directory (default: scifact)")
    ap.add_argument("--data-dir", default=None, help="data directory (default: $IFSR_DATA_DIR, else "
                    "../shared/data beside the repository, else its data/)")
    ap.add_argument("--docs", type=positive_int, default=256, help="first N documents (default: 256)")
    ap.add_argument("--max-length", type=max_length, default=256, help="document tokens, 1..512 (default: 256)")
    ap.add_argument("--batch-size", type=positive_int, default=32, help="documents per batch (default: 32)")
    ap.add_argument("--repeats", type=positive_int, default=3, help="timed runs of each (default: 3)")
    ap.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    anchor_to_repo()
    from ifsr.data.beir import load_beir

    try:  # the data before any model: a bad name is a usage error, not a traceback
        texts = load_beir(args.data, data_dir=args.data_dir).doc_texts()[: args.docs]
    except (ValueError, OSError) as e:
        ap.error(f"--data {args.data}: {' '.join(str(e).split())}")

    import numpy as np
    import torch
    from sentence_transformers import SparseEncoder

    from ifsr.core.encoder import DocumentEncoder, QueryEncoder
    from ifsr.serving.export import save_sparse_encoder

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    doc = DocumentEncoder.from_pretrained("splade-tiny", max_length=args.max_length)
    query = QueryEncoder(doc.tokenizer, np.ones(len(doc.tokenizer), dtype=np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        st = SparseEncoder(str(save_sparse_encoder(doc, query, tmp)), device="cpu")
    st.max_seq_length = args.max_length

    def run_ifsr():
        return doc.encode(texts, batch_size=args.batch_size, show_progress=False)

    def run_st():
        return st.encode_document(texts, batch_size=args.batch_size, convert_to_sparse_tensor=True)

    a, b = run_ifsr(), run_st()  # warm-up, and the agreement check
    diff = np.abs(a.toarray() - b.to_dense().numpy()).max()
    times = {"ifsr": [], "sentence-transformers": []}
    for _ in range(args.repeats):
        for name, fn in (("ifsr", run_ifsr), ("sentence-transformers", run_st)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = [x / y for x, y in zip(times["ifsr"], times["sentence-transformers"])]
    print(f"{len(texts)} docs, max_length {args.max_length}, batch {args.batch_size}, {args.threads} threads")
    print(f"max |ifsr - st| over all weights: {diff:.2e}")
    for k, v in med.items():
        print(f"{k:>22}: median {v:.2f} s  ({len(texts) / v:.1f} docs/s)")
    print(f"ratio ifsr / sentence-transformers: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
