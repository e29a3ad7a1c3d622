"""The JMDS nodes ``test_jmds_nodes.py`` leaves out: ``initial_sparsity``, ``final_retrain``,
what ``train_round`` and ``final_retrain`` hand ``train_model`` (α, the prior's n counted
by hand, epochs, the dvclive phase), the refusals naming what is misaligned, the running-mean
sample score, and the channel paths of ``score_round`` / ``update_mask`` (stand-ins record
what they are given)."""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.pipelines.jmds import nodes
from jmds_pipeline.pipelines.jmds.nodes import (
    KEPT,
    final_retrain,
    initial_sparsity,
    score_round,
    score_round_samples,
    train_round,
    update_mask,
    update_samples,
)
from jmds_pipeline.runtime import model_from_state, run_config_of, seeded_model
from jmds_pipeline.schemas import SampleTableSchema, TrainingHistorySchema
from jmds_pipeline.training.loop import TrainOutcome, cpu_state, train_model
from tests.conftest import make_blobs

META = DatasetMeta(name="digits", task="classification", num_classes=3, input_shape=(6,))


def _exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def _parameters(**jmds: object) -> dict:
    return {"dataset": "digits", "model": "mlp", "model_options": {"hidden_sizes": [8, 5]},
            "seed": 2, "dvclive": False,
            "training": {"epochs": 2, "batch_size": 16, "progress": False,
                         "eval_batch_size": 9},
            "jmds": {"rounds": 2, "round_epochs": 1, "final_epochs": 3,
                     "evidence": {"structure": "kfac", "subsample_size": None,
                                  "fisher": "exact", "prior_precision": 1.5},
                     **jmds}}


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    state = cpu_state(seeded_model(run_config_of(_parameters()), META))
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=generator) * 0.3 for k, v in state.items()}


