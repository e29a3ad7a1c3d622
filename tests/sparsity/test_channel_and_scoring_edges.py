"""Channel groups and JMDS's scoring wrappers on hand-built inputs: group scores summed by
hand over nested module names, the greedy unit budget on exact counts, the error messages,
and ``score_weights``/``score_samples``/``running_mean``/``scalar_alpha`` checked against
what each promises (a smaller model without the masked inputs, the gradient of the log
joint written out with autograd, means worked out by hand)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from jmds_pipeline.config import JMDSConfig
from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.sparsity.channels import (
    ChannelGroup,
    Slice,
    channel_groups,
    example_input,
    group_scores,
    magnitude_group_scores,
    prune_channels_to_target,
    read_group_scores,
    spread_group_scores,
)
from jmds_pipeline.sparsity.jmds_scoring import (
    channel_scores,
    running_mean,
    scalar_alpha,
    score_weights,
)
from jmds_pipeline.sparsity.masks import apply_masks
from tests.conftest import make_blobs


def _unit(root: str, channel: int, *params: str, reader: str | None = None) -> ChannelGroup:
    slices = [Slice(p, 0, (channel,), True) for p in params]
    if reader is not None:
        slices.append(Slice(reader, 1, (channel,), False))
    return ChannelGroup(root, channel, tuple(slices))


# --- group_scores: nested module names, K-FAC units, diagonal norm affines ---------------

NESTED = ("0.0.weight", "0.0.bias", "0.1.weight", "0.1.bias")  # Linear then LayerNorm in "0"


def test_group_score_adds_a_norms_element_scores_to_the_kfac_unit_score() -> None:
    """The K-FAC layer 0.0 covers its own bias; the LayerNorm 0.1 (a different module with
    the same first name part) still adds its element scores: 20 + 2 + 0.5."""
    groups = [_unit("0.0.weight", c, *NESTED, reader="2.weight") for c in range(3)]
    units = {"0.0.weight": torch.tensor([10.0, 20.0, 30.0])}
    elements = {
        "0.0.weight": torch.full((3, 4), 1e6),  # inside the unit score: never read
        "0.0.bias": torch.tensor([100.0, 200.0, 300.0]),  # inside the unit score too
        "0.1.weight": torch.tensor([1.0, 2.0, 3.0]),
        "0.1.bias": torch.tensor([0.25, 0.5, 0.75]),
        "2.weight": torch.full((2, 3), 1e6),  # a reading column adds nothing
    }
    got = group_scores(groups, units, elements)
    assert got.dtype == torch.float64
    assert got.tolist() == [11.25, 22.5, 33.75]


def test_group_score_sums_two_kfac_producers_of_one_channel() -> None:
    """A residual channel written by two K-FAC layers: both unit scores count."""
    group = _unit("a.weight", 1, "a.weight", "a.bias", "b.weight", "b.bias")
    units = {"a.weight": torch.tensor([0.0, 3.0]), "b.weight": torch.tensor([0.0, 4.5])}
    got = group_scores([group], units, {"a.bias": torch.ones(2), "b.bias": torch.ones(2)})
    assert got.tolist() == [7.5]


def test_group_score_names_the_producer_without_a_score() -> None:
    group = _unit("0.0.weight", 1, *NESTED)
    units = {"0.0.weight": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"no score for '0\.1\.weight', a producer of unit 1 "
                                         r"of '0\.0\.weight'"):
        group_scores([group], units, {"0.1.bias": torch.zeros(3)})


# --- spread / read ----------------------------------------------------------------------

def test_spread_scores_are_float32_whatever_the_default_dtype() -> None:
    groups = [_unit("w", c, "w", "b") for c in range(2)]
    masks = {"w": torch.ones(2, 3, dtype=torch.bool), "b": torch.ones(2, dtype=torch.bool)}
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        spread = spread_group_scores(groups, torch.tensor([1.5, -2.0]), masks)
    finally:
        torch.set_default_dtype(previous)
    assert {t.dtype for t in spread.values()} == {torch.float32}
    assert spread["w"].tolist() == [[1.5] * 3, [-2.0] * 3]
    assert spread["b"].tolist() == [1.5, -2.0]


def test_spread_refuses_a_score_count_that_is_not_one_per_group() -> None:
    groups = [_unit("w", c, "w") for c in range(3)]
    masks = {"w": torch.ones(3, 2, dtype=torch.bool)}
    with pytest.raises(ValueError):
        spread_group_scores(groups, torch.tensor([1.0, 2.0]), masks)


def test_read_takes_the_first_entry_of_the_first_spread_producer() -> None:
    groups = [_unit("w", c, "w", "b") for c in range(2)]
    # only the bias was spread: a one-entry view per unit
    assert read_group_scores(groups, {"b": torch.tensor([4.0, -1.0])}).tolist() == [4.0, -1.0]
    # a row whose entries differ: the first one is read
    row = {"w": torch.tensor([[5.0, 6.0, 7.0], [8.0, 9.0, 1.0]])}
    assert read_group_scores(groups, row).tolist() == [5.0, 8.0]
    assert read_group_scores(groups, {}).tolist() == [math.inf, math.inf]


# --- prune_channels_to_target: exact counts ---------------------------------------------

def _four_units() -> tuple[list[ChannelGroup], dict[str, torch.Tensor]]:
    """One layer "w" of 4 units × 3 entries (12 masked entries)."""
    groups = [_unit("w", c, "w") for c in range(4)]
    return groups, {"w": torch.ones(4, 3, dtype=torch.bool)}


def test_budget_hit_exactly_removes_no_further_unit() -> None:
    groups, masks = _four_units()
    scores = torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    new = prune_channels_to_target(scores, groups, masks, 0.25)  # goal round(3) = one unit
    assert new["w"].all(1).tolist() == [False, True, True, True]
    new = prune_channels_to_target(scores, groups, masks, 0.5)  # goal 6 = two units
    assert new["w"].all(1).tolist() == [False, False, True, True]


def test_units_are_ranked_by_score_per_entry_removed() -> None:
    """Unit 0 has one active entry left (Δ 1.5 per entry), unit 1 three (Δ 3 → 1 per
    entry): unit 0 goes first, though unit 1's total is larger."""
    groups, masks = _four_units()
    masks["w"][0, 1:] = False  # 2 of 12 already zero
    scores = torch.tensor([1.5, 3.0, -5.0, -6.0], dtype=torch.float64)
    # goal round(0.25·12) = 3: removing unit 0 makes 3
    new = prune_channels_to_target(scores, groups, masks, 0.25)
    assert new["w"].tolist() == [[False] * 3, [True] * 3, [True] * 3, [True] * 3]


