"""``evaluate_dense`` and ``evaluate_jmds`` on a tiny MLP: test accuracy counted by hand,
sparsities of hand-made masks and kept rows, the whole JMDS cost summed by hand from the
round trace and the final retrain, and what the nodes hand the evidence, the report and
the figures (recorded by stand-ins)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.pipelines.evaluation import nodes
from jmds_pipeline.pipelines.evaluation.nodes import evaluate_dense, evaluate_jmds
from jmds_pipeline.runtime import model_from_state, run_config_of, seeded_model
from jmds_pipeline.training.loop import cpu_state
from tests.conftest import make_blobs

META = DatasetMeta(name="digits", task="classification", num_classes=3, input_shape=(6,))


def _parameters(**jmds: object) -> dict:
    return {"dataset": "digits", "model": "mlp", "model_options": {"hidden_sizes": [8]},
            "seed": 4, "dvclive": False,
            "training": {"epochs": 2, "batch_size": 16, "progress": False,
                         "eval_batch_size": 5},
            "jmds": {"rounds": 2, "round_epochs": 1,
                     "evidence": {"structure": "kfac", "subsample_size": None,
                                  "fisher": "exact", "prior_precision": 1.5},
                     **jmds}}


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    state = cpu_state(seeded_model(run_config_of(_parameters()), META))
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=generator) for k, v in state.items()}


def _accuracy(state: dict[str, torch.Tensor], split: dict) -> float:
    model = model_from_state(run_config_of(_parameters()), META, state)
    with torch.no_grad():
        return float((model(split["x"]).argmax(1) == split["y"]).float().mean())


def test_evaluate_dense_reports_the_models_test_accuracy_and_dense_ratios(capsys) -> None:
    state, test = _state(), make_blobs(n=30, seed=2)
    training = {"seconds": 4.0, "samples_seen": 100, "epochs": 2}
    metrics = evaluate_dense(state, test, META.to_dict(), training, _parameters())
    assert (metrics["dataset"], metrics["model"], metrics["seed"]) == ("digits", "mlp", 4)
    assert metrics["test_accuracy"] == pytest.approx(_accuracy(state, test))
    assert metrics["train_seconds"] == 4.0
    assert metrics["samples_seen"] == 100.0
    assert metrics["time_vs_dense"] == 1.0  # the dense run against itself
    assert metrics["model_sparsity"] == 0.0
    assert metrics["data_sparsity"] == 0.0
    assert metrics["inference_flops_vs_dense"] == 1.0
    assert "digits / mlp" in capsys.readouterr().out


def test_evaluate_dense_passes_the_runs_settings_to_run_metrics(monkeypatch) -> None:
    calls = []

    def fake_metrics(model, test, meta, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((model, test, meta, kwargs))
        return {"test_accuracy": 0.5, "test_loss": 1.0}

    monkeypatch.setattr(nodes, "run_metrics", fake_metrics)
    printed = []
    monkeypatch.setattr(nodes, "print_summary", lambda title, runs: printed.append((title, runs)))
    state, test = _state(1), make_blobs(n=10)
    metrics = evaluate_dense(state, test, META.to_dict(), {"seconds": 3.0, "samples_seen": 7},
                             _parameters())
    ((model, split, meta, kwargs),) = calls
    assert split is test and meta == META
    assert torch.equal(model.state_dict()["net.fc1.weight"], state["net.fc1.weight"])
    assert kwargs == {"masks": None, "kept_fraction": 1.0, "train_seconds": 3.0,
                      "samples_seen": 7, "dense_train_seconds": 3.0, "device": "cpu",
                      "batch_size": 5}
    assert metrics == {"dataset": "digits", "model": "mlp", "seed": 4,
                       "test_accuracy": 0.5, "test_loss": 1.0}
    assert printed == [("digits / mlp", {"dense": {"test_accuracy": 0.5, "test_loss": 1.0}})]


def _trace() -> pd.DataFrame:
    return pd.DataFrame({"round": [1, 2], "log_evidence": [-50.0, -40.0],
                         "val_accuracy": [0.8, 0.85], "model_sparsity": [0.0, 0.5],
                         "data_sparsity": [0.0, 0.25],
                         "train_seconds": [10.0, 2.5], "evidence_seconds": [1.5, 0.75],
                         "train_samples": [200.0, 60.0]})


class _Recorder:
    def __init__(self) -> None:
        self.calls: dict[str, tuple] = {}

    def record(self, name: str, result: object):  # type: ignore[no-untyped-def]
        def stand_in(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls[name] = (args, kwargs)
            return result
        return stand_in


@pytest.mark.parametrize("rescale", [True, False])
def test_evaluate_jmds_costs_sparsities_evidence_and_report(monkeypatch, rescale: bool) -> None:
    recorder = _Recorder()
    evidence = SimpleNamespace(log_evidence=-33.25)
    for name, result in [("estimate_evidence", evidence), ("jmds_report", "REPORT"),
                         ("round_curves", "CURVES"), ("layer_density", "DENSITY")]:
        monkeypatch.setattr(nodes, name, recorder.record(name, result))
    state = _state(3)
    train, test = make_blobs(n=12), make_blobs(n=30, seed=2)
    # 16 of the masked layer's 48 weights pruned; 3 of 12 rows dropped
    masks = {"net.fc1.weight": torch.ones(8, 6, dtype=torch.bool)}
    masks["net.fc1.weight"][:2] = False
    masks["net.fc1.weight"][2, :4] = False
    state["net.fc1.weight"] *= masks["net.fc1.weight"]  # the retrain keeps pruned weights 0
    kept = torch.tensor([True, False] * 3 + [True] * 6)
    parameters = _parameters(rescale_kept=rescale)
    dense_metrics = {"test_accuracy": 0.9}
    dense_training = {"seconds": 20.0, "samples_seen": 400}
    final_training = {"seconds": 5.0, "samples_seen": 100}
    trace = _trace()
    metrics, report, curves, density = evaluate_jmds(
        state, masks, {"kept": kept, "id": train["id"]}, train, test, META.to_dict(),
        parameters, dense_metrics, dense_training, final_training, trace)

    assert (metrics["dataset"], metrics["model"], metrics["seed"]) == ("digits", "mlp", 4)
    assert metrics["test_accuracy"] == pytest.approx(_accuracy(state, test))
    assert metrics["model_sparsity"] == pytest.approx(16 / 48)
    assert metrics["data_sparsity"] == pytest.approx(0.25)
    assert metrics["train_seconds"] == 5.0
    assert metrics["time_vs_dense"] == 0.25  # the retrain alone: 5 of the dense 20 s
    # rounds' training 12.5 s + scoring 2.25 s + the retrain's 5 s
    assert metrics["total_seconds"] == pytest.approx(19.75)
    assert metrics["total_vs_dense"] == pytest.approx(19.75 / 20.0)
    # samples: rounds 260 + retrain 100, of the dense run's 400
    assert metrics["total_samples_vs_dense"] == pytest.approx(0.9)
    assert metrics["log_evidence"] == -33.25

    (model, x, y), kwargs = recorder.calls["estimate_evidence"]
    assert x is train["x"] and y is train["y"]
    assert torch.equal(model.state_dict()["net.fc1.weight"], state["net.fc1.weight"])
    expected_weights = torch.tensor([1.0, 0.0] * 3 + [1.0] * 6) * (12 / 9 if rescale else 1)
    assert torch.allclose(kwargs.pop("sample_weights"), expected_weights)
    assert kwargs.pop("masks") is masks
    config = kwargs.pop("config")
    assert (config.likelihood, config.seed, config.prior_precision) == (
        "classification", 4, 1.5)
    assert kwargs == {"device": "cpu", "score_samples": False, "score_weights": False}

    assert report == "REPORT"
    (title, runs, trace_in, config_json), _ = recorder.calls["jmds_report"]
    assert title == "digits / mlp: JMDS vs dense"
    assert runs == {"dense": dense_metrics, "jmds": {k: v for k, v in metrics.items()
                                                     if k not in ("dataset", "model", "seed")}}
    assert trace_in is trace
    assert config_json["jmds"]["rescale_kept"] is rescale and config_json["seed"] == 4
    # JSON-typed (lists, not tuples): the report embeds it as JSON
    assert json.loads(json.dumps(config_json)) == config_json
    assert config_json["compare"]["seeds"] == [0, 1, 2]

    assert curves == "CURVES"
    assert recorder.calls["round_curves"] == ((trace, metrics["test_accuracy"]), {})
    assert density == "DENSITY"
    (summary,), _ = recorder.calls["layer_density"]
    assert summary.to_dict(orient="records") == [
        {"layer": "net.fc1.weight", "numel": 48, "active": 32, "density": 32 / 48}]


def test_evaluate_jmds_hands_run_metrics_the_kept_fraction_and_settings(monkeypatch) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(nodes, "run_metrics", recorder.record(
        "run_metrics", {"test_accuracy": 0.5}))
    monkeypatch.setattr(nodes, "estimate_evidence", recorder.record(
        "estimate_evidence", SimpleNamespace(log_evidence=0.0)))
    for name in ("jmds_report", "round_curves", "layer_density", "print_rounds",
                 "print_summary"):
        monkeypatch.setattr(nodes, name, recorder.record(name, None))
    state, train = _state(), make_blobs(n=8)
    masks = {"net.fc1.weight": torch.ones(8, 6, dtype=torch.bool)}
    kept = torch.tensor([True] * 6 + [False] * 2)
    metrics, *_ = evaluate_jmds(state, masks, {"kept": kept}, train, make_blobs(n=4),
                                META.to_dict(), _parameters(), {}, {"seconds": 8.0,
                                                                    "samples_seen": 40},
                                {"seconds": 2.0, "samples_seen": 10}, _trace())
    (_, _, meta), kwargs = recorder.calls["run_metrics"]
    assert meta == META
    assert kwargs == {"masks": masks, "kept_fraction": 0.75, "train_seconds": 2.0,
                      "samples_seen": 10, "dense_train_seconds": 8.0, "device": "cpu",
                      "batch_size": 5}
    # 12.5 + 2.25 + 2 seconds of 8; 260 + 10 samples of 40
    assert metrics["total_vs_dense"] == pytest.approx(16.75 / 8)
    assert metrics["total_samples_vs_dense"] == pytest.approx(270 / 40)
    (trace,), _ = recorder.calls["print_rounds"]
    assert trace["round"].tolist() == [1, 2]
    (title, runs), _ = recorder.calls["print_summary"]
    assert title == "digits / mlp: JMDS vs dense" and list(runs) == ["dense", "jmds"]
