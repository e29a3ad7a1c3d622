"""Channel granularity: whole output units as groups of element masks.

A *channel group* is everything that goes when one output unit of a prunable layer goes:
its weight row and bias entry, the affine entries of a norm layer that follows, and the
columns of the layers that read it (for a residual stream, every layer that writes or reads
the channel). The coupling is Torch-Pruning's dependency graph (``torch_pruning``), so the
same groups are what ``export.structured`` removes physically; here each group becomes
element masks, so training, evidence and metrics run unchanged on θ ⊙ m.

Masks in channel mode cover the prunable weights (as in weight mode) and the producer
parameters of their groups (biases, norm affines): a unit is only dead if its bias is zero
too. Model sparsity is the zeroed fraction of those masked entries. Columns of parameters
outside the mask set (the output layer reading a removed channel) multiply zeros and
disappear only in the physical export.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from jmds_pipeline.sparsity.budget import check_fraction, count_to_remove

Masks = dict[str, torch.Tensor]
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


@dataclass(frozen=True)
class Slice:
    """Entries ``index`` along ``dim`` of parameter ``param``; ``producer``: the unit's own
    entries (weight row, bias, norm affine), else a reading column."""

    param: str
    dim: int
    index: tuple[int, ...]
    producer: bool


@dataclass(frozen=True)
class ChannelGroup:
    root: str  # weight name of the layer whose output unit this is
    channel: int
    slices: tuple[Slice, ...]

    @property
    def producers(self) -> tuple[Slice, ...]:
        return tuple(s for s in self.slices if s.producer)


def root_pruning_fn(module: nn.Module):  # type: ignore[no-untyped-def]
    import torch_pruning as tp

    if isinstance(module, nn.Linear):
        return tp.prune_linear_out_channels
    if isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups == 1:
        return tp.prune_conv_out_channels
    raise ValueError(
        f"channel granularity prunes Linear and Conv1d/2d (groups=1) layers; "
        f"{type(module).__name__} is not supported"
    )


def _slices(module: nn.Module, name: str, handler: str, idxs: list[int]) -> list[Slice]:
    index = tuple(int(i) for i in idxs)
    own = dict(module.named_parameters(recurse=False))
    if not own:
        return []  # activations, reshapes, element-wise ops: nothing to mask
    prefix = f"{name}." if name else ""
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        if handler == "prune_out_channels":
            out = [Slice(prefix + "weight", 0, index, True)]
            if "bias" in own:
                out.append(Slice(prefix + "bias", 0, index, True))
            return out
        return [Slice(prefix + "weight", 1, index, False)]
    if isinstance(module, _NORMS):
        return [Slice(prefix + p, 0, index, True) for p in ("weight", "bias") if p in own]
    raise ValueError(
        f"channel granularity: module {name!r} ({type(module).__name__}) is coupled to a "
        "pruned channel but has no supported masking rule (Linear, Conv, BatchNorm, "
        "LayerNorm, GroupNorm)"
    )


def channel_groups(
    model: nn.Module, roots: Sequence[str], example_input: torch.Tensor
) -> list[ChannelGroup]:
    """One group per output unit of every root layer (``roots``: weight names), coupled by
    Torch-Pruning's dependency graph traced on ``example_input``. A unit coupled to another
    root's unit (a residual stream) appears once."""
    import torch_pruning as tp

    modules = dict(model.named_modules())
    names = {id(m): n for n, m in modules.items()}
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
    seen: set[frozenset] = set()
    groups: list[ChannelGroup] = []
    for root in roots:
        if not root.endswith(".weight") or root[: -len(".weight")] not in modules:
            raise ValueError(f"channel root {root!r} is not the weight of a module")
        module = modules[root[: -len(".weight")]]
        fn = root_pruning_fn(module)
        for channel in range(module.weight.shape[0]):
            group = graph.get_pruning_group(module, fn, idxs=[channel])
            slices: dict[tuple, Slice] = {}
            for item in group:
                target = item.dep.target.module
                handler = getattr(item.dep.handler, "__name__", "")
                for sl in _slices(target, names.get(id(target), ""), handler, item.idxs):
                    slices.setdefault((sl.param, sl.dim, sl.index), sl)
            key = frozenset(k for k, s in slices.items() if s.producer)
            if key in seen:
                continue
            seen.add(key)
            groups.append(ChannelGroup(root, channel, tuple(slices.values())))
    return groups


