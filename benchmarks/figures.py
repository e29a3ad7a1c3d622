"""Redraw the comparison figures of docs/results/ from the benchmark JSON files.

    python benchmarks/figures.py

The figures are the compare pipeline's own (``jmds_pipeline.plots.pareto_figure`` on
``comparison.stats.summary_table`` of the rows), drawn from the rows the benchmarks wrote,
so no run is repeated:

- benchmarks/results/quality.json (``python benchmarks/quality.py``, MNIST-1D) →
  docs/results/pareto_flops.png, docs/results/pareto_time.png (test accuracy);
- benchmarks/results/lm.json (``python benchmarks/lm.py``, pydoc / GPT-2 tiny) →
  docs/results/lm_pareto_flops.png (test perplexity).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from jmds_pipeline.comparison.stats import summary_table
from jmds_pipeline.plots import pareto_figure

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
OUT = REPO / "docs" / "results"
COSTS = {"flops": ("inference_flops_vs_dense_mean", "inference FLOPs × dense"),
         "time": ("total_vs_dense_mean", "total training time × dense")}


def draw(source: Path, figures: dict[str, str]) -> None:
    payload = json.loads(source.read_text(encoding="utf8"))
    rows = pd.DataFrame(payload["rows"])
    table = summary_table(rows)
    settings = payload.get("settings", {})
    dataset = payload.get("dataset", settings.get("dataset"))
    model = payload.get("model", settings.get("model"))
    seeds = rows["seed"].nunique()
    for cost, name in figures.items():
        column, label = COSTS[cost]
        figure = pareto_figure(table, column, label,
                               title=f"{dataset} / {model}, {seeds} seeds ({source.name})")
        figure.savefig(OUT / name, dpi=120)
        print("wrote", OUT / name)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    draw(RESULTS / "quality.json", {"flops": "pareto_flops.png", "time": "pareto_time.png"})
    draw(RESULTS / "lm.json", {"flops": "lm_pareto_flops.png"})


if __name__ == "__main__":
    main()
