"""NTK subsampling: curvature from M kept samples, rescaled to the kept data's scale.

The GGN is a sum over samples, so Σ_{i∈D_s} s_i H_i ≈ (N_s / M_s) Σ_{i∈sub} s_i H_i with
N_s = Σ_i s_i (all kept weight) and M_s = Σ_{i∈sub} s_i (= N_s/M for 0/1 weights). The
subsample is class-balanced by default: classes are shuffled and interleaved round-robin, so
every class gets ⌊M/C⌋ samples or all it has, and the rest is filled from the larger classes.
Deterministic given the seed.
"""

from __future__ import annotations

import torch
from torch import Tensor


def select_subsample(
    weights: Tensor,
    labels: Tensor | None,
    size: int | None,
    class_balanced: bool,
    seed: int,
) -> tuple[Tensor, Tensor]:
    """Indices of the curvature samples and their rescaled weights (both CPU, 1-D).

    ``weights``: (N,) sample weights (≥ 0; zero = dropped); ``labels``: (N,) class labels or
    None (no classes: uniform subsample).
    """
    kept = (weights > 0).nonzero().squeeze(1)
    if size is None or size >= kept.numel():
        return kept, weights[kept].double()
    gen = torch.Generator().manual_seed(seed)
    if class_balanced and labels is not None:
        lab = labels[kept]
        per_class = []
        for c in torch.unique(lab):
            members = kept[lab == c]
            per_class.append(members[torch.randperm(members.numel(), generator=gen)])
        longest = max(p.numel() for p in per_class)
        # round-robin: rank within class first, then class; pad with -1
        grid = torch.full((longest, len(per_class)), -1, dtype=torch.long)
        for k, p in enumerate(per_class):
            grid[: p.numel(), k] = p
        order = grid.reshape(-1)
        chosen = order[order >= 0][:size]
    else:
        chosen = kept[torch.randperm(kept.numel(), generator=gen)[:size]]
    chosen = chosen.sort().values
    w = weights[chosen].double()
    scale = float(weights[kept].double().sum()) / float(w.sum())
    return chosen, w * scale
