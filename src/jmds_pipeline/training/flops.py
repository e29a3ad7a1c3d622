"""FLOP counts for the metrics: dense and masked inference, and training.

Dense counts come from ``torch.utils.flop_counter.FlopCounterMode``, which counts the
matrix products and convolutions (not element-wise ops) and a multiply-add as 2 FLOPs.
A masked model's count is the design's approximation: each layer's dense FLOPs times the
density of its weight mask (what sparse kernels could save; dense kernels save nothing).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def dense_flops_by_module(model: nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    """FLOPs of one forward pass on ``example_input`` (the whole batch), per module.

    Each FLOP is attributed to the innermost module that performs it, so the values add
    up to the model's total; keys are ``model.named_modules()`` names, ``""`` being the
    root's own operations (e.g. a functional matmul in its ``forward``). Modules without
    FLOPs are absent. The pass runs in eval mode without gradients, so batch-norm running
    statistics are left untouched; the model's mode is restored afterwards. Attention
    counts its full ``T × T`` products (causal masking saves nothing in dense kernels).
    """
    was_training = model.training
    model.eval()
    try:
        # The math backend spells attention out as bmm's, which the counter knows; the
        # fused CPU kernel that eval mode would pick is not in its registry and would
        # count as zero.
        with (
            torch.no_grad(),
            sdpa_kernel([SDPBackend.MATH]),
            FlopCounterMode(display=False) as counter,
        ):
            model(example_input)
    finally:
        model.train(was_training)
    inclusive = _inclusive_counts(model, counter.get_flop_counts())
    exclusive = dict(inclusive)
    for name, flops in inclusive.items():
        if name:
            # Subtract from the nearest ancestor that was itself counted (a parent may
            # call a grandchild directly, without ever running the child in between).
            exclusive[_counted_ancestor(name, inclusive)] -= flops
    return {name: flops for name, flops in exclusive.items() if flops}


def masked_inference_flops(
    model: nn.Module, masks: Mapping[str, torch.Tensor], example_input: torch.Tensor
) -> tuple[int, int]:
    """``(masked, dense)`` forward FLOPs on ``example_input``.

    A module whose weight has a mask in ``masks`` (keyed ``"<module>.weight"``, or the
    weight's ``named_parameters`` name when it is shared, as GPT-2's tied ``lm_head``)
    counts its dense FLOPs times the mask's density; everything else counts dense. Masks
    of weights that perform no FLOPs (embedding tables) change nothing.
    """
    parameters = dict(model.named_parameters())
    for key, mask in masks.items():
        if key not in parameters:
            raise ValueError(f"mask {key!r} names no parameter of the model")
        if mask.shape != parameters[key].shape:
            raise ValueError(
                f"mask {key!r} has shape {tuple(mask.shape)}; the parameter has "
                f"{tuple(parameters[key].shape)}"
            )
    canonical = {id(parameter): name for name, parameter in parameters.items()}
    modules = dict(model.named_modules())
    by_module = dense_flops_by_module(model, example_input)
    masked = 0.0
    for name, flops in by_module.items():
        mask = _weight_mask(modules[name], name, masks, canonical)
        density = 1.0 if mask is None else float(mask.count_nonzero()) / mask.numel()
        masked += flops * density
    return round(masked), sum(by_module.values())


def training_flops(forward_flops_per_sample: float, samples_seen: int) -> int:
    """≈ 3 × forward FLOPs × samples: the backward pass costs about twice the forward
    (gradients with respect to both activations and weights)."""
    return round(3 * forward_flops_per_sample * samples_seen)


def _inclusive_counts(model: nn.Module, counts: Mapping[str, Mapping]) -> dict[str, int]:
    """FlopCounterMode's per-module totals (each including its submodules), keyed by
    ``named_modules`` names; it names modules ``<RootClass>.<path>``."""
    root = type(model).__name__
    inclusive: dict[str, int] = {"": 0}
    for key, ops in counts.items():
        if key == root:
            inclusive[""] = int(sum(ops.values()))
        elif key.startswith(root + "."):
            inclusive[key[len(root) + 1 :]] = int(sum(ops.values()))
    return inclusive


def _counted_ancestor(name: str, counted: Mapping[str, int]) -> str:
    parts = name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        ancestor = ".".join(parts[:end])
        if ancestor in counted:
            return ancestor
    return ""


def _weight_mask(
    module: nn.Module,
    name: str,
    masks: Mapping[str, torch.Tensor],
    canonical: Mapping[int, str],
) -> torch.Tensor | None:
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        return None
    own_key = f"{name}.weight" if name else "weight"
    if own_key in masks:
        return masks[own_key]
    return masks.get(canonical.get(id(weight), own_key))
