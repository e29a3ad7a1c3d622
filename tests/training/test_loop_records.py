"""train_model's epoch record on losses whose sum float32 cannot hold: the epoch's loss is
accumulated in float64 (values worked out by hand)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jmds_pipeline.config import TrainingConfig
from jmds_pipeline.training.loop import train_model

BIG = 2.0**22  # exact in float32; float32's spacing is 0.5 here and 2 at 2^24


def test_epoch_loss_is_summed_in_float64() -> None:
    """Logits (0, x) with label 0 cost log(1 + eˣ): 2^22 for the four rows x = 2^22 (exact
    in float32) and log(1 + e) for the row x = 1. Their sum 2^24 + 1.313… needs more than
    float32's 24 bits (it would come out a multiple of 0.5 at best); one row per batch, a
    vanishing learning rate so the logits stay put."""
    model = nn.Linear(1, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0], [1.0]]))
        model.bias.zero_()
    x = torch.tensor([[BIG], [BIG], [1.0], [BIG], [BIG]])
    split = {"x": x, "y": torch.zeros(5, dtype=torch.long), "id": torch.arange(5)}
    config = TrainingConfig(optimizer="sgd", momentum=0.0, weight_decay=0.0, lr=1e-30,
                            lr_schedule="constant", epochs=1, batch_size=1, progress=False)
    outcome = train_model(model, split, config)
    expected = (4 * BIG + math.log1p(math.e)) / 5
    assert outcome.history[0]["train_loss"] == pytest.approx(expected, rel=1e-12)
    assert outcome.history[0]["train_accuracy"] == pytest.approx(0.0)
    assert outcome.samples_seen == 5


def _augmented_inputs(model: nn.Module) -> list[torch.Tensor]:
    """The augmented batches the model's first layer receives, one per step."""
    seen: list[torch.Tensor] = []
    model[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(24, 2, 10, generator=generator)
    split = {"x": x, "y": torch.arange(24) % 2, "id": torch.arange(24)}
    config = TrainingConfig(optimizer="sgd", momentum=0.0, weight_decay=0.0, lr=0.1,
                            epochs=2, batch_size=8, augment="shift", max_shift=2,
                            progress=False)
    train_model(model, split, config, seed=4)
    return seen


def test_augmentation_draws_do_not_depend_on_the_model() -> None:
    """The shifts come from their own seeded stream: a model that draws from the global
    RNG in every forward (dropout) sees exactly the same augmented batches, step by step,
    as one that does not."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(20, 2))
    torch.manual_seed(0)
    dropping = nn.Sequential(nn.Flatten(), nn.Linear(20, 2), nn.Dropout(0.5))
    first, second = _augmented_inputs(plain), _augmented_inputs(dropping)
    assert len(first) == len(second) == 6
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
