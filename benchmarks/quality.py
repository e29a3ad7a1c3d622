"""Quality benchmark: the paper's table on MNIST-1D, run once under benchmarks/PROTOCOL.md.

    python benchmarks/quality.py                  # 5 seeds × 2 budgets, 2 worker processes
    python benchmarks/quality.py --quick          # 1 seed, 1 budget, few epochs: minutes

It runs the same library functions as `kedro run --pipelines=compare` (one runner per
method from ``comparison.methods``, each seed's dense run shared by its methods), spread
over worker processes (one task = one method × budget × seed; each worker caches the
dense runs of the seeds it meets: they are seeded, so identical in every worker). Then it
writes benchmarks/results/quality.json (every row, the mean ± std table, the paired
differences with 95 % intervals, the evidence–accuracy rank correlations, the settings and
the wall time) and docs/results/mnist1d_compare.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks" / "research"))

METHODS = ["dense", "imp", "forgetting", "el2n", "random_data", "phased", "jmds",
           "jmds_data_only", "jmds_default", "jmds_default_data_only", "jmds_scored_dense"]
BUDGETS = [(0.8, 0.5), (0.9, 0.7)]
GRID = {"model": [0.5, 0.8, 0.9], "data": [0.3, 0.5, 0.7], "seeds": [0]}
PAIRS = [("jmds", "phased"), ("jmds_default", "phased"), ("jmds_default", "jmds_scored_dense"),
         ("jmds_scored_dense", "phased"),
         ("jmds", "imp"),
         ("jmds_default", "imp"), ("jmds_data_only", "random_data"),
         ("jmds_default_data_only", "random_data"), ("forgetting", "random_data")]

_DENSE: dict[int, Any] = {}
_CONTEXT: Any = None


def _init(overrides: dict[str, Any]) -> None:
    global _CONTEXT
    from common import make_context

    _CONTEXT = make_context(42, overrides=overrides)  # the reported data: the package default


def _task(task: tuple[str, float, float, int, str]) -> dict[str, Any]:
    from jmds_pipeline.comparison.methods import METHODS as RUNNERS
    from jmds_pipeline.comparison.methods import Budget, dense_run

    method, model, data, seed, table = task
    if seed not in _DENSE:
        _DENSE[seed] = dense_run(_CONTEXT, seed)
    started = time.perf_counter()
    row = RUNNERS[method][0](_CONTEXT, _DENSE[seed], Budget(model, data))
    row.update(table=table, wall_seconds=time.perf_counter() - started,
               dense_seconds=_DENSE[seed].seconds)
    print(f"{table} {method} ({model:.0%}, {data:.0%}) seed {seed}: "
          f"test {row['test_accuracy']:.4f} val {row['val_accuracy']:.4f}", flush=True)
    return row


def tasks(methods: list[str], budgets: list[tuple[float, float]], seeds: list[int],
          grid: dict[str, Any] | None) -> list[tuple[str, float, float, int, str]]:
    from jmds_pipeline.comparison.methods import Budget
    from jmds_pipeline.comparison.runner import unique_tasks

    todo = [(method, budget.model_sparsity, budget.data_sparsity, seed, "table")
            for seed in seeds
            for method, budget in unique_tasks(methods, [Budget(*b) for b in budgets])]
    if grid:
        todo += [("jmds_default", m, d, seed, "grid") for seed in grid["seeds"]
                 for m in grid["model"] for d in grid["data"]]
    return todo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 budget, 15 epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--output", type=Path,
                        default=REPO / "benchmarks" / "results" / "quality.json")
    parser.add_argument("--markdown", type=Path,
                        default=REPO / "docs" / "results" / "mnist1d_compare.md")
    args = parser.parse_args()
    os.chdir(REPO)
    import pandas as pd

    from jmds_pipeline.comparison.stats import (
        evidence_accuracy_correlation,
        paired_difference,
        summary_table,
    )
    from jmds_pipeline.reporting import comparison_markdown

    overrides: dict[str, Any] = {}
    seeds, budgets, grid = args.seeds, BUDGETS, GRID
    if args.quick:
        overrides = {"training": {"epochs": 15}, "rewind_epoch": 3,
                     "jmds": {"round_epochs": 5, "final_epochs": 12},
                     "compare": {"imp_round_epochs": 5}}
        seeds, budgets, grid = [0], BUDGETS[:1], None
    todo = tasks(METHODS, budgets, seeds, grid)
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.jobs, _init, (overrides,)) as pool:
        rows = list(pool.imap_unordered(_task, todo))
    seconds = time.perf_counter() - started
    frame = pd.DataFrame(rows)
    results = frame[frame["table"] == "table"].drop(columns="table")
    grid_rows = frame[frame["table"] == "grid"].drop(columns="table")
    table = summary_table(results.drop(columns=["wall_seconds", "dense_seconds"]))
    paired = [row for a, b in PAIRS for row in paired_difference(results, a, b)]
    correlation = {
        "table_jmds": evidence_accuracy_correlation(results, "jmds"),
        "table_jmds_default": evidence_accuracy_correlation(results, "jmds_default"),
        "grid_jmds_default": (evidence_accuracy_correlation(grid_rows, "jmds_default")
                              if len(grid_rows) else None),
    }
    payload = {
        "command": "python benchmarks/quality.py" + (" --quick" if args.quick else ""),
        "protocol": "benchmarks/PROTOCOL.md",
        "dataset": "mnist1d (generation seed 42, the package default)",
        "model": "cnn1d",
        "wall_seconds": seconds,
        "jobs": args.jobs,
        "seeds": seeds,
        "budgets": budgets,
        "overrides": overrides,
        "paired": paired,
        "evidence_accuracy_correlation": correlation,
        "table": table.to_dict(orient="records"),
        "rows": results.to_dict(orient="records"),
        "grid_rows": grid_rows.to_dict(orient="records"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2, default=float))
    markdown = comparison_markdown("mnist1d", "cnn1d", table, paired)
    markdown += "\n## Does the log evidence track accuracy? (Spearman rank correlation)\n\n"
    for name, value in correlation.items():
        if value is None:
            continue
        for where, stats in value.items():
            markdown += (f"- {name}, {where}: ρ = {stats['rho']:+.3f} "
                         f"(p = {stats['p_value']:.3g}, n = {stats['n']})\n")
    if not args.quick:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown)
    print(markdown)
    print(f"wrote {args.output} in {seconds:.0f} s")


if __name__ == "__main__":
    main()
