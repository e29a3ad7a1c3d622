"""Edges of comparison.stats the other files leave open: a metric column that is absent."""

from __future__ import annotations

import math

import pandas as pd

from jmds_pipeline.comparison.stats import evidence_accuracy_correlation


def test_correlation_without_the_metric_column_has_no_points() -> None:
    frame = pd.DataFrame({"method": ["jmds"] * 4, "log_evidence": [1.0, 2.0, 3.0, 4.0],
                          "round1_log_evidence": [1.0, 2.0, 3.0, 4.0]})
    result = evidence_accuracy_correlation(frame)  # no test_accuracy, no round accuracies
    assert result["across_budgets"]["n"] == 0 and math.isnan(result["across_budgets"]["rho"])
    assert result["across_rounds"]["n"] == 0
    other = evidence_accuracy_correlation(frame, metric="val_accuracy")
    assert other["across_budgets"]["n"] == 0 and math.isnan(other["across_budgets"]["p_value"])
