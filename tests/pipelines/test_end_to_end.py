"""A 2-round JMDS run on `digits` through Kedro's runner, and its persisted artefacts."""

from __future__ import annotations

import itertools
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
from PIL import Image
from safetensors.torch import load_file

from jmds_pipeline.reporting import SUMMARY_COLUMNS
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
    # Each round's evidence was computed under the masks it scored: round 2 has exactly
    # the weights round 1 pruned fewer active parameters than round 1.
    evidence = [json.loads((out / f"round_{r}" / "evidence.json").read_text()) for r in (1, 2)]
    initial = load_file(str(out / "initial_masks.safetensors"))
    first = load_file(str(out / "round_1" / "masks.safetensors"))
    pruned = sum(int(m.sum()) for m in initial.values()) - sum(int(m.sum()) for m in first.values())
    assert pruned > 0
    assert evidence[0]["num_active"] - evidence[1]["num_active"] == pruned
    trace = json.loads((finished_run / "data/08_reporting/digits/round_trace.json").read_text())
    for row in trace["rounds"]:
        evidence = json.loads((out / f"round_{row['round']}" / "evidence.json").read_text())
        assert row["log_evidence"] == evidence["log_evidence"]


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
    assert metrics["inference_flops_vs_dense"] == pytest.approx(
        metrics["inference_flops"] / metrics["inference_flops_dense"])
    with Image.open(finished_run / "data/08_reporting/digits/round_curves.png") as image:
        assert image.size[0] > 100 and image.size[1] > 100  # a real picture, not an empty file


@pytest.mark.slow
def test_round_one_scores_the_dense_model_by_default(finished_run: Path):
    scored = load_file(str(finished_run / "data/07_model_output/digits/jmds/round_1/"
                           "state.safetensors"))
    dense = load_file(str(finished_run / "data/06_models/digits/dense.safetensors"))
    assert scored.keys() == dense.keys()
    assert all(torch.equal(scored[k], dense[k]) for k in dense)
    log = json.loads((finished_run / "data/07_model_output/digits/jmds/round_1/"
                      "train_log.json").read_text())
    pretraining = json.loads((finished_run / "data/07_model_output/digits/"
                              "dense_training.json").read_text())
    assert log["val"] == pretraining["val"]  # the dense model, evaluated again


@pytest.mark.slow
def test_scoring_from_the_rewind_point_counts_only_the_pretraining_it_needs(tmp_path: Path,
                                                                              monkeypatch):
    project = _project_copy(tmp_path, rounds=2)
    monkeypatch.chdir(project)
    params = {**RUN, "jmds": {**RUN["jmds"], "score_from": "rewind"}}
    params["training"] = {**RUN["training"], "epochs": 4}
    _run(project, {**params, "rewind_epoch": 2})
    out = project / "data/07_model_output/digits"
    scored = load_file(str(out / "jmds/round_1/state.safetensors"))
    rewind = load_file(str(project / "data/06_models/digits/rewind.safetensors"))
    dense = load_file(str(project / "data/06_models/digits/dense.safetensors"))
    assert all(torch.equal(scored[k], rewind[k]) for k in rewind)
    assert not all(torch.equal(scored[k], dense[k]) for k in dense)
    # Round 1's row describes the model it scored, and the pretraining that model took.
    pretraining = json.loads((out / "dense_training.json").read_text())
    log = json.loads((out / "jmds/round_1/train_log.json").read_text())
    assert log["seconds"] == pretraining["rewind_seconds"]
    assert log["samples_seen"] == pretraining["samples_seen"] / 2
    trace = json.loads((project / "data/08_reporting/digits/round_trace.json").read_text())
    assert trace["rounds"][0]["val_accuracy"] == log["val"]["accuracy"]
    # The cost, summed from each phase's own record: pretraining up to the rewind point,
    # both rounds' scoring (evidence and weights, then samples), round 2's training and
    # the final retrain.
    pretraining = json.loads((out / "dense_training.json").read_text())
    assert 0 < pretraining["rewind_seconds"] < pretraining["seconds"]
    phases = [pretraining["rewind_seconds"],
              json.loads((out / "jmds/round_2/train_log.json").read_text())["seconds"],
              json.loads((out / "jmds/final_training.json").read_text())["seconds"]]
    phases += [json.loads((out / f"jmds/round_{r}/{name}.json").read_text())["seconds"]
               for r in (1, 2) for name in ("evidence", "sample_scoring")]
    metrics = json.loads((project / "data/08_reporting/digits/metrics.json").read_text())
    assert metrics["total_seconds"] == pytest.approx(sum(phases), rel=1e-9)
    assert metrics["total_vs_dense"] == pytest.approx(sum(phases) / pretraining["seconds"])
    # in samples: 2 of 4 dense epochs, then round 2's and the retrain's draws
    drawn = [json.loads((out / "jmds/round_2/train_log.json").read_text())["samples_seen"],
             json.loads((out / "jmds/final_training.json").read_text())["samples_seen"]]
    expected = (pretraining["samples_seen"] / 2 + sum(drawn)) / pretraining["samples_seen"]
    assert metrics["total_samples_vs_dense"] == pytest.approx(expected, rel=1e-12)


