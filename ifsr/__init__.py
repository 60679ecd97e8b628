"""ifsr: a replication kit for inference-free learned sparse retrieval (Geng, Ru, Yang; arXiv 2411.04403).

Documents are encoded by a masked-LM (`ifsr.core.encoder.DocumentEncoder`); queries need no model
(`ifsr.core.encoder.QueryEncoder`: distinct tokens x IDF). The paper's losses are in `ifsr.core.objective`, training
in `ifsr.distill.trainer`, the ablations in `ifsr.exp.ablations`, retrieval and metrics in `ifsr.core.retrieval` and
`ifsr.eval.metrics`, serving on inverted-index engines in `ifsr.serving.engines`.
"""

__version__ = "0.1.0"
