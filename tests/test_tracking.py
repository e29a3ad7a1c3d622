"""DVCLive tracking: what the training loop and the round trace write, and where."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from jmds_pipeline.config import RunConfig, TrainingConfig
from jmds_pipeline.tracking import epoch_tracker, log_rounds, track_rounds, tracking_dir
from jmds_pipeline.training.loop import train_model

pytest.importorskip("dvclive")

FAST = TrainingConfig(epochs=3, batch_size=16, progress=False)


def _tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def _config(**overrides: object) -> RunConfig:
    return RunConfig(dataset="digits", model="mlp", **overrides)


def test_every_epoch_of_the_loop_is_one_dvclive_step(tmp_path, monkeypatch, blobs, blob_mlp):
    monkeypatch.chdir(tmp_path)
    with epoch_tracker(_config(), "dense") as on_epoch:
        outcome = train_model(blob_mlp, blobs, FAST, on_epoch=on_epoch)
    live = tmp_path / "data" / "08_reporting" / "digits" / "dvclive" / "dense"
    assert _files(tmp_path) == {
        p.relative_to(tmp_path) for p in (
            live / "metrics.json", live / "plots" / "metrics" / "lr.tsv",
            live / "plots" / "metrics" / "train" / "loss.tsv",
            live / "plots" / "metrics" / "train" / "accuracy.tsv",
        )
    }  # nothing outside the run's reporting folder, no dvc.yaml, no report
    for name, key in (("loss", "train_loss"), ("accuracy", "train_accuracy")):
        rows = _tsv(live / "plots" / "metrics" / "train" / f"{name}.tsv")
        assert [int(r["step"]) for r in rows] == [1, 2, 3]
        assert [float(r[name]) for r in rows] == pytest.approx(
            [record[key] for record in outcome.history])
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["step"] == 3
    assert summary["train"]["loss"] == pytest.approx(outcome.history[-1]["train_loss"])


def test_tracking_off_or_off_rank_zero_writes_nothing(tmp_path, monkeypatch, blobs, blob_mlp):
    monkeypatch.chdir(tmp_path)
    with epoch_tracker(_config(dvclive=False), "dense") as on_epoch:
        assert on_epoch is None
        train_model(blob_mlp, blobs, FAST, on_epoch=on_epoch)
    monkeypatch.setenv("RANK", "1")
    assert tracking_dir(_config()) is None
    track_rounds(pd.DataFrame({"round": [1]}), {"dataset": "digits"})  # no-op on rank 1
    assert _files(tmp_path) == set()


def test_rounds_are_steps_and_every_round_is_in_the_summary(tmp_path):
    trace = pd.DataFrame({
        "round": [2, 1, 3],  # out of order on purpose: steps follow the round number
        "log_evidence": [-50.0, -80.0, -45.5],
        "model_sparsity": [0.55, 0.0, 0.8],
        "data_sparsity": [0.3, 0.0, 0.5],
        "val_accuracy": [0.9, 0.95, math.nan],
        "prior_precision": [2.0, 1.0, 3.0],
        "train_seconds": [1.0, 0.0, 1.0],
    })
    directory = tmp_path / "rounds"
    log_rounds(trace, directory)
    rows = _tsv(directory / "plots" / "metrics" / "log_evidence.tsv")
    assert [(int(r["step"]), float(r["log_evidence"])) for r in rows] == [
        (1, -80.0), (2, -50.0), (3, -45.5)]
    sparsity = _tsv(directory / "plots" / "metrics" / "model_sparsity.tsv")
    assert [float(r["model_sparsity"]) for r in sparsity] == [0.0, 0.55, 0.8]
    summary = json.loads((directory / "metrics.json").read_text())
    assert summary["step"] == 3
    assert summary["log_evidence"] == -45.5  # the last round
    assert summary["round_2"]["data_sparsity"] == 0.3
    assert summary["round_1"]["val_accuracy"] == 0.95
    assert math.isnan(summary["round_3"]["val_accuracy"])
    assert summary["round_2"]["prior_precision"] == 2.0  # optional, present here
    assert not (directory / "plots" / "metrics" / "train_seconds.tsv").exists()
    assert not (directory / "plots" / "metrics" / "objective.tsv").exists()  # absent

    # A rerun replaces the series instead of appending to them.
    log_rounds(trace.iloc[:1], directory)
    assert len(_tsv(directory / "plots" / "metrics" / "log_evidence.tsv")) == 1


def test_a_trace_without_the_round_columns_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match=r"lacks columns \['log_evidence'"):
        log_rounds(pd.DataFrame({"round": [1], "val_accuracy": [0.5]}), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_git_repository_without_commits_does_not_stop_tracking(tmp_path, monkeypatch):
    """dvclive 3.49 itself raises SCMError("Empty git repo") there (it looks up HEAD)."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.chdir(tmp_path)
    log_rounds(pd.DataFrame({"round": [1], "log_evidence": [-1.0], "model_sparsity": [0.0],
                             "data_sparsity": [0.0], "val_accuracy": [0.5]}),
               tmp_path / "rounds")
    summary = json.loads((tmp_path / "rounds" / "metrics.json").read_text())
    assert summary["round_1"]["val_accuracy"] == 0.5
    assert not (tmp_path / "dvc.yaml").exists()
