"""A seeds × budgets sweep on DVC's experiment queue, as the README's "Scale" section runs it.

Two tiny digits experiments (the project copy of tests/test_dvc.py: 1-2 epochs, diagonal
evidence) are queued with ``dvc exp run --queue -S ...``, run by ``dvc queue start -j 2``
(DVC's celery workers, detached) and compared with ``dvc exp show``. Ground truth: the
metrics.json each experiment's own Kedro run wrote, read back with ``dvc exp show`` must
carry that experiment's parameters (its data budget), and the queued parameters must be
the ones each run reports.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.test_dvc import DATASET, _run, new_project

pytestmark = pytest.mark.slow

JMDS_FILE = "conf/base/parameters_jmds.yml"
RUN_FILE = "conf/base/parameters.yml"
# seed × data budget; the model budget stays at the copy's default
SWEEP = {"s0-d30": (0, 0.3), "s1-d40": (1, 0.4)}
QUEUE_TIMEOUT = 300  # s; both experiments finish in ~1-1.5 min on 2 cores


def _queue_states(project: Path, env: dict[str, str]) -> dict[str, str]:
    """Experiment name → status, from ``dvc queue status``'s table."""
    states = {}
    for line in _run(["dvc", "queue", "status"], project, env, stdout_only=True).splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1] in SWEEP:
            states[parts[1]] = parts[-1]
    return states


def _wait_for_queue(project: Path, env: dict[str, str]) -> dict[str, str]:
    deadline = time.monotonic() + QUEUE_TIMEOUT
    while time.monotonic() < deadline:
        states = _queue_states(project, env)
        if len(states) == len(SWEEP) and all(s in ("Success", "Failed") for s in states.values()):
            return states
        time.sleep(3)
    raise AssertionError(f"the queue did not finish in {QUEUE_TIMEOUT} s: {states}")


def test_queued_sweep_runs_on_workers_and_exp_show_compares_it(tmp_path: Path) -> None:
    project, env = new_project(tmp_path, commit=True)

    for name, (seed, data) in SWEEP.items():
        _run(
            [
                "dvc",
                "exp",
                "run",
                "--queue",
                "-n",
                name,
                "-S",
                f"{RUN_FILE}:seed={seed}",
                "-S",
                f"{JMDS_FILE}:jmds.target_data_sparsity={data}",
            ],
            project,
            env,
        )
    assert set(_queue_states(project, env).values()) == {"Queued"}
    _run(["dvc", "queue", "start", "-j", "2"], project, env)
    states = _wait_for_queue(project, env)
    if set(states.values()) != {"Success"}:
        logs = {n: _run(["dvc", "queue", "logs", n], project, env)[-3000:] for n in states}
        raise AssertionError(f"queued experiments failed: {states}\n{logs}")

    shown = json.loads(_run(["dvc", "exp", "show", "--json"], project, env, stdout_only=True))
    experiments = {
        exp["name"]: exp["revs"][0]["data"]
        for rev in shown
        for exp in rev.get("experiments") or []
        if exp.get("name") in SWEEP
    }
    assert set(experiments) == set(SWEEP)
    for name, (seed, data) in SWEEP.items():
        row = experiments[name]
        assert row["params"][RUN_FILE]["data"]["seed"] == seed
        assert row["params"][JMDS_FILE]["data"]["jmds"]["target_data_sparsity"] == data
        metrics = row["metrics"][f"data/08_reporting/{DATASET}/metrics.json"]["data"]
        assert metrics["dataset"] == DATASET
        # each run reached its own budget (to one sample), so the two rows really differ
        assert metrics["data_sparsity"] == pytest.approx(data, abs=0.01), name
    table = _run(
        ["dvc", "exp", "show", "--only-changed", "--md", "--no-pager"],
        project,
        env,
        stdout_only=True,
    )
    assert all(name in table for name in SWEEP), table
    assert "target_data_sparsity" in table and "data_sparsity" in table, table
