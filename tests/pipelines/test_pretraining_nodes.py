"""``pretrain_dense`` and ``history_frame``: the dense model and its rewind point equal
``train_model`` run by hand with the run's seed and rewind epoch, the summary's counts are
the split's size times the epochs, the validation accuracy is counted by hand, and the
history passes the catalog's ``TrainingHistorySchema``."""

from __future__ import annotations

from contextlib import contextmanager

import pandas as pd
import pytest
import torch

from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.pipelines.pretraining import nodes
from jmds_pipeline.pipelines.pretraining.nodes import history_frame, pretrain_dense
from jmds_pipeline.runtime import run_config_of, seeded_model
from jmds_pipeline.schemas import TrainingHistorySchema
from jmds_pipeline.training.loop import TrainOutcome, cpu_state, train_model
from tests.conftest import make_blobs

META = DatasetMeta(name="digits", task="classification", num_classes=3, input_shape=(6,))


def _parameters(**top: object) -> dict:
    return {"dataset": "digits", "model": "mlp", "model_options": {"hidden_sizes": [8]},
            "seed": 5, "rewind_epoch": 1, "dvclive": False,
            "training": {"epochs": 2, "batch_size": 16, "progress": False,
                         "eval_batch_size": 7},
            **top}


def test_history_frame_puts_the_phase_first_and_whole_epochs() -> None:
    history = [{"epoch": 1.0, "train_loss": 0.9, "train_accuracy": 0.5, "lr": 0.1,
                "seconds": 0.2},
               {"epoch": 2.0, "train_loss": 0.4, "train_accuracy": 0.75, "lr": 0.05,
                "seconds": 0.3}]
    frame = history_frame(history, "final")
    assert list(frame.columns) == ["phase", "epoch", "train_loss", "train_accuracy", "lr",
                                   "seconds"]
    assert frame["phase"].tolist() == ["final", "final"]
    assert frame["epoch"].tolist() == [1, 2]
    assert pd.api.types.is_integer_dtype(frame["epoch"])
    assert frame["train_loss"].tolist() == [0.9, 0.4]
    assert frame["lr"].tolist() == [0.1, 0.05]
    TrainingHistorySchema.validate(frame)


def test_pretrain_dense_is_train_model_with_the_runs_seed_and_rewind_epoch() -> None:
    train, val = make_blobs(n=48), make_blobs(n=21, seed=1)
    parameters = _parameters()
    dense, rewind, history, summary = pretrain_dense(train, val, META.to_dict(), parameters)

    config = run_config_of(parameters)
    model = seeded_model(config, META)  # seeded with the run's seed 5
    outcome = train_model(model, train, config.training, seed=5, rewind_epoch=1)
    expected = cpu_state(model)
    assert dense.keys() == expected.keys()
    assert all(torch.equal(dense[k], expected[k]) for k in expected)
    assert all(torch.equal(rewind[k], outcome.rewind_state[k]) for k in expected)
    assert not torch.equal(rewind["net.fc1.weight"], dense["net.fc1.weight"])

    assert history["phase"].tolist() == ["dense", "dense"]
    assert history["epoch"].tolist() == [1, 2]
    TrainingHistorySchema.validate(history)
    # 48 rows drawn per epoch, two epochs; the rewind point after the first
    assert summary["samples_seen"] == 96
    assert summary["rewind_samples"] == 48
    assert summary["epochs"] == 2
    assert 0 < summary["rewind_seconds"] <= summary["seconds"]
    with torch.no_grad():
        hits = (model(val["x"]).argmax(1) == val["y"]).float().mean()
    assert summary["val"]["accuracy"] == pytest.approx(float(hits))
    assert set(summary) == {"seconds", "samples_seen", "rewind_seconds", "rewind_samples",
                            "epochs", "val"}


def test_pretrain_dense_passes_the_runs_settings_on(monkeypatch) -> None:
    """What the node hands the library: the run's seed, rewind epoch, device and
    evaluation batch size, the tracker of the ``dense`` phase; and what it returns."""
    calls: dict[str, object] = {}
    on_epoch = object()

    @contextmanager
    def fake_tracker(config, phase):  # type: ignore[no-untyped-def]
        calls["tracker"] = (config.dataset, phase)
        yield on_epoch

    rewind_state = {"w": torch.ones(1)}

    def fake_train(model, train, config, **kwargs):  # type: ignore[no-untyped-def]
        calls["train"] = (train, config, kwargs)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(0.5)
        return TrainOutcome(history=[{"epoch": 1.0, "train_loss": 1.0, "train_accuracy": 0.5,
                                      "lr": 0.1, "seconds": 1.0}] * 3,
                            rewind_state=rewind_state, seconds=12.5, samples_seen=300,
                            rewind_seconds=4.0, rewind_samples=100)

    def fake_evaluate(model, split, **kwargs):  # type: ignore[no-untyped-def]
        calls["evaluate"] = (split, kwargs)
        return {"loss": 0.25, "accuracy": 0.875}

    monkeypatch.setattr(nodes, "epoch_tracker", fake_tracker)
    monkeypatch.setattr(nodes, "train_model", fake_train)
    monkeypatch.setattr(nodes, "evaluate", fake_evaluate)
    train, val = make_blobs(n=12), make_blobs(n=6, seed=1)
    parameters = _parameters(seed=9, rewind_epoch=2, training={
        "epochs": 3, "batch_size": 4, "progress": False, "eval_batch_size": 7})
    dense, rewind, history, summary = pretrain_dense(train, val, META.to_dict(), parameters)

    assert calls["tracker"] == ("digits", "dense")
    split, config, kwargs = calls["train"]
    assert split is train
    assert config == run_config_of(parameters).training
    assert kwargs == {"device": "cpu", "seed": 9, "rewind_epoch": 2, "description": "dense",
                      "on_epoch": on_epoch}
    assert calls["evaluate"] == (val, {"task": "classification", "batch_size": 7,
                                       "device": "cpu"})
    assert summary == {"seconds": 12.5, "samples_seen": 300, "rewind_seconds": 4.0,
                       "rewind_samples": 100, "epochs": 3,
                       "val": {"loss": 0.25, "accuracy": 0.875}}
    assert rewind is rewind_state
    assert all(bool((v == 0.5).all()) for k, v in dense.items())  # the trained model's
    assert len(history) == 3
