"""Random baselines: random weight scores (random pruning) and random sample scores.

Both are uniform U[0, 1) draws from an explicit ``torch.Generator`` (a fresh one seeded
with 0 when ``None``), so a seed fixes the result. With the selection rules they give
uniformly random pruning at exactly the requested budget (ties have probability zero and
are broken by index anyway); for samples, random scores with ``mode="class_balanced"``
give a class-stratified random subset.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from jmds_pipeline.sparsity.weight_selection import random_scores


def random_weight_scores(
    masks: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """U[0, 1) per weight, +inf where already pruned (see ``weight_selection.random_scores``)."""
    return random_scores(masks, generator)


def random_sample_scores(
    num_samples: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """U[0, 1) per sample, (N,) ``float64``."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(f"num_samples = {num_samples!r} must be an integer >= 0")
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    return torch.rand(num_samples, generator=generator, dtype=torch.float64)
