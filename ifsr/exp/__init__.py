"""Experiments: the ablation and latency configs, a preset's plan, training sets, the run key, the ablations, the latency study."""
