from __future__ import annotations

import torch
from torch import nn

from jmds_pipeline.baselines.imp import imp_prune
from jmds_pipeline.baselines.random_baselines import random_sample_scores, random_weight_scores
from jmds_pipeline.sparsity.masks import apply_masks, count_active, init_masks
from jmds_pipeline.sparsity.sample_selection import select_samples
from jmds_pipeline.sparsity.schedules import round_targets
from jmds_pipeline.sparsity.weight_selection import prune_to_target


def test_random_sample_scores_seeded() -> None:
    first = random_sample_scores(50, torch.Generator().manual_seed(4))
    second = random_sample_scores(50, torch.Generator().manual_seed(4))
    assert torch.equal(first, second) and first.dtype == torch.float64
    assert not torch.equal(first, random_sample_scores(50, torch.Generator().manual_seed(5)))
    labels = torch.arange(50) % 5
    kept = select_samples(first, labels, torch.ones(50, dtype=torch.bool), 0.6)
    assert [int(kept[labels == c].sum()) for c in range(5)] == [4] * 5


def test_random_weight_pruning_is_uniform_at_budget() -> None:
    masks = {"w": torch.ones(200, 50, dtype=torch.bool)}
    new = prune_to_target(random_weight_scores(masks, torch.Generator().manual_seed(0)),
                          masks, 0.5)
    assert count_active(new) == 5000
    row_density = new["w"].float().mean(dim=1)  # no structure: every row near one half
    assert float(row_density.min()) > 0.25 and float(row_density.max()) < 0.75


def test_imp_rounds_follow_geometric_schedule_and_magnitude() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 4))
    masks = init_masks(model, ["0.weight", "2.weight"])
    total = 280
    for target in round_targets(0.875, 3, "geometric"):
        masks = imp_prune(model, masks, target)
        apply_masks(model, masks)
        assert count_active(masks) == total - int(target * total + 0.5)
        kept = torch.cat([model.get_parameter(n).detach()[masks[n]].abs() for n in masks])
        assert float(kept.min()) > 0
    assert count_active(masks) == 35
