"""Iterative magnitude pruning (Frankle & Carbin 2019; Frankle et al. 2020 with rewinding).

One IMP round: after training under the current mask, remove the active weights of
smallest |θ| (globally across the prunable layers by default) until the round's target
sparsity, taken from the ``geometric`` (equal-ratio) schedule; then rewind the surviving
weights to their values at epoch k and retrain. Rewinding and training live in the
training loop and the pipeline; this module is the mask update.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from jmds_pipeline.sparsity.masks import Masks
from jmds_pipeline.sparsity.weight_selection import Scope, magnitude_scores, prune_to_target


def imp_prune(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    target_sparsity: float,
    scope: Scope = "global",
) -> Masks:
    """New masks at ``target_sparsity``: the smallest-magnitude active weights removed."""
    return prune_to_target(magnitude_scores(model, masks), masks, target_sparsity, scope=scope)
