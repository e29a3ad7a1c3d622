from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jmds_pipeline.baselines.el2n import el2n_scores, grand_scores
from jmds_pipeline.training.losses import IGNORE_INDEX


class Fixed(nn.Module):
    """Returns its input as logits, so the prediction is set by the test."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_el2n_perfect_prediction_is_zero() -> None:
    logits = torch.tensor([[1000.0, 0.0, 0.0], [0.0, 0.0, 1000.0]])
    scores = el2n_scores([Fixed()], logits, torch.tensor([0, 2]))
    assert scores.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("classes", [2, 3, 10])
def test_el2n_uniform_prediction(classes: int) -> None:
    logits = torch.zeros(4, classes)
    scores = el2n_scores([Fixed()], logits, torch.zeros(4, dtype=torch.int64), batch_size=3)
    expected = math.sqrt((1 - 1 / classes) ** 2 + (classes - 1) / classes**2)
    assert scores.tolist() == pytest.approx([expected] * 4, abs=1e-12)


def test_el2n_averages_over_models() -> None:
    x = torch.tensor([[1000.0, 0.0, 0.0]])
    y = torch.tensor([0])

    class Uniform(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(x)

    uniform = math.sqrt((2 / 3) ** 2 + 2 / 9)
    assert el2n_scores([Fixed(), Uniform()], x, y).item() == pytest.approx(uniform / 2)


def test_el2n_sequences_mean_over_counted_tokens() -> None:
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 1] = 1000.0  # perfect at position 0
    y = torch.tensor([[1, 0, IGNORE_INDEX]])  # position 1 uniform, position 2 ignored
    uniform = math.sqrt((3 / 4) ** 2 + 3 / 16)
    assert el2n_scores([Fixed()], logits, y).item() == pytest.approx(uniform / 2)


def test_el2n_restores_training_mode() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    model.train()
    el2n_scores([model], torch.randn(5, 3), torch.zeros(5, dtype=torch.int64))
    assert model.training


def test_grand_matches_hand_computed_logistic_regression() -> None:
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    x = torch.randn(7, 5)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    # Softmax regression: ∇_W ℓ = (p − e_y) xᵀ, ∇_b ℓ = p − e_y, so
    # ‖∇ℓ‖ = ‖p − e_y‖ · sqrt(‖x‖² + 1).
    with torch.no_grad():
        error = torch.softmax(model(x), dim=1) - nn.functional.one_hot(y, 3)
    expected = error.double().norm(dim=1) * (x.double().square().sum(dim=1) + 1).sqrt()
    scores = grand_scores([model], x, y, batch_size=3)
    assert scores.dtype == torch.float64
    assert torch.allclose(scores, expected, rtol=1e-5)
    # And the relation to EL2N for a linear model.
    el2n = el2n_scores([model], x, y)
    assert torch.allclose(scores, el2n * (x.double().square().sum(dim=1) + 1).sqrt(), rtol=1e-5)


def test_grand_matches_autograd_loop_and_respects_masks() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])
    mask = torch.rand(6, 4) > 0.5
    expected, expected_masked = [], []
    for i in range(5):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        grads = {n: p.grad.double() for n, p in model.named_parameters()}
        expected.append(sum(g.square().sum() for g in grads.values()).sqrt())
        grads["0.weight"] = grads["0.weight"] * mask
        expected_masked.append(sum(g.square().sum() for g in grads.values()).sqrt())
    assert torch.allclose(grand_scores([model], x, y), torch.stack(expected), rtol=1e-5)
    masked = grand_scores([model], x, y, masks={"0.weight": mask})
    assert torch.allclose(masked, torch.stack(expected_masked), rtol=1e-5)


def test_grand_sequences_use_mean_token_loss() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Embedding(6, 4), nn.Linear(4, 6))
    x = torch.randint(0, 6, (3, 5))
    y = torch.randint(0, 6, (3, 5))
    y[0, 3:] = IGNORE_INDEX
    expected = []
    for i in range(3):
        model.zero_grad()
        logits = model(x[i])
        nn.functional.cross_entropy(logits, y[i], ignore_index=IGNORE_INDEX).backward()
        expected.append(sum(p.grad.double().square().sum() for p in model.parameters()).sqrt())
    assert torch.allclose(grand_scores([model], x, y, batch_size=2), torch.stack(expected),
                          rtol=1e-5)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="models is empty"):
        el2n_scores([], torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="batch_size"):
        grand_scores([nn.Linear(3, 2)], torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64),
                     batch_size=0)
    with pytest.raises(ValueError, match="rows"):
        el2n_scores([Fixed()], torch.zeros(2, 3), torch.zeros(3, dtype=torch.int64))
