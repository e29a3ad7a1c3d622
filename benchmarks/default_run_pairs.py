"""The default ``kedro run`` of two code versions, seed by seed: cost and accuracy, paired.

    nice -n 5 python benchmarks/default_run_pairs.py --baseline <commit> --name <name>
    python benchmarks/default_run_pairs.py --name <name> --summary   # re-read the rows only

Each seed runs ``kedro run --params seed=<s>`` (the whole default pipeline: dense run,
JMDS rounds, final retrain, evaluation) once in a clean checkout of ``--baseline`` (a git
worktree under ``/tmp``, its own ``data/``) and once in this checkout, one right after the
other (the order alternates by seed) so that both see about the same machine load. From
each run's ``data/08_reporting/mnist1d/metrics.json`` it keeps test accuracy,
``total_vs_dense`` (the JMDS run's wall time over the dense training's, both measured in
that run), ``total_samples_vs_dense`` and the log evidence. Rows go to
``benchmarks/results/<name>.jsonl`` (resumable); per metric the paired difference
current − baseline with its 95 % Student-t interval, and each version's mean
``total_vs_dense`` with its interval, to ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from jmds_pipeline.comparison.stats import t_interval

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
METRICS = Path("data/08_reporting/mnist1d/metrics.json")
KEPT = ("test_accuracy", "total_vs_dense", "total_samples_vs_dense", "log_evidence",
        "total_seconds")


def worktree(commit: str) -> Path:
    """A checkout of ``commit`` under /tmp (made once, reused)."""
    full = subprocess.run(["git", "rev-parse", commit], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()
    path = Path("/tmp") / f"jmds-baseline-{full[:12]}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), full], cwd=ROOT,
                       check=True, capture_output=True)
    return path


def kedro_run(project: Path, seed: int) -> dict:
    """One default ``kedro run`` in ``project`` with its own ``src`` first on the path."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "DVC_NO_ANALYTICS": "1",
           "PYTHONPATH": str(project / "src")}
    started = time.perf_counter()
    done = subprocess.run(["kedro", "run", "--params", f"seed={seed}"], cwd=project, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"kedro run in {project} (seed {seed}) failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((project / METRICS).read_text())
    return {**{k: metrics[k] for k in KEPT}, "session_seconds": wall,
            "load_average": list(os.getloadavg())}


def code_version(project: Path) -> str:
    return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=project, check=True,
                          capture_output=True, text=True).stdout.strip()


def run(baseline: str, seeds: list[int], rows_path: Path) -> None:
    base = worktree(baseline)
    done = set()
    if rows_path.exists():
        done = {(r["seed"], r["version"])
                for r in map(json.loads, rows_path.read_text().splitlines())}
    versions = {"baseline": base, "current": ROOT}
    for seed in seeds:
        order = ["baseline", "current"] if seed % 2 == 0 else ["current", "baseline"]
        for version in order:
            if (seed, version) in done:
                continue
            row = {"seed": seed, "version": version, "code": code_version(versions[version]),
                   **kedro_run(versions[version], seed)}
            with open(rows_path, "a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def _interval(values: list[float]) -> dict[str, float]:
    mean, low, high = t_interval(values)
    return {"mean": mean, "ci_low": low, "ci_high": high, "n": len(values)}


def summary(rows_path: Path) -> dict:
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    by = {(r["seed"], r["version"]): r for r in rows}
    seeds = sorted({s for s, v in by if (s, "baseline") in by and (s, "current") in by})
    out = {
        "command": f"python benchmarks/default_run_pairs.py --name {rows_path.stem} ...",
        "seeds": seeds,
        "codes": sorted({r["code"] for r in rows}),
        "paired_current_minus_baseline": {},
        "total_vs_dense": {},
    }
    for metric in KEPT:
        diffs = [by[(s, "current")][metric] - by[(s, "baseline")][metric] for s in seeds]
        out["paired_current_minus_baseline"][metric] = {**_interval(diffs), "per_seed": diffs}
    for version in ("baseline", "current"):
        out["total_vs_dense"][version] = {
            **_interval([by[(s, version)]["total_vs_dense"] for s in seeds]),
            "per_seed": [by[(s, version)]["total_vs_dense"] for s in seeds],
        }
        out.setdefault("test_accuracy", {})[version] = _interval(
            [by[(s, version)]["test_accuracy"] for s in seeds])
    rows_path.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="commit of the baseline version")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--name", default="default_run_pairs",
                        help="benchmarks/results/<name>.jsonl and .json")
    parser.add_argument("--summary", action="store_true", help="only summarise the rows")
    args = parser.parse_args()
    rows_path = RESULTS / f"{args.name}.jsonl"
    if not args.summary:
        if not args.baseline:
            parser.error("--baseline is needed to run (or --summary)")
        run(args.baseline, args.seeds, rows_path)
    print(json.dumps(summary(rows_path), indent=1))


if __name__ == "__main__":
    sys.exit(main())
