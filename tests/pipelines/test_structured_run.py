"""`kedro run --params jmds.granularity=channel` on MNIST-1D through Kedro's runner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.pipelines.test_end_to_end import _project_copy, _run

TARGET = 0.6
RUN = {
    "dataset": "mnist1d",
    "training": {"epochs": 2, "progress": False},
    "rewind_epoch": 1,  # the recipe rewinds to epoch 10 of 60
    "jmds": {
        "rounds": 2,
        "round_epochs": 1,
        "final_epochs": 2,
        "granularity": "channel",
        "target_model_sparsity": TARGET,
        "target_data_sparsity": 0.3,
        "evidence": {"subsample_size": 128},
    },
}


@pytest.fixture(scope="module")
def channel_run(tmp_path_factory) -> Path:
    project = _project_copy(tmp_path_factory.mktemp("channel"), rounds=2)
    cwd = Path.cwd()
    os.chdir(project)
    try:
        _run(project, RUN)
    finally:
        os.chdir(cwd)
    return project


def _rows(mask: torch.Tensor) -> torch.Tensor:
    return mask.reshape(mask.shape[0], -1)


@pytest.mark.slow
def test_channel_run_removes_whole_units(channel_run: Path) -> None:
    out = channel_run / "data/07_model_output/mnist1d/jmds"
    masks = load_file(str(out / "round_2" / "masks.safetensors"))
    final = load_file(str(channel_run / "data/06_models/mnist1d/jmds_final.safetensors"))
    convs = [f"net.conv{i}" for i in (1, 2, 3)]
    assert sorted(masks) == sorted([f"{c}.{p}" for c in convs for p in ("weight", "bias")])
    for i, conv in enumerate(convs):
        rows = _rows(masks[f"{conv}.weight"])
        alive = rows.any(1)
        assert torch.equal(masks[f"{conv}.bias"], alive)  # a unit goes with its bias
        assert int(alive.sum()) >= 1  # never a layer cut off
        if i > 0:  # the columns reading the previous layer's removed units are masked too
            before = (
                masks[f"{convs[i - 1]}.weight"]
                .reshape(masks[f"{convs[i - 1]}.weight"].shape[0], -1)
                .any(1)
            )
            cols = masks[f"{conv}.weight"][alive].any(0).any(-1)  # per input channel
            assert torch.equal(cols, before)
        assert torch.count_nonzero(final[f"{conv}.weight"][~masks[f"{conv}.weight"]]) == 0
        assert torch.count_nonzero(final[f"{conv}.bias"][~alive]) == 0
    total = sum(m.numel() for m in masks.values())
    removed = total - sum(int(m.sum()) for m in masks.values())
    biggest_unit = max(int(_rows(m).shape[1]) + 25 * 3 + 1 for m in masks.values() if m.dim() > 1)
    assert round(TARGET * total) <= removed < round(TARGET * total) + biggest_unit
    metrics = json.loads((channel_run / "data/08_reporting/mnist1d/metrics.json").read_text())
    assert metrics["model_sparsity"] == pytest.approx(removed / total)


@pytest.mark.slow
def test_channel_run_ships_a_smaller_model(channel_run: Path) -> None:
    """The exported program loads with torch alone, has the parameter count the masks
    imply and predicts what the masked final model predicts; the CSR state round-trips."""
    from jmds_pipeline.data.types import DatasetMeta
    from jmds_pipeline.models import build_model

    models = channel_run / "data/06_models/mnist1d"
    masks = load_file(
        str(channel_run / "data/07_model_output/mnist1d/jmds/round_2/masks.safetensors")
    )
    final = load_file(str(models / "jmds_final.safetensors"))
    summary = json.loads(
        (channel_run / "data/07_model_output/mnist1d/jmds/export.json").read_text()
    )
    program = torch.export.load(str(models / "jmds_export.pt2"))
    kept = [int(masks[f"net.conv{i}.bias"].sum()) for i in (1, 2, 3)]
    c1, c2, c3 = kept
    closed_form = c1 * (5 + 1) + c2 * (3 * c1 + 1) + c3 * (3 * c2 + 1) + 10 * 5 * c3 + 10
    assert summary["parameter_count"] == closed_form < summary["dense_parameter_count"]
    assert sum(p.numel() for p in program.module().parameters()) == closed_form
    meta = json.loads((channel_run / "data/02_intermediate/mnist1d/meta.json").read_text())
    model = build_model("cnn1d", DatasetMeta.from_dict(meta))
    model.load_state_dict(final)
    test = load_file(str(channel_run / "data/02_intermediate/mnist1d/test.safetensors"))
    x = test["x"][:256]
    with torch.no_grad():
        assert (program.module()(x) - model.eval()(x)).abs().max() <= 1e-5
    from jmds_pipeline.export import load_sparse

    sparse = load_sparse(models / "jmds_sparse.safetensors")
    assert all(torch.equal(sparse[k], v) for k, v in final.items())
