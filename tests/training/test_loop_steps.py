"""train_model step by step against plain gradient descent written out independently.

With momentum 0 and no weight decay, SGD is θ ← θ − lr_k·∇L(θ): each step is checked
against autograd of the documented loss (mean cross-entropy of the batch, plus the prior
α/(2n)·Σθ²) at the learning rate the schedule gives (values worked out by hand).
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from jmds_pipeline.config import TrainingConfig
from jmds_pipeline.guards import NonFiniteError
from jmds_pipeline.training.loop import cpu_state, lr_factor, train_model
from tests.conftest import make_blobs

PLAIN = dict(optimizer="sgd", momentum=0.0, weight_decay=0.0, progress=False)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def _record_steps(model: nn.Module, **kwargs) -> tuple[dict, list]:
    """Train, keeping (batch, weights before the step, weights after) of every step."""
    before = [cpu_state(model)]
    steps = []

    def on_batch(batch, logits):
        after = cpu_state(model)
        steps.append((batch, before[-1], after, logits))
        before.append(after)

    outcome = train_model(model, on_batch=on_batch, **kwargs)
    return outcome, steps


def _gradient(state, batch, *, alpha_over_n=0.0, smoothing=0.0) -> dict[str, torch.Tensor]:
    model = _net()
    model.load_state_dict(state)
    loss = F.cross_entropy(model(batch["x"]), batch["y"], label_smoothing=smoothing)
    loss = loss + alpha_over_n / 2 * sum(p.square().sum() for p in model.parameters())
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}


def _assert_sgd_steps(steps, lrs, masks=None, **loss_terms) -> None:
    assert len(steps) == len(lrs)
    for (batch, before, after, _), lr in zip(steps, lrs, strict=True):
        grads = _gradient(before, batch, **loss_terms)
        for name, grad in grads.items():
            expected = before[name] - lr * grad
            if masks and name in masks:
                expected = expected * masks[name]
            torch.testing.assert_close(after[name], expected, atol=1e-6, rtol=1e-5)


def test_lr_factor_warmup_then_cosine_step_or_constant() -> None:
    cosine = TrainingConfig(lr_schedule="cosine")
    # warmup: linear up to 1 over 4 steps
    assert [lr_factor(s, 12, 4, cosine) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    # then cos over the 8 remaining: progress 0, 1/4, 1/2, 1, beyond 1 (clamped)
    got = [lr_factor(s, 12, 4, cosine) for s in (4, 6, 8, 12, 16)]
    assert got == pytest.approx([1.0, 0.5 + 0.5 / math.sqrt(2), 0.5, 0.0, 0.0], abs=1e-12)
    # no steps after warmup: the remaining span counts as one step
    assert lr_factor(2, 2, 2, cosine) == 1.0 and lr_factor(3, 2, 2, cosine) == 0.0
    step = TrainingConfig(lr_schedule="step", step_milestones=(0.5, 0.75), step_gamma=0.1)
    got = [lr_factor(s, 8, 0, step) for s in (0, 3, 4, 5, 6, 8)]
    assert got == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    constant = TrainingConfig(lr_schedule="constant")
    assert [lr_factor(s, 8, 2, constant) for s in (0, 2, 7, 20)] == [0.5, 1.0, 1.0, 1.0]


def test_each_step_is_gradient_descent_at_the_scheduled_rate() -> None:
    # 120 rows, batches of 40: 3 steps an epoch, 9 in all; one warmup epoch (3 steps),
    # then cosine over the 6 others
    config = TrainingConfig(
        lr=0.2,
        epochs=3,
        batch_size=40,
        warmup_epochs=1,
        lr_schedule="cosine",
        label_smoothing=0.1,
        **PLAIN,
    )
    outcome, steps = _record_steps(_net(), train=make_blobs(), config=config)
    lrs = [0.2 * f for f in (1 / 3, 2 / 3, 1.0)]
    lrs += [0.2 * 0.5 * (1 + math.cos(math.pi * k / 6)) for k in range(6)]
    _assert_sgd_steps(steps, lrs, smoothing=0.1)
    # the history's lr is the rate the next step would use: after 3, 6 and 9 steps
    assert [r["lr"] for r in outcome.history] == pytest.approx([0.2, 0.1, 0.0], abs=1e-12)
    assert [r["epoch"] for r in outcome.history] == [1.0, 2.0, 3.0]


def test_the_prior_term_is_alpha_over_2n_sum_of_squares_n_the_kept_rows() -> None:
    kept = torch.arange(120) % 4 != 0  # 90 kept rows
    config = TrainingConfig(lr=0.1, epochs=1, batch_size=30, lr_schedule="constant", **PLAIN)
    _, steps = _record_steps(
        _net(), train=make_blobs(), config=config, kept=kept, prior_precision=9.0
    )
    _assert_sgd_steps(steps, [0.1] * 3, alpha_over_n=9.0 / 90)
    # n given explicitly, α from the config
    prior_config = config.model_copy(update={"prior_precision": 4.0})
    _, steps = _record_steps(
        _net(), train=make_blobs(), config=prior_config, kept=kept, prior_count=20.0
    )
    _assert_sgd_steps(steps, [0.1] * 3, alpha_over_n=4.0 / 20)


def test_masked_weights_step_and_are_zeroed_again() -> None:
    generator = torch.Generator().manual_seed(3)
    masks = {
        "0.weight": torch.rand(5, 6, generator=generator) > 0.5,
        "2.weight": torch.rand(3, 5, generator=generator) > 0.3,
    }
    config = TrainingConfig(lr=0.1, epochs=1, batch_size=60, lr_schedule="constant", **PLAIN)
    _, steps = _record_steps(_net(), train=make_blobs(), config=config, masks=masks)
    # the masks apply before the first step: it starts from the masked initialisation
    batch, initial, after, logits = steps[0]
    start = {k: v * masks[k] if k in masks else v for k, v in initial.items()}
    steps[0] = (batch, start, after, logits)
    _assert_sgd_steps(steps, [0.1, 0.1], masks={k: v.float() for k, v in masks.items()})


def test_gradient_clipping_rescales_the_whole_gradient_to_the_limit() -> None:
    config = TrainingConfig(
        lr=0.5, epochs=1, batch_size=120, lr_schedule="constant", grad_clip=0.01, **PLAIN
    )
    _, [(batch, before, after, _)] = _record_steps(_net(), train=make_blobs(), config=config)
    grads = _gradient(before, batch)
    norm = torch.sqrt(sum(g.square().sum() for g in grads.values()))
    assert norm > 0.01  # the limit binds
    for name, grad in grads.items():
        torch.testing.assert_close(
            after[name], before[name] - 0.5 * grad * 0.01 / norm, atol=1e-6, rtol=1e-4
        )


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_one_step_matches_torchs_optimiser_with_the_configured_settings(optimizer) -> None:
    config = TrainingConfig(
        optimizer=optimizer,
        lr=0.03,
        momentum=0.8,
        weight_decay=0.1,
        epochs=1,
        batch_size=120,
        lr_schedule="constant",
        progress=False,
    )
    _, [(batch, before, after, _)] = _record_steps(_net(), train=make_blobs(), config=config)
    reference = _net()
    reference.load_state_dict(before)
    if optimizer == "sgd":
        opt = torch.optim.SGD(
            reference.parameters(), lr=0.03, momentum=0.8, weight_decay=0.1, nesterov=True
        )
    else:
        opt = torch.optim.AdamW(reference.parameters(), lr=0.03, weight_decay=0.1)
    F.cross_entropy(reference(batch["x"]), batch["y"]).backward()
    opt.step()
    for name, p in reference.named_parameters():
        torch.testing.assert_close(after[name], p.detach(), atol=1e-6, rtol=1e-5)


def test_history_records_mean_loss_and_accuracy_of_the_epochs_batches() -> None:
    config = TrainingConfig(lr=0.1, epochs=2, batch_size=32, **PLAIN)
    outcome, steps = _record_steps(_net(), train=make_blobs(), config=config)
    per_epoch = [steps[:4], steps[4:]]  # 120 rows in batches of 32: 4 a epoch
    for record, epoch_steps in zip(outcome.history, per_epoch, strict=True):
        ys = torch.cat([batch["y"] for batch, *_ in epoch_steps])
        logits = torch.cat([logit for *_, logit in epoch_steps])
        assert record["train_loss"] == pytest.approx(float(F.cross_entropy(logits, ys)), rel=1e-5)
        assert record["train_accuracy"] == pytest.approx(
            float((logits.argmax(1) == ys).float().mean())
        )
    assert outcome.samples_seen == 240


def test_one_kept_row_gives_its_own_loss_and_accuracy() -> None:
    kept = torch.zeros(120, dtype=torch.bool)
    kept[7] = True
    config = TrainingConfig(lr=0.1, epochs=1, batch_size=8, **PLAIN)
    outcome, [(batch, *_, logits)] = _record_steps(
        _net(), train=make_blobs(), config=config, kept=kept
    )
    assert batch["index"].tolist() == [7]
    [record] = outcome.history
    assert record["train_loss"] == pytest.approx(float(F.cross_entropy(logits, batch["y"])))
    assert record["train_accuracy"] == float(logits.argmax(1) == batch["y"])


def test_the_default_seed_is_zero() -> None:
    config = TrainingConfig(lr=0.1, epochs=1, batch_size=16, progress=False)
    default, zero = _net(), _net()
    train_model(default, make_blobs(), config)
    train_model(zero, make_blobs(), config, seed=0)
    assert all(
        torch.equal(a, b)
        for a, b in zip(default.state_dict().values(), zero.state_dict().values(), strict=True)
    )


def test_a_non_finite_loss_stops_the_run_naming_where() -> None:
    train = make_blobs()
    train["x"][37, 2] = float("nan")
    config = TrainingConfig(lr=0.1, epochs=2, batch_size=16, progress=False)
    done = []
    with pytest.raises(NonFiniteError) as error:
        train_model(
            _net(),
            train,
            config,
            description="probe",
            on_batch=lambda batch, logits: done.append(batch),
        )
    assert f"training 'probe' at epoch 1, batch {len(done) + 1}: loss = nan" in str(error.value)


def _images(n: int = 24) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "x": torch.rand(n, 1, 6, 6, generator=generator),
        "y": torch.arange(n) % 2,
        "id": torch.arange(n),
    }


def _signals(n: int = 24) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "x": torch.rand(n, 2, 8, generator=generator),
        "y": torch.arange(n) % 2,
        "id": torch.arange(n),
    }


def _trained(split, augment: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(split["x"][0].numel(), 2))
    config = TrainingConfig(lr=0.1, epochs=2, batch_size=8, augment=augment, max_shift=2, **PLAIN)
    train_model(model, split, config)
    return cpu_state(model)


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_augmentation_applies_to_its_own_kind_of_input_only() -> None:
    images, signals = _images(), _signals()
    plain_images, plain_signals = _trained(images, "none"), _trained(signals, "none")
    assert not _same(_trained(images, "crop_flip"), plain_images)
    assert _same(_trained(images, "shift"), plain_images)  # shift is for 1-D signals
    assert not _same(_trained(signals, "shift"), plain_signals)
    assert _same(_trained(signals, "crop_flip"), plain_signals)  # crop_flip: images only
    assert _same(_trained(images, "crop_flip"), _trained(images, "crop_flip"))  # seeded


def test_rows_are_drawn_in_a_fresh_random_order_each_epoch() -> None:
    config = TrainingConfig(lr=0.1, epochs=2, batch_size=16, **PLAIN)
    _, steps = _record_steps(_net(), train=make_blobs(), config=config)
    orders = [
        torch.cat([batch["index"] for batch, *_ in part]).tolist()
        for part in (steps[:8], steps[8:])
    ]
    assert all(sorted(order) == list(range(120)) for order in orders)
    assert orders[0] != list(range(120)) and orders[0] != orders[1]


def test_on_epoch_receives_each_history_record() -> None:
    config = TrainingConfig(lr=0.1, epochs=3, batch_size=40, **PLAIN)
    received: list[dict] = []
    outcome = train_model(_net(), make_blobs(), config, on_epoch=received.append)
    assert received == outcome.history and len(received) == 3


def test_a_single_right_prediction_has_accuracy_one() -> None:
    train = make_blobs()
    with torch.no_grad():
        right = (_net()(train["x"]).argmax(1) == train["y"]).nonzero().flatten()
    kept = torch.zeros(120, dtype=torch.bool)
    kept[int(right[0])] = True  # a row the untrained net already predicts right
    config = TrainingConfig(lr=0.1, epochs=1, batch_size=8, **PLAIN)
    [record] = train_model(_net(), train, config, kept=kept).history
    assert record["train_accuracy"] == 1.0


def test_the_run_time_is_measured_around_the_epochs() -> None:
    import time

    config = TrainingConfig(lr=0.1, epochs=2, batch_size=40, **PLAIN)
    started = time.perf_counter()
    outcome = train_model(_net(), make_blobs(), config)
    wall = time.perf_counter() - started
    epochs = sum(record["seconds"] for record in outcome.history)
    assert epochs <= outcome.seconds <= wall


def test_no_kept_rows_is_refused_with_its_message() -> None:
    config = TrainingConfig(lr=0.1, epochs=1, batch_size=8, **PLAIN)
    message = r"^no samples are kept: training needs at least one kept sample$"
    with pytest.raises(ValueError, match=message):
        train_model(_net(), make_blobs(), config, kept=torch.zeros(120, dtype=torch.bool))


def test_the_default_description_names_the_run_in_errors() -> None:
    train = make_blobs()
    train["x"][:, 0] = float("nan")
    config = TrainingConfig(lr=0.1, epochs=1, batch_size=8, **PLAIN)
    with pytest.raises(NonFiniteError, match=r"training 'train' at epoch 1, batch 1: loss"):
        train_model(_net(), train, config)


class Frozen(nn.Module):
    """A frozen classifier plus one trainable scalar that cannot change the loss (its
    clamp to [0, 0] has zero gradient), so weight decay alone moves it: ×(1 − lr·wd) a step."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _net().requires_grad_(False)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + self.scale.clamp(0.0, 0.0)


