"""Mini-batches over an in-memory split, drawn by samplers rather than index slicing.

A sampler yields row indices; :class:`SplitBatches` turns a list of indices into one batch
with a single gather per tensor. Swapping ``SubsetRandomSampler`` for a
``DistributedSampler`` over the kept rows is all that data-parallel training needs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from jmds_pipeline.data.types import Split


class SplitBatches(Dataset):
    """A map-style dataset whose items are whole batches: ``dataset[indices] -> batch``."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return int(self.split["id"].shape[0])

    def __getitem__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        batch = {key: value[index] for key, value in self.split.items()}
        batch["index"] = index
        return batch


class _ShuffledSubset(Sampler[int]):
    """The given rows in a fresh random order each epoch, from a seeded generator."""

    def __init__(self, rows: torch.Tensor, generator: torch.Generator) -> None:
        self.rows = rows
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.rows.numel(), generator=self.generator)
        yield from self.rows[order].tolist()

    def __len__(self) -> int:
        return self.rows.numel()


def kept_rows(num_rows: int, kept: torch.Tensor | None) -> torch.Tensor:
    """Row indices with ``kept[i]`` true (all rows when ``kept`` is None)."""
    if kept is None:
        return torch.arange(num_rows)
    if kept.shape != (num_rows,):
        raise ValueError(f"kept has shape {tuple(kept.shape)}; expected ({num_rows},)")
    return torch.nonzero(kept.bool(), as_tuple=False).flatten()


def batch_loader(
    split: Split,
    *,
    batch_size: int,
    kept: torch.Tensor | None = None,
    shuffle: bool,
    generator: torch.Generator | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A loader of batches (dicts with x, y, id and the row ``index``) over the kept rows.

    ``pin_memory`` pins each batch in page-locked host memory so that the copy to a CUDA
    device can be ``non_blocking`` (``precision.pin_memory_for`` decides; it needs CUDA).
    """
    rows = kept_rows(int(split["id"].shape[0]), kept)
    if shuffle:
        if generator is None:
            raise ValueError("a shuffled loader needs a seeded generator for reproducibility")
        sampler: Sampler[int] | list[int] = _ShuffledSubset(rows, generator)
    else:
        sampler = rows.tolist()
    batches = BatchSampler(sampler, batch_size=batch_size, drop_last=False)
    return DataLoader(
        SplitBatches(split),
        sampler=batches,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
