"""Ranking metrics via ir_measures and sparsity (FLOPS, non-zeros); the significance tests are in `ifsr.eval.stats`.

Conventions of ``evaluate_run`` / ``per_query`` (checked against ir_measures 0.4.3 +
pytrec_eval-terrier 0.5.11):

* The mean is over every query in ``qrels``. A judged query absent from the run (or with an empty
  result list) scores 0: ir_measures fills in each measure's default (0) for qrels queries that the
  provider did not return. Run queries without qrels are ignored. This differs from calling
  pytrec_eval directly and averaging its output, which silently drops queries missing from the run.
* A query whose judgments are all non-relevant counts, with value 0 (as in trec_eval).
* nDCG uses trec_eval's gains: the relevance grade itself (linear), log2 discount.
* Ties. trec_eval (so pytrec_eval) re-sorts each query by score descending and breaks ties by doc
  id *descending* as strings ("c" before "a", "9" before "10"), which has nothing to do with the
  retrieval's tie-break. With ``tie_break="order"`` (default) each query's hits are first ranked by
  score descending, ties kept in the run dict's insertion order (``ifsr.core.retrieval.to_run`` writes
  score desc, then doc index asc), and handed to ir_measures with strictly decreasing scores
  ``n, n-1, ..., 1``; the real scores are untouched in the caller's run. ``tie_break="trec_eval"``
  passes the run as is (for comparison with numbers produced by pytrec_eval directly).
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping

import ir_measures
import numpy as np
import scipy.sparse as sp

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

TIE_BREAKS = ("order", "trec_eval")


def rank_scores(run: Run) -> dict[str, dict[str, float]]:
    """Replace scores by strictly decreasing rank scores (n, ..., 1): score desc, ties in insertion
    order. Keys are converted to str."""
    out: dict[str, dict[str, float]] = {}
    for qid, hits in run.items():
        items = list(hits.items())
        if any(math.isnan(float(v)) for _, v in items):
            raise ValueError(f"NaN score in run for query {qid!r}")
        items.sort(key=lambda kv: -float(kv[1]))  # stable: ties keep insertion order
        n = len(items)
        out[str(qid)] = {str(did): float(n - r) for r, (did, _) in enumerate(items)}
    return out


def _prepare(run: Run, qrels: Qrels, tie_break: str) -> tuple[dict, dict]:
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
    if not qrels:
        raise ValueError("qrels is empty: no judged query to score (expected at least one query with a "
                         "qrels row; ifsr.data.beir.load_beir refuses an empty qrels file, naming it)")
    q = {str(qid): {str(d): int(r) for d, r in rels.items()} for qid, rels in qrels.items()}
    if tie_break == "order":
        r = rank_scores(run)
    else:
        r = {str(qid): {str(d): float(s) for d, s in hits.items()} for qid, hits in run.items()}
    return r, q


def _parse(measures: Iterable[str]) -> dict[str, object]:
    if isinstance(measures, str):
        measures = (measures,)
    parsed = {}
    for m in measures:
        try:
            parsed[m] = ir_measures.parse_measure(m)
        except (NameError, ValueError, SyntaxError) as e:
            raise ValueError(f"unknown measure {m!r}: {e}") from e
    if not parsed:
        raise ValueError("no measures given")
    return parsed


def evaluate_run(run: Run, qrels: Qrels, measures: Iterable[str] = ("nDCG@10", "R@100"),
                 tie_break: str = "order") -> dict[str, float]:
    """Mean of each measure over all queries in ``qrels`` (missing / empty results count 0).

    Args:
        run: ``{qid: {did: score}}``.
        qrels: ``{qid: {did: grade}}``.
        measures: ir_measures names, e.g. ``"nDCG@10"``, ``"R@100"``, ``"RR@10"``.
        tie_break: ``"order"`` (ifsr: score desc, ties in run order) or ``"trec_eval"``.

    Returns:
        ``{measure name as given: mean value}``.
    """
    parsed = _parse(measures)
    r, q = _prepare(run, qrels, tie_break)
    agg = ir_measures.calc_aggregate(list(parsed.values()), q, r)
    return {name: float(agg[m]) for name, m in parsed.items()}


def per_query(run: Run, qrels: Qrels, measure: str = "nDCG@10",
              tie_break: str = "order") -> dict[str, float]:
    """``{qid: value}`` of one measure for every query in ``qrels`` (0 where the run has none)."""
    (name, m), = _parse((measure,)).items()
    r, q = _prepare(run, qrels, tie_break)
    out = {qid: 0.0 for qid in q}
    for metric in ir_measures.iter_calc([m], q, r):
        out[metric.query_id] = float(metric.value)
    return out


def _positive_csr(m: sp.spmatrix, name: str) -> sp.csr_matrix:
    """CSR copy with duplicates summed and only entries > 0 kept (explicit zeros dropped)."""
    if not sp.issparse(m) or m.ndim != 2:
        raise ValueError(f"{name} must be a 2-D scipy.sparse matrix")
    c = sp.csr_matrix(m, copy=True)
    c.sum_duplicates()
    c.data = np.where(c.data > 0, c.data, 0)
    c.eliminate_zeros()
    return c


def mean_nnz(m: sp.spmatrix) -> float:
    """Mean number of weights > 0 per row (explicit zeros are not counted)."""
    c = _positive_csr(m, "m")
    if c.shape[0] == 0:
        raise ValueError("matrix has no rows")
    return float(c.nnz / c.shape[0])


def activation_rate(m: sp.spmatrix) -> np.ndarray:
    """p(j): fraction of rows with weight_j > 0, float64 [V]."""
    c = _positive_csr(m, "m")
    if c.shape[0] == 0:
        raise ValueError("matrix has no rows")
    counts = np.bincount(c.indices, minlength=c.shape[1])  # [V] rows active per column
    return counts / c.shape[0]


def flops_metric(q: sp.spmatrix, d: sp.spmatrix) -> float:
    """FLOPS = Σ_j p_q(j) · p_d(j), the expected number of multiplications of a query-document
    score (SPEC §4); p = fraction of queries (documents) with weight_j > 0."""
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"vocabulary mismatch: q {q.shape} vs d {d.shape}")
    return float(activation_rate(q) @ activation_rate(d))


def sparsity_row(q: sp.spmatrix, d: sp.spmatrix) -> dict[str, float]:
    """``{"flops", "doc_nnz", "query_nnz"}`` to report beside every nDCG."""
    return {"flops": flops_metric(q, d), "doc_nnz": mean_nnz(d), "query_nnz": mean_nnz(q)}
