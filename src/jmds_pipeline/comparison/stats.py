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


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` and its Student-t interval (NaN bounds for
    fewer than two values)."""
    values = [float(v) for v in values]
    n = len(values)
    mean = sum(values) / n if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


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
        mean, low, high = t_interval(differences, confidence)
        rows.append({
            "target_model_sparsity": float(budget[0]),
            "target_data_sparsity": float(budget[1]),
            "metric": metric,
            "comparison": f"{method} - {baseline}",
            "seeds": n,
            "mean_difference": mean,
            "ci_low": low,
            "ci_high": high,
            "per_seed": [float(d) for d in differences],
        })
    return rows


def _spearman(x: pd.Series, y: pd.Series) -> dict[str, float]:
    keep = x.notna() & y.notna()
    n = int(keep.sum())
    if n < 3:
        return {"rho": math.nan, "p_value": math.nan, "n": n}
    result = stats.spearmanr(x[keep], y[keep])
    return {"rho": float(result.statistic), "p_value": float(result.pvalue), "n": n}


def evidence_accuracy_correlation(
    results: pd.DataFrame, method: str = "jmds", metric: str = "test_accuracy",
) -> dict[str, dict[str, float]]:
    """The paper's claim "the drop in marginal likelihood is highly correlated with accuracy
    loss", measured two ways as Spearman rank correlations:

    - ``across_budgets``: over ``method``'s rows (budgets, grid points, seeds), the final
      model's log evidence against its ``metric``;
    - ``across_rounds``: over every round of every run, the log evidence of the model
      scored in that round against its validation accuracy (``round<k>_*`` columns).
    """
    rows = results[results["method"] == method]
    across_budgets = _spearman(rows.get("log_evidence", pd.Series(dtype=float)),
                               rows.get(metric, pd.Series(dtype=float)))
    evidence_columns = sorted(c for c in rows.columns
                              if c.startswith("round") and c.endswith("_log_evidence"))
    pairs = [(rows[c], rows[c.replace("_log_evidence", "_val_accuracy")])
             for c in evidence_columns
             if c.replace("_log_evidence", "_val_accuracy") in rows.columns]
    if pairs:
        evidence = pd.concat([p[0] for p in pairs], ignore_index=True)
        accuracy = pd.concat([p[1] for p in pairs], ignore_index=True)
        across_rounds = _spearman(evidence, accuracy)
    else:
        across_rounds = _spearman(pd.Series(dtype=float), pd.Series(dtype=float))
    return {"across_budgets": across_budgets, "across_rounds": across_rounds}
