"""The paper's vocabulary, declared once and free of torch: the FLOPS ablation's arms and the teacher targets."""
from __future__ import annotations

# The two arms of the FLOPS ablation (the names in configs, tables and figures) -> the query weights the
# arm trains with: IDF-aware FLOPS scores with idf_j on each query token, plain FLOPS with 1. The plain
# arm is also evaluated with IDF queries, as "flops+idf-query".
IDF_ARM, PLAIN_ARM = "idf-flops", "flops"
ARMS: dict[str, str] = {IDF_ARM: "idf", PLAIN_ARM: "ones"}
QUERY_WEIGHTS: tuple[str, ...] = tuple(dict.fromkeys(ARMS.values()))  # ("idf", "ones")

# Teacher targets of the distillation ablation (ifsr.core.objective.teacher_targets): a single teacher,
# the min-max ensemble (the paper), or the raw sum of the teachers' scores.
# A single teacher is named by its member's name (the default members: DENSE and SPARSE; a config may list
# others, ifsr.exp.config.AblationConfig.ensemble); the two ensembles combine every member.
DENSE, SPARSE, MINMAX, RAW_SUM = "dense", "sparse", "ensemble-minmax", "ensemble-raw"  # MINMAX: the paper's
TEACHER_NAMES: tuple[str, ...] = (DENSE, SPARSE)  # the default members, in label order
ENSEMBLES: tuple[str, ...] = (MINMAX, RAW_SUM)
TEACHER_MODES: tuple[str, ...] = TEACHER_NAMES + ENSEMBLES

# Document tokens kept by a model that records no length of its own (a bare masked LM, an OpenSearch folder
# written elsewhere): the paper's 512. A saved ifsr model records the length it was trained or exported with,
# and every `ifsr` verb encodes at that length unless --max-length says otherwise (ifsr.serving.export.load_model).
MAX_LENGTH: int = 512
