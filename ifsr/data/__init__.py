"""Data: BEIR sets, pre-training pairs and the leakage filter, JSONL parsing, BM25 hard negatives."""
