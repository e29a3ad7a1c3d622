"""Seeded train/val/test splitting over rows that carry stable ids.

Ids are assigned once, from a sample's position in the source data, before any split is
made; splitting only moves rows between splits, so a sample keeps its id whatever the seed.
Rows inside a split stay in ascending id order so that equal seeds give identical tensors.
"""

from __future__ import annotations

import torch

from jmds_pipeline.data.types import SPLIT_NAMES, Split

# Seed of the test carve for datasets that ship without a test split (digits, pydoc): the
# test set is a property of the dataset, not of the run, so every run seed scores on the
# same held-out samples and results over seeds are comparable.
TEST_SPLIT_SEED = 20240917


def make_split(x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> Split:
    """A split with ``y`` and ``id`` as int64."""
    return {"x": x, "y": y.to(torch.int64), "id": ids.to(torch.int64)}


def take(split: Split, rows: torch.Tensor) -> Split:
    """The given rows of every tensor in ``split``."""
    return {key: value[rows] for key, value in split.items()}


def carve(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Split off ``round(fraction * n)`` random rows: returns ``(rest, carved)``.

    The choice depends only on ``seed`` and the number of rows (a private generator, so
    the global RNG is untouched).
    """
    n = int(split["id"].shape[0])
    n_carved = round(fraction * n)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    carved_rows = order[:n_carved].sort().values
    rest_rows = order[n_carved:].sort().values
    return take(split, rest_rows), take(split, carved_rows)


def check_splits(splits: dict[str, Split]) -> None:
    """Raise ``ValueError`` unless ``splits`` has train/val/test with ids unique across all."""
    missing = set(SPLIT_NAMES) - splits.keys()
    if missing:
        raise ValueError(f"splits lack {sorted(missing)}; expected {list(SPLIT_NAMES)}")
    ids = torch.cat([splits[name]["id"] for name in SPLIT_NAMES])
    if torch.unique(ids).numel() != ids.numel():
        raise ValueError("sample ids are not unique across train/val/test")
