"""Shared tiny models and data for the evidence tests (float64 so that errors are the
approximation's, not rounding)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def train_map(model: nn.Module, x, y, alpha: float, steps: int = 100, lr: float = 1e-2) -> None:
    """Full-batch Adam on Σ CE + α/2 ‖θ‖² so that θ is (close to) a MAP for prior α."""
    opt = torch.optim.Adam(model.parameters(), lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y, reduction="sum")
        loss = loss + 0.5 * alpha * sum((p * p).sum() for p in model.parameters())
        loss.backward()
        opt.step()
    # a few LBFGS steps to land on the optimum (FD and Δ_j checks rely on ∇ = 0)
    opt2 = torch.optim.LBFGS(
        model.parameters(), max_iter=400, tolerance_grad=1e-10, line_search_fn="strong_wolfe"
    )

    def closure():
        opt2.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y, reduction="sum")
        loss = loss + 0.5 * alpha * sum((p * p).sum() for p in model.parameters())
        loss.backward()
        return loss

    opt2.step(closure)


@pytest.fixture(scope="session")
def tiny_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 5, generator=g, dtype=torch.float64)
    y = ((x[:, 0] + x[:, 1] ** 2 > 1).long() + (x[:, 2] > 0.5).long()).clamp(max=2)
    return x, y


@pytest.fixture(scope="session")
def tiny_mlp(tiny_data):
    """5-12-3 tanh MLP (111 weights), trained to the MAP for α = 1."""
    x, y = tiny_data
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 3)).double()
    train_map(model, x, y, alpha=1.0)
    return model