def channel_mask_names(groups: Sequence[ChannelGroup], weights: Sequence[str]) -> list[str]:
    """The mask set of channel mode: the prunable weights, then their groups' producers."""
    names = list(weights)
    for group in groups:
        for sl in group.producers:
            if sl.param not in names:
                names.append(sl.param)
    return names


def _view(mask: torch.Tensor, sl: Slice) -> torch.Tensor:
    return mask.index_select(sl.dim, torch.tensor(sl.index, dtype=torch.long, device=mask.device))


def group_active(group: ChannelGroup, masks: Mapping[str, torch.Tensor]) -> bool:
    """A unit is active while any of its masked producer entries is."""
    return any(bool(_view(masks[s.param], s).any()) for s in group.producers if s.param in masks)


def remove_group(group: ChannelGroup, masks: Masks) -> int:
    """In place: zero every masked entry of the group; returns how many were active."""
    removed = 0
    for sl in group.slices:
        if sl.param not in masks:
            continue
        mask = masks[sl.param]
        index = torch.tensor(sl.index, dtype=torch.long, device=mask.device)
        removed += int(mask.index_select(sl.dim, index).sum())
        mask.index_fill_(sl.dim, index, False)
    return removed


def group_size(group: ChannelGroup, masks: Mapping[str, torch.Tensor]) -> int:
    """Active masked entries the group would zero now."""
    return sum(int(_view(masks[s.param], s).sum()) for s in group.slices if s.param in masks)


def group_scores(
    groups: Sequence[ChannelGroup],
    unit_scores: Mapping[str, torch.Tensor],
    element_scores: Mapping[str, torch.Tensor],
) -> torch.Tensor:
    """Δ_g per group (float64): the change of log Z when the whole unit goes.

    Under K-FAC the precision is block-diagonal over layers, so a group's Δ is the sum over
    its producers: a K-FAC layer's unit score (its weight row *and* bias, ``evidence.units``)
    or, for diagonal parameters (norm affines, layers on the diagonal backend), the sum of
    their element scores (exact for a diagonal precision). Reading columns add nothing (see
    ``evidence.units``). +inf for a removed unit.
    """
    out = torch.zeros(len(groups), dtype=torch.float64)
    for g, group in enumerate(groups):
        covered = {s.param.rsplit(".", 1)[0] for s in group.producers if s.param in unit_scores}
        total = 0.0
        for sl in group.producers:
            module = sl.param.rsplit(".", 1)[0]
            if sl.param in unit_scores:
                total += float(unit_scores[sl.param][list(sl.index)].double().sum())
            elif module in covered:
                continue  # the bias of a K-FAC layer is inside its unit score
            elif sl.param in element_scores:
                total += float(_view(element_scores[sl.param], sl).double().sum())
            else:
                raise ValueError(
                    f"no score for {sl.param!r}, a producer of unit "
                    f"{group.channel} of {group.root!r}"
                )
        out[g] = total
    return out


