"""Nodes of one JMDS round and of the final retrain. Each is a thin function over plain
data (state dicts, mask dicts, tables); the maths is in evidence/, sparsity/, training/.

Round r: (A) train θ under (m_{r-1}, s_{r-1}) from the rewind point (round 1 uses the
dense model instead), (B) estimate the Laplace evidence and score weights and samples,
(C) update the mask m_r, (D) update the kept samples s_r.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import torch

from jmds_pipeline.data.types import DatasetMeta, Split
from jmds_pipeline.evidence import estimate_evidence
from jmds_pipeline.models import prunable_parameter_names
from jmds_pipeline.pipelines.pretraining.nodes import history_frame
from jmds_pipeline.runtime import evidence_config, model_from_state, run_config_of
from jmds_pipeline.sparsity.masks import layer_summary
from jmds_pipeline.sparsity.rounds import kept_weights, next_kept, next_masks
from jmds_pipeline.training.evaluate import evaluate
from jmds_pipeline.training.loop import cpu_state, train_model

KEPT = "kept"


def initial_sparsity(
    dense_state: dict[str, torch.Tensor],
    train: Split,
    dataset_meta: dict[str, Any],
    parameters: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """All prunable weights active and all training samples kept."""
    config = run_config_of(parameters)
    model = model_from_state(config, DatasetMeta.from_dict(dataset_meta), dense_state)
    names = prunable_parameter_names(
        model, include_output_layer=config.jmds.include_output_layer,
        include_embeddings=config.jmds.include_embeddings,
    )
    params = dict(model.named_parameters())
    masks = {name: torch.ones_like(params[name], dtype=torch.bool) for name in names}
    kept = {KEPT: torch.ones_like(train["id"], dtype=torch.bool), "id": train["id"].clone()}
    return masks, kept


def train_round(
    rewind_state: dict[str, torch.Tensor],
    previous_state: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    kept: dict[str, torch.Tensor],
    train: Split,
    val: Split,
    dataset_meta: dict[str, Any],
    parameters: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Phase A: train under the mask on the kept samples, from the rewind point (or, with
    ``jmds.rewind: false``, continuing from the previous round's model)."""
    config = run_config_of(parameters)
    meta = DatasetMeta.from_dict(dataset_meta)
    device = config.resolved_device()
    if not torch.equal(kept["id"], train["id"]):
        raise ValueError("the kept-sample vector is not aligned with the training split ids")
    start = rewind_state if config.jmds.rewind else previous_state
    model = model_from_state(config, meta, start)
    drawn: list[torch.Tensor] = []
    outcome = train_model(
        model, train, config.training, device=device, seed=config.seed, masks=masks,
        kept=kept[KEPT], epochs=config.jmds.round_epochs, description="round",
        on_batch=lambda batch, _logits: drawn.append(batch["id"]),
    )
    val_metrics = evaluate(model, val, task=meta.task,
                           batch_size=config.training.eval_batch_size, device=device)
    log = {
        "seconds": outcome.seconds,
        "samples_seen": outcome.samples_seen,
        "val": val_metrics,
        "history": outcome.history,
        # What training really drew: tests check it against the kept ids.
        "trained_ids": sorted(set(torch.cat(drawn).tolist())),
    }
    return cpu_state(model), log


def score_round(
    state: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    kept: dict[str, torch.Tensor],
    train: Split,
    dataset_meta: dict[str, Any],
    parameters: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], pd.DataFrame, dict[str, Any]]:
    """Phase B: Laplace evidence at θ* and every weight's and sample's contribution."""
    config = run_config_of(parameters)
    meta = DatasetMeta.from_dict(dataset_meta)
    model = model_from_state(config, meta, state)
    kept_rows = kept[KEPT]
    weights = kept_weights(kept_rows, config.jmds.rescale_kept)
    started = time.perf_counter()
    result = estimate_evidence(
        model, train["x"], train["y"], sample_weights=weights, masks=masks,
        prunable=list(masks), config=evidence_config(config, meta),
        device=config.resolved_device(),
    )
    seconds = time.perf_counter() - started
    labels = train["y"] if train["y"].dim() == 1 else torch.full_like(train["id"], -1)
    scores = pd.DataFrame(
        {
            "id": train["id"].numpy(),
            "label": labels.numpy(),
            "kept": kept_rows.numpy(),
            "contribution": result.sample_contribution.double().numpy(),
            "loss": result.sample_loss.double().numpy(),
            "leverage": result.sample_leverage.double().numpy(),
        }
    )
    alpha = result.prior_precision
    evidence = {
        "log_evidence": result.log_evidence,
        "log_likelihood": result.log_likelihood,
        "log_det_ratio": result.log_det_ratio,
        "prior_term": result.prior_term,
        "prior_precision": alpha if isinstance(alpha, float) else dict(alpha),
        "num_active": result.num_active,
        "seconds": seconds,
        "timings": dict(result.timings),
    }
    return dict(result.weight_scores), scores, evidence


def update_mask(
    weight_scores: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    parameters: dict[str, Any],
    round_index: int,
) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """Phase C: drop the weights whose removal costs the least evidence."""
    config = run_config_of(parameters).jmds
    new_masks = next_masks(weight_scores, masks, config, round_index)
    return new_masks, layer_summary(new_masks)


def update_samples(
    sample_scores: pd.DataFrame,
    kept: dict[str, torch.Tensor],
    train: Split,
    parameters: dict[str, Any],
    round_index: int,
) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """Phase D: keep the samples with the best evidence contribution under the budget."""
    config = run_config_of(parameters).jmds
    contributions = torch.tensor(sample_scores["contribution"].to_numpy())
    new_kept = next_kept(contributions, train["y"], kept[KEPT], config, round_index)
    table = sample_scores.assign(kept=new_kept.numpy())
    return {KEPT: new_kept, "id": kept["id"].clone()}, table


def final_retrain(
    rewind_state: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    kept: dict[str, torch.Tensor],
    train: Split,
    dataset_meta: dict[str, Any],
    parameters: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], pd.DataFrame, dict[str, Any]]:
    """Retrain from the rewind point on the final (m, s); pruned weights stay exactly 0."""
    config = run_config_of(parameters)
    meta = DatasetMeta.from_dict(dataset_meta)
    model = model_from_state(config, meta, rewind_state)
    outcome = train_model(
        model, train, config.training, device=config.resolved_device(), seed=config.seed,
        masks=masks, kept=kept[KEPT], epochs=config.jmds.final_epochs, description="final",
    )
    summary = {"seconds": outcome.seconds, "samples_seen": outcome.samples_seen,
               "epochs": len(outcome.history)}
    return cpu_state(model), history_frame(outcome.history, "final"), summary
