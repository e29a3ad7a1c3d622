"""Which weights to remove: budgeted (targets) or penalised (λ1), from per-weight scores.

Score convention (shared by the evidence scores, magnitude and random baselines):
``scores[name]`` has the parameter's shape and a **higher score means cheaper to remove**.
For the Laplace evidence the score is Δ_j, the change of log Z when weight j is removed
(design.md §2, phase B), e.g. in diagonal form

    Δ_j ≈ −½ P_jj θ_j² + ½ log(P_jj / α),

so pruning the largest Δ_j costs the least evidence. Weights that are already pruned are
conventionally +inf, but every rule here ignores their score: pruned stays pruned
(monotone masks), whatever the score says.

Ties are broken deterministically: among equal scores the weight that comes first in the
flattened order (masks' key order, then row-major within a tensor) is removed first.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Literal

import torch
from torch import nn

from jmds_pipeline.sparsity.budget import check_fraction, count_to_remove
from jmds_pipeline.sparsity.masks import Masks

Scope = Literal["global", "layerwise"]
SCOPES = ("global", "layerwise")


def _prunable(
    scores: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor],
    exclude: Collection[str],
) -> list[str]:
    unknown = sorted(set(exclude) - set(masks))
    if unknown:
        raise ValueError(f"exclude names {unknown} that have no mask")
    names = [name for name in masks if name not in exclude]
    missing = [name for name in names if name not in scores]
    if missing:
        raise ValueError(f"scores lack entries for masked parameters {missing}")
    for name in names:
        if scores[name].shape != masks[name].shape:
            raise ValueError(f"scores[{name!r}] has shape {tuple(scores[name].shape)} but its "
                             f"mask has {tuple(masks[name].shape)}")
    return names


def _remove_top(
    scores: Mapping[str, torch.Tensor], masks: Masks, names: list[str], removed_target: int
) -> None:
    """In place: prune the highest-scored active weights of ``names`` until exactly
    ``removed_target`` of their weights are pruned (no-op if already at or beyond it)."""
    flat_masks = [masks[name].reshape(-1) for name in names]
    already = sum(int((~mask).sum()) for mask in flat_masks)
    extra = removed_target - already
    if extra <= 0:
        return
    device = flat_masks[0].device
    active = torch.cat(flat_masks)
    flat_scores = torch.cat([scores[name].detach().reshape(-1).to(device) for name in names])
    candidates = torch.nonzero(active).squeeze(1)
    candidate_scores = flat_scores[candidates]
    if bool(torch.isnan(candidate_scores).any()):
        bad = [name for name in names
               if bool(torch.isnan(scores[name].detach().to(device)[masks[name]]).any())]
        raise ValueError(f"scores of active weights contain NaN in {bad}")
    order = torch.sort(candidate_scores, descending=True, stable=True).indices
    active[candidates[order[:extra]]] = False
    offset = 0
    for name in names:
        numel = masks[name].numel()
        masks[name] = active[offset:offset + numel].view_as(masks[name]).clone()
        offset += numel


def prune_to_target(
    scores: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    target_sparsity: float,
    scope: Scope = "global",
    exclude: Collection[str] = (),
) -> Masks:
    """New masks with exactly k = ⌊ρ·n + ½⌋ of the n prunable weights removed.

    ``scope="global"`` ranks all prunable weights together (one budget over n = Σ numel);
    ``"layerwise"`` gives every layer its own budget k_l = ⌊ρ·n_l + ½⌋. Removal is
    monotone: pruned weights stay pruned, and if a layer (or the whole set) is already
    sparser than the target nothing is revived; it stays where it is. Masks named in
    ``exclude`` are copied unchanged and do not count towards n. The inputs are not
    modified.
    """
    target = check_fraction("target_sparsity", target_sparsity)
    if scope not in SCOPES:
        raise ValueError(f"scope = {scope!r} is unknown; accepted: {list(SCOPES)}")
    names = _prunable(scores, masks, exclude)
    new = {name: mask.to(torch.bool).clone() for name, mask in masks.items()}
    if not names:
        return new
    if scope == "global":
        total = sum(new[name].numel() for name in names)
        _remove_top(scores, new, names, count_to_remove(total, target))
    else:
        for name in names:
            _remove_top(scores, new, [name], count_to_remove(new[name].numel(), target))
    return new


def prune_by_threshold(
    scores: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    lam: float,
    max_sparsity: float | None = None,
    exclude: Collection[str] = (),
) -> Masks:
    """Penalty mode: remove every active weight j with Δ_j + λ1 > 0.

    The objective is J = log Z − λ1·‖m‖₀ (design.md §2). Removing weight j changes log Z
    by Δ_j (= ``scores``) and ‖m‖₀ by −1, so J changes by Δ_j + λ1: the weight goes iff
    that is positive, i.e. iff its removal costs less evidence than the λ1 nats a weight is
    charged. λ1 = 0 removes exactly the weights whose removal raises the evidence itself;
    a larger λ1 prunes more. All qualifying weights are removed at once, treating the Δ_j
    as independent (exact only one weight at a time; the next round re-scores).

    ``max_sparsity`` caps the overall sparsity of the prunable set (the highest Δ_j go
    first); masks in ``exclude`` are untouched. Monotone, and the inputs are not modified.
    """
    lam = float(lam)
    if not torch.isfinite(torch.tensor(lam)):
        raise ValueError(f"lam = {lam!r} must be finite")
    cap = None if max_sparsity is None else check_fraction("max_sparsity", max_sparsity)
    names = _prunable(scores, masks, exclude)
    new = {name: mask.to(torch.bool).clone() for name, mask in masks.items()}
    if not names:
        return new
    total = sum(new[name].numel() for name in names)
    already = sum(int((~new[name]).sum()) for name in names)
    qualifying = 0
    for name in names:
        gain = scores[name].detach().to(new[name].device) + lam
        if bool(torch.isnan(gain[new[name]]).any()):
            raise ValueError(f"scores of active weights contain NaN in {name!r}")
        qualifying += int((new[name] & (gain > 0)).sum())
    removed_target = already + qualifying
    if cap is not None:
        removed_target = min(removed_target, max(already, count_to_remove(total, cap)))
    # The top-`qualifying` active scores are exactly the qualifying ones (gain > 0 is a
    # threshold on the score), so removing the top ones up to the budget is the rule.
    _remove_top(scores, new, names, removed_target)
    return new


def magnitude_scores(
    model: nn.Module, masks: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """IMP scores: −|θ_j| (smallest magnitude = cheapest to remove), +inf where pruned."""
    params = dict(model.named_parameters())
    missing = sorted(set(masks) - params.keys())
    if missing:
        raise ValueError(f"masks name parameters the model does not have: {missing}")
    out = {}
    for name, mask in masks.items():
        magnitude = params[name].detach().abs().float()
        inf = torch.full_like(magnitude, float("inf"))
        out[name] = torch.where(mask.to(magnitude.device, torch.bool), -magnitude, inf)
    return out


def random_scores(
    masks: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """Uniform U[0, 1) scores on CPU (random pruning), +inf where pruned.

    Drawn in the masks' key order from ``generator`` (a fresh generator seeded with 0 when
    ``None``), so the same generator state gives the same scores.
    """
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    out = {}
    for name, mask in masks.items():
        draw = torch.rand(mask.shape, generator=generator)
        out[name] = torch.where(mask.cpu().to(torch.bool), draw,
                                torch.full_like(draw, float("inf")))
    return out