def spread_group_scores(
    groups: Sequence[ChannelGroup], scores: torch.Tensor, masks: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Parameter-shaped scores for the catalog: each producer entry holds its unit's Δ_g;
    every other entry (and removed units) +inf. ``read_group_scores`` inverts it."""
    out = {n: torch.full(m.shape, math.inf, dtype=torch.float32) for n, m in masks.items()}
    for group, score in zip(groups, scores.tolist(), strict=True):
        for sl in group.producers:
            if sl.param in out:
                index = torch.tensor(sl.index, dtype=torch.long)
                out[sl.param].index_fill_(sl.dim, index, float(score))
    return out


def read_group_scores(
    groups: Sequence[ChannelGroup], spread: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """Δ_g back from ``spread_group_scores``' tensors (the first masked producer entry)."""
    out = torch.full((len(groups),), math.inf, dtype=torch.float64)
    for g, group in enumerate(groups):
        for sl in group.producers:
            if sl.param in spread:
                out[g] = float(_view(spread[sl.param], sl).reshape(-1)[0])
                break
    return out


def prune_channels_to_target(
    scores: torch.Tensor,
    groups: Sequence[ChannelGroup],
    masks: Mapping[str, torch.Tensor],
    target_sparsity: float,
) -> Masks:
    """New masks with whole units removed until at least ⌊ρ·n + ½⌋ of the n masked entries
    are zero (it overshoots by less than the last unit's size).

    Units go in order of Δ_g per entry removed (highest first: the least evidence per
    parameter), a greedy answer to "keep the most evidence under a parameter budget". The
    last active unit of a layer is never removed (the network would be cut). Monotone;
    the inputs are not modified; ties go to the earlier group.
    """
    target = check_fraction("target_sparsity", target_sparsity)
    if scores.shape != (len(groups),):
        raise ValueError(f"scores has shape {tuple(scores.shape)}; expected ({len(groups)},)")
    new = {name: mask.to(torch.bool).clone() for name, mask in masks.items()}
    total = sum(m.numel() for m in new.values())
    goal = count_to_remove(total, target)
    removed = sum(int((~m).sum()) for m in new.values())
    if removed >= goal:
        return new
    active = [group_active(g, new) for g in groups]
    if any(bool(torch.isnan(scores[i])) for i in range(len(groups)) if active[i]):
        raise ValueError("scores of active units contain NaN")
    per_layer: dict[str, int] = {}
    for g, on in zip(groups, active, strict=True):
        per_layer[g.root] = per_layer.get(g.root, 0) + int(on)
    sizes = torch.tensor([max(group_size(g, new), 1) for g in groups], dtype=torch.float64)
    order = torch.sort(scores.double() / sizes, descending=True, stable=True).indices.tolist()
    for i in order:
        if removed >= goal:
            break
        if not active[i] or per_layer[groups[i].root] <= 1:
            continue
        removed += remove_group(groups[i], new)
        active[i] = False
        per_layer[groups[i].root] -= 1
    return new


def example_input(input_shape: Sequence[int]) -> torch.Tensor:
    """A batch of two zero inputs of one sample's shape, for tracing the dependency graph."""
    return torch.zeros(2, *input_shape)


def magnitude_group_scores(
    model: nn.Module, groups: Sequence[ChannelGroup], example: torch.Tensor, p: int = 2
) -> torch.Tensor:
    """−(Torch-Pruning's group magnitude importance) per group: the L_p norm of every
    coupled slice, summed over the group (``GroupMagnitudeImportance``); higher = cheaper
    to remove, as ``prune_channels_to_target`` expects."""
    import torch_pruning as tp

    return _tp_group_scores(model, groups, example, tp.importance.GroupMagnitudeImportance(p=p))


def taylor_group_scores(
    model: nn.Module,
    groups: Sequence[ChannelGroup],
    example: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
) -> torch.Tensor:
    """−(Torch-Pruning's group Taylor importance, |θ·∂L/∂θ| summed over the group), the
    gradient of the mean cross-entropy on (x, y); higher = cheaper to remove."""
    import torch_pruning as tp

    was_training = model.training
    model.eval()
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    try:
        return _tp_group_scores(model, groups, example, tp.importance.GroupTaylorImportance())
    finally:
        model.zero_grad()
        model.train(was_training)


def _tp_group_scores(
    model: nn.Module, groups: Sequence[ChannelGroup], example: torch.Tensor, importance: object
) -> torch.Tensor:
    import torch_pruning as tp

    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    modules = dict(model.named_modules())
    per_root: dict[str, torch.Tensor] = {}
    out = torch.empty(len(groups), dtype=torch.float64)
    for g, group in enumerate(groups):
        if group.root not in per_root:
            module = modules[group.root[: -len(".weight")]]
            whole = graph.get_pruning_group(
                module, root_pruning_fn(module), idxs=list(range(module.weight.shape[0]))
            )
            per_root[group.root] = importance(whole).detach().double().cpu()  # type: ignore[operator]
        out[g] = -per_root[group.root][group.channel]
    return out
