from __future__ import annotations

import pytest
import torch

from jmds_pipeline.baselines.forgetting import ForgettingTracker, forgetting_scores
from jmds_pipeline.sparsity.sample_selection import select_samples

T, F = True, False
# Columns: forgotten twice, learned and never forgotten, never learned, forgotten once.
HISTORY = torch.tensor(
    [
        [T, F, F, T],
        [F, T, F, T],
        [T, T, F, F],
        [F, T, F, F],
        [T, T, F, T],
    ]
)


def test_hand_checked_counts() -> None:
    scores = forgetting_scores(HISTORY)
    assert scores.dtype == torch.int64
    assert scores.tolist() == [2, 0, 5, 1]


def test_never_learned_ranks_highest() -> None:
    scores = forgetting_scores(HISTORY)
    assert int(scores.argmax()) == 2
    # Even against the most-forgotten pattern possible (alternating), never-learned wins.
    alternating = torch.tensor([[T, F], [F, F], [T, F], [F, F], [T, F], [F, F]])
    assert forgetting_scores(alternating).tolist() == [3, 6]  # ⌊E/2⌋ = 3 < E = 6


def test_tracker_matches_history_by_epoch_and_by_ids() -> None:
    by_epoch = ForgettingTracker(torch.arange(4))
    for row in HISTORY:
        by_epoch.update_epoch(row)
    assert torch.equal(by_epoch.scores(), forgetting_scores(HISTORY))

    ids = torch.tensor([40, 10, 30, 20])  # stable ids, not row positions
    by_ids = ForgettingTracker(ids)
    generator = torch.Generator().manual_seed(0)
    for row in HISTORY:  # each epoch in shuffled mini-batches of two
        order = torch.randperm(4, generator=generator)
        for batch in order.split(2):
            by_ids.update(ids[batch], row[batch])
    assert torch.equal(by_ids.scores(), forgetting_scores(HISTORY))


def test_tracker_callback_uses_predictions() -> None:
    tracker = ForgettingTracker(torch.tensor([7, 8]))
    callback = tracker.callback()
    batch = {"id": torch.tensor([7, 8]), "y": torch.tensor([0, 1])}
    callback(batch, torch.tensor([[2.0, 0.0], [2.0, 0.0]]))  # 7 right, 8 wrong
    callback(batch, torch.tensor([[0.0, 2.0], [2.0, 0.0]]))  # 7 forgotten, 8 wrong
    assert tracker.scores().tolist() == [1, 2]


def test_tracker_rejects_unknown_and_duplicate_ids() -> None:
    tracker = ForgettingTracker(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="not in the tracked split"):
        tracker.update(torch.tensor([4]), torch.tensor([True]))
    with pytest.raises(ValueError, match="twice"):
        tracker.update(torch.tensor([1, 1]), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="not unique"):
        ForgettingTracker(torch.tensor([1, 1]))


def test_pruning_keeps_forgettable_samples() -> None:
    scores = forgetting_scores(HISTORY)
    kept = select_samples(scores, torch.zeros(4, dtype=torch.int64),
                          torch.ones(4, dtype=torch.bool), 0.5, mode="topk", keep="high")
    assert kept.tolist() == [True, False, True, False]
