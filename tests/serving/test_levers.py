"""Latency levers: document pruning by hand, lever parsing, and the lever table on a tiny corpus."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ifsr.exp.levers import Lever, parse_levers, prune_docs


def test_prune_docs_keeps_each_rows_top_k_ties_by_id():
    m = sp.csr_matrix(np.array([[0.5, 3.0, 0.0, 2.0, 2.0],
                                [0.0, 0.0, 0.0, 0.0, 0.0],
                                [1.0, 0.0, 4.0, 0.0, 0.0]], dtype=np.float32))
    got = prune_docs(m, 2).toarray()
    # row 0: 3.0 kept, then 2.0 at id 3 before the tie at id 4; row 2 has only two weights
    np.testing.assert_array_equal(got, [[0, 3.0, 0, 2.0, 0], [0, 0, 0, 0, 0], [1.0, 0, 4.0, 0, 0]])
    assert (prune_docs(m, 10) != m).nnz == 0 and (m.toarray()[0] == [0.5, 3.0, 0.0, 2.0, 2.0]).all()  # input kept
    with pytest.raises(ValueError):
        prune_docs(m, 0)


def test_prune_docs_agrees_with_a_dense_argsort():
    rng = np.random.default_rng(0)
    dense = rng.random((40, 30)).astype(np.float32) * (rng.random((40, 30)) < 0.4)
    for k in (1, 3, 7):
        want = np.zeros_like(dense)
        for i, row in enumerate(dense):
            nz = np.flatnonzero(row)
            keep = nz[np.lexsort((nz, -row[nz]))][:k]
            want[i, keep] = row[keep]
        np.testing.assert_array_equal(prune_docs(sp.csr_matrix(dense), k).toarray(), want)


def test_levers_parse_and_refuse_bad_settings():
    levers = parse_levers(["none", "query-top-k=8", "query-min-idf=2.5", "doc-top-k=64"])
    assert [l.kind for l in levers] == ["none", "query-top-k", "query-min-idf", "doc-top-k"]
    assert levers[1].query_options == {"max_terms": 8, "min_idf": 0.0}
    assert levers[2].query_options == {"max_terms": None, "min_idf": 2.5}
    lam = parse_levers(["lambda=0.02"])[0]
    assert (lam.kind, lam.value, lam.query_options) == ("lambda", 0.02, {"max_terms": None, "min_idf": 0.0})
    assert lam.docs(sp.eye(3, format="csr")).nnz == 3  # its documents are another model's, not a pruning
    for bad in ("query-top-k", "query-top-k=2.5", "doc-top-k=0", "none=3", "fast", "lambda", "lambda=-0.1"):
        with pytest.raises(ValueError, match="lever"):
            parse_levers([bad])
    assert Lever("none").docs(sp.eye(3, format="csr")).nnz == 3


def test_combined_levers_parse_to_one_setting_and_refuse_repeats():
    both, alone = parse_levers(["lambda=0.08+query-min-idf=2", "doc-top-k=2+query-top-k=3"])
    assert (both.label, both.value, both.name, both.lam) == ("lambda=0.08+query-min-idf", 2.0, "lambda=0.08+query-min-idf=2", 0.08)
    assert both.query_options == {"max_terms": None, "min_idf": 2.0}
    assert alone.lam is None and alone.query_options == {"max_terms": 3, "min_idf": 0.0}
    m = sp.csr_matrix(np.array([[3.0, 2.0, 1.0]], dtype=np.float32))
    assert alone.docs(m).toarray().tolist() == [[3.0, 2.0, 0.0]] and both.docs(m).nnz == 3
    single = parse_levers(["query-min-idf=2"])[0]
    assert (single.label, single.name, single.lam) == ("query-min-idf", "query-min-idf=2", None)
    for bad in ("query-top-k=2+query-top-k=3", "none+doc-top-k=2", "lambda=0.1+none", "lambda=0.1+", "+doc-top-k=2"):
        with pytest.raises(ValueError, match="lever"):
            parse_levers([bad])


def test_a_lambda_lever_needs_the_ablation_config_of_its_students(tmp_path):
    from ifsr.exp.levers import lever_table

    with pytest.raises(ValueError, match="students"):
        lever_table(parse_levers(["none", "lambda=0.1"]), "exact", size=300, resample_from="scifact",
                    cache_dir=tmp_path)


def test_query_ndcg_is_per_query_by_hand_and_its_mean_is_the_sets_ndcg():
    from ifsr.exp.latency import ranked_ndcg
    from ifsr.exp.levers import query_ndcg

    # three documents over a 3-term vocabulary; query "a" hits d1 > d0, query "b" only d2, "c" nothing
    docs = sp.csr_matrix(np.array([[1.0, 0, 0], [2.0, 0, 0], [0, 1.0, 0]], dtype=np.float32))
    encode = {"a": (np.array([0]), np.array([1.0], dtype=np.float32)),
              "b": (np.array([1]), np.array([1.0], dtype=np.float32)),
              "c": (np.array([2]), np.array([1.0], dtype=np.float32))}.__getitem__
    queries = {"qa": "a", "qb": "b", "qc": "c"}
    qrels = {"qa": {"d0": 1}, "qb": {"d2": 2}, "qc": {"d0": 1}}
    got = query_ndcg(docs, ["d0", "d1", "d2"], queries, qrels, encode)
    # qa: d0 at rank 2 -> (1/log2(3)) / 1; qb: d2 at rank 1 -> 1; qc: nothing found -> 0
    np.testing.assert_allclose(got, [1 / np.log2(3), 1.0, 0.0])
    rows = [np.array([1, 0]), np.array([2]), np.array([], dtype=np.int64)]
    assert got.mean() == pytest.approx(ranked_ndcg(rows, list(queries), ["d0", "d1", "d2"], qrels))


def test_ndcg_change_is_the_mean_paired_difference_with_an_interval_over_queries():
    from ifsr.exp.levers import ndcg_change

    ref = np.array([0.5, 0.2, 0.9, 0.4])
    same = ndcg_change(ref, ref)
    assert (same["delta"], same["lo"], same["hi"]) == (0.0, 0.0, 0.0)
    shifted = ndcg_change(ref - 0.1, ref)  # every query loses 0.1: no spread to resample
    assert shifted["delta"] == pytest.approx(-0.1) and shifted["lo"] == pytest.approx(-0.1) == shifted["hi"]
    rng = np.random.default_rng(1)
    a, b = rng.random(200), rng.random(200)
    c = ndcg_change(a, b)
    # a second formulation: the percentile interval of resampled mean differences, by hand
    d = a - b
    draws = np.random.default_rng(7).integers(0, 200, size=(4000, 200))
    lo, hi = np.percentile(d[draws].mean(axis=1), [2.5, 97.5])
    assert c["delta"] == pytest.approx(d.mean()) and c["lo"] < c["delta"] < c["hi"]
    assert c["lo"] == pytest.approx(lo, abs=0.01) and c["hi"] == pytest.approx(hi, abs=0.01)


def test_a_lambda_levers_seeds_are_pooled_in_its_relevance_and_its_ratio(tmp_path, splade_tiny_path, data_root,
                                                                           monkeypatch):
    """Two "training seeds" (the model, and a copy with a perturbed MLM head) behind one lambda lever: its
    nDCG@10 is the mean of the two models' (each measured alone), its ratio's bootstrap runs over seeds,
    timing passes and queries, and the table says how many of each it rests on. SciFact and Cranfield are
    cut to 300 documents each (the judged ones first), so that encoding them stays quick."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    import ifsr.exp.corpora
    import ifsr.exp.levers
    from ifsr.eval.evaluate import limit_corpus
    from ifsr.exp.levers import lever_table

    for module in (ifsr.exp.levers, ifsr.exp.corpora):
        monkeypatch.setattr(module, "load_beir", lambda *a, _load=module.load_beir, **k: limit_corpus(_load(*a, **k), 300))

    other = tmp_path / "seed1"
    mlm = AutoModelForMaskedLM.from_pretrained(splade_tiny_path)
    with torch.no_grad():
        bias = mlm.get_output_embeddings().bias
        bias.add_(torch.randn(bias.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
    mlm.save_pretrained(other)
    AutoTokenizer.from_pretrained(splade_tiny_path).save_pretrained(other)
    students = {0: splade_tiny_path, 1: str(other)}
    common = dict(engine="exact", size=300, data_dir=data_root, cache_dir=tmp_path / "cache", max_length=32,
                  n_queries=20, resample_from="scifact", show_progress=False)
    table = lever_table(parse_levers(["none", "lambda=0.1", "lambda=0.1+query-top-k=4"]), repeats=2,
                        students=lambda lam, i: students[i], seeds=2, **common)
    alone = lever_table(parse_levers(["none"]), model=str(other), **common)
    none, lam, pruned = (table.iloc[i] for i in range(3))
    assert np.isnan(none["seeds"]) and lam["seeds"] == 2 and (table["repeats"] == 2).all()
    assert lam["model"] == f"{splade_tiny_path} ; {other}"
    for ds in ("scifact", "cranfield"):
        assert lam[f"nDCG@10 {ds}"] == pytest.approx((none[f"nDCG@10 {ds}"] + alone[f"nDCG@10 {ds}"].iloc[0]) / 2)
        assert lam[f"delta {ds} lo"] <= lam[f"delta {ds}"] <= lam[f"delta {ds} hi"]
    assert alone["nDCG@10 scifact"].iloc[0] != none["nDCG@10 scifact"]  # the perturbed copy is another model
    for r in (none, lam, pruned):
        assert r["if_over_bm25_lo"] <= r["if_over_bm25"] <= r["if_over_bm25_hi"]
        assert 0 < r["if_over_bm25_p"] <= 1 and 0 < r["if_over_bm25_p_paper"] <= 1
    assert pruned["query_terms"] <= 4 < none["query_terms"] and pruned["top10_agreement"] == 1.0  # exact engine
    with pytest.raises(ValueError, match="seeds"):
        lever_table(parse_levers(["none"]), seeds=0, **common)
    # a table of students only (no "none" row: the unpruned model is never timed) names the students it timed
    only = lever_table(parse_levers(["lambda=0.1"]), students=lambda lam, i: str(other), **common)
    assert set(only.attrs["provenance"]["models"]) == {str(other)} and "idf" in only.attrs["provenance"]["data"]


def test_a_lever_can_name_its_own_engine_after_an_at_sign():
    lever, = parse_levers(["lambda=0.1+query-top-k=4@two-phase(base=exact,top_terms=2,candidates=50)"])
    assert (lever.kind, lever.lam, lever.engine) == ("query-top-k", 0.1, "two-phase(base=exact,top_terms=2,candidates=50)")
    assert lever.engine_for("pisa") == "two-phase(base=exact,top_terms=2,candidates=50)"
    assert parse_levers(["none"])[0].engine_for("pisa (algorithm=maxscore)") == "pisa(algorithm=maxscore)"
    for bad in ("none@", "none@nosuchengine", "none@seismic(heap_factor"):
        with pytest.raises(ValueError, match="lever"):
            parse_levers([bad])


def _row(engine, ratio, sci, cran, lo=-0.01, hi=0.01):
    return {"engine": engine, "if_over_bm25": ratio, "delta scifact": sci, "delta scifact lo": sci + lo,
            "delta scifact hi": sci + hi, "delta cranfield": cran, "delta cranfield lo": cran + lo,
            "delta cranfield hi": cran + hi}


def test_pareto_marks_each_engines_front_and_the_rows_that_cost_nothing_shown():
    import pandas as pd

    from ifsr.exp.levers import pareto

    t = pareto(pd.DataFrame([
        _row("pisa", 2.0, 0.0, 0.0),               # the reference: slowest, best
        _row("pisa", 1.0, -0.005, -0.005),         # faster, a little worse, interval holds 0: front, free
        _row("pisa", 1.2, -0.02, -0.02),           # dominated by the row above
        _row("pisa", 0.6, -0.05, -0.01),           # fastest: front, but costs on SciFact (interval below 0)
        _row("seismic", 1.5, -0.02, -0.02),        # worse than every pisa row at 1.2 or faster, yet its engine's front
        _row("seismic(heap_factor=0.7)", 1.6, -0.03, -0.03),  # the same engine, other options: dominated
    ]))
    assert t["pareto"].tolist() == [True, True, False, True, True, False]
    assert t["no_relevance_cost"].tolist() == [True, True, False, False, False, False]


def test_the_report_names_the_fastest_setting_that_costs_nothing_shown():
    import pandas as pd

    from ifsr.exp.levers import pareto
    from ifsr.report.claims import fastest_free

    rows = [_row("pisa", 2.0, 0.0, 0.0), _row("pisa", 1.1, -0.004, 0.0), _row("two-phase", 0.9, -0.003, 0.002),
            _row("pisa", 0.7, -0.05, -0.05)]
    t = pareto(pd.DataFrame(rows)).assign(top10_agreement=[1.0, 0.98, 0.9, 1.0], approximate=[False, False, True, False])
    best = fastest_free(t)
    assert best["engine"] == "two-phase" and best["if_over_bm25"] == 0.9  # approximate: its own ranking is judged
    assert fastest_free(t.assign(approximate=False))["if_over_bm25"] == 2.0  # pisa at 0.98 agreement is not faithful
    assert fastest_free(t.assign(no_relevance_cost=False)) is None
    # an approximate winner is read with its agreement at the timed size, beside the fastest exact setting
    from ifsr.report.claims import lever_lines
    full = t.assign(lever="lambda", value=0.005, docs=1_000_000, p50_ms=[2.0, 1.1, 0.9, 0.7], doc_nnz=75.0,
                    query_terms=19.6, if_over_bm25_lo=t["if_over_bm25"] - 0.1, if_over_bm25_hi=t["if_over_bm25"] + 0.1,
                    if_over_bm25_p=0.001, if_over_bm25_p_paper=0.001, **{"nDCG@10 scifact": 0.58,
                                                                          "nDCG@10 cranfield": 0.34})
    text = "\n".join(lever_lines(full))
    assert "`two-phase` is approximate" in text and "at 1,000,000 documents is 0.900" in text
    assert "The fastest exact one (top-10 agreement ≥ 0.99) without a relevance cost shown: `lambda=0.005` on `pisa`, 2.00×" in text
    assert "is approximate" not in "\n".join(lever_lines(full.assign(approximate=False)))


def test_same_model_changes_pair_per_seed_and_query():
    from ifsr.exp.levers import ndcg_change

    rng = np.random.default_rng(0)
    b = rng.random((3, 50))
    a = b + 0.01  # the same students, every query up by 0.01: no spread at all once paired per seed
    paired = ndcg_change(a, b, same_models=True)
    assert paired["delta"] == pytest.approx(0.01) and paired["lo"] == pytest.approx(0.01)
    assert paired["hi"] == pytest.approx(0.01)
    unpaired = ndcg_change(a, b)  # seeds drawn apart: the students' spread enters the interval
    assert unpaired["delta"] == pytest.approx(0.01) and unpaired["hi"] - unpaired["lo"] > 0.01
    with pytest.raises(ValueError, match="same_models"):
        ndcg_change(a[:2], b, same_models=True)


def test_an_approximate_engines_relevance_is_its_own_ranking(tmp_path, splade_tiny_path, data_root, monkeypatch):
    """Rows on two-phase: with every query term in the first pass and every document a candidate it is exact
    scoring, so its nDCG@10 equals the study engine's row (PISA's, judged by exact scoring) and the change,
    paired per query, is exactly 0; a first pass of one term ranks otherwise. BM25 is timed on the study's engine
    (PISA) for every row, and its posting reads are counted for each."""
    import ifsr.exp.corpora
    import ifsr.exp.levers
    from ifsr.eval.evaluate import limit_corpus
    from ifsr.exp.levers import lever_table

    for module in (ifsr.exp.levers, ifsr.exp.corpora):
        monkeypatch.setattr(module, "load_beir", lambda *a, _load=module.load_beir, **k: limit_corpus(_load(*a, **k), 300))
    whole = "two-phase(base=exact,top_terms=64,candidates=300)"
    table = lever_table(parse_levers(["none", f"none@{whole}", "none@two-phase(base=exact,top_terms=1,candidates=10)"]),
                        engine="pisa", size=300, data_dir=data_root, cache_dir=tmp_path / "cache", max_length=32,
                        n_queries=20, resample_from="scifact", show_progress=False)
    exact, full, one = (table.iloc[i] for i in range(3))
    assert table["engine"].tolist() == ["pisa", whole, "two-phase(base=exact,top_terms=1,candidates=10)"]
    assert table["approximate"].tolist() == [False, True, True]
    for ds in ("scifact", "cranfield"):
        assert full[f"nDCG@10 {ds}"] == exact[f"nDCG@10 {ds}"]
        assert full[f"delta {ds}"] == full[f"delta {ds} lo"] == full[f"delta {ds} hi"] == 0.0
    assert full["top10_agreement"] == 1.0 and one["top10_agreement"] < 1.0
    assert one["nDCG@10 scifact"] != exact["nDCG@10 scifact"] or one["nDCG@10 cranfield"] != exact["nDCG@10 cranfield"]
    assert (table["bm25_p50_ms"] > 0).all() and table["pareto"].any()
    assert (table["bm25_postings_per_query"] > 0).all() and exact["postings_per_query"] > 0  # PISA's posting reads


def test_the_lever_figure_numbers_its_points_clear_of_each_other_and_keys_every_number(tmp_path):
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from ifsr.exp.levers import lever_plot

    # a cluster of five settings within 0.02x and 0.0005 of each other (the Cranfield panel of issue 29's table)
    rows = [_row("pisa", 2.0, 0.0, 0.0)] + [_row(f"two-phase(top_terms={k},candidates=100)", 1.0 + 0.005 * k, -0.001,
                                                 0.0001 * k) for k in range(5)] + [_row("seismic", 0.3, 0.0, 0.0)]
    t = pd.DataFrame(rows).assign(lever="lambda", value=0.005, docs=1000, if_over_bm25_lo=lambda d: d.if_over_bm25 - 0.1,
                                  if_over_bm25_hi=lambda d: d.if_over_bm25 + 0.1)
    fig = lever_plot(t, tmp_path / "levers.png")
    assert (tmp_path / "levers.png").stat().st_size > 0
    renderer = FigureCanvasAgg(fig).get_renderer()
    for ax in fig.axes:
        boxes = [a.get_window_extent(renderer) for a in ax.texts]
        assert sorted(a.get_text() for a in ax.texts) == sorted(str(k) for k in range(1, len(rows) + 1))
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    key = "\n".join(text.get_text() for text in fig.texts)
    assert " 3 two-phase: lambda=0.005 top_terms=1,candidates=100" in key and " 7 seismic: lambda=0.005" in key
