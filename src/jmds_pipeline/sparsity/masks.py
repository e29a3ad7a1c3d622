"""Binary weight masks: create, apply, keep applied during training, count, serialise.

A mask set is ``dict[str, Tensor]``: parameter name (as in ``model.named_parameters()``,
e.g. ``"net.0.weight"``) → ``bool`` tensor of the parameter's shape, ``True`` = active.
Parameters without an entry are not prunable and are never touched here.

The effective network is f(x; θ ⊙ m). Training keeps θ_j = 0 exactly for m_j = 0 by
re-applying the mask after every ``optimizer.step()`` (:func:`enforce_masks`): momentum,
Adam moments and (decoupled) weight decay all act on the stored θ, so masking gradients
alone is not enough for every optimiser, while zeroing after the step always is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

Masks = dict[str, torch.Tensor]

# Optimiser state tensors that live per element of a parameter (SGD momentum, Adam(W)
# moments, Adagrad/RMSprop accumulators). Zeroing them at pruned positions makes a pruned
# weight's optimiser history vanish too, so nothing stale survives a mask change.
_ELEMENTWISE_STATE = ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "sum",
                      "square_avg", "acc_delta", "grad_avg")


def _parameters(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, nn.Parameter]:
    params = dict(model.named_parameters())
    unknown = sorted(set(masks) - params.keys())
    if unknown:
        raise ValueError(f"masks name parameters the model does not have: {unknown}")
    for name, mask in masks.items():
        if mask.shape != params[name].shape:
            raise ValueError(
                f"mask {name!r} has shape {tuple(mask.shape)} but the parameter has "
                f"{tuple(params[name].shape)}"
            )
    return {name: params[name] for name in masks}


def init_masks(model: nn.Module, names: Iterable[str] | None = None) -> Masks:
    """All-active masks for ``names`` (default: every parameter), on the parameters' device."""
    params = dict(model.named_parameters())
    chosen = list(params) if names is None else list(names)
    unknown = [name for name in chosen if name not in params]
    if unknown:
        raise ValueError(f"names = {unknown} are not parameters of the model; "
                         f"accepted: {sorted(params)}")
    return {name: torch.ones_like(params[name], dtype=torch.bool) for name in chosen}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """θ ← θ ⊙ m in place for every masked parameter (exact zeros, no autograd record)."""
    for name, param in _parameters(model, masks).items():
        mask = masks[name]
        param.masked_fill_(~mask.to(device=param.device, dtype=torch.bool), 0)


@torch.no_grad()
def enforce_masks(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Call after ``optimizer.step()``: zero pruned weights and, if given, their optimiser state.

    Zeroing the weights alone already keeps them exactly zero across steps; clearing the
    per-element optimiser state (momentum, Adam moments) as well means a pruned weight
    carries no history, which matters when masks are loaded into a running optimiser.
    """
    params = _parameters(model, masks)
    apply_masks(model, masks)
    if optimizer is None:
        return
    for name, param in params.items():
        state = optimizer.state.get(param)
        if not state:
            continue
        pruned = ~masks[name].to(device=param.device, dtype=torch.bool)
        for key in _ELEMENTWISE_STATE:
            value = state.get(key)
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                value.masked_fill_(pruned, 0)


@torch.no_grad()
def mask_gradients(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the gradients of pruned weights (call between ``backward()`` and ``step()``)."""
    for name, param in _parameters(model, masks).items():
        if param.grad is not None:
            param.grad.masked_fill_(~masks[name].to(param.grad.device, torch.bool), 0)


def register_gradient_masks(
    model: nn.Module, masks: Mapping[str, torch.Tensor]
) -> list[RemovableHandle]:
    """Tensor hooks that multiply every gradient by its mask; remove them with ``.remove()``."""
    handles = []
    for name, param in _parameters(model, masks).items():
        mask = masks[name].to(param.device)

        def hook(grad: torch.Tensor, mask: torch.Tensor = mask) -> torch.Tensor:
            return grad * mask.to(grad.dtype)

        handles.append(param.register_hook(hook))
    return handles


def count_active(masks: Mapping[str, torch.Tensor]) -> int:
    """‖m‖₀: the number of active weights over all masks."""
    return sum(int(torch.count_nonzero(mask)) for mask in masks.values())


def count_total(masks: Mapping[str, torch.Tensor]) -> int:
    """The number of prunable weights over all masks."""
    return sum(mask.numel() for mask in masks.values())


def density(masks: Mapping[str, torch.Tensor]) -> float:
    """‖m‖₀ / numel: the fraction of prunable weights still active (1.0 for no masks)."""
    total = count_total(masks)
    return 1.0 if total == 0 else count_active(masks) / total


def sparsity(masks: Mapping[str, torch.Tensor]) -> float:
    """1 − density: the fraction of prunable weights removed."""
    return 1.0 - density(masks)


def layer_summary(masks: Mapping[str, torch.Tensor]) -> pd.DataFrame:
    """One row per mask, in the masks' order: ``layer``, ``numel``, ``active``, ``density``.

    Matches ``schemas.MaskSummarySchema``.
    """
    rows = []
    for name, mask in masks.items():
        numel = mask.numel()
        active = int(torch.count_nonzero(mask))
        rows.append({"layer": name, "numel": numel, "active": active,
                     "density": active / numel if numel else 1.0})
    frame = pd.DataFrame(rows, columns=["layer", "numel", "active", "density"])
    return frame.astype({"layer": str, "numel": "int64", "active": "int64",
                         "density": "float64"})


def masks_to_tensors(
    masks: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.uint8
) -> dict[str, torch.Tensor]:
    """A flat, safetensors-ready copy: contiguous CPU tensors (``uint8`` 0/1 or ``bool``).

    Every tensor is a fresh copy, so none share storage (which safetensors refuses).
    """
    if dtype not in (torch.uint8, torch.bool):
        raise ValueError(f"dtype = {dtype} is not accepted; accepted: torch.uint8, torch.bool")
    return {name: mask.detach().to("cpu").to(dtype).contiguous().clone()
            for name, mask in masks.items()}


def masks_from_tensors(tensors: Mapping[str, torch.Tensor]) -> Masks:
    """Inverse of :func:`masks_to_tensors`: any 0/1 (or bool) tensors → ``bool`` masks."""
    masks: Masks = {}
    for name, tensor in tensors.items():
        if tensor.dtype != torch.bool and bool(((tensor != 0) & (tensor != 1)).any()):
            raise ValueError(f"mask {name!r} holds values other than 0 and 1")
        masks[name] = tensor.to(torch.bool)
    return masks