def _markdown_rows(text: str, heading: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first Markdown table after ``heading``."""
    lines = text.split(heading, 1)[1].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = list(itertools.takewhile(lambda line: line.startswith("|"), lines[first:]))
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    return cells[0], [row for row in cells[2:] if row]


def _close(cell: str, value: float) -> bool:
    """A report cell (4 decimals, or 4 significant digits in e-notation) shows ``value``."""
    shown = float(cell)
    return abs(shown - value) <= (5e-5 if "e" not in cell else 5e-4 * abs(value))


@pytest.mark.slow
def test_report_numbers_equal_the_metrics_json(finished_run: Path):
    reporting = finished_run / "data/08_reporting/digits"
    report = (reporting / "report.md").read_text()
    runs = {"jmds": json.loads((reporting / "metrics.json").read_text()),
            "dense": json.loads((reporting / "dense_metrics.json").read_text())}
    header, rows = _markdown_rows(report, "## Summary")
    labels = {label: key for key, label in SUMMARY_COLUMNS.items()}
    assert {row[0] for row in rows} == set(runs)
    checked = 0
    for row in rows:
        for label, cell in zip(header[1:], row[1:], strict=True):
            key = labels[label]
            if key in runs[row[0]]:
                assert _close(cell, runs[row[0]][key]), (row[0], key, cell)
                checked += 1
            else:
                assert cell == "–"
    assert checked >= 8
    trace = json.loads((reporting / "round_trace.json").read_text())["rounds"]
    header, rows = _markdown_rows(report, "## Rounds")
    assert len(rows) == len(trace) == 2
    for row, expected in zip(rows, trace, strict=True):
        for column, cell in zip(header, row, strict=True):
            assert _close(cell, float(expected[column])), (column, cell)


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


def _contents(folder: Path) -> dict[str, object]:
    """Every artefact's content by relative path: tensors, tables, and JSON without the
    wall-clock fields (seconds, and time ratios, differ between any two runs)."""
    clock = ("seconds", "timings", "time_vs_dense", "total_vs_dense")

    def clean(value: object) -> object:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()
                    if not any(word in k for word in clock)}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    out: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.suffix == ".safetensors":
            out[key] = {k: v.clone() for k, v in load_file(str(path)).items()}
        elif path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            out[key] = frame.drop(columns=[c for c in frame if "seconds" in c])
        elif path.suffix == ".json":
            out[key] = clean(json.loads(path.read_text()))
    return out


def _same(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, pd.DataFrame):
        return isinstance(b, pd.DataFrame) and a.equals(b)
    return a == b


@pytest.mark.slow
def test_resuming_from_a_round_reproduces_the_uninterrupted_run(
    finished_run: Path, monkeypatch, tmp_path: Path
):
    data = finished_run / "data"
    out = data / "07_model_output" / "digits" / "jmds"
    uninterrupted = _contents(data)
    # Interrupt after round 1: everything round 2 and the retrain wrote is gone.
    shutil.rmtree(out / "round_2")
    (data / "06_models/digits/jmds_final.safetensors").unlink()
    # A marker round 1 would overwrite if it ran again (no later node reads this table;
    # round 2 reads round 1's sample_table, so that one may not be touched).
    marker = out / "round_1" / "mask_summary.parquet"
    original = pd.read_parquet(marker)
    original.iloc[::-1].reset_index(drop=True).to_parquet(marker)
    monkeypatch.chdir(finished_run)
    _run(finished_run, RUN, from_nodes=["round_2.train"])
    resumed = _contents(data)
    pd.testing.assert_frame_equal(pd.read_parquet(marker),
                                  original.iloc[::-1].reset_index(drop=True))
    key = str(marker.relative_to(data))
    resumed[key] = uninterrupted[key]  # the marker aside, every artefact is identical
    assert resumed.keys() == uninterrupted.keys()
    # Provenance sidecars record when and from which input digests a file was written
    # (the marker's digest among them): they are checked by tests/reliability, not here.
    different = [k for k in uninterrupted if not k.endswith(".provenance.json")
                 and not _same(resumed[k], uninterrupted[k])]
    assert different == []
