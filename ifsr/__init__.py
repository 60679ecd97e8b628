"""ifsr: a replication kit for inference-free learned sparse retrieval (Geng, Ru, Yang; arXiv 2411.04403).

Documents are encoded by a masked-LM (`ifsr.models.DocumentEncoder`); queries need no model
(`ifsr.models.QueryEncoder`: distinct tokens x IDF). The paper's losses are in `ifsr.losses`, training
in `ifsr.train`, the ablations in `ifsr.experiments`, retrieval and metrics in `ifsr.retrieval` and
`ifsr.metrics`, serving on inverted-index engines in `ifsr.serving`.
"""

__version__ = "0.1.0"
