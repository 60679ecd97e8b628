"""Evaluation: metrics, their statistics (bootstraps, paired tests), model evaluation, baselines and their config."""
