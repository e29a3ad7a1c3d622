from __future__ import annotations

import logging
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jmds_pipeline.sparsity.sample_selection import select_by_threshold, select_samples


def _data(n: int = 103, classes: int = 4, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(n, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, classes, (n,), generator=generator)
    kept = torch.ones(n, dtype=torch.bool)
    return scores, labels, kept


@pytest.mark.parametrize("mode", ["class_balanced", "topk", "stratified"])
@pytest.mark.parametrize("target", [0.0, 0.3, 0.5, 0.77, 0.95])
def test_exact_count(mode: str, target: float) -> None:
    scores, labels, kept = _data()
    new = select_samples(scores, labels, kept, target, mode=mode)  # type: ignore[arg-type]
    assert new.dtype == torch.bool and new.shape == kept.shape
    assert int(new.sum()) == 103 - int(target * 103 + 0.5)


def test_class_balanced_fractions_within_one_sample() -> None:
    scores, labels, kept = _data(n=250, classes=3)
    labels[:150] = 0  # imbalanced: class 0 holds most rows
    new = select_samples(scores, labels, kept, 0.6)
    n_keep = 250 - 150
    for c in range(3):
        size = int((labels == c).sum())
        assert abs(int(new[labels == c].sum()) - n_keep * size / 250) < 1


def test_class_balanced_keeps_best_within_class() -> None:
    scores, labels, kept = _data()
    new = select_samples(scores, labels, kept, 0.5, keep="high")
    for c in range(4):
        in_class = labels == c
        assert scores[in_class & new].min() >= scores[in_class & ~new].max()


def test_keep_high_vs_low() -> None:
    scores = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.7, 0.2])
    labels = torch.zeros(6, dtype=torch.int64)
    kept = torch.ones(6, dtype=torch.bool)
    high = select_samples(scores, labels, kept, 0.5, mode="topk", keep="high")
    low = select_samples(scores, labels, kept, 0.5, mode="topk", keep="low")
    assert high.tolist() == [False, True, True, False, True, False]
    assert low.tolist() == [True, False, False, True, False, True]


def test_monotone_dropped_stays_dropped() -> None:
    scores, labels, kept = _data()
    first = select_samples(scores, labels, kept, 0.3)
    second = select_samples(-scores, labels, first, 0.6)  # new scores favour dropped rows
    assert not bool((second & ~first).any())
    assert int(second.sum()) == 103 - 62
    # A target below the current sparsity changes nothing.
    assert torch.equal(select_samples(scores, labels, second, 0.1), second)


def test_class_balanced_with_exhausted_class_redistributes() -> None:
    labels = torch.tensor([0] * 10 + [1] * 10)
    scores = torch.arange(20, dtype=torch.float64)
    kept = torch.ones(20, dtype=torch.bool)
    kept[:8] = False  # class 0 has only 2 rows left
    new = select_samples(scores, labels, kept, 0.5)  # keep 10: 2 from class 0, 8 from class 1
    assert int(new[:10].sum()) == 2 and int(new[10:].sum()) == 8
    assert not bool((new & ~kept).any())


def test_remainders_distributed_deterministically() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    scores = torch.zeros(9)
    kept = torch.ones(9, dtype=torch.bool)
    new = select_samples(scores, labels, kept, 0.5)  # keep 4 of 9: 4/3 per class
    per_class = [int(new[labels == c].sum()) for c in range(3)]
    assert per_class == [2, 1, 1]  # the extra slot goes to the smallest label
    assert torch.equal(new, select_samples(scores, labels, kept, 0.5))


def test_sequence_labels_fall_back_to_topk() -> None:
    scores, _, kept = _data()
    tokens = torch.randint(0, 50, (103, 8))
    balanced = select_samples(scores, tokens, kept, 0.4, mode="class_balanced")
    topk = select_samples(scores, tokens, kept, 0.4, mode="topk")
    assert torch.equal(balanced, topk)


