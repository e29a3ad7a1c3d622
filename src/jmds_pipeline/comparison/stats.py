"""Aggregates over seeds: mean ± std per method and budget, paired differences."""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats

BUDGET = ["target_model_sparsity", "target_data_sparsity"]


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per method × budget: mean and std over seeds of every numeric column."""
    keys = {"method", "seed", *BUDGET}
    numeric = [c for c in results.columns
               if c not in keys and pd.api.types.is_numeric_dtype(results[c])]
    grouped = results.groupby(["method", *BUDGET], sort=False)
    table = grouped[numeric].agg(["mean", "std"])
    table.columns = [f"{column}_{stat}" for column, stat in table.columns]
    table["seeds"] = grouped.size()
    return table.reset_index()


def paired_difference(
    results: pd.DataFrame, method: str, baseline: str, metric: str = "test_accuracy",
    confidence: float = 0.95,
) -> list[dict[str, float]]:
    """Per budget: mean of (method − baseline) over the seeds both ran, with a t interval."""
    rows = []
    joint = results[results["method"].isin([method, baseline])]
    for budget, group in joint.groupby(BUDGET):
        wide = group.pivot_table(index="seed", columns="method", values=metric)
        if method not in wide or baseline not in wide:
            continue
        differences = (wide[method] - wide[baseline]).dropna()
        n = len(differences)
        mean = float(differences.mean()) if n else math.nan
        if n > 1:
            sem = float(differences.std(ddof=1)) / math.sqrt(n)
            half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
        else:
            half = math.nan
        rows.append({
            "target_model_sparsity": float(budget[0]),
            "target_data_sparsity": float(budget[1]),
            "metric": metric,
            "comparison": f"{method} - {baseline}",
            "seeds": n,
            "mean_difference": mean,
            "ci_low": mean - half,
            "ci_high": mean + half,
            "per_seed": [float(d) for d in differences],
        })
    return rows
