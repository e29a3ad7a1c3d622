"""Language-model benchmark: dense vs JMDS vs phased (IMP → forgetting) on pydoc, GPT-2 tiny.

    python benchmarks/lm.py                       # the settings used for results/lm.json
    python benchmarks/lm.py --epochs 4 --rounds 3 --round-epochs 3   # the full pydoc recipe

The run configuration is the pydoc recipe of conf/base/parameters.yml with the JMDS
defaults of conf/base/parameters_jmds.yml, built by ``build_run_config`` exactly as the
pipeline does; the command-line options override training epochs, rounds and round epochs
(the CPU budget of a shared 2-core machine does not fit the full recipe for two seeds and
three methods). Every method uses ``jmds_pipeline.comparison.methods``: one dense run per
seed (``dense_run``), then ``run_dense``, ``run_phased``, ``run_jmds`` (the paper's method) and
``run_jmds_default`` (the configured default) at one budget
(model sparsity, data sparsity). Seeds run in parallel worker processes (one torch thread
each). Writes benchmarks/results/lm.json: per-seed rows (test perplexity, sparsities,
inference FLOPs vs dense, log evidence), per-method means and std, wall times, settings.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
METHODS = ("dense", "phased", "jmds", "jmds_default")


def run_config(args: argparse.Namespace) -> Any:
    import yaml

    from jmds_pipeline.config import build_run_config

    params: dict[str, Any] = {}
    for name in ("parameters.yml", "parameters_jmds.yml"):
        params.update(yaml.safe_load((REPO / "conf" / "base" / name).read_text()))
    params["dataset"] = "pydoc"
    params["model"] = None
    params["torch_threads"] = 1
    params["training"] = {"progress": False}
    if args.epochs is not None:
        params["training"]["epochs"] = args.epochs
    jmds = dict(params.get("jmds") or {})
    if args.rounds is not None:
        jmds["rounds"] = args.rounds
    if args.round_epochs is not None:
        jmds["round_epochs"] = args.round_epochs
    params["jmds"] = jmds
    return build_run_config(params)


def run_seed(job: tuple[argparse.Namespace, int]) -> list[dict[str, Any]]:
    """Dense run, then dense / phased / JMDS rows of one seed (in a worker process)."""
    args, seed = job
    import torch

    torch.set_num_threads(1)
    from jmds_pipeline.comparison import methods as M
    from jmds_pipeline.data import load_dataset

    config = run_config(args)
    splits, meta = load_dataset("pydoc", raw_dir=REPO / config.raw_dir, seed=config.seed,
                                options=config.dataset_options)
    context = M.Context(config, meta, splits["train"], splits["val"], splits["test"])
    budget = M.Budget(args.model_sparsity, args.data_sparsity)
    started = time.perf_counter()
    dense = M.dense_run(context, seed)
    dense_wall = time.perf_counter() - started
    runners = {name: M.METHODS[name][0] for name in METHODS}
    rows = []
    for method in METHODS:
        started = time.perf_counter()
        row = runners[method](context, dense, budget)
        row["wall_seconds"] = time.perf_counter() - started
        row["dense_run_wall_seconds"] = dense_wall
        rows.append(row)
        print(f"seed {seed} {method}: test perplexity {row['test_perplexity']:.4f} "
              f"({row['wall_seconds']:.0f} s)", flush=True)
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("test_perplexity", "test_loss", "test_accuracy", "model_sparsity",
            "data_sparsity", "inference_flops_vs_dense", "total_vs_dense", "wall_seconds")
    out: dict[str, Any] = {}
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        out[method] = {"seeds": [r["seed"] for r in mine]}
        for key in keys:
            values = [float(r[key]) for r in mine]
            out[method][key] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            }
    import pandas as pd

    from jmds_pipeline.comparison.stats import paired_difference

    frame = pd.DataFrame(rows)
    for method in ("jmds", "jmds_default"):
        # perplexity: lower is better, so a negative difference favours the first method
        out[f"{method}_minus_phased_perplexity"] = paired_difference(
            frame, method, "phased", metric="test_perplexity")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model-sparsity", type=float, default=0.5)
    parser.add_argument("--data-sparsity", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=2, help="training.epochs (recipe: 4)")
    parser.add_argument("--rounds", type=int, default=2, help="jmds.rounds (pipeline: 3)")
    parser.add_argument("--round-epochs", type=int, default=1,
                        help="jmds.round_epochs (pydoc recipe: 3)")
    parser.add_argument("--workers", type=int, default=3, help="seeds run in parallel")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "lm.json")
    args = parser.parse_args()
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")

    config = run_config(args)  # validates before any work
    started = time.perf_counter()
    jobs = [(args, seed) for seed in args.seeds]
    if args.workers > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(min(args.workers, len(jobs))) as pool:
            results = pool.map(run_seed, jobs)
    else:
        results = [run_seed(job) for job in jobs]
    wall = time.perf_counter() - started
    rows = [row for seed_rows in results for row in seed_rows]
    for row in rows:  # JSON has no inf/nan
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                row[key] = None
    payload = {
        "command": "python benchmarks/lm.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if k != "output"),
        "wall_seconds": wall,
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "settings": {
            "dataset": config.dataset,
            "model": config.model,
            "model_options": config.model_options,
            "dataset_options": config.dataset_options,
            "budget": {"model_sparsity": args.model_sparsity,
                       "data_sparsity": args.data_sparsity},
            "seeds": args.seeds,
            "training": config.training.model_dump(mode="json"),
            "rewind_epoch": config.rewind_epoch,
            "jmds": config.jmds.model_dump(mode="json"),
        },
        "summary": summarise(rows),
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(payload["summary"], indent=2))
    print(f"wrote {args.output} ({wall:.0f} s)")


if __name__ == "__main__":
    main()
