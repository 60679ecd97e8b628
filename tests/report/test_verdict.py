"""Verdict words from the statistic, on hand-made cases where the answer is known."""
import math

from ifsr.report.claims import verdict


def test_each_verdict_word():
    assert verdict(0.01, +0.02, seeds=3) == "holds"
    assert verdict(0.01, -0.02, seeds=5) == "reversed"
    assert verdict(0.05, +0.30, seeds=3) == "not distinguishable"  # a large gap, but p at alpha
    assert verdict(0.40, -0.01, seeds=1) == "not distinguishable"  # query noise alone covers it
    assert verdict(0.001, +0.02, seeds=2).startswith("not judged") and "2 training seed" in verdict(0.001, 0.02, 2)
    assert verdict(math.nan, +0.02, seeds=3).startswith("not judged")
    assert verdict(0.02, +0.02, seeds=3, alpha=0.01) == "not distinguishable"  # the level is a parameter
