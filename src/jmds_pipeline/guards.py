"""Finite-value guards: a run that diverges stops with the place it diverged, not later.

A NaN or inf in a loss, a weight or a stored state is never a result: every later stage
(evidence, masks, metrics) would compute on it and either fail with an unrelated torch
error or, worse, succeed. These checks raise :class:`NonFiniteError` naming the tensor,
the epoch and the batch. Raising inside a node is enough to keep the last good artefact:
Kedro saves a node's outputs only after the node returns.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import torch
from torch import nn

from jmds_pipeline.errors import RunError

logger = logging.getLogger(__name__)

WEIGHT_CHECK_EVERY = 50
"""Optimiser steps between two weight checks (the loss is checked every step)."""


class NonFiniteError(RunError):
    """A loss, weight or stored tensor is NaN or infinite."""


def nonfinite_entries(
    tensors: Mapping[str, torch.Tensor], *, allow_inf: bool = False
) -> dict[str, int]:
    """Name → number of NaN/inf entries (NaN only with ``allow_inf``), for the
    floating-point tensors that have any."""
    bad = {}
    for name, tensor in tensors.items():
        if tensor.is_floating_point() or tensor.is_complex():
            # Fast path: NaN and ±inf propagate into the sum (inf − inf = NaN), so a finite
            # sum proves every entry finite; only a non-finite sum (or an overflow) is counted.
            total = complex(tensor.detach().sum())
            if math.isfinite(total.real) and math.isfinite(total.imag):
                continue
            invalid = torch.isnan(tensor) if allow_inf else ~torch.isfinite(tensor)
            count = int(invalid.sum())
            if count:
                bad[name] = count
    return bad


def describe_nonfinite(bad: Mapping[str, int], limit: int = 3) -> str:
    """``'net.0.weight' (12 NaN/inf), ...`` for at most ``limit`` tensors."""
    shown = [f"{name!r} ({count} NaN/inf)" for name, count in list(bad.items())[:limit]]
    more = len(bad) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def check_finite_tensors(tensors: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise :class:`NonFiniteError` if any floating tensor of ``tensors`` is not finite."""
    bad = nonfinite_entries(tensors)
    if bad:
        raise NonFiniteError(f"{what} holds non-finite values: {describe_nonfinite(bad)}")


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (BatchNorm statistics diverge too) by name."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


class TrainingGuard:
    """Checks the loss after every forward pass and the weights every ``every`` steps.

    The loss check costs one device sync per step, which the loop already pays for its
    accuracy count; the weight check touches every parameter, hence only every k steps
    and at each epoch's end (so no epoch's record, and no rewind checkpoint, is taken
    from a diverged model).
    """

    def __init__(self, description: str, lr: float, every: int = WEIGHT_CHECK_EVERY) -> None:
        self.description = description
        self.lr = lr
        self.every = max(1, every)
        self.steps = 0

    def _where(self, epoch: int, batch: int) -> str:
        return f"training '{self.description}' at epoch {epoch + 1}, batch {batch + 1}"

    def _hint(self) -> str:
        return (f" (training.lr = {self.lr:g}); lower training.lr or set training.grad_clip; "
                "nothing was saved")

    def check_loss(self, loss: torch.Tensor, epoch: int, batch: int) -> None:
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteError(f"{self._where(epoch, batch)}: loss = {value}{self._hint()}")

    def after_step(self, model: nn.Module, epoch: int, batch: int) -> None:
        self.steps += 1
        if self.steps % self.every == 0:
            self.check_weights(model, epoch, batch)

    def check_weights(self, model: nn.Module, epoch: int, batch: int) -> None:
        bad = nonfinite_entries(model_tensors(model))
        if bad:
            raise NonFiniteError(
                f"{self._where(epoch, batch)}: weights {describe_nonfinite(bad)}{self._hint()}"
            )


def did_not_learn(final_loss: float, num_classes: int, tolerance: float = 0.05) -> bool:
    """True when the mean training loss is still within ``tolerance`` of ln C (chance).

    A classifier that predicts the uniform distribution has cross-entropy exactly ln C;
    a run whose last epoch is no better than that has learned nothing.
    """
    if num_classes < 2 or not math.isfinite(final_loss):
        return False
    return final_loss >= (1.0 - tolerance) * math.log(num_classes)


def warn_if_not_learned(history_loss: float, num_classes: int, phase: str) -> bool:
    """Log a warning (and return True) when ``phase`` ended at chance-level loss."""
    if not did_not_learn(history_loss, num_classes):
        return False
    logger.warning(
        "%s: training did not learn: final train loss %.4f ≈ ln %d = %.4f (chance level); "
        "the schedule is probably too short (training.epochs, jmds.final_epochs) or the "
        "learning rate is off", phase, history_loss, num_classes, math.log(num_classes),
    )
    return True
