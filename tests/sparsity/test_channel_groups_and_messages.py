"""Channel groups through a norm layer, the layers channel mode refuses (with their
messages), and small contracts of the scoring helpers worked out by hand: the prior's
count of text tokens, phase C on a masked copy, the round's data target, the default
schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jmds_pipeline.config import JMDSConfig
from jmds_pipeline.evidence import EvidenceConfig
from jmds_pipeline.sparsity.budget import count_to_remove
from jmds_pipeline.sparsity.channels import (
    ChannelGroup,
    Slice,
    channel_groups,
    remove_group,
    root_pruning_fn,
)
from jmds_pipeline.sparsity.jmds_scoring import prior_count, score_samples
from jmds_pipeline.sparsity.rounds import next_kept
from jmds_pipeline.sparsity.sample_selection import select_samples
from jmds_pipeline.sparsity.schedules import round_targets
from jmds_pipeline.training.loop import cpu_state
from tests.conftest import make_blobs


@pytest.mark.parametrize("norm", [nn.BatchNorm1d(3), nn.LayerNorm(3)])
def test_a_unit_takes_the_norm_entries_that_follow_it(norm: nn.Module) -> None:
    model = nn.Sequential(nn.Linear(4, 3), norm, nn.ReLU(), nn.Linear(3, 2))
    groups = channel_groups(model, ["0.weight"], torch.zeros(2, 4))
    assert [g.channel for g in groups] == [0, 1, 2]
    for c, group in enumerate(groups):
        got = {(s.param, s.dim, s.index, s.producer) for s in group.slices}
        assert got == {("0.weight", 0, (c,), True), ("0.bias", 0, (c,), True),
                       ("1.weight", 0, (c,), True), ("1.bias", 0, (c,), True),
                       ("3.weight", 1, (c,), False)}


def test_channel_mode_refuses_what_it_cannot_mask() -> None:
    with pytest.raises(ValueError, match=r"^channel granularity prunes Linear and Conv1d/2d "
                                         r"\(groups=1\) layers; ConvTranspose1d is not "
                                         r"supported$"):
        root_pruning_fn(nn.ConvTranspose1d(2, 3, 3))
    with pytest.raises(ValueError, match=r"Conv1d is not supported$"):
        root_pruning_fn(nn.Conv1d(2, 4, 3, groups=2))
    model = nn.Sequential(nn.Linear(4, 3), nn.PReLU(3), nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"^channel granularity: module '1' \(PReLU\) is "
                                         r"coupled to a pruned channel but has no supported "
                                         r"masking rule \(Linear, Conv, BatchNorm, LayerNorm, "
                                         r"GroupNorm\)$"):
        channel_groups(model, ["0.weight"], torch.zeros(2, 4))
    plain = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    for root in ("0.bias", "9.weight"):
        with pytest.raises(ValueError, match=rf"^channel root '{root}' is not the weight of "
                                             r"a module$"):
            channel_groups(plain, [root], torch.zeros(2, 4))


def test_remove_group_skips_unmasked_parameters_and_goes_on() -> None:
    group = ChannelGroup("a.weight", 1, (Slice("x.weight", 0, (1,), True),
                                         Slice("a.weight", 0, (1,), True),
                                         Slice("b.weight", 1, (1,), False)))
    masks = {"a.weight": torch.ones(2, 3, dtype=torch.bool),
             "b.weight": torch.ones(4, 2, dtype=torch.bool)}
    assert remove_group(group, masks) == 3 + 4
    assert masks["a.weight"].tolist() == [[True] * 3, [False] * 3]
    assert masks["b.weight"].tolist() == [[True, False]] * 4


def test_budget_and_score_messages() -> None:
    with pytest.raises(ValueError, match=r"^total = -1 must be >= 0$"):
        count_to_remove(-1, 0.5)
    labels, kept = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"^scores must be 1-D \(N,\), got shape \(2, 2\)$"):
        select_samples(torch.zeros(2, 2), labels, kept, 0.5)
    with pytest.raises(ValueError, match=r"^scores of kept samples contain NaN$"):
        select_samples(torch.tensor([0.0, math.nan]), labels, kept, 0.5)


def test_prior_count_counts_the_text_tokens_of_the_kept_rows() -> None:
    y = torch.tensor([[1, 2, -100], [3, -100, -100], [4, 5, 6]])
    train = {"x": torch.zeros(3, 3, dtype=torch.long), "y": y, "id": torch.arange(3)}
    kept = torch.tensor([True, True, False])
    assert prior_count(train, kept, rescale=False) == 3.0  # 2 + 1 tokens
    assert prior_count(train, kept, rescale=True) == 4.5  # each kept row weighs 3/2


def test_phase_c_scores_a_masked_copy_and_leaves_the_model_alone() -> None:
    data = make_blobs(n=30, features=3, classes=2, seed=2)
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    before = cpu_state(model)
    masks = {"weight": torch.tensor([[True, True, False], [True, True, False]])}
    config = EvidenceConfig(structure="full", subsample_size=None, prior_precision=2.0)
    result = score_samples(model, masks, torch.ones(30, dtype=torch.bool), data,
                           JMDSConfig(), config)
    assert all(torch.equal(before[k], v) for k, v in cpu_state(model).items())
    assert result.sample_contribution.shape == (30,)
    assert bool(torch.isfinite(result.sample_contribution).all())
    assert not result.weight_scores
    assert result.num_active == 6


def test_next_kept_follows_the_configured_schedule() -> None:
    """ρ = 0.5 over 2 rounds on 16 rows: cubic round 1 is 0.5·(1 − 0.5³) = 0.4375, 7 rows
    go (geometric: 1 − √0.5 = 0.29, 5 rows)."""
    scores = torch.arange(16, dtype=torch.float64)
    labels, kept = torch.zeros(16, dtype=torch.long), torch.ones(16, dtype=torch.bool)
    cubic = JMDSConfig(rounds=2, target_data_sparsity=0.5, schedule="cubic",
                       sample_selection="topk")
    assert next_kept(scores, labels, kept, cubic, 1).tolist() == [False] * 7 + [True] * 9
    geometric = cubic.model_copy(update={"schedule": "geometric"})
    assert next_kept(scores, labels, kept, geometric, 1).tolist() == [False] * 5 + [True] * 11


def test_round_targets_are_geometric_by_default() -> None:
    assert round_targets(0.75, 2) == [0.5, 0.75]