def _masks(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    masks = {name: torch.ones_like(state[name], dtype=torch.bool)
             for name in ("net.fc1.weight", "net.fc2.weight")}
    masks["net.fc1.weight"][0] = False
    return masks


def _kept(n: int) -> dict[str, torch.Tensor]:
    rows = torch.ones(n, dtype=torch.bool)
    rows[::4] = False
    return {KEPT: rows, "id": torch.arange(1000, 1000 + n)}


def test_initial_sparsity_masks_every_hidden_weight_and_keeps_every_row() -> None:
    state, train = _state(), make_blobs(n=10)
    masks, kept = initial_sparsity(state, train, META.to_dict(), _parameters())
    # the output layer is not prunable by default
    assert list(masks) == ["net.fc1.weight", "net.fc2.weight"]
    assert masks["net.fc1.weight"].shape == (8, 6) and masks["net.fc2.weight"].shape == (5, 8)
    assert all(m.dtype == torch.bool and bool(m.all()) for m in masks.values())
    assert kept[KEPT].dtype == torch.bool and kept[KEPT].tolist() == [True] * 10
    assert torch.equal(kept["id"], train["id"]) and kept["id"] is not train["id"]
    masks, _ = initial_sparsity(state, train, META.to_dict(),
                                _parameters(include_output_layer=True))
    assert list(masks) == ["net.fc1.weight", "net.fc2.weight", "net.out.weight"]
    # channel mode: also the biases of the hidden units (each unit is one row and its bias)
    masks, _ = initial_sparsity(state, train, META.to_dict(),
                                _parameters(granularity="channel"))
    assert {name: tuple(m.shape) for name, m in masks.items()} == {
        "net.fc1.weight": (8, 6), "net.fc2.weight": (5, 8), "net.fc1.bias": (8,),
        "net.fc2.bias": (5,)}
    assert all(bool(m.all()) for m in masks.values())


@contextmanager
def _tracker_recording(phases: list[str]):  # type: ignore[no-untyped-def]
    @contextmanager
    def tracker(config, phase):  # type: ignore[no-untyped-def]
        phases.append(phase)
        yield f"on_epoch {phase}"
    yield tracker


def _fake_train(calls: list):  # type: ignore[no-untyped-def]
    def fake(model, train, config, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((model, train, config, kwargs))
        if kwargs.get("on_batch") is not None:
            kwargs["on_batch"]({"id": torch.tensor([1003, 1001])}, None)
            kwargs["on_batch"]({"id": torch.tensor([1001, 1002])}, None)
        return TrainOutcome(history=[{"epoch": 1.0, "train_loss": 0.5, "train_accuracy": 0.5,
                                      "lr": 0.1, "seconds": 0.1}] * 2,
                            seconds=6.5, samples_seen=36)
    return fake


@pytest.mark.parametrize(("rescale", "tie"), [(True, True), (False, True), (True, False)])
def test_train_round_hands_train_model_the_rounds_settings(monkeypatch, rescale: bool,
                                                          tie: bool) -> None:
    calls: list = []
    phases: list[str] = []
    with _tracker_recording(phases) as tracker:
        monkeypatch.setattr(nodes, "epoch_tracker", tracker)
    monkeypatch.setattr(nodes, "train_model", _fake_train(calls))
    monkeypatch.setattr(nodes, "evaluate", lambda model, split, **kw: {"accuracy": 0.75,
                                                                        "kwargs": kw})
    train, val = make_blobs(n=12), make_blobs(n=6, seed=1)
    state = _state()
    masks, kept = _masks(state), _kept(12)  # 9 of 12 rows kept
    parameters = _parameters(rescale_kept=rescale, tie_prior=tie)
    new_state, log = train_round(state, _state(1), masks, kept, {"prior_precision": 0.5},
                                 train, val, META.to_dict(), parameters, round_index=3)
    ((_, split, config, kwargs),) = calls
    assert split is train and config == run_config_of(parameters).training
    assert kwargs.pop("masks") is masks and kwargs.pop("kept") is kept[KEPT]
    assert kwargs.pop("on_batch") is not None
    # the prior's n: N = 12 with the N/K weights, K = 9 without
    assert kwargs.pop("prior_count") == pytest.approx(12.0 if rescale else 9.0)
    assert kwargs == {"device": "cpu", "seed": 2, "epochs": 1, "description": "round",
                      "prior_precision": 0.5 if tie else None,
                      "on_epoch": "on_epoch jmds/round_3"}
    assert phases == ["jmds/round_3"]
    assert log["seconds"] == 6.5 and log["samples_seen"] == 36
    assert log["val"] == {"accuracy": 0.75, "kwargs": {"task": "classification",
                                                       "batch_size": 9, "device": "cpu"}}
    assert log["prior_precision"] == (0.5 if tie else None)
    assert len(log["history"]) == 2
    assert log["trained_ids"] == [1001, 1002, 1003]  # each drawn id once, sorted
    assert torch.equal(new_state["net.fc1.weight"], state["net.fc1.weight"])


def test_train_round_refuses_kept_rows_of_another_split() -> None:
    train, val = make_blobs(n=12), make_blobs(n=6, seed=1)
    kept = {KEPT: torch.ones(12, dtype=torch.bool), "id": torch.arange(12)}
    with pytest.raises(ValueError, match=_exactly(
            "the kept-sample vector is not aligned with the training split ids")):
        train_round(_state(), _state(), _masks(_state()), kept, {"prior_precision": 1.0},
                    train, val, META.to_dict(), _parameters(), round_index=2)


def test_final_retrain_is_train_model_from_the_rewind_point_on_the_final_m_and_s() -> None:
    train = make_blobs(n=24)
    rewind = _state(4)
    masks, kept = _masks(rewind), _kept(24)
    parameters = _parameters(tie_prior=True)
    state, history, summary = final_retrain(rewind, masks, kept, {"prior_precision": 0.75},
                                            train, META.to_dict(), parameters)
    config = run_config_of(parameters)
    model = model_from_state(config, META, rewind)
    train_model(model, train, config.training, seed=2, masks=masks, kept=kept[KEPT],
                epochs=3, prior_precision=0.75, prior_count=24.0)
    expected = cpu_state(model)
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    assert not bool(state["net.fc1.weight"][0].any())  # pruned weights stay 0
    assert history["phase"].tolist() == ["final"] * 3 and history["epoch"].tolist() == [1, 2, 3]
    TrainingHistorySchema.validate(history)
    assert summary["epochs"] == 3
    assert summary["samples_seen"] == 3 * 18  # 18 of 24 rows kept, three epochs
    assert summary["prior_precision"] == 0.75
    assert summary["seconds"] > 0


@pytest.mark.parametrize("tie", [True, False])
def test_final_retrain_hands_train_model_the_final_settings(monkeypatch, tie: bool) -> None:
    calls: list = []
    phases: list[str] = []
    with _tracker_recording(phases) as tracker:
        monkeypatch.setattr(nodes, "epoch_tracker", tracker)
    monkeypatch.setattr(nodes, "train_model", _fake_train(calls))
    train = make_blobs(n=12)
    rewind = _state(4)
    masks, kept = _masks(rewind), _kept(12)
    parameters = _parameters(tie_prior=tie, rescale_kept=False, final_epochs=None)
    state, history, summary = final_retrain(rewind, masks, kept, {"prior_precision": 2.5},
                                            train, META.to_dict(), parameters)
    ((model, split, config, kwargs),) = calls
    assert split is train and config == run_config_of(parameters).training
    assert torch.equal(model.state_dict()["net.fc2.weight"], rewind["net.fc2.weight"])
    assert kwargs.pop("masks") is masks and kwargs.pop("kept") is kept[KEPT]
    assert kwargs == {"device": "cpu", "seed": 2, "epochs": None, "description": "final",
                      "prior_precision": 2.5 if tie else None, "prior_count": 9.0,
                      "on_epoch": "on_epoch jmds/final"}
    assert phases == ["jmds/final"]
    assert summary == {"seconds": 6.5, "samples_seen": 36, "epochs": 2,
                       "prior_precision": 2.5 if tie else None}
    assert len(history) == 2
    assert all(torch.equal(state[k], rewind[k]) for k in rewind)


def _scores(n: int, contribution: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"id": range(1000, 1000 + n), "label": [0, 1] * (n // 2),
                         "kept": [True] * n, "contribution": contribution,
                         "loss": [0.0] * n, "leverage": [0.0] * n})


def test_update_samples_ranks_by_the_running_mean_of_the_contribution() -> None:
    """Round 3 of ``contribution_mean`` in penalty mode (λ2 = 0: rows scoring below 0 go):
    score = previous mean + (c − previous mean) / 3. This round's c alone would drop rows
    2 and 3; the mean drops rows 0 and 1."""
    train = make_blobs(n=4, classes=2)
    kept = {KEPT: torch.ones(4, dtype=torch.bool), "id": train["id"].clone()}
    scores = _scores(4, [2.0, 2.0, -1.0, -1.0])
    previous = _scores(4, [0.0] * 4).assign(score=[-1.5, -1.5, 3.0, 3.0])
    penalty = {"mode": "penalty", "lambda_data": 0.0, "max_data_sparsity": 0.5}
    parameters = _parameters(sample_score="contribution_mean", **penalty)
    new, table = update_samples(scores, kept, train, parameters, previous, round_index=3)
    # (−1.5 + 3.5 / 3, …, 3 − 4 / 3, …)
    assert table["score"].tolist() == pytest.approx([-1 / 3, -1 / 3, 5 / 3, 5 / 3])
    assert new[KEPT].tolist() == [False, False, True, True]
    assert table["kept"].tolist() == [False, False, True, True]
    assert table["contribution"].tolist() == [2.0, 2.0, -1.0, -1.0]
    assert torch.equal(new["id"], kept["id"]) and new["id"] is not kept["id"]
    SampleTableSchema.validate(table)
    # round 2: the mean of two rounds
    _, table = update_samples(scores, kept, train, parameters, previous, round_index=2)
    assert table["score"].tolist() == pytest.approx([0.25, 0.25, 1.0, 1.0])
    # the plain contribution ignores the previous table
    new, table = update_samples(scores, kept, train, _parameters(**penalty), previous,
                                round_index=3)
    assert new[KEPT].tolist() == [True, True, False, False]
    assert table["score"].tolist() == [2.0, 2.0, -1.0, -1.0]
    # round 1 has no previous table: the mean is this round's c
    new, _ = update_samples(scores, kept, train, parameters, None, round_index=1)
    assert new[KEPT].tolist() == [True, True, False, False]


def test_update_samples_refuses_a_previous_table_of_other_rows() -> None:
    train = make_blobs(n=4, classes=2)
    kept = {KEPT: torch.ones(4, dtype=torch.bool), "id": train["id"].clone()}
    previous = _scores(4, [0.0] * 4).assign(score=0.0, id=[1000, 1001, 1003, 1002])
    with pytest.raises(ValueError, match=_exactly(
            "the previous round's sample table is not aligned with this one")):
        update_samples(_scores(4, [1.0] * 4), kept, train,
                       _parameters(sample_score="contribution_mean", rounds=1,
                                   target_data_sparsity=0.5), previous, round_index=2)


def test_update_mask_in_channel_mode_needs_the_metadata_and_passes_the_groups(
    monkeypatch,
) -> None:
    scores = {"net.fc1.weight": torch.zeros(8, 6)}
    masks = {"net.fc1.weight": torch.ones(8, 6, dtype=torch.bool)}
    parameters = _parameters(granularity="channel")
    with pytest.raises(ValueError, match=_exactly(
            "jmds.granularity = 'channel' needs the dataset's metadata")):
        update_mask(scores, masks, parameters, round_index=1)
    calls = []

    def fake_next_masks(scores_in, masks_in, config, round_index, groups):  # type: ignore[no-untyped-def]
        calls.append((scores_in, masks_in, config, round_index, groups))
        return {"net.fc1.weight": torch.zeros(8, 6, dtype=torch.bool)}

    monkeypatch.setattr(nodes, "next_masks", fake_next_masks)
    monkeypatch.setattr(nodes, "run_channel_groups",
                        lambda run, meta, model: [("groups of", run.jmds.granularity,
                                                   meta.name, tuple(model.state_dict()))])
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    _, summary = update_mask(scores, masks, parameters, META.to_dict(), round_index=2)
    assert torch.equal(torch.rand(1), before)  # building the architecture drew no numbers
    ((scores_in, masks_in, config, round_index, groups),) = calls
    assert scores_in is scores and masks_in is masks and round_index == 2
    assert config == run_config_of(parameters).jmds
    assert groups == [("groups of", "channel", "digits", tuple(_state()))]
    assert summary["active"].tolist() == [0]
    # weight granularity: no groups
    update_mask(scores, masks, _parameters(), META.to_dict(), round_index=1)
    assert calls[-1][4] is None


def _fake_phase_b(log_evidence: float = -12.0):  # type: ignore[no-untyped-def]
    result = SimpleNamespace(
        log_evidence=log_evidence, weight_scores={"net.fc1.weight": torch.full((8, 6), 2.0)},
        prior_precision={"net.fc1.weight": 0.5}, log_likelihood=-7.0, log_det_ratio=3.0,
        prior_term=-2.0, num_active=40, timings={"total": 0.5})
    stationarity = SimpleNamespace(as_dict=lambda: {"relative": 0.01})
    return SimpleNamespace(evidence=result, stationarity=stationarity)


@pytest.mark.parametrize(("granularity", "prune_model"),
                         [("channel", True), ("channel", False), ("weight", True)])
def test_score_round_scores_weights_or_whole_units(monkeypatch, granularity: str,
                                                   prune_model: bool) -> None:
    calls: dict[str, tuple] = {}
    phase_b = _fake_phase_b()

    def fake_score_weights(model, masks, kept, train, jmds, config, device):  # type: ignore[no-untyped-def]
        calls["score_weights"] = (model, masks, kept, train, jmds, config, device)
        return phase_b

    monkeypatch.setattr(nodes, "score_weights", fake_score_weights)
    monkeypatch.setattr(nodes, "run_channel_groups", lambda run, meta, model: calls.setdefault(
        "groups", (run, meta, model)) and ["unit groups"])
    monkeypatch.setattr(nodes, "channel_scores", lambda groups, result, masks: calls.setdefault(
        "channel", (groups, result, masks)) and {"net.fc1.weight": torch.full((8, 6), 9.0)})
    state, train = _state(), make_blobs(n=12)
    masks, kept = _masks(state), _kept(12)
    penalty = {"lambda_model": 0.25, "lambda_data": 0.5, "mode": "penalty"}
    parameters = _parameters(granularity=granularity, prune_model=prune_model,
                             **(penalty if granularity == "weight" else {}))
    started = time.perf_counter()
    scores, evidence = score_round(state, masks, kept, train, META.to_dict(), parameters)
    elapsed = time.perf_counter() - started
    model, masks_in, kept_in, train_in, jmds, config, device = calls["score_weights"]
    assert masks_in is masks and kept_in is kept[KEPT] and train_in is train
    assert jmds == run_config_of(parameters).jmds and device == "cpu"
    assert (config.likelihood, config.prior_precision) == ("classification", 1.5)
    assert torch.equal(model.state_dict()["net.fc1.weight"], state["net.fc1.weight"])
    if granularity == "channel" and prune_model:
        assert calls["channel"] == (["unit groups"], phase_b.evidence, masks)
        run, meta, grouped = calls["groups"]
        assert run == run_config_of(parameters) and meta == META and grouped is model
        assert float(scores["net.fc1.weight"][0, 0]) == 9.0
    else:  # a data-only run scores no units; weight granularity scores weights
        assert "channel" not in calls
        assert float(scores["net.fc1.weight"][0, 0]) == 2.0
    assert evidence["log_evidence"] == -12.0
    # log Z − λ1‖m‖₀ − λ2‖s‖₀: 48 − 6 + 40 mask entries active, 9 of 12 rows kept
    # (target mode: λ = 0, the objective is log Z)
    assert evidence["objective"] == pytest.approx(
        -12.0 - 0.25 * 82 - 0.5 * 9 if granularity == "weight" else -12.0)
    assert (evidence["log_likelihood"], evidence["log_det_ratio"], evidence["prior_term"]) == (
        -7.0, 3.0, -2.0)
    assert evidence["prior_precision"] == {"net.fc1.weight": 0.5}
    # a copy: the saved evidence does not share the engine's dict
    assert evidence["prior_precision"] is not phase_b.evidence.prior_precision
    assert evidence["num_active"] == 40
    assert evidence["stationarity"] == {"relative": 0.01}
    assert evidence["timings"] == {"total": 0.5}
    assert 0 <= evidence["seconds"] <= elapsed  # the node's own time, within the call's


@pytest.mark.parametrize("sequences", [True, False])
def test_score_round_samples_labels_sequences_minus_one(monkeypatch, sequences: bool) -> None:
    n = 4
    result = SimpleNamespace(sample_contribution=torch.tensor([-1.0, -2.0, -3.0, -4.0]),
                             sample_loss=torch.tensor([0.5, 1.0, 1.5, 2.0]),
                             sample_leverage=torch.tensor([0.5, 1.0, 1.5, 2.0]),
                             timings={"total": 0.25})
    seen = []
    monkeypatch.setattr(nodes, "score_samples",
                        lambda model, masks, kept, train, jmds, config, device:
                        seen.append((masks, kept, device)) or result)
    y = torch.zeros(n, 5, dtype=torch.long) if sequences else torch.tensor([2, 0, 1, 2])
    train = {"x": torch.zeros(n, 6), "y": y, "id": torch.arange(7, 7 + n)}
    kept = {KEPT: torch.tensor([True, True, False, True]), "id": train["id"]}
    before, after = {"a": torch.ones(2, dtype=torch.bool)}, {"a": torch.zeros(2, dtype=torch.bool)}
    started = time.perf_counter()
    table, scoring = score_round_samples(_state(), before, after, kept, train, META.to_dict(),
                                         _parameters())
    elapsed = time.perf_counter() - started
    assert seen == [(after, kept[KEPT], "cpu")]
    # a sequence has no single label; a classifier's rows their class
    assert table["label"].tolist() == ([-1] * 4 if sequences else [2, 0, 1, 2])
    assert table["id"].tolist() == [7, 8, 9, 10]
    assert table["kept"].tolist() == [True, True, False, True]
    assert table["contribution"].tolist() == [-1.0, -2.0, -3.0, -4.0]
    assert table["loss"].tolist() == [0.5, 1.0, 1.5, 2.0]
    assert table["leverage"].tolist() == [0.5, 1.0, 1.5, 2.0]
    assert str(table["contribution"].dtype) == "float64"
    SampleTableSchema.validate(table)
    assert scoring["timings"] == {"total": 0.25}
    assert 0 <= scoring["seconds"] <= elapsed


def test_round_one_refuses_a_pretraining_record_without_the_rewind_samples() -> None:
    old = {"seconds": 8.0, "samples_seen": 400, "rewind_seconds": 2.0}  # no rewind_samples
    with pytest.raises(ValueError, match=_exactly(
            "dense_training.json has no 'rewind_samples' (written before jmds.score_from "
            "existed); rerun: kedro run --pipelines=pretraining")):
        nodes.round_one_state(_state(1), _state(2), old, make_blobs(n=6), META.to_dict(),
                              _parameters(score_from="rewind"))
    # scoring the dense model needs only the dense run's own counts
    _, log = nodes.round_one_state(_state(1), _state(2), old, make_blobs(n=6), META.to_dict(),
                                   _parameters(score_from="dense"))
    assert (log["seconds"], log["samples_seen"]) == (8.0, 400)


def test_round_one_evaluates_with_the_runs_settings(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(nodes, "evaluate", lambda model, split, **kwargs:
                        calls.append((model, split, kwargs)) or {"accuracy": 0.5})
    val = make_blobs(n=6)
    dense = _state(1)
    _, log = nodes.round_one_state(dense, _state(2), {"seconds": 1.0, "samples_seen": 4},
                                   val, META.to_dict(), _parameters(score_from="dense"))
    ((model, split, kwargs),) = calls
    assert split is val and log["val"] == {"accuracy": 0.5}
    assert torch.equal(model.state_dict()["net.fc1.weight"], dense["net.fc1.weight"])
    assert kwargs == {"task": "classification", "batch_size": 9, "device": "cpu"}
