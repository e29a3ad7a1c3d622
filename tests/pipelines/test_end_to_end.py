"""A 2-round JMDS run on `digits` through Kedro's runner, and its persisted artefacts."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from safetensors.torch import load_file

from jmds_pipeline.sparsity.schedules import round_targets

REPO = Path(__file__).resolve().parents[2]
TARGETS = (0.6, 0.4)


def _project_copy(tmp_path: Path, rounds: int) -> Path:
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "src").mkdir()  # the package itself is installed (editable)
    jmds_file = tmp_path / "conf" / "base" / "parameters_jmds.yml"
    parameters = yaml.safe_load(jmds_file.read_text())
    parameters["jmds"]["rounds"] = rounds
    jmds_file.write_text(yaml.safe_dump(parameters))
    return tmp_path


def _run(project: Path, runtime_params: dict, **run_args: object) -> None:
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params=runtime_params) as session:
        session.run(**run_args)


RUN = {
    "dataset": "digits",
    "training": {"epochs": 3, "progress": False},
    "jmds": {"rounds": 2, "round_epochs": 2, "target_model_sparsity": TARGETS[0],
             "target_data_sparsity": TARGETS[1], "evidence": {"subsample_size": 256}},
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    project = _project_copy(tmp_path_factory.mktemp("project"), rounds=2)
    cwd = Path.cwd()
    os.chdir(project)
    try:
        _run(project, RUN)
    finally:
        os.chdir(cwd)
    return project


@pytest.mark.slow
def test_rounds_hit_targets_and_persist_validated_tables(finished_run: Path):
    out = finished_run / "data" / "07_model_output" / "digits" / "jmds"
    model_targets = round_targets(TARGETS[0], 2, "geometric")
    data_targets = round_targets(TARGETS[1], 2, "geometric")
    for r in (1, 2):
        masks = load_file(str(out / f"round_{r}" / "masks.safetensors"))
        total = sum(m.numel() for m in masks.values())
        active = sum(int(m.sum()) for m in masks.values())
        assert abs(active - round((1 - model_targets[r - 1]) * total)) <= 1
        kept = load_file(str(out / f"round_{r}" / "kept.safetensors"))["kept"]
        assert abs(int(kept.sum()) - round((1 - data_targets[r - 1]) * kept.numel())) <= 1
        table = pd.read_parquet(out / f"round_{r}" / "sample_table.parquet")
        assert table["kept"].to_numpy().tolist() == kept.tolist()
        summary = pd.read_parquet(out / f"round_{r}" / "mask_summary.parquet")
        assert int(summary["active"].sum()) == active
        evidence = json.loads((out / f"round_{r}" / "evidence.json").read_text())
        assert torch.isfinite(torch.tensor(evidence["log_evidence"]))


@pytest.mark.slow
def test_round_training_used_exactly_the_kept_ids(finished_run: Path):
    out = finished_run / "data" / "07_model_output" / "digits" / "jmds"
    table = pd.read_parquet(out / "round_1" / "sample_table.parquet")
    log = json.loads((out / "round_2" / "train_log.json").read_text())
    assert log["trained_ids"] == sorted(table.loc[table["kept"], "id"].tolist())


@pytest.mark.slow
def test_final_model_has_pruned_weights_exactly_zero(finished_run: Path):
    out = finished_run / "data/07_model_output/digits/jmds"
    masks = load_file(str(out / "round_2" / "masks.safetensors"))
    final = load_file(str(finished_run / "data/06_models/digits/jmds_final.safetensors"))
    for name, mask in masks.items():
        assert torch.count_nonzero(final[name][~mask]) == 0
    metrics = json.loads((finished_run / "data/08_reporting/digits/metrics.json").read_text())
    assert metrics["model_sparsity"] == pytest.approx(TARGETS[0], abs=1e-3)
    assert metrics["data_sparsity"] == pytest.approx(TARGETS[1], abs=1e-3)
    assert 0 < metrics["inference_flops_vs_dense"] < 1
    assert (finished_run / "data/08_reporting/digits/report.md").read_text().startswith("# ")
    assert (finished_run / "data/08_reporting/digits/round_curves.png").stat().st_size > 0


@pytest.mark.slow
def test_a_rounds_mismatch_stops_before_any_node(tmp_path: Path, monkeypatch):
    project = _project_copy(tmp_path, rounds=2)
    monkeypatch.chdir(project)
    with pytest.raises(Exception, match=r"jmds\.rounds = 5 but the pipeline was built with 2"):
        _run(project, {"dataset": "digits", "jmds": {"rounds": 5}})
    assert not (project / "data").exists()


@pytest.mark.slow
def test_compare_pipeline_writes_a_validated_table_with_every_selected_method(
    tmp_path: Path, monkeypatch
):
    project = _project_copy(tmp_path, rounds=2)
    monkeypatch.chdir(project)
    methods = ["dense", "imp", "forgetting", "random_data", "phased", "jmds"]
    _run(project, {
        "dataset": "digits",
        "training": {"epochs": 2, "progress": False},
        "jmds": {"rounds": 2, "round_epochs": 1,
                 "evidence": {"subsample_size": 128, "fisher": "mc"}},
        "compare": {"methods": methods, "seeds": [0, 1], "budgets": [[0.5, 0.3]],
                    "grid": {"seeds": []}},
    }, pipeline_names=["compare"])
    out = project / "data" / "08_reporting" / "digits" / "compare"
    results = pd.read_parquet(out / "results.parquet")
    assert sorted(results["method"].unique()) == sorted(methods)
    assert (results.groupby("method")["seed"].nunique() == 2).all()
    by_method = results.groupby("method").first()
    assert by_method.loc["imp", "model_sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert by_method.loc["imp", "data_sparsity"] == 0.0
    assert by_method.loc["forgetting", "data_sparsity"] == pytest.approx(0.3, abs=1e-3)
    assert by_method.loc["jmds", "model_sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert by_method.loc["jmds", "data_sparsity"] == pytest.approx(0.3, abs=1e-3)
    summary = json.loads((out / "summary.json").read_text())
    (difference,) = summary["jmds_minus_phased"]
    assert difference["seeds"] == 2 and len(difference["per_seed"]) == 2
    assert "| jmds |" in (out / "table.md").read_text()


@pytest.mark.parametrize(
    ("runtime_params", "fragment"),
    [
        ({"dataset": "digits", "training": {"lr": -0.1}}, "training.lr = -0.1"),
        ({"dataset": "digits", "jmds": {"target_model_sparsity": 1.5}},
         "jmds.target_model_sparsity = 1.5"),
        ({"dataset": "cifar11"}, "dataset = 'cifar11'"),
    ],
)
def test_bad_parameters_stop_the_run_before_any_node(
    tmp_path: Path, monkeypatch, runtime_params: dict, fragment: str
):
    project = _project_copy(tmp_path, rounds=2)
    monkeypatch.chdir(project)
    with pytest.raises(Exception, match=re.escape(fragment)):
        _run(project, runtime_params)
    assert not (project / "data").exists()  # nothing was written


@pytest.mark.slow
def test_resuming_from_a_round_reuses_the_earlier_rounds(finished_run: Path, monkeypatch):
    out = finished_run / "data" / "07_model_output" / "digits" / "jmds"
    before = {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()}
    monkeypatch.chdir(finished_run)
    _run(finished_run, RUN, from_nodes=["round_2.train"])
    after = {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()}
    round_1 = [path for path in before if "round_1" in path.parts]
    assert round_1 and all(after[path] == before[path] for path in round_1)
    masks = out / "round_2" / "masks.safetensors"
    assert after[masks] > before[masks]
