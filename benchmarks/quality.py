"""Quality benchmark: the compare pipeline on MNIST-1D, written to benchmarks/results.

    python benchmarks/quality.py            # 3 seeds, budgets (80 %, 50 %) and (90 %, 70 %)
    python benchmarks/quality.py --quick    # 1 seed, one budget, few epochs: minutes

It runs `kedro run --pipelines=compare` through a KedroSession in this repository (outputs
under data/08_reporting/mnist1d/compare/) and writes benchmarks/results/quality.json: one
row per method × budget × seed, the mean ± std table, the paired difference JMDS − phased
per budget with its 95 % interval, and the settings used.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

QUICK = {
    "training": {"epochs": 15, "progress": False},
    "jmds": {"round_epochs": 5},
    "compare": {"seeds": [0], "budgets": [[0.8, 0.5]],
                "grid": {"seeds": [0], "model_sparsities": [0.8], "data_sparsities": [0.5]}},
}
FULL = {"training": {"progress": False}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 budget, 15 epochs")
    parser.add_argument("--dataset", default="mnist1d")
    parser.add_argument("--output", type=Path,
                        default=REPO / "benchmarks" / "results" / "quality.json")
    args = parser.parse_args()
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    os.chdir(REPO)

    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(REPO)
    runtime = {"dataset": args.dataset, **(QUICK if args.quick else FULL)}
    started = time.perf_counter()
    with KedroSession.create(project_path=REPO, runtime_params=runtime) as session:
        session.run(pipeline_names=["compare"])
        catalog = session.load_context().catalog
        summary = catalog.load("compare.summary")
        table = catalog.load("compare.table")
    seconds = time.perf_counter() - started
    payload = {
        "command": "python benchmarks/quality.py" + (" --quick" if args.quick else ""),
        "wall_seconds": seconds,
        "settings": runtime,
        **summary,
        "table": table.to_dict(orient="records"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2, default=float))
    print(f"wrote {args.output} in {seconds:.0f} s")
    for difference in summary["jmds_minus_phased"]:
        print(difference["comparison"], difference["target_model_sparsity"],
              difference["target_data_sparsity"], f"{difference['mean_difference']:+.4f}",
              f"[{difference['ci_low']:+.4f}, {difference['ci_high']:+.4f}]")


if __name__ == "__main__":
    main()
