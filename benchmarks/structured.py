"""Structured (whole-channel) pruning on MNIST-1D: channel JMDS against Torch-Pruning's
group magnitude at the same masked parameter fraction, model-only and joint.

    nice -n 5 python benchmarks/structured.py            # 3 seeds, 2 budgets, short schedule
    nice -n 5 python benchmarks/structured.py --full     # the recipe's schedule (hours)

The same runners as `kedro run --pipelines=compare` (``comparison.methods``) through the
quality benchmark's worker pool (``quality.tasks`` / ``quality._task``): each seed's dense
run is shared by its methods. Methods: ``tp_magnitude`` (Torch-Pruning's
``GroupMagnitudeImportance`` on whole channels, IMP's rounds and rewinding),
``tp_taylor`` (the same with ``GroupTaylorImportance``),
``jmds_channel_model_only`` (JMDS's evidence on whole channels, no data pruning),
``tp_phased`` (Torch-Pruning magnitude → forgetting), ``jmds_channel`` (the configured
default JMDS with ``granularity: channel``), and, for reference, element-level ``imp``,
``phased`` and ``jmds_default``. Writes benchmarks/results/structured.json (rows, the
mean ± std table, paired differences with 95 % intervals).

The short schedule (the default here, to fit the shared 2-core machine) trains 20 dense
epochs, 3 rounds × 8 epochs and a 20-epoch final retrain (the recipe: 60, 30 and 60).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "benchmarks" / "research"))

from quality import _init, _task, tasks  # noqa: E402  (after the path set-up)

METHODS = ["dense", "tp_magnitude", "tp_taylor", "jmds_channel_model_only", "tp_phased",
           "jmds_channel", "imp", "phased", "jmds_default"]
BUDGETS = [(0.5, 0.5), (0.8, 0.5)]
PAIRS = [("jmds_channel_model_only", "tp_magnitude"), ("jmds_channel_model_only", "tp_taylor"),
         ("jmds_channel", "tp_phased"),
         ("jmds_channel", "jmds_default"), ("tp_magnitude", "imp")]
SHORT = {"training": {"epochs": 20}, "jmds": {"round_epochs": 8}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the recipe's schedule")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--output", type=Path,
                        default=REPO / "benchmarks" / "results" / "structured.json")
    args = parser.parse_args()
    os.chdir(REPO)
    import pandas as pd

    from jmds_pipeline.comparison.stats import paired_difference, summary_table

    overrides = {} if args.full else SHORT
    todo = tasks(args.methods, BUDGETS, args.seeds, None)
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.jobs, _init, (overrides,)) as pool:
        rows = list(pool.imap_unordered(_task, todo))
    seconds = time.perf_counter() - started
    frame = pd.DataFrame(rows).drop(columns="table")
    table = summary_table(frame.drop(columns=["wall_seconds", "dense_seconds"]))
    paired = [row for a, b in PAIRS for row in paired_difference(frame, a, b)]
    payload = {
        "command": "python benchmarks/structured.py" + (" --full" if args.full else ""),
        "dataset": "mnist1d (generation seed 42, the package default)",
        "model": "cnn1d",
        "schedule": "recipe" if args.full else SHORT,
        "wall_seconds": seconds,
        "jobs": args.jobs,
        "seeds": args.seeds,
        "budgets": BUDGETS,
        "notes": "model sparsity is the zeroed fraction of the masked entries: prunable "
                 "weights for element methods; prunable weights and their units' biases "
                 "for channel methods (tp_*, jmds_channel*)",
        "paired": paired,
        "table": table.to_dict(orient="records"),
        "rows": frame.to_dict(orient="records"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2, default=float))
    print(table.to_string())
    for row in paired:
        print(row)
    print(f"wrote {args.output} in {seconds:.0f} s")


if __name__ == "__main__":
    main()
