import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from jmds_pipeline.comparison.methods import Budget, effective_budget
from jmds_pipeline.comparison.runner import unique_tasks
from jmds_pipeline.comparison.stats import paired_difference, summary_table


def _rows() -> pd.DataFrame:
    rows = []
    for seed, (jmds, phased) in enumerate([(0.80, 0.70), (0.82, 0.74), (0.78, 0.72)]):
        for method, accuracy in (("jmds", jmds), ("phased", phased)):
            rows.append({"method": method, "seed": seed, "target_model_sparsity": 0.8,
                         "target_data_sparsity": 0.5, "test_accuracy": accuracy})
    return pd.DataFrame(rows)


def test_paired_difference_matches_a_hand_computed_t_interval():
    (result,) = paired_difference(_rows(), "jmds", "phased")
    differences = [0.10, 0.08, 0.06]
    mean = sum(differences) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t_{0.975, 2}
    assert result["mean_difference"] == pytest.approx(mean)
    assert result["ci_low"] == pytest.approx(mean - half)
    assert result["ci_high"] == pytest.approx(mean + half)
    assert result["seeds"] == 3


def test_summary_table_gives_mean_and_std_over_seeds():
    table = summary_table(_rows()).set_index("method")
    assert table.loc["jmds", "test_accuracy_mean"] == pytest.approx(0.80)
    assert table.loc["phased", "test_accuracy_std"] == pytest.approx(0.02)
    assert table.loc["jmds", "seeds"] == 3


def test_each_method_uses_only_its_side_of_the_budget_and_runs_once_per_budget():
    budgets = [Budget(0.8, 0.5), Budget(0.8, 0.7)]
    assert effective_budget("imp", budgets[0]) == Budget(0.8, 0.0)
    assert effective_budget("forgetting", budgets[0]) == Budget(0.0, 0.5)
    assert effective_budget("dense", budgets[0]) == Budget(0.0, 0.0)
    tasks = unique_tasks(["dense", "imp", "forgetting", "jmds"], budgets)
    assert tasks == [
        ("dense", Budget(0.0, 0.0)), ("imp", Budget(0.8, 0.0)),
        ("forgetting", Budget(0.0, 0.5)), ("forgetting", Budget(0.0, 0.7)),
        ("jmds", Budget(0.8, 0.5)), ("jmds", Budget(0.8, 0.7)),
    ]
    with pytest.raises(ValueError, match="method = 'magic'"):
        unique_tasks(["magic"], budgets)


def _two_budget_rows(values: dict) -> pd.DataFrame:
    """``values[(budget, method)]`` = {seed: accuracy}."""
    rows = []
    for (budget, method), per_seed in values.items():
        for seed, accuracy in per_seed.items():
            rows.append({"method": method, "seed": seed, "target_model_sparsity": budget[0],
                         "target_data_sparsity": budget[1], "test_accuracy": accuracy})
    return pd.DataFrame(rows)


@settings(max_examples=40, deadline=None)
@given(
    accuracies=st.lists(st.floats(0.0, 1.0), min_size=8, max_size=8),
    missing=st.integers(0, 3),
    confidence=st.sampled_from([0.9, 0.95, 0.99]),
)
def test_paired_interval_per_budget_with_a_missing_seed(accuracies, missing, confidence):
    """Two budgets, four seeds; one seed of the baseline is missing at the second budget.
    Each budget's row must carry its own budget and its own paired t interval (scipy's
    one-sample t test of the differences as the oracle)."""
    a, b = (0.8, 0.5), (0.9, 0.7)
    jm1, ph1, jm2, ph2 = (dict(enumerate(accuracies[i:i + 2] * 2)) for i in (0, 2, 4, 6))
    jm1 = {s: v + 0.01 * s for s, v in jm1.items()}  # distinct differences per seed
    del ph2[missing]
    rows = _two_budget_rows({(a, "jmds"): jm1, (a, "phased"): ph1,
                             (b, "jmds"): jm2, (b, "phased"): ph2})
    result = {(r["target_model_sparsity"], r["target_data_sparsity"]): r
              for r in paired_difference(rows, "jmds", "phased", confidence=confidence)}
    assert set(result) == {a, b}
    for budget, jm, ph in ((a, jm1, ph1), (b, jm2, ph2)):
        seeds = sorted(set(jm) & set(ph))
        differences = np.array([jm[s] - ph[s] for s in seeds])
        row = result[budget]
        assert row["seeds"] == len(seeds) == (4 if budget == a else 3)
        assert row["per_seed"] == pytest.approx(differences.tolist())
        assert row["mean_difference"] == pytest.approx(differences.mean(), abs=1e-12)
        if differences.std() > 1e-9:
            low, high = scipy_stats.ttest_1samp(differences, 0.0).confidence_interval(
                confidence)
            assert row["ci_low"] == pytest.approx(low, abs=1e-9)
            assert row["ci_high"] == pytest.approx(high, abs=1e-9)


def test_one_seed_gives_a_mean_but_no_interval():
    rows = _two_budget_rows({((0.8, 0.5), "jmds"): {0: 0.9}, ((0.8, 0.5), "phased"): {0: 0.7}})
    (row,) = paired_difference(rows, "jmds", "phased")
    assert row["seeds"] == 1
    assert row["mean_difference"] == pytest.approx(0.2)
    # One difference says nothing about its spread: no interval, never a zero-width one.
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])


def test_a_budget_only_one_method_ran_is_left_out():
    rows = _two_budget_rows({((0.8, 0.5), "jmds"): {0: 0.9, 1: 0.8},
                             ((0.8, 0.5), "phased"): {0: 0.7, 1: 0.75},
                             ((0.9, 0.7), "jmds"): {0: 0.6, 1: 0.5}})
    result = paired_difference(rows, "jmds", "phased")
    assert [(r["target_model_sparsity"], r["target_data_sparsity"]) for r in result] == [
        (0.8, 0.5)]
    assert result[0]["comparison"] == "jmds - phased"
    assert result[0]["metric"] == "test_accuracy"