def test_target_already_met_returns_the_masks_without_reading_the_scores() -> None:
    groups, masks = _four_units()
    masks["w"][0] = False  # 3 of 12 zero = the goal at 0.25
    scores = torch.tensor([math.nan] * 4, dtype=torch.float64)
    new = prune_channels_to_target(scores, groups, masks, 0.25)
    assert torch.equal(new["w"], masks["w"]) and new["w"] is not masks["w"]


def test_non_bool_masks_are_read_as_bool() -> None:
    groups, masks = _four_units()
    new = prune_channels_to_target(torch.tensor([1.0, 0, 0, 0], dtype=torch.float64),
                                   groups, {"w": masks["w"].float()}, 0.25)
    assert new["w"].dtype == torch.bool
    assert new["w"].all(1).tolist() == [False, True, True, True]


def test_budget_errors_name_the_bad_value() -> None:
    groups, masks = _four_units()
    with pytest.raises(ValueError, match=r"^target_sparsity = 1\.5 is outside"):
        prune_channels_to_target(torch.zeros(4), groups, masks, 1.5)
    with pytest.raises(ValueError, match=r"scores has shape \(3,\); expected \(4,\)"):
        prune_channels_to_target(torch.zeros(3), groups, masks, 0.5)
    scores = torch.tensor([0.0, math.nan, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"^scores of active units contain NaN$"):
        prune_channels_to_target(scores, groups, masks, 0.5)
    masks["w"][1] = False  # the NaN unit is gone already: its score is not read
    new = prune_channels_to_target(scores, groups, masks, 0.5)
    assert int((~new["w"]).sum()) == 6


# --- Torch-Pruning group scores ----------------------------------------------------------

def test_example_input_is_two_zero_samples() -> None:
    got = example_input((3, 5))
    assert got.shape == (2, 3, 5) and not bool(got.any())


def test_magnitude_scores_use_the_l2_norm_by_default() -> None:
    """Row [1, 1] has squared norm 2 > 1.69 of row [1.3, 0] (L2: the first is dearer), but
    cubed 2 < 2.197 (L3 ranks them the other way); the reading columns are equal."""
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 1.0], [1.3, 0.0]]))
        model[0].bias.zero_()
        model[2].weight.fill_(0.5)
        model[2].bias.zero_()
    example = torch.zeros(2, 2)
    groups = channel_groups(model, ["0.weight"], example)
    default = magnitude_group_scores(model, groups, example)
    assert default.dtype == torch.float64
    assert float(default[1]) > float(default[0])  # higher = cheaper: the [1.3, 0] row
    cubed = magnitude_group_scores(model, groups, example, p=3)
    assert float(cubed[0]) > float(cubed[1])


