"""How work is split over W ranks, checked for every rank of small worlds in one process."""

from __future__ import annotations

import pytest
import torch

from jmds_pipeline import distributed


def _as_rank(monkeypatch: pytest.MonkeyPatch, rank: int, world: int) -> None:
    monkeypatch.setattr(distributed, "is_distributed", lambda: world > 1)
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    monkeypatch.setattr(distributed, "group_rank", lambda: rank)


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_rank_slices_tile_a_global_batch_in_order(monkeypatch, world):
    for rows in range(12):
        parts = []
        for rank in range(world):
            _as_rank(monkeypatch, rank, world)
            parts.append(list(range(rows))[distributed.local_slice(rows)])
        assert [r for p in parts for r in p] == list(range(rows))  # every row once, in rank order
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1, sizes


@pytest.mark.parametrize("world", [2, 3])
def test_owned_batches_cover_every_item_once(monkeypatch, world):
    idx = torch.randperm(23, generator=torch.Generator().manual_seed(0))
    owned = []
    for rank in range(world):
        _as_rank(monkeypatch, rank, world)
        owned.append(distributed.owned_items(idx, batch_size=4))
    assert sorted(torch.cat(owned).tolist()) == sorted(idx.tolist())
    # whole batches: rank r holds batches r, r + W, ... of the single-process order
    batches = idx.split(4)
    assert torch.equal(owned[1], torch.cat(batches[1::world]))


def test_without_a_process_group_the_helpers_are_the_single_process_answers(monkeypatch):
    monkeypatch.setenv("RANK", "1")  # launched, but never joined: works alone, on everything
    idx = torch.arange(10)
    assert distributed.world_size() == 1 and distributed.group_rank() == 0
    assert torch.equal(distributed.owned_items(idx, 3), idx)
    assert distributed.local_slice(7) == slice(0, 7)
    values = torch.arange(4.0)
    distributed.merge_rows_(values, torch.tensor([0]), torch.arange(4))
    assert torch.equal(values, torch.arange(4.0))