def test_stratified_covers_all_strata_and_is_deterministic() -> None:
    generator = torch.Generator().manual_seed(0)
    # A skewed score distribution: most mass in the lowest stratum.
    scores = torch.cat([torch.rand(900, generator=generator) * 0.1,
                        0.1 + torch.rand(100, generator=generator) * 0.9]).double()
    labels = torch.zeros(1000, dtype=torch.int64)
    kept = torch.ones(1000, dtype=torch.bool)
    strata = 10
    new = select_samples(scores, labels, kept, 0.9, mode="stratified", strata=strata,
                         generator=torch.Generator().manual_seed(1))
    assert int(new.sum()) == 100
    bins = ((scores - scores.min()) / (scores.max() - scores.min()) * strata).floor()
    bins = bins.clamp(max=strata - 1).long()
    for b in range(strata):
        if bool((bins == b).any()):
            assert int(new[bins == b].sum()) >= 1
    # CCS spreads the budget: top-k by score would take nothing from the dense low bin,
    # and the low bin does not dominate the way uniform sampling would (90 %).
    assert 0 < int(new[bins == 0].sum()) < 50
    again = select_samples(scores, labels, kept, 0.9, mode="stratified", strata=strata,
                           generator=torch.Generator().manual_seed(1))
    assert torch.equal(new, again)


def test_stratified_allocation_follows_ccs() -> None:
    # Strata of sizes 2, 5 and 20 with budget 12: smallest first, ⌊12/3⌋ → 2 (all of it),
    # then ⌊10/2⌋ = 5 (all of it), then the remaining 5 from the largest.
    scores = torch.cat([torch.full((2,), 0.0), torch.full((5,), 0.5), torch.full((20,), 1.0)])
    kept = torch.ones(27, dtype=torch.bool)
    new = select_samples(scores, torch.zeros(27, dtype=torch.int64), kept, 15 / 27,
                         mode="stratified", strata=3)
    assert [int(new[:2].sum()), int(new[2:7].sum()), int(new[7:].sum())] == [2, 5, 5]


def test_stratified_hard_cutoff_trims_disfavoured_end() -> None:
    scores = torch.arange(100, dtype=torch.float64)
    labels = torch.zeros(100, dtype=torch.int64)
    kept = torch.ones(100, dtype=torch.bool)
    # Difficulty scores, paper convention: trim the hardest 20 % (keep="low").
    new = select_samples(scores, labels, kept, 0.5, mode="stratified", keep="low",
                         hard_cutoff=0.2, strata=5)
    assert int(new.sum()) == 50 and not bool(new[80:].any())
    new = select_samples(scores, labels, kept, 0.5, mode="stratified", keep="high",
                         hard_cutoff=0.2, strata=5)
    assert int(new.sum()) == 50 and not bool(new[:20].any())


