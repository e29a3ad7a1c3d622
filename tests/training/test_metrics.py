"""run_metrics on a tiny model whose sparsity and FLOPs are counted by hand."""

from __future__ import annotations

import math

import torch
from pytest import approx
from torch import nn

from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.training.evaluate import evaluate
from jmds_pipeline.training.metrics import model_sparsity, run_metrics

META = DatasetMeta("toy", "classification", 2, (4,))


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def _split(n: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "x": torch.randn(n, 4, generator=generator),
        "y": torch.arange(n) % 2,
        "id": torch.arange(n),
    }


def _masks() -> dict[str, torch.Tensor]:
    first = torch.ones(3, 4, dtype=torch.bool)
    first.view(-1)[:5] = False  # 7 of 12 weights kept
    second = torch.ones(2, 3, dtype=torch.bool)
    second[0, :2] = False  # 4 of 6 kept
    return {"0.weight": first, "2.weight": second}


def test_model_sparsity_is_the_removed_fraction_of_all_masked_weights() -> None:
    assert model_sparsity(None) == 0.0
    assert model_sparsity({}) == 0.0
    assert model_sparsity(_masks()) == approx(7 / 18)  # (5 + 2) of 18 removed
    assert model_sparsity({"w": torch.ones(4)}) == 0.0


def test_run_metrics_of_a_masked_model_on_a_data_subset() -> None:
    net, test = _net(), _split()
    metrics = run_metrics(
        net,
        test,
        META,
        masks=_masks(),
        kept_fraction=0.25,
        train_seconds=6.0,
        samples_seen=40,
        dense_train_seconds=8.0,
        batch_size=4,
    )
    quality = evaluate(net, test, task="classification")
    dense = 2 * 4 * 3 + 2 * 3 * 2  # one sample: 2 FLOPs per multiply-add
    masked = 2 * 4 * 3 * 7 / 12 + 2 * 3 * 2 * 4 / 6  # each layer × its density
    assert metrics == approx(
        {
            "test_loss": quality["loss"],
            "test_accuracy": quality["accuracy"],
            "model_sparsity": 7 / 18,
            "data_sparsity": 0.75,
            "inference_flops": masked,
            "inference_flops_dense": dense,
            "inference_flops_vs_dense": masked / dense,
            "training_flops": 3 * masked * 40,
            "train_seconds": 6.0,
            "samples_seen": 40.0,
            "time_vs_dense": 0.75,
        }
    )
    assert all(isinstance(value, float) for value in metrics.values())


def test_run_metrics_of_the_dense_model_without_a_dense_time() -> None:
    metrics = run_metrics(
        _net(), _split(), META, masks=None, kept_fraction=1.0, train_seconds=2.0, samples_seen=10
    )
    assert metrics["model_sparsity"] == 0.0 and metrics["data_sparsity"] == 0.0
    assert metrics["inference_flops"] == metrics["inference_flops_dense"] == 36.0
    assert metrics["inference_flops_vs_dense"] == 1.0
    assert metrics["training_flops"] == 3 * 36 * 10
    assert "time_vs_dense" not in metrics
    zero = run_metrics(
        _net(),
        _split(),
        META,
        masks={},
        kept_fraction=1.0,
        train_seconds=2.0,
        samples_seen=10,
        dense_train_seconds=0.0,
    )
    assert "time_vs_dense" not in zero  # no dense time measured: no ratio


def test_a_model_without_flops_has_a_flops_ratio_of_one() -> None:
    test = {"x": torch.randn(4, 2), "y": torch.tensor([0, 1, 1, 0]), "id": torch.arange(4)}
    metrics = run_metrics(
        nn.Identity(), test, META, masks=None, kept_fraction=1.0, train_seconds=1.0, samples_seen=4
    )
    assert metrics["inference_flops_dense"] == 0.0
    assert metrics["inference_flops_vs_dense"] == 1.0


class TokenTable(nn.Module):
    """Next-token logits that depend only on the current token: a (V, V) table."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x]


def test_a_language_model_reports_its_perplexity() -> None:
    torch.manual_seed(0)
    meta = DatasetMeta("toy-text", "language_modeling", 4, (3,))
    test = {
        "x": torch.tensor([[0, 1, 2], [3, 0, 1]]),
        "y": torch.tensor([[1, 2, 3], [0, 1, 2]]),
        "id": torch.arange(2),
    }
    metrics = run_metrics(
        TokenTable(torch.randn(4, 4)),
        test,
        meta,
        masks=None,
        kept_fraction=1.0,
        train_seconds=1.0,
        samples_seen=2,
    )
    assert metrics["test_perplexity"] == approx(math.exp(metrics["test_loss"]))
