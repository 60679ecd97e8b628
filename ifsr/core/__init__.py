"""The paper alone: the encoder (fused max head, model-free query side), IDF, the objective, exact retrieval (the one top-k and run builder), its names and constants."""
