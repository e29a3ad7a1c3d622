"""Per-sample losses and hits against hand-computed values."""

from __future__ import annotations

import math

import torch
from pytest import approx

from jmds_pipeline.training.losses import (
    IGNORE_INDEX,
    per_sample_correct,
    per_sample_hits,
    per_sample_nll,
    tokens_per_sample,
)


def _nll(logits: list[float], target: int) -> float:
    """−log softmax(logits)[target], written out."""
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


def test_label_nll_is_minus_log_softmax_of_the_target() -> None:
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]])
    targets = torch.tensor([0, 2])
    expected = [_nll([1.0, 2.0, 0.5], 0), _nll([0.0, 0.0, 3.0], 2)]
    assert per_sample_nll(logits, targets).tolist() == approx(expected, rel=1e-5)


def test_label_smoothing_mixes_in_the_mean_nll_over_classes() -> None:
    row = [1.0, 2.0, 0.5]
    eps = 0.3
    # smoothed target: (1 − ε) on the label plus ε/C on every class
    expected = (1 - eps) * _nll(row, 1) + eps * sum(_nll(row, c) for c in range(3)) / 3
    got = per_sample_nll(torch.tensor([row]), torch.tensor([1]), label_smoothing=eps)
    assert got.tolist() == approx([expected], rel=1e-5)
    tokens = per_sample_nll(torch.tensor([[row]]), torch.tensor([[1]]), label_smoothing=eps)
    assert tokens.tolist() == approx([expected], rel=1e-5)


def test_sequence_nll_sums_its_counted_tokens_and_is_float32_from_bf16() -> None:
    rows = [[1.0, 2.0, 0.5], [0.0, 0.0, 3.0], [2.0, -1.0, 0.0]]
    logits = torch.tensor([rows, rows])  # (B=2, T=3, V=3)
    targets = torch.tensor([[0, 2, 1], [IGNORE_INDEX, 2, IGNORE_INDEX]])
    expected = [
        _nll(rows[0], 0) + _nll(rows[1], 2) + _nll(rows[2], 1),
        _nll(rows[1], 2),
    ]
    assert per_sample_nll(logits, targets).tolist() == approx(expected, rel=1e-5)
    low = per_sample_nll(logits.bfloat16(), targets)
    assert low.dtype == torch.float32
    label_low = per_sample_nll(logits[0].bfloat16(), torch.tensor([0, 2, 1]))
    assert label_low.dtype == torch.float32


def test_tokens_hits_and_correctness_of_labels() -> None:
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    targets = torch.tensor([1, 1, 1])
    assert tokens_per_sample(targets).tolist() == [1.0, 1.0, 1.0]
    assert tokens_per_sample(targets).dtype == torch.float32
    assert per_sample_hits(logits, targets).tolist() == [1.0, 0.0, 1.0]
    assert per_sample_correct(logits, targets).tolist() == [True, False, True]


def test_tokens_hits_and_correctness_of_sequences() -> None:
    # predictions per position: argmax of one-hot rows
    predictions = torch.tensor([[0, 1, 2, 0], [1, 1, 1, 1], [2, 2, 0, 0]])
    logits = torch.nn.functional.one_hot(predictions, 3).float()
    targets = torch.tensor(
        [
            [0, 1, 0, IGNORE_INDEX],  # 2 of 3 counted tokens right: correct
            [1, 0, IGNORE_INDEX, IGNORE_INDEX],  # 1 of 2: exactly half is not a majority
            [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 0],  # 1 of 1
        ]
    )
    assert tokens_per_sample(targets).tolist() == [3.0, 2.0, 1.0]
    assert per_sample_hits(logits, targets).tolist() == [2.0, 1.0, 1.0]
    assert per_sample_correct(logits, targets).tolist() == [True, False, True]
