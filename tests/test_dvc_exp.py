"""`dvc exp run` on a tiny digits run: `dvc exp show` lists DVCLive's per-round metrics
and `dvc plots diff` compares the rounds as steps.

The project copy is the one tests/test_dvc.py builds (digits only, 1-2 epochs, diagonal
evidence); here it becomes a git commit so that DVC can run an experiment from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_dvc import DATASET, _run, new_project

pytestmark = pytest.mark.slow


def test_exp_show_lists_every_round_and_plots_diff_compares_rounds(tmp_path: Path) -> None:
    pytest.importorskip("dvclive")
    project, env = new_project(tmp_path, commit=True)

    _run(["dvc", "exp", "run", "-n", "tiny", "-S",
          "conf/base/parameters_jmds.yml:jmds.target_data_sparsity=0.4"], project, env)

    # Ground truth: the round trace the Kedro pipeline itself wrote (not DVCLive).
    reporting = project / "data" / "08_reporting" / DATASET
    trace = json.loads((reporting / "round_trace.json").read_text("utf-8"))["rounds"]
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], project, env, stdout_only=True))
    experiments = [exp for rev in shown for exp in rev.get("experiments") or []]
    (run,) = [exp for exp in experiments if exp.get("name") == "tiny"]
    metrics = run["revs"][0]["data"]["metrics"]
    rounds = metrics[f"data/08_reporting/{DATASET}/dvclive/rounds/metrics.json"]["data"]
    for row in trace:
        listed = rounds[f"round_{row['round']}"]
        for key in ("log_evidence", "model_sparsity", "data_sparsity", "val_accuracy"):
            assert listed[key] == pytest.approx(row[key]), (row["round"], key)
    assert rounds["step"] == len(trace)
    dense = metrics[f"data/08_reporting/{DATASET}/dvclive/dense/metrics.json"]["data"]
    assert dense["step"] == 2  # the copy trains 2 dense epochs

    # `dvc plots diff` against the committed baseline (which has no outputs) still
    # renders the experiment's per-round series with the round as x.
    diff = json.loads(_run(["dvc", "plots", "diff", "tiny", "--json"], project, env,
                           stdout_only=True))["data"]
    key = f"data/08_reporting/{DATASET}/dvclive/rounds/plots/metrics/log_evidence.tsv"
    values = diff[key][0]["content"]["data"]["values"]
    assert [(int(v["step"]), float(v["log_evidence"])) for v in values if v["rev"] == "tiny"] \
        == [(row["round"], pytest.approx(row["log_evidence"])) for row in trace]
