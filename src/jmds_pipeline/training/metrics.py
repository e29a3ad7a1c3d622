"""The numbers every method is judged by: quality, sparsity, time and FLOPs."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from jmds_pipeline.data.types import DatasetMeta, Split
from jmds_pipeline.training.evaluate import evaluate
from jmds_pipeline.training.flops import masked_inference_flops, training_flops


def model_sparsity(masks: Mapping[str, torch.Tensor] | None) -> float:
    """Fraction of prunable weights removed (0 for a dense model)."""
    if not masks:
        return 0.0
    total = sum(mask.numel() for mask in masks.values())
    active = sum(int(mask.sum()) for mask in masks.values())
    return 1.0 - active / total


def run_metrics(
    model: nn.Module,
    test: Split,
    meta: DatasetMeta,
    *,
    masks: Mapping[str, torch.Tensor] | None,
    kept_fraction: float,
    train_seconds: float,
    samples_seen: int,
    dense_train_seconds: float | None = None,
    device: str = "cpu",
    batch_size: int = 1024,
) -> dict[str, float]:
    """Test quality, achieved sparsities, inference and training FLOPs (per sample, or per
    sequence for text), and training time relative to dense when the dense time is given."""
    quality = evaluate(model, test, task=meta.task, batch_size=batch_size, device=device)
    example = test["x"][:1].to(device)
    masked, dense = masked_inference_flops(model, dict(masks or {}), example)
    metrics = {f"test_{name}": value for name, value in quality.items()}
    metrics.update(
        {
            "model_sparsity": model_sparsity(masks),
            "data_sparsity": 1.0 - kept_fraction,
            "inference_flops": float(masked),
            "inference_flops_dense": float(dense),
            "inference_flops_vs_dense": masked / dense if dense else 1.0,
            "training_flops": float(training_flops(masked, samples_seen)),
            "train_seconds": train_seconds,
            "samples_seen": float(samples_seen),
        }
    )
    if dense_train_seconds:
        metrics["time_vs_dense"] = train_seconds / dense_train_seconds
    return metrics
