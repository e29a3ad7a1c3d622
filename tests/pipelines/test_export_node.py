"""``export_model``: the shipped model computes θ ⊙ m, its description counts the dense and
the non-zero parameters by hand, the CSR payload is the final state and masks, and only
channel granularity asks for channel groups (recorded by stand-ins)."""

from __future__ import annotations

import pytest
import torch

from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.pipelines.jmds import export
from jmds_pipeline.pipelines.jmds.export import export_model
from jmds_pipeline.runtime import model_from_state, run_config_of, seeded_model
from jmds_pipeline.training.loop import cpu_state
from tests.conftest import make_blobs

META = DatasetMeta(name="digits", task="classification", num_classes=3, input_shape=(6,))


def _parameters(granularity: str = "weight") -> dict:
    return {"dataset": "digits", "model": "mlp", "model_options": {"hidden_sizes": [8]},
            "dvclive": False, "jmds": {"granularity": granularity}}


def _state_and_masks() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    state = cpu_state(seeded_model(run_config_of(_parameters()), META))
    state = {k: torch.randn(v.shape, generator=torch.Generator().manual_seed(1)) + 5.0
             for k, v in state.items()}  # no weight happens to be 0
    mask = torch.ones(8, 6, dtype=torch.bool)
    mask[:, :2] = False  # 16 of fc1's 48 weights pruned
    state["net.fc1.weight"] = state["net.fc1.weight"] * mask
    return state, {"net.fc1.weight": mask}


def test_weight_granularity_ships_the_masked_model_at_full_size(monkeypatch) -> None:
    programs = []
    monkeypatch.setattr(export, "exported_program",
                        lambda model, example: programs.append((model, example)) or "PROGRAM")
    monkeypatch.setattr(export, "run_channel_groups",
                        lambda *a: pytest.fail("weight granularity has no channel groups"))
    state, masks = _state_and_masks()
    train = make_blobs(n=10)
    (program, shipped_description), sparse, description = export_model(
        state, masks, train, META.to_dict(), _parameters())

    ((shipped, example),) = programs
    assert program == "PROGRAM"
    assert torch.equal(example, train["x"][:2])
    # the shipped network computes the masked model's outputs
    reference = model_from_state(run_config_of(_parameters()), META, state)
    with torch.no_grad():
        assert torch.allclose(shipped(train["x"]), reference(train["x"]))
    # 6·8 + 8 + 8·3 + 3 = 83 parameters, 16 of them pruned to 0
    assert description["dense_parameter_count"] == 83
    assert description["nonzero_parameters"] == 67
    assert description["parameter_count"] == 83  # weight granularity: full size
    assert description["granularity"] == "weight"
    assert description["input_shape"] == [6]
    assert shipped_description is description
    assert sparse["masks"] is masks
    assert sparse["state"] == state and sparse["state"] is not state


def test_channel_granularity_prunes_with_the_runs_channel_groups(monkeypatch) -> None:
    calls: dict[str, tuple] = {}
    monkeypatch.setattr(export, "run_channel_groups",
                        lambda config, meta, model: calls.setdefault(
                            "groups", (config.jmds.granularity, meta, model)) and ["G"])

    def fake_prune(model, masks, groups, example):  # type: ignore[no-untyped-def]
        calls["prune"] = (model, masks, groups, example)
        return torch.nn.Sequential(torch.nn.Linear(6, 2))  # 14 parameters

    monkeypatch.setattr(export, "physically_prune", fake_prune)
    monkeypatch.setattr(export, "exported_program", lambda model, example: "PROGRAM")
    state, masks = _state_and_masks()
    train = make_blobs(n=10)
    _, _, description = export_model(state, masks, train, META.to_dict(),
                                     _parameters("channel"))
    granularity, meta, model = calls["groups"]
    assert (granularity, meta) == ("channel", META)
    pruned_model, pruned_masks, groups, example = calls["prune"]
    assert pruned_model is model and pruned_masks is masks and groups == ["G"]
    assert torch.equal(example, train["x"][:2])
    assert description["granularity"] == "channel"
    assert description["parameter_count"] == 14  # the smaller shipped model's
    assert description["dense_parameter_count"] == 83
