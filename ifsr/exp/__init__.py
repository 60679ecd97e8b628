"""Experiments: every config dataclass and its loader, the run key, the ablations."""
