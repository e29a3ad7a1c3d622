"""Per-sample losses shared by training, evaluation and the data-pruning scores."""

from __future__ import annotations

import torch
from torch.nn import functional as F

IGNORE_INDEX = -100


def per_sample_nll(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Negative log-likelihood of each sample, summed over its tokens for sequences.

    ``logits`` is (B, C) with ``targets`` (B,), or (B, T, V) with ``targets`` (B, T); a
    sequence's likelihood is the product over its positions, so its NLL is the sum
    (positions equal to ``IGNORE_INDEX`` are skipped).
    """
    if logits.dim() == 2:
        return F.cross_entropy(
            logits.float(), targets, reduction="none", label_smoothing=label_smoothing
        )
    token_nll = F.cross_entropy(
        logits.float().flatten(0, 1),
        targets.flatten(),
        reduction="none",
        ignore_index=IGNORE_INDEX,
        label_smoothing=label_smoothing,
    )
    return token_nll.view(targets.shape).sum(dim=1)


def tokens_per_sample(targets: torch.Tensor) -> torch.Tensor:
    """How many predictions each sample holds: 1 for a label, the counted tokens for text."""
    if targets.dim() == 1:
        return torch.ones_like(targets, dtype=torch.float32)
    return (targets != IGNORE_INDEX).sum(dim=1).float()


def per_sample_hits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Correct predictions per sample: 0 or 1 for a label, a count of tokens for text."""
    predictions = logits.argmax(dim=-1)
    if targets.dim() == 1:
        return (predictions == targets).float()
    return ((predictions == targets) & (targets != IGNORE_INDEX)).sum(dim=1).float()


def per_sample_correct(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Whether each sample is predicted right: its label, or for text most of its tokens."""
    return per_sample_hits(logits, targets) / tokens_per_sample(targets) > 0.5
