from __future__ import annotations

import pytest
import torch
from torch import nn

from jmds_pipeline.sparsity.masks import count_active, count_total
from jmds_pipeline.sparsity.weight_selection import (
    magnitude_scores,
    prune_by_threshold,
    prune_to_target,
    random_scores,
)


def _setup(seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    shapes = {"a.weight": (10, 7), "b.weight": (5, 3), "c.weight": (33,)}
    scores = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    masks = {name: torch.ones(shape, dtype=torch.bool) for name, shape in shapes.items()}
    return scores, masks


def _pruned(masks: dict[str, torch.Tensor]) -> int:
    return count_total(masks) - count_active(masks)


@pytest.mark.parametrize("target", [0.0, 0.1, 0.37, 0.5, 0.9, 0.99])
def test_global_hits_exact_count(target: float) -> None:
    scores, masks = _setup()
    total = count_total(masks)  # 118
    new = prune_to_target(scores, masks, target)
    assert _pruned(new) == min(int(target * total + 0.5), total - 1)
    assert all(bool(m.all()) for m in masks.values())  # inputs untouched


def test_global_removes_highest_scores() -> None:
    scores, masks = _setup()
    new = prune_to_target(scores, masks, 0.25)
    removed = torch.cat([scores[n][~new[n]] for n in masks])
    kept = torch.cat([scores[n][new[n]] for n in masks])
    assert removed.min() >= kept.max()


def test_layerwise_hits_exact_count_per_layer() -> None:
    scores, masks = _setup()
    new = prune_to_target(scores, masks, 0.4, scope="layerwise")
    for name in masks:
        numel = masks[name].numel()
        assert int((~new[name]).sum()) == int(0.4 * numel + 0.5)
        removed, kept = scores[name][~new[name]], scores[name][new[name]]
        assert removed.min() >= kept.max()


def test_monotone_pruned_stays_pruned_even_with_low_scores() -> None:
    scores, masks = _setup()
    first = prune_to_target(scores, masks, 0.3)
    # Adversarial second-round scores: pruned weights now look most valuable.
    flipped = {n: torch.where(first[n], scores[n], torch.full_like(scores[n], -1e9))
               for n in scores}
    second = prune_to_target(flipped, first, 0.6)
    for name in masks:
        assert not bool((second[name] & ~first[name]).any())
    assert _pruned(second) == int(0.6 * 118 + 0.5)
    # A lower target never revives weights.
    third = prune_to_target(scores, second, 0.1)
    assert all(torch.equal(third[n], second[n]) for n in masks)


def test_excluded_names_untouched_and_not_counted() -> None:
    scores, masks = _setup()
    masks["b.weight"][0, 0] = False
    new = prune_to_target(scores, masks, 0.5, exclude=["b.weight"])
    assert torch.equal(new["b.weight"], masks["b.weight"])
    assert int((~new["a.weight"]).sum()) + int((~new["c.weight"]).sum()) == int(0.5 * 103 + 0.5)
    # Parameters without a mask are not prunable at all.
    assert set(new) == set(masks)


def test_ties_broken_deterministically_by_position() -> None:
    scores = {"w": torch.zeros(10)}
    masks = {"w": torch.ones(10, dtype=torch.bool)}
    new = prune_to_target(scores, masks, 0.3)
    assert new["w"].tolist() == [False] * 3 + [True] * 7


def test_magnitude_pruning_removes_smallest_magnitude() -> None:
    model = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -0.1, 3.0, -2.0], [0.05, -4.0, 0.2, 1.0]]))
    masks = {"weight": torch.ones(2, 4, dtype=torch.bool)}
    scores = magnitude_scores(model, masks)
    assert torch.equal(scores["weight"], -model.weight.detach().abs())
    new = prune_to_target(scores, masks, 0.375)  # 3 of 8
    expected = torch.tensor([[True, False, True, True], [False, True, False, True]])
    assert torch.equal(new["weight"], expected)
    assert bool(torch.isinf(magnitude_scores(model, new)["weight"][~new["weight"]]).all())


def test_random_scores_deterministic_and_inf_on_pruned() -> None:
    _, masks = _setup()
    masks["a.weight"][0] = False
    first = random_scores(masks, torch.Generator().manual_seed(3))
    second = random_scores(masks, torch.Generator().manual_seed(3))
    assert all(torch.equal(first[n], second[n]) for n in masks)
    assert bool(torch.isinf(first["a.weight"][0]).all())
    assert bool(((first["b.weight"] >= 0) & (first["b.weight"] < 1)).all())


def test_threshold_sign_convention() -> None:
    scores = {"w": torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 2.0])}
    masks = {"w": torch.ones(6, dtype=torch.bool)}
    # λ1 = 0: remove iff Δ_j > 0 (removal raises the evidence itself).
    assert prune_by_threshold(scores, masks, 0.0)["w"].tolist() == [
        True, True, True, True, False, False]
    # λ1 = 1: remove iff Δ_j + 1 > 0.
    assert prune_by_threshold(scores, masks, 1.0)["w"].tolist() == [
        True, True, False, False, False, False]
    # Cap: at most 50 % sparsity, highest Δ first.
    capped = prune_by_threshold(scores, masks, 10.0, max_sparsity=0.5)
    assert capped["w"].tolist() == [True, True, True, False, False, False]


def test_threshold_is_monotone() -> None:
    scores = {"w": torch.tensor([5.0, -5.0, -5.0])}
    masks = {"w": torch.tensor([True, False, True])}
    assert prune_by_threshold(scores, masks, 0.0)["w"].tolist() == [False, False, True]


@pytest.mark.parametrize("bad", [1.0, -0.2])
def test_bad_target_raises_naming_key(bad: float) -> None:
    scores, masks = _setup()
    with pytest.raises(ValueError, match="target_sparsity"):
        prune_to_target(scores, masks, bad)


def test_bad_scope_and_missing_scores_raise() -> None:
    scores, masks = _setup()
    with pytest.raises(ValueError, match=r"scope = 'per_layer'.*global.*layerwise"):
        prune_to_target(scores, masks, 0.5, scope="per_layer")  # type: ignore[arg-type]
    del scores["c.weight"]
    with pytest.raises(ValueError, match=r"c\.weight"):
        prune_to_target(scores, masks, 0.5)
    with pytest.raises(ValueError, match="max_sparsity"):
        prune_by_threshold(_setup()[0], masks, 0.0, max_sparsity=1.0)


def test_nan_scores_on_active_weights_raise() -> None:
    scores, masks = _setup()
    scores["b.weight"][1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN.*b\.weight"):
        prune_to_target(scores, masks, 0.5)
    masks["b.weight"][1, 1] = False  # NaN on a pruned weight is ignored
    assert _pruned(prune_to_target(scores, masks, 0.5)) == 59
