"""Nodes of the comparison: dense runs per seed, one node per method, then the tables."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from jmds_pipeline.comparison.methods import Budget, Context, DenseRun, dense_run, run_jmds
from jmds_pipeline.comparison.runner import check_methods, run_method
from jmds_pipeline.comparison.stats import (
    evidence_accuracy_correlation,
    paired_difference,
    summary_table,
)
from jmds_pipeline.data.types import DatasetMeta, Split
from jmds_pipeline.plots import pareto_figure
from jmds_pipeline.reporting import comparison_markdown
from jmds_pipeline.runtime import run_config_of


def _context(train: Split, val: Split, test: Split, dataset_meta: dict[str, Any],
             parameters: dict[str, Any]) -> Context:
    config = run_config_of(parameters)
    # In every compare node, so before any training (config cannot import the methods).
    check_methods(config.compare.methods)
    check_methods([name for pair in config.compare.paired for name in pair], "compare.paired")
    return Context(config, DatasetMeta.from_dict(dataset_meta), train, val, test,
                   device=config.resolved_device(), el2n_models=config.compare.el2n_models,
                   el2n_epoch_fraction=config.compare.el2n_epoch_fraction)


def _budgets(parameters: dict[str, Any]) -> list[Budget]:
    return [Budget(*pair) for pair in run_config_of(parameters).compare.budgets]


def dense_runs(train: Split, val: Split, test: Split, dataset_meta: dict[str, Any],
               parameters: dict[str, Any]) -> list[DenseRun]:
    context = _context(train, val, test, dataset_meta, parameters)
    return [dense_run(context, seed) for seed in context.config.compare.seeds]


def compare_method(method: str):  # type: ignore[no-untyped-def]
    """A node function running ``method`` (empty table if it is not selected)."""

    def run(runs: list[DenseRun], train: Split, val: Split, test: Split,
            dataset_meta: dict[str, Any], parameters: dict[str, Any]) -> pd.DataFrame:
        context = _context(train, val, test, dataset_meta, parameters)
        if method not in context.config.compare.methods:
            return pd.DataFrame()
        progress = context.config.training.progress
        return run_method(context, method, _budgets(parameters), runs, progress=progress)

    run.__name__ = f"compare_{method}"
    return run


# Figures of the comparison: catalog dataset → (file name, cost column, cost label).
PARETO_FIGURES = {
    "pareto_flops": ("pareto_flops.png", "inference_flops_vs_dense_mean",
                     "inference FLOPs × dense"),
    "pareto_time": ("pareto_time.png", "total_vs_dense_mean", "total training time × dense"),
}


def summarise(parameters: dict[str, Any], *tables: pd.DataFrame) -> tuple[
    pd.DataFrame, pd.DataFrame, str, dict[str, Any], Figure, Figure
]:
    """All rows, the mean ± std table, Markdown, JSON with paired differences, and the
    quality-vs-cost Pareto figures (accuracy, or perplexity for language models)."""
    config = run_config_of(parameters)
    results = pd.concat([t for t in tables if len(t)], ignore_index=True)
    table = summary_table(results)
    differences = paired_difference(results, "jmds", "phased")
    paired = [row for a, b in config.compare.paired
              for row in paired_difference(results, a, b)]
    figures = {name: file for name, (file, _, _) in PARETO_FIGURES.items()}
    markdown = comparison_markdown(config.dataset, config.model, table, paired,
                                   figures=figures)
    payload = {
        "dataset": config.dataset,
        "model": config.model,
        "seeds": list(config.compare.seeds),
        "epochs": config.training.epochs,
        "rounds": config.jmds.rounds,
        "round_epochs": config.jmds.round_epochs,
        "rows": results.to_dict(orient="records"),
        "jmds_minus_phased": differences,
        "paired": paired,
        "figures": figures,  # next to this file
    }
    title = f"{config.dataset} / {config.model}, {len(config.compare.seeds)} seed(s)"
    budgets = [tuple(b) for b in config.compare.budgets]
    flops, time = (pareto_figure(table, cost, label, budgets, title)
                   for _, cost, label in PARETO_FIGURES.values())
    return results, table, markdown, payload, flops, time


def jmds_grid(runs: list[DenseRun], train: Split, val: Split, test: Split,
              dataset_meta: dict[str, Any], parameters: dict[str, Any]) -> tuple[
    pd.DataFrame, Figure
]:
    """JMDS test accuracy over a model-sparsity × data-sparsity grid."""
    context = _context(train, val, test, dataset_meta, parameters)
    grid = context.config.compare.grid
    rows = [
        run_jmds(context, dense, Budget(model, data))
        for dense in runs if dense.seed in grid.seeds
        for model in grid.model_sparsities for data in grid.data_sparsities
    ]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame, plt.figure()
    means = frame.pivot_table(index="target_model_sparsity", columns="target_data_sparsity",
                              values="test_accuracy", aggfunc="mean")
    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    image = axis.imshow(means.to_numpy(), cmap="viridis", origin="lower")
    axis.set_xticks(range(means.shape[1]), [f"{v:.0%}" for v in means.columns])
    axis.set_yticks(range(means.shape[0]), [f"{v:.0%}" for v in means.index])
    for i in range(means.shape[0]):
        for j in range(means.shape[1]):
            axis.text(j, i, f"{means.iat[i, j]:.3f}", ha="center", va="center", color="w")
    axis.set(xlabel="data sparsity", ylabel="model sparsity", title="JMDS test accuracy")
    figure.colorbar(image, ax=axis)
    figure.tight_layout()
    return frame, figure


def evidence_correlation(results: pd.DataFrame, grid: pd.DataFrame) -> dict[str, Any]:
    """Does the log evidence track accuracy? Spearman correlations across the compare
    budgets, across the heat-map grid and across rounds (see comparison.stats)."""
    return {
        "table": evidence_accuracy_correlation(results),
        "grid": evidence_accuracy_correlation(grid) if len(grid) else None,
    }
