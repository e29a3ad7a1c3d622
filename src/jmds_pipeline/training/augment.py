"""Standard CIFAR augmentation on whole batches (no per-sample Python loop)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def random_crop_flip(
    images: torch.Tensor, *, padding: int = 4, generator: torch.Generator
) -> torch.Tensor:
    """Random ``padding``-pixel translation (zero fill) and horizontal flip of NCHW images.

    Offsets and flips come from ``generator`` (on CPU), so a seeded run sees the same
    augmented batches every time.
    """
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    offset_y = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)
    offset_x = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)
    flip = torch.rand(batch, generator=generator) < 0.5
    rows = offset_y[:, None] + torch.arange(height)  # (B, H)
    cols = offset_x[:, None] + torch.arange(width)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch_index = torch.arange(batch)[:, None, None, None]
    channel_index = torch.arange(channels)[None, :, None, None]
    return padded[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]


def random_shift(
    signals: torch.Tensor, *, max_shift: int, generator: torch.Generator
) -> torch.Tensor:
    """Translate each (C, L) signal of an (N, C, L) batch by a random integer in
    [−max_shift, max_shift] steps, zero-filling what moves in (MNIST-1D's signals are
    themselves randomly translated templates, so this is label-preserving)."""
    batch, channels, length = signals.shape
    padded = F.pad(signals, (max_shift, max_shift))
    offsets = torch.randint(0, 2 * max_shift + 1, (batch,), generator=generator)
    index = offsets[:, None] + torch.arange(length)  # (B, L)
    return torch.gather(padded, 2, index[:, None, :].expand(batch, channels, length))