def test_a_weight_that_overflows_between_checks_is_caught_at_the_epochs_end() -> None:
    # scale ← scale − lr·wd·scale with lr·wd = 1e4 + 1: |scale| ≈ 1e4 per step, and the
    # product overflows (> 3.4e38) in the 10th step, the epoch's last: scale = −inf, while
    # every loss stays finite, so only the weight check at the epoch's end can see it
    config = TrainingConfig(
        optimizer="sgd",
        momentum=0.0,
        weight_decay=1.0,
        lr=1e4 + 1,
        lr_schedule="constant",
        epochs=2,
        batch_size=12,
        progress=False,
    )
    with pytest.raises(NonFiniteError, match=r"at epoch 1, batch 10: weights 'scale'"):
        train_model(Frozen(), make_blobs(), config)


def test_a_weight_that_overflows_is_caught_at_the_periodic_check() -> None:
    from jmds_pipeline.guards import WEIGHT_CHECK_EVERY

    # |scale| grows ×f a step, f chosen so that it overflows float32 (to −inf, the loss
    # still finite) in exactly step k = WEIGHT_CHECK_EVERY, the first periodic check
    k = WEIGHT_CHECK_EVERY
    factor = math.exp(math.log(3.4e38) / (k - 0.5))  # f^(k−1) < 3.4e38 < f^k
    config = TrainingConfig(
        optimizer="sgd",
        momentum=0.0,
        weight_decay=1.0,
        lr=factor + 1,
        lr_schedule="constant",
        epochs=1,
        batch_size=1,
        progress=False,
    )
    with pytest.raises(NonFiniteError, match=rf"at epoch 1, batch {k}: weights 'scale'"):
        train_model(Frozen(), make_blobs(n=k + 20), config)


