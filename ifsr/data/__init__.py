"""Data: BEIR sets, pre-training pairs and the leakage filter, BM25 hard negatives."""
