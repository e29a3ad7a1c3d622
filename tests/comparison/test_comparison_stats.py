import math

import pandas as pd
import pytest

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