# --- jmds_scoring ------------------------------------------------------------------------

def test_scalar_alpha_is_the_float64_mean_of_a_layerwise_prior() -> None:
    assert scalar_alpha({"a": 0.1, "b": 0.7}) == pytest.approx(0.4, rel=1e-15, abs=0)
    assert scalar_alpha({"a": 1.0, "b": 2.0, "c": 6.0}) == 3.0
    assert scalar_alpha(2.5) == 2.5


def test_running_mean_by_hand() -> None:
    first = running_mean(None, torch.tensor([1.0, 2.0]), 1)
    assert first.dtype == torch.float64 and first.tolist() == [1.0, 2.0]
    # mean of (2, 2, 5) given the mean 2 of the first two rounds
    third = running_mean(torch.tensor([2.0], dtype=torch.float64), torch.tensor([5.0]), 3)
    assert third.dtype == torch.float64 and third.tolist() == [3.0]


def test_channel_scores_spread_each_units_delta_over_its_producers() -> None:
    groups = [_unit("l.weight", c, "l.weight", "l.bias") for c in range(2)]
    masks = {"l.weight": torch.ones(2, 3, dtype=torch.bool),
             "l.bias": torch.ones(2, dtype=torch.bool)}
    elements = {"l.weight": torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]]),
                "l.bias": torch.tensor([10.0, 20.0])}
    # no K-FAC unit scores: the element sums, 16 and 21.5
    diag = channel_scores(groups, SimpleNamespace(unit_scores=None, weight_scores=elements),
                          masks)
    assert diag["l.weight"].tolist() == [[16.0] * 3, [21.5] * 3]
    assert diag["l.bias"].tolist() == [16.0, 21.5]
    # K-FAC: the unit score, the bias inside it
    units = {"l.weight": torch.tensor([-1.0, 7.0])}
    kfac = channel_scores(groups, SimpleNamespace(unit_scores=units, weight_scores=elements),
                          masks)
    assert kfac["l.weight"].tolist() == [[-1.0] * 3, [7.0] * 3]
    assert kfac["l.bias"].tolist() == [-1.0, 7.0]


def _blob_problem():
    data = make_blobs(n=40, features=3, classes=2, seed=2)
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    # input feature 2 is pruned: the evidence is that of a 2-input model
    masks = {"weight": torch.tensor([[True, True, False], [True, True, False]])}
    apply_masks(model, masks)
    kept = torch.zeros(40, dtype=torch.bool)
    kept[::2] = True  # 20 of 40 kept
    return data, model, masks, kept


