"""Run methods × budgets × seeds, sharing each seed's dense run."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import pandas as pd
from tqdm.auto import tqdm

from jmds_pipeline.comparison.methods import (
    METHODS,
    Budget,
    Context,
    DenseRun,
    effective_budget,
)
from jmds_pipeline.config import ConfigError

logger = logging.getLogger(__name__)


def check_methods(methods: Iterable[str], key: str = "compare.methods") -> None:
    """Raise ConfigError naming the parameter, every unknown method and the accepted ones."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"{key}: unknown methods {unknown}; accepted: {sorted(METHODS)}")


def unique_tasks(methods: Iterable[str], budgets: Sequence[Budget]) -> list[tuple[str, Budget]]:
    """(method, the budget it uses) without repeats: model-only methods run once per
    model sparsity, data-only once per data sparsity, dense once."""
    tasks: list[tuple[str, Budget]] = []
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"method = {method!r} is unknown; accepted: {sorted(METHODS)}")
        for budget in budgets:
            task = (method, effective_budget(method, budget))
            if task not in tasks:
                tasks.append(task)
    return tasks


def run_method(
    context: Context, method: str, budgets: Sequence[Budget], dense_runs: Sequence[DenseRun],
    progress: bool = True,
) -> pd.DataFrame:
    """Rows of one method for every budget it uses and every seed."""
    runner = METHODS[method][0]
    rows = []
    tasks = unique_tasks([method], budgets)
    bar = tqdm(total=len(tasks) * len(dense_runs), desc=method, disable=not progress)
    for _, budget in tasks:
        for dense in dense_runs:
            row = runner(context, dense, budget)
            logger.info("%s %s seed %d: test accuracy %.4f", method, budget, dense.seed,
                        row["test_accuracy"])
            rows.append(row)
            bar.update()
    bar.close()
    return pd.DataFrame(rows)
