"""Vector engines behind one interface (`ifsr.serving.base.Engine`): the exact scorer, PISA, Seismic, BMP, Lucene,
two-phase search (a pruned first pass on one of those, exact re-scoring: `ifsr.serving.twophase`); registry.

`ENGINES` maps each name to its class; `ENGINES[name].is_available()` says whether its optional
package is installed, and `ENGINES[name].from_docs(docs, k, **options).search_ids(ids, weights)`
searches one query. `exact` is ifsr's exact scorer (`ifsr.core.retrieval.SparseIndex`, built once):
float32 dot products, only scores > 0, ties by score desc then row asc, the order PISA's top-k
also uses (documents are numbered by row). It is the reference the other engines are checked against.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ifsr.serving.base import Engine
from ifsr.serving.blockmax import BmpImpactIndex
from ifsr.serving.exact import ExactEngine
from ifsr.serving.lucene import LuceneImpactIndex
from ifsr.serving.pisa import PisaImpactIndex
from ifsr.serving.seismic import SeismicImpactIndex
from ifsr.serving.twophase import TwoPhaseEngine


ENGINES: dict[str, type[Engine]] = {"exact": ExactEngine, "pisa": PisaImpactIndex, "seismic": SeismicImpactIndex,
                                    "bmp": BmpImpactIndex, "lucene": LuceneImpactIndex, "two-phase": TwoPhaseEngine}


def _value(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_engine(spec: str) -> tuple[str, dict[str, int | float | str]]:
    """An engine setting as the latency study names it: "bmp" or "bmp(bsize=64,alpha=0.9)" ->
    ("bmp", {"bsize": 64, "alpha": 0.9}); values are ints, floats or strings ("pisa(algorithm=maxscore)").
    The options are those of the engine's `from_docs` (PISA: algorithm, doc_scale, query_scale; two-phase:
    `TwoPhaseEngine.OPTIONS`, "two-phase(base=exact,top_terms=8,candidates=100)")."""
    text = spec.replace(" ", "")
    name, paren, rest = text.partition("(")
    if paren and not rest.endswith(")"):
        raise ValueError(f"engine setting {spec!r}: expected name or name(key=value,...)")
    options: dict[str, int | float | str] = {}
    for part in filter(None, rest[:-1].split(",")) if paren else ():
        key, eq, value = part.partition("=")
        if not eq or not key.isidentifier() or not value or key in options:
            raise ValueError(f"engine setting {spec!r}: {part!r} is not a new key=value")
        options[key] = _value(value)
    if name not in ENGINES:
        raise ValueError(f"engine setting {spec!r}: unknown engine {name!r}; known: {sorted(ENGINES)}")
    return name, options


def topk_agreement(found: Sequence[np.ndarray], reference: Sequence[np.ndarray], k: int = 10,
                   ties: Sequence[tuple[np.ndarray, np.ndarray]] | None = None, rtol: float = 1e-6) -> float:
    """Mean over queries of |found@k ∩ agreeing| / max(|found@k|, |reference@k|) (1 when both empty).

    agreeing = reference@k. `ties` (per query: the reference's (ids, scores) in rank order, deeper than k):
    also every document the reference scores equal to its own k-th (within `rtol`, relative): a tie broken
    another way is as exact an answer (copies of one document in a resampled corpus tie)."""
    if len(found) != len(reference) or (ties is not None and len(ties) != len(found)):
        raise ValueError(f"{len(found)} result lists vs {len(reference)} references"
                         + ("" if ties is None else f" and {len(ties)} tie lists"))
    if not found:
        return float("nan")
    ratios = []
    for i, (a, b) in enumerate(zip(found, reference)):
        a, b = set(np.asarray(a)[:k].tolist()), set(np.asarray(b)[:k].tolist())
        ok = set(b)
        if ties is not None and len(b) == k:
            ids, scores = np.asarray(ties[i][0]), np.asarray(ties[i][1], dtype=np.float64)
            kth = scores[k - 1]
            ok |= set(ids[scores >= kth - rtol * max(1.0, abs(kth))].tolist())
        ratios.append(len(a & ok) / max(len(a), len(b)) if (a or b) else 1.0)
    return float(np.mean(ratios))
