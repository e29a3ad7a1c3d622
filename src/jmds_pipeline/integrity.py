"""Masks against the model they prune, and states evaluated as θ ⊙ m.

A mask set that misses a prunable layer leaves that layer dense while every report
still counts the target sparsity; one with a wrong shape would fail deep inside torch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import nn

from jmds_pipeline.errors import RunError

logger = logging.getLogger(__name__)


class MaskMismatchError(RunError):
    """A mask set does not fit the model: a layer missing, unknown, or of another shape."""


def check_masks_fit(
    masks: Mapping[str, torch.Tensor], model: nn.Module, prunable: list[str], source: str
) -> None:
    """Every prunable layer has a bool mask of its parameter's shape, and nothing else."""
    params = dict(model.named_parameters())
    missing = [name for name in prunable if name not in masks]
    if missing:
        raise MaskMismatchError(
            f"{source} has no mask for prunable layer(s) {missing}: they would stay dense "
            "while the run reports the target sparsity; rerun the node that writes it"
        )
    unknown = sorted(set(masks) - set(prunable))
    if unknown:
        absent = any(name not in params for name in unknown)
        raise MaskMismatchError(
            f"{source} masks {unknown}, which the model "
            f"{'does not have' if absent else 'does not prune'}; accepted: {prunable}"
        )
    for name in prunable:
        mask, shape = masks[name], tuple(params[name].shape)
        if tuple(mask.shape) != shape:
            raise MaskMismatchError(
                f"{source}: mask {name!r} has shape {tuple(mask.shape)}, the layer has {shape}"
            )
        if mask.dtype != torch.bool:
            raise MaskMismatchError(f"{source}: mask {name!r} is {mask.dtype}, not bool")


def masked_state(
    state: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor] | None:
    """``state`` with pruned entries zeroed, or ``None`` when they already are.

    Trained states are exactly zero there (the loop re-applies the mask after each step),
    so a non-zero pruned entry means the state and the masks do not belong together; it
    is evaluated as θ ⊙ m, never as a denser network than the mask says, and logged.
    """
    revived = {name: int(torch.count_nonzero(state[name][~mask]))
               for name, mask in masks.items() if name in state}
    revived = {name: count for name, count in revived.items() if count}
    if not revived:
        return None
    logger.warning("%s has %d non-zero weight(s) at pruned positions (%s); using θ ⊙ m",
                   source, sum(revived.values()), ", ".join(sorted(revived)))
    out = dict(state)
    for name in revived:
        out[name] = state[name] * masks[name].to(state[name].dtype)
    return out
