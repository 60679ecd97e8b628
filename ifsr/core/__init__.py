"""The paper alone: the encoder (fused max head, model-free query side), IDF, and the objective."""
