"""Comparisons as data: matched-FLOPS gaps, Pareto pairs, config differences, by hand."""
import pandas as pd
import pytest
import yaml

from ifsr.report.compare import config_diff, dominated_pairs, matched_flops_gaps, read_config


def test_matched_flops_gaps_by_hand():
    curve = pd.DataFrame([
        {"dataset": "d", "arm": "flops", "lambda": 1.0, "flops": 1.0, "nDCG@10": 0.50},
        {"dataset": "d", "arm": "flops", "lambda": 0.1, "flops": 100.0, "nDCG@10": 0.70},
        {"dataset": "d", "arm": "idf-flops", "lambda": 0.5, "flops": 10.0, "nDCG@10": 0.65},
        {"dataset": "d", "arm": "idf-flops", "lambda": 5.0, "flops": 0.1, "nDCG@10": 0.40},  # outside: no match
    ])
    gaps = matched_flops_gaps(curve, "d")
    assert len(gaps) == 1
    assert gaps[0]["flops"] == pytest.approx(0.60)  # the plain arm's nDCG, log-linear midpoint between 0.5 and 0.7
    assert gaps[0]["at_flops"] == 10.0  # at the IDF-aware point's FLOPS (an arm named "flops" must not shadow it)
    assert gaps[0]["gap"] == pytest.approx(0.05)


def test_dominated_pairs_by_hand():
    curve = pd.DataFrame([
        {"dataset": "d", "arm": "flops", "lambda": 0.0, "flops": 2.4, "nDCG@10": 0.651},
        {"dataset": "d", "arm": "flops", "lambda": 0.01, "flops": 1.5, "nDCG@10": 0.660},
        {"dataset": "d", "arm": "idf-flops", "lambda": 0.0, "flops": 3.5, "nDCG@10": 0.658},
        {"dataset": "d", "arm": "idf-flops", "lambda": 0.01, "flops": 1.4, "nDCG@10": 0.666},
    ])
    got = sorted((p["winner"], p["win"]["lambda"], p["lose"]["lambda"]) for p in dominated_pairs(curve, "d"))
    # idf 0.01 beats both plain points; plain 0.01 beats idf 0; plain 0 (2.4, .651) vs idf 0 (3.5, .658): neither
    assert got == [("flops", 0.01, 0.0), ("idf-flops", 0.01, 0.0), ("idf-flops", 0.01, 0.01)]


def test_config_diff_reads_configs_through_the_loader(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"lambdas": [0.0], "train": {"steps": 300}}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"lambdas": [0.0, 0.01],
                                                     "train": {"steps": 300, "in_batch_negatives": False, "seed": 1}}))
    assert config_diff(read_config(tmp_path / "a.yaml"), read_config(tmp_path / "b.yaml")) == [
        ("lambdas", [0.0], [0.0, 0.01]), ("train.seed", 0, 1)]  # a field the file lacks is its default
    assert read_config(tmp_path / "missing.yaml") is None
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"train": {"stpes": 300}}))
    with pytest.raises(ValueError, match="unknown key"):
        read_config(tmp_path / "c.yaml")
