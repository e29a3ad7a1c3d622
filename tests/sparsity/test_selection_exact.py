"""Sample selection on hand-built boundaries: strata of even width over a range that is
not [0, 1], a float32 score on a stratum edge binned as the real number it is, the hard
cutoff capped by the budget, the penalty rule's float64 comparison, warning and messages;
masks given as 0/1 numbers."""

from __future__ import annotations

import logging

import pytest
import torch

from jmds_pipeline.sparsity.masks import layer_summary, masks_from_tensors
from jmds_pipeline.sparsity.sample_selection import (
    _strata,
    select_by_threshold,
    select_samples,
)
from jmds_pipeline.sparsity.weight_selection import prune_by_threshold


def test_strata_have_even_width_over_the_score_range() -> None:
    # range [0, 2] in 4 strata of width 0.5; the maximum belongs to the last one
    scores = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 0.49], dtype=torch.float64)
    assert _strata(scores, 4).tolist() == [0, 1, 2, 3, 3, 0]
    # shifted and narrow: [10, 10.3] in 3 strata of width 0.1
    shifted = torch.tensor([10.0, 10.05, 10.15, 10.25, 10.3], dtype=torch.float64)
    assert _strata(shifted, 3).tolist() == [0, 0, 1, 2, 2]


def test_a_float32_score_is_binned_as_the_real_number_it_is() -> None:
    """float32(0.7) = 0.699999988…, inside [0.6, 0.7) of 10 strata over [0, 1]: stratum 6
    (float32 arithmetic would round 0.699999988·10 up to 7). Four strata of one row each,
    three to keep: the smallest-first rule takes ⌊3/4⌋ = 0 from stratum 0, then one from
    each of strata 6, 7 and 9."""
    scores = torch.tensor([0.0, 0.7, 0.75, 1.0], dtype=torch.float32)
    assert float(scores[1]) < 0.7
    labels = torch.zeros(4, dtype=torch.long)
    kept = select_samples(scores, labels, torch.ones(4, dtype=torch.bool), 0.25,
                          mode="stratified", strata=10)
    assert kept.tolist() == [False, True, True, True]


def test_hard_cutoff_never_trims_below_the_budget() -> None:
    """β = 0.9 would trim 9 of 10 rows, but 5 must stay: the pool is the best 5, all kept."""
    scores = torch.arange(10, dtype=torch.float64)
    kept = select_samples(scores, torch.zeros(10, dtype=torch.long),
                          torch.ones(10, dtype=torch.bool), 0.5, mode="stratified",
                          strata=3, hard_cutoff=0.9)
    assert kept.tolist() == [False] * 5 + [True] * 5


def test_penalty_rule_compares_in_float64() -> None:
    """c_0 = float32(0.1) = 0.10000000149… is below λ2 = 0.100000002 by 5e-10 (float32
    would round λ2 to c_0 and see no gain): dropping it gains λ2 − c_0 > 0."""
    c = torch.tensor([0.1, 5.0, 6.0], dtype=torch.float32)
    lam = 0.100000002
    assert float(c[0]) < lam
    out = select_by_threshold(c, torch.ones(3, dtype=torch.bool), lam)
    assert out.tolist() == [False, True, True]


def test_penalty_rule_with_nothing_kept_drops_nothing() -> None:
    out = select_by_threshold(torch.tensor([1.0, 2.0]), torch.zeros(2, dtype=torch.bool), 5.0)
    assert out.tolist() == [False, False]


def test_penalty_rule_messages(caplog: pytest.LogCaptureFixture) -> None:
    c = torch.tensor([-3.0, -2.0, -1.0, 4.0, 5.0], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^contributions of kept samples contain NaN$"):
        select_by_threshold(torch.tensor([1.0, float("nan")]), torch.ones(2, dtype=torch.bool),
                            0.0)
    with caplog.at_level(logging.WARNING):
        out = select_by_threshold(c, torch.ones(5, dtype=torch.bool), 0.0, max_sparsity=0.2)
    assert out.tolist() == [False, True, True, True, True]  # the smallest c_i goes first
    assert ("penalty rule (lambda_data = 0) would drop 3 of 5 kept samples; capped by "
            "max_sparsity = 0.2 at 1") in caplog.text


def test_masks_given_as_0_1_numbers_come_back_as_bool() -> None:
    masks = masks_from_tensors({"a": torch.tensor([0, 1, 1], dtype=torch.uint8)})
    assert masks["a"].dtype == torch.bool and masks["a"].tolist() == [False, True, True]
    # penalty mode on float 0/1 masks: Δ + λ1 > 0 only for the last weight
    scores = {"w": torch.tensor([-2.0, -1.0, 3.0])}
    new = prune_by_threshold(scores, {"w": torch.ones(3)}, 0.5)
    assert new["w"].dtype == torch.bool and new["w"].tolist() == [True, True, False]


def test_layer_summary_of_no_masks_keeps_its_columns() -> None:
    frame = layer_summary({})
    assert list(frame.columns) == ["layer", "numel", "active", "density"] and frame.empty


def _class_counts(kept: torch.Tensor, labels: torch.Tensor) -> list[int]:
    return [int((kept & (labels == c)).sum()) for c in range(int(labels.max()) + 1)]


def test_class_shares_by_largest_remainder_by_hand() -> None:
    """Keeping 5 of 5 + 3 + 2 rows: quotas 2.5, 1.5, 1 → floors 2, 1, 1 and the spare row
    to the largest remainder (0.5, a tie: the earlier class) → 3, 1, 1. A class of one
    row has a quota too: 4 of 6 + 1 + 1 → 3, 0.5, 0.5 → 3, 1, 0."""
    labels = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    kept = select_samples(torch.arange(10.0), labels, torch.ones(10, dtype=torch.bool), 0.5)
    assert _class_counts(kept, labels) == [3, 1, 1]
    labels = torch.tensor([0] * 6 + [1, 2])
    kept = select_samples(torch.arange(8.0), labels, torch.ones(8, dtype=torch.bool), 0.5)
    assert _class_counts(kept, labels) == [3, 1, 0]


def test_capped_classes_are_fixed_until_no_class_exceeds_its_rows() -> None:
    """16 of 30 rows (10 per class) with 2, 6 and 10 still kept: class 0's quota 5.3 > 2
    caps it at 2; then class 1's 14·10/20 = 7 > 6 caps it at 6; class 2 takes the other 8,
    its 8 best."""
    labels = torch.arange(30) // 10
    current = torch.zeros(30, dtype=torch.bool)
    current[:2] = True
    current[10:16] = True
    current[20:] = True
    kept = select_samples(torch.arange(30.0), labels, current, 14 / 30)
    assert _class_counts(kept, labels) == [2, 6, 8]
    assert kept[22:].all() and not kept[20:22].any()
