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

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="scifact", help="BEIR set name or directory")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--docs", type=int, default=256)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from sentence_transformers import SparseEncoder

    from ifsr.data.beir import load_beir
    from ifsr.serving.export import save_sparse_encoder
    from ifsr.core.encoder import DocumentEncoder, QueryEncoder

    texts = load_beir(args.data, data_dir=args.data_dir).doc_texts()[: args.docs]
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
