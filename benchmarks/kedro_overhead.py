"""Kedro's own overhead on the default JMDS run (issue 13), measured side by side in one run.

    python benchmarks/kedro_overhead.py        # writes benchmarks/results/kedro_overhead.json

Two measurements, alternated ``REPEATS`` times so that machine load hits both alike:

- ``kedro``: the default pipeline (`kedro run`, MNIST-1D) in this process through a
  ``KedroSession`` in a temporary copy of the project, with a hook that times every node's
  function (from ``before_node_run``, after its inputs are loaded, to ``after_node_run``,
  before its outputs are saved). Session wall time minus the node functions' time is what
  Kedro adds: loading and saving through the catalog, validation, provenance records and
  their digests, the run lock, DVCLive, the report figures.
- ``plain``: the same steps as a plain Python loop over the library (`comparison.methods`:
  the dense run, JMDS's rounds, the final retrain, its evaluation and evidence), with
  nothing written.

Ratios, not seconds: several jobs may share the 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "kedro_overhead.json"
REPEATS = 3


class NodeTimer:
    """A Kedro hook recording each node function's wall time."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        self.started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node: Any) -> None:
        self.seconds[node.name] = time.perf_counter() - self.started[node.name]


def run_kedro() -> dict[str, Any]:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        shutil.copytree(REPO / "conf", project / "conf")
        shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
        (project / "src").mkdir()
        cwd = Path.cwd()
        os.chdir(project)
        try:
            bootstrap_project(project)
            timer = NodeTimer()
            started = time.perf_counter()
            with KedroSession.create(project_path=project,
                                     runtime_params={"training": {"progress": False}}) as session:
                session._hook_manager.register(timer)
                session.run()
            total = time.perf_counter() - started
        finally:
            os.chdir(cwd)
    nodes = sum(timer.seconds.values())
    return {"session_seconds": total, "node_seconds": nodes, "per_node": timer.seconds}


def run_plain() -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "benchmarks" / "research"))
    from common import make_context

    from jmds_pipeline.comparison.methods import Budget, dense_run, run_jmds_default

    started = time.perf_counter()
    context = make_context(42)
    jmds = context.config.jmds
    dense = dense_run(context, context.config.seed)
    row = run_jmds_default(context, dense, Budget(jmds.target_model_sparsity,
                                                   jmds.target_data_sparsity))
    return {"seconds": time.perf_counter() - started, "test_accuracy": row["test_accuracy"]}


def main() -> None:
    import torch

    torch.set_num_threads(1)  # as the pipeline's torch_threads: 1
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    kedro, plain = [], []
    run_plain()  # warm-up: imports, data generation caches
    for _ in range(REPEATS):
        kedro.append(run_kedro())
        plain.append(run_plain())
        print(f"kedro {kedro[-1]['session_seconds']:.1f}s (nodes {kedro[-1]['node_seconds']:.1f}s)"
              f", plain {plain[-1]['seconds']:.1f}s", flush=True)
    session = statistics.median(k["session_seconds"] for k in kedro)
    nodes = statistics.median(k["node_seconds"] for k in kedro)
    loop = statistics.median(p["seconds"] for p in plain)
    names = kedro[0]["per_node"]
    payload = {
        "command": "python benchmarks/kedro_overhead.py",
        "repeats": REPEATS,
        "note": "medians; shared 2-core CPU: compare ratios, not seconds",
        "kedro_session_seconds": session,
        "kedro_node_function_seconds": nodes,
        "plain_loop_seconds": loop,
        "kedro_overhead_fraction_of_run": (session - nodes) / session,
        "kedro_vs_plain_loop": session / loop,
        "per_node_median_seconds": {n: statistics.median(k["per_node"][n] for k in kedro)
                                    for n in names},
        "plain_test_accuracy": plain[-1]["test_accuracy"],
        "runs": {"kedro": kedro, "plain": plain},
    }
    OUT.write_text(json.dumps(payload, indent=2))
    print(f"overhead {payload['kedro_overhead_fraction_of_run']:.1%} of the session; "
          f"kedro/plain {payload['kedro_vs_plain_loop']:.2f}; wrote {OUT}")


if __name__ == "__main__":
    main()
