"""Evaluation: exact retrieval (the one top-k and run builder), metrics, model evaluation, baselines."""
