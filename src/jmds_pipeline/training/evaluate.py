"""Evaluation: accuracy or perplexity, and per-sample losses for scoring."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from jmds_pipeline.data.types import Split
from jmds_pipeline.training.batches import batch_loader
from jmds_pipeline.training.losses import per_sample_hits, per_sample_nll, tokens_per_sample


@dataclass(frozen=True)
class PerSampleOutputs:
    loss: torch.Tensor  # (N,) NLL per sample (summed over tokens for text)
    hits: torch.Tensor  # (N,) correct predictions per sample (tokens for text)
    tokens: torch.Tensor  # (N,) predictions per sample

    @property
    def correct(self) -> torch.Tensor:
        """Whether each sample is right: its label, or most of its tokens."""
        return self.hits / self.tokens > 0.5


@torch.no_grad()
def per_sample_outputs(
    model: nn.Module, split: Split, *, batch_size: int = 1024, device: str = "cpu"
) -> PerSampleOutputs:
    """Loss and correctness of every row of ``split``, in row order, in eval mode."""
    was_training = model.training
    model.eval().to(device)
    losses, hits, tokens = [], [], []
    for batch in batch_loader(split, batch_size=batch_size, shuffle=False):
        x = batch["x"].to(device)
        y = batch["y"].to(device)
        logits = model(x)
        losses.append(per_sample_nll(logits, y).cpu())
        hits.append(per_sample_hits(logits, y).cpu())
        tokens.append(tokens_per_sample(y).cpu())
    model.train(was_training)
    return PerSampleOutputs(torch.cat(losses), torch.cat(hits), torch.cat(tokens))


def evaluate(
    model: nn.Module, split: Split, *, task: str, batch_size: int = 1024, device: str = "cpu"
) -> dict[str, float]:
    """Mean loss per prediction and accuracy (per label, or per token for text); for
    language models also the perplexity, exp of the mean token NLL."""
    outputs = per_sample_outputs(model, split, batch_size=batch_size, device=device)
    predictions = outputs.tokens.double().sum()
    loss = float(outputs.loss.double().sum() / predictions)
    metrics = {"loss": loss, "accuracy": float(outputs.hits.double().sum() / predictions)}
    if task == "language_modeling":
        metrics["perplexity"] = math.exp(min(loss, 700.0))
    return metrics