def _log_joint_gradient_norm(model, data, masks, weights, alpha) -> float:
    """‖∇(Σ w_i ℓ_i + ½α‖θ⊙m‖²)‖ over the active entries, written out with autograd."""
    params = dict(model.named_parameters())
    nll = nn.functional.cross_entropy(model(data["x"]), data["y"], reduction="none")
    loss = (nll * weights).sum() + 0.5 * alpha * sum(
        (p * masks.get(n, torch.ones_like(p))).square().sum() for n, p in params.items())
    grads = torch.autograd.grad(loss, list(params.values()))
    return math.sqrt(sum(float((g * masks.get(n, torch.ones_like(g))).square().sum())
                         for n, g in zip(params, grads, strict=True)))


def test_score_weights_is_the_evidence_of_the_model_without_the_pruned_inputs() -> None:
    """log Z under the mask equals log Z of the smaller model that does not have the pruned
    input at all; rescale_kept weighs each of the 20 kept rows by 40/20 = 2; the default
    leaves the samples unscored; stationarity is the log joint's gradient over the active
    weights with α = the evidence's prior."""
    data, model, masks, kept = _blob_problem()
    config = EvidenceConfig(structure="full", subsample_size=None, prior_precision=2.0)
    jmds = JMDSConfig()
    phase_b = score_weights(model, masks, kept, data, jmds, config)  # default device: cpu
    small = nn.Linear(2, 2)
    with torch.no_grad():
        small.weight.copy_(model.weight[:, :2])
        small.bias.copy_(model.bias)
    weights = kept.double() * 2.0
    reference = estimate_evidence(small, data["x"][:, :2], data["y"], sample_weights=weights,
                                  config=config, score_samples=False, score_weights=False)
    assert phase_b.evidence.log_evidence == pytest.approx(reference.log_evidence, rel=1e-6)
    assert phase_b.evidence.num_active == 6
    assert set(phase_b.evidence.weight_scores) == {"weight"}
    assert bool(torch.isinf(phase_b.evidence.weight_scores["weight"][:, 2]).all())
    assert bool(torch.isnan(phase_b.evidence.sample_contribution).all())
    assert not phase_b.evidence.unit_scores
    expected = _log_joint_gradient_norm(model, data, {"weight": masks["weight"].float()},
                                        weights.float(), 2.0)
    assert phase_b.stationarity.gradient_norm == pytest.approx(expected, rel=1e-4)
    with_samples = score_weights(model, masks, kept, data, jmds, config, with_samples=True)
    contribution = with_samples.evidence.sample_contribution
    assert contribution.shape == (40,) and bool(torch.isfinite(contribution).all())


def test_score_weights_follows_prune_model_and_granularity() -> None:
    data, model, masks, kept = _blob_problem()
    config = EvidenceConfig(structure="kfac", subsample_size=None, prior_precision=2.0)
    data_only = score_weights(model, masks, kept, data, JMDSConfig(prune_model=False), config)
    assert not data_only.evidence.weight_scores and not data_only.evidence.unit_scores
    weight_mode = score_weights(model, masks, kept, data, JMDSConfig(), config)
    assert set(weight_mode.evidence.weight_scores) == {"weight"}
    assert not weight_mode.evidence.unit_scores
    channel = JMDSConfig(granularity="channel")
    units = score_weights(model, masks, kept, data, channel, config).evidence.unit_scores
    assert set(units or {}) == {"weight"} and units["weight"].shape == (2,)
    data_only = score_weights(model, masks, kept, data,
                              channel.model_copy(update={"prune_model": False}), config)
    assert not data_only.evidence.unit_scores


def test_tied_units_go_in_group_order() -> None:
    groups, masks = _four_units()
    new = prune_channels_to_target(torch.ones(4, dtype=torch.float64), groups, masks, 0.5)
    assert new["w"].all(1).tolist() == [False, False, True, True]
