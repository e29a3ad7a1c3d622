"""evidence_accuracy_correlation and summary_table against hand-built tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from jmds_pipeline.comparison.stats import (
    evidence_accuracy_correlation,
    paired_difference,
    summary_table,
)


def _ranks(values: list[float]) -> list[int]:
    return [sorted(values).index(v) for v in values]


def _spearman(x: list[float], y: list[float]) -> float:
    """ρ = 1 − 6Σd²/(n(n²−1)) for distinct values (the textbook closed form)."""
    n = len(x)
    d2 = sum((a - b) ** 2 for a, b in zip(_ranks(x), _ranks(y), strict=True))
    return 1 - 6 * d2 / (n * (n * n - 1))


def test_correlation_across_budgets_and_rounds_uses_only_the_method_and_complete_rows():
    frame = pd.DataFrame({
        "method": ["jmds"] * 5 + ["imp"],
        "log_evidence": [-10.0, -12.0, -9.0, -15.0, float("nan"), -1.0],
        "test_accuracy": [0.80, 0.70, 0.90, 0.75, 0.99, 0.10],
        "round1_log_evidence": [-5.0, -6.0, -4.0, -7.0, -8.0, 0.0],
        "round1_val_accuracy": [0.6, 0.5, 0.7, 0.4, 0.3, 0.0],
        "round2_log_evidence": [-6.25, -7.5, -5.5, -8.5, -9.0, 0.0],
        "round2_val_accuracy": [0.55, 0.52, 0.65, 0.45, 0.35, 0.0],
        "round3_log_evidence": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],  # no accuracy: not paired
    })
    result = evidence_accuracy_correlation(frame)
    budgets = result["across_budgets"]
    assert budgets["n"] == 4  # the NaN row and the imp row are left out
    assert budgets["rho"] == pytest.approx(_spearman([-10, -12, -9, -15], [.8, .7, .9, .75]))
    assert 0 <= budgets["p_value"] <= 1
    rounds = result["across_rounds"]
    evidence = [-5.0, -6.0, -4.0, -7.0, -8.0, -6.25, -7.5, -5.5, -8.5, -9.0]
    accuracy = [0.6, 0.5, 0.7, 0.4, 0.3, 0.55, 0.52, 0.65, 0.45, 0.35]
    assert rounds["n"] == 10
    assert rounds["rho"] == pytest.approx(_spearman(evidence, accuracy))
    other = evidence_accuracy_correlation(frame, method="imp", metric="test_accuracy")
    assert other["across_budgets"]["n"] == 1 and math.isnan(other["across_budgets"]["rho"])


def test_correlation_needs_three_points_and_tolerates_missing_columns():
    frame = pd.DataFrame({"method": ["jmds"] * 3, "log_evidence": [1.0, 2.0, 3.0],
                          "test_accuracy": [0.1, 0.3, 0.2]})
    result = evidence_accuracy_correlation(frame)
    assert result["across_budgets"]["n"] == 3
    assert result["across_budgets"]["rho"] == pytest.approx(_spearman([1, 2, 3], [.1, .3, .2]))
    assert result["across_rounds"]["n"] == 0 and math.isnan(result["across_rounds"]["p_value"])
    two = evidence_accuracy_correlation(frame.iloc[:2])
    assert two["across_budgets"]["n"] == 2 and math.isnan(two["across_budgets"]["rho"])
    empty = evidence_accuracy_correlation(frame.drop(columns=["log_evidence"]))
    assert empty["across_budgets"]["n"] == 0


def test_summary_table_skips_text_columns_and_keeps_first_seen_order():
    frame = pd.DataFrame({
        "method": ["phased", "phased", "dense"], "seed": [0, 1, 0],
        "target_model_sparsity": [0.5, 0.5, 0.0], "target_data_sparsity": [0.3, 0.3, 0.0],
        "test_accuracy": [0.7, 0.9, 0.95], "note": ["a", "b", "c"],
    })
    table = summary_table(frame)
    assert table["method"].tolist() == ["phased", "dense"]  # not sorted
    assert "note_mean" not in table and "seed_mean" not in table
    assert "method_mean" not in table
    assert table["test_accuracy_mean"].tolist() == pytest.approx([0.8, 0.95])
    assert table["seeds"].tolist() == [2, 1]


def test_two_seeds_give_an_interval_and_later_budgets_are_still_reported():
    rows = []
    for budget, values in (((0.5, 0.3), None), ((0.8, 0.5), [(0.9, 0.7), (0.8, 0.7)])):
        if values is None:  # only jmds ran at the first budget
            rows.append({"method": "jmds", "seed": 0, "target_model_sparsity": budget[0],
                         "target_data_sparsity": budget[1], "test_accuracy": 0.5})
            continue
        for seed, (a, b) in enumerate(values):
            for method, value in (("jmds", a), ("phased", b)):
                rows.append({"method": method, "seed": seed, "target_model_sparsity": budget[0],
                             "target_data_sparsity": budget[1], "test_accuracy": value})
    (row,) = paired_difference(pd.DataFrame(rows), "jmds", "phased")
    assert row["seeds"] == 2 and row["ci_low"] < row["mean_difference"] < row["ci_high"]
    assert row["mean_difference"] == pytest.approx(0.15)
