"""The default JMDS run with the exact and with the low-rank leverage, side by side.

    nice -n 5 python benchmarks/leverage_pairs.py          # 5 seeds × 2 budgets, resumable
    python benchmarks/leverage_pairs.py --summary          # re-read the rows only

The low-rank leverage became the MNIST-1D recipe's default after a validation comparison on
other generation seeds (``benchmarks/research/schedules.py``, schedule
``rewind10_r10_f50_lowrank``). This script reports, on the reported data (generation seed
42, test split) and once, what that change costs and gains: per seed, one dense run shared
by both; per budget, the default JMDS run with ``jmds.evidence.leverage`` = ``exact`` and
then ``lowrank``, one after the other in the same process, so their wall-time ratio sees
the same machine load. Rows go to ``benchmarks/results/leverage_pairs.jsonl``; the paired
differences (95 % Student-t intervals) to ``benchmarks/results/leverage_pairs.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "research"))
from common import done_keys, make_context

from jmds_pipeline.comparison.methods import Budget, _jmds, _jmds_config, dense_run
from jmds_pipeline.comparison.stats import t_interval

ROWS = Path(__file__).parent / "results" / "leverage_pairs.jsonl"
SUMMARY = Path(__file__).parent / "results" / "leverage_pairs.json"
BUDGETS = [Budget(0.8, 0.5), Budget(0.9, 0.7)]
LEVERAGES = ("exact", "lowrank")


def _key(budget: Budget) -> str:
    return f"{budget.model_sparsity}/{budget.data_sparsity}"


def run(seeds: list[int]) -> None:
    done = done_keys(str(ROWS), ("seed", "budget", "leverage"))
    for seed in seeds:
        todo = [(b, lev) for b in BUDGETS for lev in LEVERAGES
                if (seed, _key(b), lev) not in done]
        if not todo:
            continue
        context = make_context(42)
        dense = dense_run(context, seed)
        for budget, leverage in todo:
            evidence = context.config.jmds.evidence.model_copy(update={"leverage": leverage})
            started = time.perf_counter()
            row = _jmds(context, dense, budget, f"jmds_default_{leverage}",
                        _jmds_config(context, budget, evidence=evidence))
            row.update(seed=seed, budget=_key(budget), leverage=leverage,
                       wall=time.perf_counter() - started, dense_seconds=dense.seconds,
                       load_average=list(os.getloadavg()))
            with open(ROWS, "a") as handle:
                handle.write(json.dumps(row, default=float) + "\n")
            print(seed, _key(budget), leverage, f"test {row['test_accuracy']:.3f} "
                  f"total×dense {row['total_vs_dense']:.3f}", flush=True)


def _interval(values: list[float]) -> dict[str, float]:
    mean, low, high = t_interval(values)
    return {"n": len(values), "mean": mean, "low": low, "high": high}


def summary() -> dict:
    rows = [json.loads(line) for line in ROWS.read_text().splitlines()]
    by = {(r["seed"], r["budget"], r["leverage"]): r for r in rows}
    out: dict = {"rows": str(ROWS.name), "budgets": {}}
    for budget in map(_key, BUDGETS):
        seeds = sorted({s for s, b, _ in by if b == budget
                        and all((s, b, lev) in by for lev in LEVERAGES)})
        pairs = [(by[(s, budget, "exact")], by[(s, budget, "lowrank")]) for s in seeds]
        out["budgets"][budget] = {
            "seeds": seeds,
            "test_accuracy": {lev: statistics.fmean(p[i]["test_accuracy"] for p in pairs)
                              for i, lev in enumerate(LEVERAGES)},
            "total_vs_dense": {lev: statistics.fmean(p[i]["total_vs_dense"] for p in pairs)
                               for i, lev in enumerate(LEVERAGES)},
            "lowrank_minus_exact_test_accuracy": _interval(
                [lo["test_accuracy"] - ex["test_accuracy"] for ex, lo in pairs]),
            "lowrank_minus_exact_total_vs_dense": _interval(
                [lo["total_vs_dense"] - ex["total_vs_dense"] for ex, lo in pairs]),
            "lowrank_over_exact_wall": _interval([lo["wall"] / ex["wall"] for ex, lo in pairs]),
        }
    SUMMARY.write_text(json.dumps(out, indent=2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--summary", action="store_true", help="only re-read the rows")
    args = parser.parse_args()
    if not args.summary:
        run(args.seeds)
    print(json.dumps(summary()["budgets"], indent=1))


if __name__ == "__main__":
    main()