def test_signals_without_augmentation_train_on_the_rows_as_they_are() -> None:
    # a (N, C, L) batch is what "shift" would move; under "none" the step is plain GD on it
    split = _signals()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    start = cpu_state(model)
    config = TrainingConfig(lr=0.3, epochs=1, batch_size=24, lr_schedule="constant", **PLAIN)
    train_model(model, split, config)
    reference = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    reference.load_state_dict(start)
    F.cross_entropy(reference(split["x"]), split["y"]).backward()
    for name, p in reference.named_parameters():
        torch.testing.assert_close(
            model.state_dict()[name], start[name] - 0.3 * p.grad, atol=1e-6, rtol=1e-5
        )


def test_the_progress_bar_shows_per_epoch_only_when_asked_and_leaves_no_line(capsys) -> None:
    config = TrainingConfig(lr=0.1, epochs=2, batch_size=40, **PLAIN)
    train_model(_net(), make_blobs(), config, description="probe")
    assert capsys.readouterr().err == ""  # progress=False: silent
    shown = config.model_copy(update={"progress": True})
    train_model(_net(), make_blobs(), shown, description="probe")
    err = capsys.readouterr().err
    assert "probe" in err and re.search(r"(epoch/s|s/epoch)\b", err)
    assert "\n" not in err  # the bar is cleared at the end (leave=False), not left behind
