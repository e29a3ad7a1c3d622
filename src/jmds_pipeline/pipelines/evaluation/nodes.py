"""Evaluate trained models on the test split and print the summary table."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure

from jmds_pipeline.data.types import DatasetMeta, Split
from jmds_pipeline.evidence import estimate_evidence
from jmds_pipeline.plots import layer_density, round_curves
from jmds_pipeline.reporting import jmds_report, print_rounds, print_summary
from jmds_pipeline.runtime import evidence_config, model_from_state, run_config_of
from jmds_pipeline.sparsity.masks import layer_summary
from jmds_pipeline.sparsity.rounds import kept_weights
from jmds_pipeline.training.metrics import run_metrics


def evaluate_dense(
    dense_state: dict[str, torch.Tensor],
    test: Split,
    dataset_meta: dict[str, Any],
    dense_training: dict[str, Any],
    parameters: dict[str, Any],
) -> dict[str, Any]:
    config = run_config_of(parameters)
    meta = DatasetMeta.from_dict(dataset_meta)
    model = model_from_state(config, meta, dense_state)
    metrics = run_metrics(
        model, test, meta, masks=None, kept_fraction=1.0,
        train_seconds=dense_training["seconds"], samples_seen=dense_training["samples_seen"],
        dense_train_seconds=dense_training["seconds"], device=config.resolved_device(),
        batch_size=config.training.eval_batch_size,
    )
    print_summary(f"{config.dataset} / {config.model}", {"dense": metrics})
    return {"dataset": config.dataset, "model": config.model, "seed": config.seed, **metrics}


def evaluate_jmds(
    final_state: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    kept: dict[str, torch.Tensor],
    train: Split,
    test: Split,
    dataset_meta: dict[str, Any],
    parameters: dict[str, Any],
    dense_metrics: dict[str, Any],
    dense_training: dict[str, Any],
    final_training: dict[str, Any],
    round_trace: pd.DataFrame,
) -> tuple[dict[str, Any], str, Figure, Figure]:
    """Test the final sparse model, compute its evidence, print and write the report."""
    config = run_config_of(parameters)
    meta = DatasetMeta.from_dict(dataset_meta)
    device = config.resolved_device()
    model = model_from_state(config, meta, final_state)
    kept_rows = kept["kept"]
    metrics = run_metrics(
        model, test, meta, masks=masks, kept_fraction=float(kept_rows.float().mean()),
        train_seconds=final_training["seconds"], samples_seen=final_training["samples_seen"],
        dense_train_seconds=dense_training["seconds"], device=device,
        batch_size=config.training.eval_batch_size,
    )
    weights = kept_weights(kept_rows, config.jmds.rescale_kept)
    evidence = estimate_evidence(
        model, train["x"], train["y"], sample_weights=weights, masks=masks,
        config=evidence_config(config, meta), device=device,
        score_samples=False, score_weights=False,
    )
    metrics["log_evidence"] = evidence.log_evidence
    # Whole JMDS cost: every round's training and scoring (round 1's "training" is the
    # pretraining its model needed: the dense run, or the run up to the rewind point) and
    # the retrain.
    total = (float(round_trace["train_seconds"].sum())
             + float(round_trace["evidence_seconds"].sum()) + final_training["seconds"])
    metrics["total_seconds"] = total
    metrics["total_vs_dense"] = total / dense_training["seconds"]
    # The same in training samples drawn (scoring passes not counted): immune to load.
    samples = float(round_trace["train_samples"].sum()) + final_training["samples_seen"]
    metrics["total_samples_vs_dense"] = samples / dense_training["samples_seen"]
    runs = {"dense": dense_metrics, "jmds": metrics}
    title = f"{config.dataset} / {config.model}: JMDS vs dense"
    print_rounds(round_trace)
    print_summary(title, runs)
    report = jmds_report(title, runs, round_trace, config.model_dump(mode="json"))
    summary = layer_summary(masks)
    return (
        {"dataset": config.dataset, "model": config.model, "seed": config.seed, **metrics},
        report,
        round_curves(round_trace, metrics["test_accuracy"]),
        layer_density(summary),
    )
