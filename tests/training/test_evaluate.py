"""Evaluation against losses computed by hand from the model's logits."""

from __future__ import annotations

import math

import torch
from pytest import approx
from torch import nn

from jmds_pipeline.training.evaluate import evaluate, per_sample_outputs
from jmds_pipeline.training.losses import IGNORE_INDEX


class TokenTable(nn.Module):
    """Next-token logits that depend only on the current token: a (V, V) table."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x]


def _classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 4))


def test_per_sample_outputs_follow_row_order_across_batches_in_eval_mode() -> None:
    model = _classifier()
    x = torch.randn(11, 3)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2])
    split = {"x": x, "y": y, "id": torch.arange(11)}
    outputs = per_sample_outputs(model, split, batch_size=4)
    assert model.training  # the mode is restored
    model.eval()
    with torch.no_grad():
        log_p = torch.log_softmax(model(x), dim=1)  # dropout off: deterministic
    assert outputs.loss.tolist() == approx((-log_p[torch.arange(11), y]).tolist(), rel=1e-5)
    hits = (log_p.argmax(1) == y).float()
    assert torch.equal(outputs.hits, hits)
    assert outputs.tokens.tolist() == [1.0] * 11
    assert torch.equal(outputs.correct, hits.bool())
    per_sample_outputs(model, split, batch_size=4)
    assert not model.training  # an eval-mode model stays in eval mode


def test_classification_metrics_are_means_per_sample_without_perplexity() -> None:
    model = _classifier().eval()
    x = torch.randn(9, 3)
    y = torch.arange(9) % 4
    metrics = evaluate(
        model, {"x": x, "y": y, "id": torch.arange(9)}, task="classification", batch_size=2
    )
    with torch.no_grad():
        log_p = torch.log_softmax(model(x), dim=1)
    assert set(metrics) == {"loss", "accuracy"}
    assert metrics["loss"] == approx(float(-log_p[torch.arange(9), y].mean()), rel=1e-5)
    assert metrics["accuracy"] == approx(float((log_p.argmax(1) == y).float().mean()))


def test_language_model_metrics_are_per_counted_token_with_perplexity() -> None:
    torch.manual_seed(1)
    table = torch.randn(5, 5)
    model = TokenTable(table)
    x = torch.tensor([[0, 1, 2], [3, 4, 0]])
    y = torch.tensor([[1, 2, IGNORE_INDEX], [4, 4, 1]])
    metrics = evaluate(
        model, {"x": x, "y": y, "id": torch.arange(2)}, task="language_modeling", batch_size=1
    )
    log_p = torch.log_softmax(table, dim=1)
    pairs = [(0, 1), (1, 2), (3, 4), (4, 4), (0, 1)]  # (input token, target) of the 5 counted
    nll = [-float(log_p[a, b]) for a, b in pairs]
    hits = [float(table[a].argmax() == b) for a, b in pairs]
    assert metrics["loss"] == approx(sum(nll) / 5, rel=1e-5)
    assert metrics["accuracy"] == approx(sum(hits) / 5)
    assert metrics["perplexity"] == approx(math.exp(sum(nll) / 5), rel=1e-5)


def test_perplexity_of_a_hopeless_model_is_capped_not_an_overflow() -> None:
    table = torch.full((3, 3), 0.0)
    table[:, 0] = 1e4  # every prediction is token 0, with certainty
    x = torch.tensor([[0, 1]])
    y = torch.tensor([[1, 2]])  # never token 0: NLL ≈ 1e4 per token
    metrics = evaluate(
        TokenTable(table), {"x": x, "y": y, "id": torch.arange(1)}, task="language_modeling"
    )
    assert metrics["loss"] == approx(1e4)
    assert metrics["perplexity"] == math.exp(700.0)
