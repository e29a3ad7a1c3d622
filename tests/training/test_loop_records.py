"""train_model's records and streams: the epoch loss accumulated in float64 (a sum float32
cannot hold, worked out by hand), augmentation draws that do not depend on the model, a
parameter a step does not reach left alone, the bar's per-epoch figures, rewind counts."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jmds_pipeline.config import TrainingConfig
from jmds_pipeline.training.loop import train_model
from tests.conftest import make_blobs

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


def test_crop_flip_draws_do_not_depend_on_the_model() -> None:
    def seen_by(model: nn.Module) -> list[torch.Tensor]:
        seen: list[torch.Tensor] = []
        model[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
        x = torch.randn(16, 1, 6, 6, generator=torch.Generator().manual_seed(5))
        split = {"x": x, "y": torch.arange(16) % 2, "id": torch.arange(16)}
        config = TrainingConfig(optimizer="sgd", momentum=0.0, weight_decay=0.0, lr=0.1,
                                epochs=2, batch_size=8, augment="crop_flip", progress=False)
        train_model(model, split, config, seed=2)
        return seen

    torch.manual_seed(0)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(36, 2))
    torch.manual_seed(0)
    dropping = nn.Sequential(nn.Flatten(), nn.Linear(36, 2), nn.Dropout(0.5))
    first, second = seen_by(plain), seen_by(dropping)
    assert len(first) == len(second) == 4
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


class _FirstStepOnly(nn.Module):
    """A linear map, plus a bias ``b`` that only the first forward pass uses."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 3)
        self.b = nn.Parameter(torch.ones(3))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.linear(x)
        return out + self.b if self.calls == 1 else out


def test_a_parameter_a_step_does_not_reach_is_left_alone() -> None:
    """Step 2 does not use ``b``: it has no gradient there, so neither momentum (0.9, from
    step 1) nor weight decay moves it."""
    torch.manual_seed(0)
    model = _FirstStepOnly()
    after: list[torch.Tensor] = []
    config = TrainingConfig(optimizer="sgd", momentum=0.9, weight_decay=0.1, lr=0.5,
                            lr_schedule="constant", epochs=1, batch_size=20, progress=False)
    train_model(model, {**make_blobs(n=40)}, config,
                on_batch=lambda _batch, _logits: after.append(model.b.detach().clone()))
    assert len(after) == 2
    assert not torch.equal(after[0], torch.ones(3))  # step 1 moved it
    assert torch.equal(after[1], after[0])


def test_the_bar_shows_each_epochs_loss_and_accuracy(capsys) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    config = TrainingConfig(optimizer="sgd", momentum=0.0, weight_decay=0.0, lr=0.1,
                            epochs=2, batch_size=40, progress=True)
    outcome = train_model(model, make_blobs(), config, description="probe")
    err = capsys.readouterr().err
    for record in outcome.history:
        assert (f"acc={record['train_accuracy']:.3f}, loss={record['train_loss']:.3f}"
                in err)


def test_rewind_samples_count_the_rows_drawn_before_the_rewind_point() -> None:
    kept = torch.zeros(120, dtype=torch.bool)
    kept[:50] = True
    config = TrainingConfig(lr=0.1, epochs=3, batch_size=16, progress=False)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    outcome = train_model(model, make_blobs(), config, kept=kept, rewind_epoch=2)
    assert outcome.rewind_samples == 100 and outcome.samples_seen == 150
    outcome = train_model(model, make_blobs(), config, kept=kept, rewind_epoch=0)
    assert outcome.rewind_samples == 0
