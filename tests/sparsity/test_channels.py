"""Channel groups as element masks, their scores and the channel budget rule.

References: a unit whose group is masked outputs exactly zero (read with a forward hook)
and nothing downstream depends on the columns that read it (they are redrawn at random and
the logits do not move); the budget rule against a brute-force top-k on one layer; group
scores against the evidence's own unit and element scores.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jmds_pipeline.config import JMDSConfig
from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.sparsity.channels import (
    channel_groups,
    channel_mask_names,
    group_scores,
    prune_channels_to_target,
    read_group_scores,
    remove_group,
    spread_group_scores,
)
from jmds_pipeline.sparsity.masks import apply_masks


def _conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(2, 4, 3, 1, 1),
        nn.ReLU(),
        nn.Conv1d(4, 5, 3, 2, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 4, 3),
    )


ROOTS = ["0.weight", "2.weight"]
X = torch.randn(6, 2, 8, generator=torch.Generator().manual_seed(1))


def _masks(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: torch.ones_like(params[n], dtype=torch.bool) for n in names}


def test_groups_cover_every_unit_and_their_readers() -> None:
    model = _conv_net()
    groups = channel_groups(model, ROOTS, X[:2])
    assert [(g.root, g.channel) for g in groups] == (
        [("0.weight", k) for k in range(4)] + [("2.weight", k) for k in range(5)]
    )
    assert channel_mask_names(groups, ROOTS) == ["0.weight", "2.weight", "0.bias", "2.bias"]
    last = groups[-1]  # conv 2, unit 4: the flattened features 16..19 of the output layer
    readers = [s for s in last.slices if not s.producer]
    assert [(s.param, s.dim, s.index) for s in readers] == [("5.weight", 1, (16, 17, 18, 19))]


@pytest.mark.parametrize("index", range(9))
def test_a_masked_group_is_a_dead_unit(index: int) -> None:
    model = _conv_net()
    groups = channel_groups(model, ROOTS, X[:2])
    group = groups[index]
    names = [*channel_mask_names(groups, ROOTS), "5.weight"]  # readers of conv 2 as well
    masks = _masks(model, names)
    remove_group(group, masks)
    apply_masks(model, masks)
    layer = model[0] if group.root == "0.weight" else model[2]
    seen = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.update(out=out))
    before = model(X)
    handle.remove()
    assert torch.count_nonzero(seen["out"][:, group.channel]) == 0
    # the columns reading the unit see zeros: redrawing them changes nothing
    with torch.no_grad():
        for sl in group.slices:
            if not sl.producer:
                param = dict(model.named_parameters())[sl.param]
                index_t = torch.tensor(sl.index)
                param.index_copy_(
                    sl.dim, index_t, torch.randn_like(param.index_select(sl.dim, index_t))
                )
    torch.testing.assert_close(model(X), before, rtol=0, atol=0)


def test_budget_rule_is_top_k_on_one_layer() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3))
    groups = channel_groups(model, ["0.weight"], torch.zeros(2, 6))
    masks = _masks(model, channel_mask_names(groups, ["0.weight"]))
    scores = torch.randn(10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    new = prune_channels_to_target(scores, groups, masks, 0.45)
    # every unit is 7 entries (6 weights + bias); 70 entries, goal round(0.45·70) = 32 → 5
    gone = (~new["0.weight"].all(1)).nonzero().squeeze(1).tolist()
    assert sorted(gone) == sorted(torch.topk(scores, 5).indices.tolist())
    assert torch.equal(new["0.bias"], new["0.weight"].all(1))
    assert bool(masks["0.weight"].all())  # inputs untouched


def test_last_unit_of_a_layer_stays_and_rule_is_monotone() -> None:
    model = _conv_net()
    groups = channel_groups(model, ROOTS, X[:2])
    masks = _masks(model, channel_mask_names(groups, ROOTS))
    scores = torch.zeros(len(groups), dtype=torch.float64)
    new = prune_channels_to_target(scores, groups, masks, 0.99)
    for root in ROOTS:
        assert int(new[root].reshape(new[root].shape[0], -1).any(1).sum()) == 1
    again = prune_channels_to_target(-scores, groups, new, 0.2)  # already sparser: no-op
    assert all(torch.equal(again[n], new[n]) for n in new)


def test_spread_and_read_round_trip() -> None:
    model = _conv_net()
    groups = channel_groups(model, ROOTS, X[:2])
    masks = _masks(model, channel_mask_names(groups, ROOTS))
    scores = torch.arange(len(groups), dtype=torch.float64) - 3.5
    spread = spread_group_scores(groups, scores, masks)
    torch.testing.assert_close(read_group_scores(groups, spread), scores)


@pytest.mark.parametrize("structure", ["kfac", "diag"])
def test_group_scores_use_unit_scores_once(structure: str) -> None:
    """K-FAC: a unit's Δ is the evidence's unit score (its bias is inside it, not added);
    diag: the sum of the element scores of its weight row and bias (exact there)."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x = torch.randn(30, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    groups = channel_groups(model, ["0.weight"], x[:2])
    masks = _masks(model, channel_mask_names(groups, ["0.weight"]))
    result = estimate_evidence(
        model,
        x,
        y,
        masks=masks,
        prunable=list(masks),
        config=EvidenceConfig(structure=structure, weight_score="diag", subsample_size=None),
        score_samples=False,
        score_units=True,
    )
    got = group_scores(groups, result.unit_scores or {}, result.weight_scores)
    if structure == "kfac":
        expected = result.unit_scores["0.weight"].double()
    else:
        assert not result.unit_scores
        expected = (
            result.weight_scores["0.weight"].double().sum(1)
            + result.weight_scores["0.bias"].double()
        )
    torch.testing.assert_close(got, expected)
    assert all(math.isfinite(v) for v in got.tolist())


def test_channel_config_rejects_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="granularity"):
        JMDSConfig(granularity="neuron")
    with pytest.raises(ValueError, match=r"jmds.mode = 'penalty' with jmds.granularity"):
        JMDSConfig(granularity="channel", mode="penalty")
    with pytest.raises(ValueError, match="include_output_layer"):
        JMDSConfig(granularity="channel", include_output_layer=True)
    assert JMDSConfig(granularity="channel").granularity == "channel"


def test_torch_pruning_scores_rank_small_and_dead_units_first() -> None:
    """Magnitude: a unit with tiny weights everywhere (its row and the column reading it)
    is the cheapest, one with large weights the dearest. Taylor: a unit nobody reads has
    zero gradient, so zero importance: the cheapest."""
    from jmds_pipeline.sparsity.channels import magnitude_group_scores, taylor_group_scores

    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight[3] *= 1e-3
        model[0].bias[3] = 0.0
        model[2].weight[:, 3] *= 1e-3
        model[0].weight[5] *= 10
        model[2].weight[:, 5] *= 10
    groups = channel_groups(model, ["0.weight"], torch.zeros(2, 6))
    scores = magnitude_group_scores(model, groups, torch.zeros(2, 6))
    assert int(scores.argmax()) == 3 and int(scores.argmin()) == 5
    with torch.no_grad():
        model[2].weight[:, 1] = 0.0  # unit 1 is read by nobody
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    taylor = taylor_group_scores(model, groups, torch.zeros(2, 6), x, y)
    assert float(taylor[1]) == 0.0 and bool((taylor[torch.arange(8) != 1] < 0).all())
    assert all(p.grad is None or not bool(p.grad.any()) for p in model.parameters())
