"""Batches over a split: gathered rows, kept rows only, seeded shuffles, loader settings."""

from __future__ import annotations

import pytest
import torch

from jmds_pipeline.training.batches import SplitBatches, batch_loader, kept_rows


def _split(n: int = 10) -> dict[str, torch.Tensor]:
    return {
        "x": torch.arange(2 * n, dtype=torch.float32).view(n, 2),
        "y": torch.arange(n) % 3,
        "id": torch.arange(100, 100 + n),
    }


def test_a_batch_is_the_gathered_rows_with_their_index() -> None:
    split = _split()
    dataset = SplitBatches(split)
    assert len(dataset) == 10
    batch = dataset[[7, 2, 2]]
    assert batch["id"].tolist() == [107, 102, 102]
    assert batch["x"].tolist() == [[14.0, 15.0], [4.0, 5.0], [4.0, 5.0]]
    assert batch["y"].tolist() == [1, 2, 2]
    assert batch["index"].tolist() == [7, 2, 2] and batch["index"].dtype == torch.long


def test_kept_rows_are_the_true_positions() -> None:
    assert kept_rows(4, None).tolist() == [0, 1, 2, 3]
    assert kept_rows(5, torch.tensor([True, False, True, True, False])).tolist() == [0, 2, 3]
    # a 0/1 float mask means the same rows
    assert kept_rows(4, torch.tensor([0.0, 1.0, 0.0, 1.0])).tolist() == [1, 3]
    assert kept_rows(3, torch.zeros(3, dtype=torch.bool)).tolist() == []
    with pytest.raises(ValueError, match=r"kept has shape \(4,\); expected \(5,\)"):
        kept_rows(5, torch.ones(4, dtype=torch.bool))


def test_an_unshuffled_loader_yields_kept_rows_in_order_last_batch_short() -> None:
    kept = torch.tensor([True, True, False, True, True, True, False, True, True, True])
    batches = list(batch_loader(_split(), batch_size=3, kept=kept, shuffle=False))
    assert [b["index"].tolist() for b in batches] == [[0, 1, 3], [4, 5, 7], [8, 9]]
    assert [b["id"].tolist() for b in batches][-1] == [108, 109]


def test_a_shuffled_loader_permutes_the_kept_rows_afresh_each_epoch() -> None:
    kept = torch.ones(10, dtype=torch.bool)
    kept[[1, 4]] = False
    loader = batch_loader(
        _split(), batch_size=4, kept=kept, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    assert len(loader.sampler.sampler) == 8  # the sampler runs over kept rows only
    epochs = [torch.cat([b["index"] for b in loader]).tolist() for _ in range(3)]
    for order in epochs:
        assert sorted(order) == [0, 2, 3, 5, 6, 7, 8, 9]
        assert [len(b["index"]) for b in loader] == [4, 4]
    assert len({tuple(order) for order in epochs}) == 3  # a new order every epoch
    again = batch_loader(
        _split(), batch_size=4, kept=kept, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    assert torch.cat([b["index"] for b in again]).tolist() == epochs[0]


def test_a_shuffled_loader_needs_a_generator_and_passes_its_settings_on() -> None:
    message = r"^a shuffled loader needs a seeded generator for reproducibility$"
    with pytest.raises(ValueError, match=message):
        batch_loader(_split(), batch_size=2, shuffle=True)
    loader = batch_loader(_split(), batch_size=2, shuffle=False)
    assert loader.num_workers == 0 and loader.pin_memory is False  # the defaults
    pinned = batch_loader(_split(), batch_size=2, shuffle=False, pin_memory=True)
    assert pinned.pin_memory is True  # not iterated: pinning needs a CUDA driver
    workers = batch_loader(_split(), batch_size=2, shuffle=False, num_workers=2)
    assert workers.num_workers == 2