def test_float_kept_weights_are_accepted() -> None:
    scores, labels, _ = _data()
    weights = torch.ones(103)
    weights[:10] = 0.0
    new = select_samples(scores, labels, weights, 0.5)
    assert not bool(new[:10].any()) and int(new.sum()) == 51


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"target_sparsity": 1.0}, r"target_sparsity.*\[0, 1\)"),
        ({"target_sparsity": -0.1}, "target_sparsity"),
        ({"mode": "random"}, r"mode = 'random'.*class_balanced.*topk.*stratified"),
        ({"keep": "middle"}, r"keep = 'middle'.*high.*low"),
        ({"mode": "stratified", "strata": 0}, "strata"),
        ({"hard_cutoff": 1.2}, "hard_cutoff"),
    ],
)
def test_bad_inputs_raise_naming_key(kwargs: dict, pattern: str) -> None:
    scores, labels, kept = _data()
    arguments = {"target_sparsity": 0.5, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        select_samples(scores, labels, kept, **arguments)


def test_threshold_sign_convention() -> None:
    contributions = torch.tensor([-3.0, -0.2, -1.0, -0.01])
    kept = torch.ones(4, dtype=torch.bool)
    # λ2 = −0.5 (a reward of 0.5 nats per kept sample): drop iff −c_i − 0.5 > 0.
    assert select_by_threshold(contributions, kept, -0.5).tolist() == [False, True, False, True]
    # A positive contribution (possible only for densities > 1) is kept at λ2 = 0.
    mixed = torch.tensor([0.3, -0.3])
    assert select_by_threshold(mixed, torch.ones(2, dtype=torch.bool), 0.0).tolist() == [
        True, False]


def test_threshold_with_nonnegative_lambda_drops_everything_unless_capped(caplog) -> None:
    contributions = -torch.rand(20, generator=torch.Generator().manual_seed(0)) - 0.1
    kept = torch.ones(20, dtype=torch.bool)
    with pytest.raises(ValueError, match="drops all 20"):
        select_by_threshold(contributions, kept, 0.0)
    with caplog.at_level(logging.WARNING):
        new = select_by_threshold(contributions, kept, 0.0, max_sparsity=0.25)
    assert "capped" in caplog.text
    assert int(new.sum()) == 15
    # The dropped ones are the lowest contributions (hard, high-leverage samples).
    assert contributions[~new].max() <= contributions[new].min()


def test_threshold_monotone_and_cap_counts_all_rows() -> None:
    contributions = torch.tensor([-1.0, -2.0, -3.0, -4.0])
    kept = torch.tensor([True, True, True, False])
    new = select_by_threshold(contributions, kept, 0.0, max_sparsity=0.5)
    assert new.tolist() == [True, True, False, False]  # one more drop reaches 2 of 4


@pytest.mark.parametrize("mode", ["class_balanced", "topk", "stratified"])
def test_nan_score_of_a_kept_row_raises_but_of_a_dropped_row_is_ignored(mode: str) -> None:
    scores, labels, kept = _data()
    scores[7] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        select_samples(scores, labels, kept, 0.5, mode=mode)  # type: ignore[arg-type]
    kept[7] = False  # a dropped row's score is never read
    new = select_samples(scores, labels, kept, 0.5, mode=mode)  # type: ignore[arg-type]
    assert int(new.sum()) == 103 - 52 and not bool(new[7])


def test_nan_contribution_of_a_kept_row_raises_in_penalty_mode() -> None:
    contributions = torch.tensor([-1.0, float("nan"), -3.0, -0.5])
    with pytest.raises(ValueError, match="NaN"):
        select_by_threshold(contributions, torch.ones(4, dtype=torch.bool), -0.8)
    kept = torch.tensor([True, False, True, True])
    # Drop iff −c_i − 0.8 > 0 among the kept: −3 goes, −0.5 stays, −1 goes.
    assert select_by_threshold(contributions, kept, -0.8).tolist() == [False, False, False, True]


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n=st.integers(min_value=2, max_value=60),
    classes=st.integers(min_value=1, max_value=5),
    target=st.floats(min_value=0.0, max_value=0.95),
    keep=st.sampled_from(["low", "high"]),
    mode=st.sampled_from(["class_balanced", "topk"]),
)
def test_kept_rows_are_on_the_chosen_side_within_each_class(
    data, n: int, classes: int, target: float, keep: str, mode: str
) -> None:
    """Property: exact count, no revival, and per class (per data set for top-k) every kept
    score is on the ``keep`` side of every newly dropped score."""
    scores = torch.tensor(data.draw(st.lists(
        st.floats(-1e3, 1e3, allow_nan=False), min_size=n, max_size=n)), dtype=torch.float64)
    labels = torch.tensor(data.draw(st.lists(st.integers(0, classes - 1), min_size=n,
                                             max_size=n)))
    kept = torch.tensor(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    new = select_samples(scores, labels, kept, target, mode=mode, keep=keep)  # type: ignore[arg-type]
    budget = max(1, n - math.floor(target * n + 0.5 + 1e-9))  # round half up; one stays
    assert int(new.sum()) == min(budget, int(kept.sum()))
    assert not bool((new & ~kept).any())
    dropped_now = kept & ~new
    groups = [labels == c for c in range(classes)] if mode == "class_balanced" else [kept]
    for group in groups:
        chosen, dropped = scores[group & new], scores[group & dropped_now]
        if chosen.numel() and dropped.numel():
            if keep == "high":
                assert chosen.min() >= dropped.max()
            else:
                assert chosen.max() <= dropped.min()
