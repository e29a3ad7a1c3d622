"""Nodes of one JMDS round and of the final retrain. Each is a thin function over plain
data (state dicts, mask dicts, tables); the maths is in evidence/, sparsity/, training/.

Round r: (A) train θ under (m_{r-1}, s_{r-1}) from the rewind point (round 1 scores the
dense model, or the rewind point itself with ``jmds.score_from: rewind``), with the
previous round's evidence-optimal prior α in the loss;
(B) estimate the Laplace evidence and score the weights, update the mask m_r; (C) score
the samples under m_r and update the kept samples s_r.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import torch

from jmds_pipeline.config import RunConfig
from jmds_pipeline.data.types import DatasetMeta, Split
from jmds_pipeline.pipelines.pretraining.nodes import history_frame
from jmds_pipeline.runtime import (
    evidence_config,
    mask_names,
    model_from_state,
    run_channel_groups,
    run_config_of,
    seeded_model,
)
from jmds_pipeline.sparsity.jmds_scoring import (
    channel_scores,
    prior_count,
    running_mean,
    scalar_alpha,
    score_samples,
    score_weights,
)
from jmds_pipeline.sparsity.masks import layer_summary
from jmds_pipeline.sparsity.rounds import next_kept, next_masks, penalised_objective
from jmds_pipeline.tracking import epoch_tracker
from jmds_pipeline.training.evaluate import evaluate
from jmds_pipeline.training.loop import cpu_state, train_model

KEPT = "kept"


def initial_sparsity(
    dense_state: dict[str, torch.Tensor],
    train: Split,
    dataset_meta: dict[str, Any],
    parameters: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """All prunable weights (in channel mode also their units' biases) active and all
    training samples kept."""
    config = run_config_of(parameters)
    meta = DatasetMeta.from_dict(dataset_meta)
    model = model_from_state(config, meta, dense_state)
    names = mask_names(config, meta, model)
    params = dict(model.named_parameters())
    masks = {name: torch.ones_like(params[name], dtype=torch.bool) for name in names}
    kept = {KEPT: torch.ones_like(train["id"], dtype=torch.bool), "id": train["id"].clone()}
    return masks, kept


def round_one_state(
    dense_state: dict[str, torch.Tensor],
    rewind_state: dict[str, torch.Tensor],
    dense_training: dict[str, Any],
    val: Split,
    dataset_meta: dict[str, Any],
    parameters: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model round 1 scores: the dense model, or (``jmds.score_from: rewind``) the rewind
    point, so that JMDS needs the dense schedule only up to the rewind epoch; and its log
    in the form of a round's training log (the pretraining it took, validation metrics)."""
    config = run_config_of(parameters)
    meta = DatasetMeta.from_dict(dataset_meta)
    early = config.jmds.score_from == "rewind"
    if early and "rewind_samples" not in dense_training:
        raise ValueError("dense_training.json has no 'rewind_samples' (written before "
                         "jmds.score_from existed); rerun: kedro run --pipelines=pretraining")
    start = rewind_state if early else dense_state
    if early:
        seconds, samples = dense_training["rewind_seconds"], dense_training["rewind_samples"]
    else:
        seconds, samples = dense_training["seconds"], dense_training["samples_seen"]
    model = model_from_state(config, meta, start)
    log = {
        "seconds": seconds,
        "samples_seen": samples,
        "val": evaluate(model, val, task=meta.task, batch_size=config.training.eval_batch_size,
                        device=config.resolved_device()),
    }
    return {name: tensor.clone() for name, tensor in start.items()}, log


def train_round(
    rewind_state: dict[str, torch.Tensor],
    previous_state: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    kept: dict[str, torch.Tensor],
    previous_evidence: dict[str, Any],
    train: Split,
    val: Split,
    dataset_meta: dict[str, Any],
    parameters: dict[str, Any],
    round_index: int = 0,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Phase A: train under the mask on the kept samples, from the rewind point (or, with
    ``jmds.rewind: false``, continuing from the previous round's model); with
    ``jmds.tie_prior`` the loss carries the previous round's prior α (the MAP objective)."""
    config = run_config_of(parameters)
    meta = DatasetMeta.from_dict(dataset_meta)
    device = config.resolved_device()
    if not torch.equal(kept["id"], train["id"]):
        raise ValueError("the kept-sample vector is not aligned with the training split ids")
    # continuing (rewind: false) from round 1's model: the rewind point when round 1
    # scored it (score_from: rewind); ``previous_state`` is then the dense model
    continues_from_rewind = round_index == 2 and config.jmds.score_from == "rewind"
    start = rewind_state if config.jmds.rewind or continues_from_rewind else previous_state
    model = model_from_state(config, meta, start)
    drawn: list[torch.Tensor] = []
    alpha = _tied_prior(previous_evidence, config.jmds.tie_prior)
    with epoch_tracker(config, f"jmds/round_{round_index}") as on_epoch:
        outcome = train_model(
            model, train, config.training, device=device, seed=config.seed, masks=masks,
            kept=kept[KEPT], epochs=config.jmds.round_epochs, description="round",
            on_batch=lambda batch, _logits: drawn.append(batch["id"]),
            prior_precision=alpha,
            prior_count=prior_count(train, kept[KEPT], config.jmds.rescale_kept),
            on_epoch=on_epoch,
        )
    val_metrics = evaluate(model, val, task=meta.task,
                           batch_size=config.training.eval_batch_size, device=device)
    log = {
        "seconds": outcome.seconds,
        "samples_seen": outcome.samples_seen,
        "val": val_metrics,
        "history": outcome.history,
        "prior_precision": alpha,
        # What training really drew: tests check it against the kept ids.
        "trained_ids": sorted(set(torch.cat(drawn).tolist())),
    }
    return cpu_state(model), log


def _tied_prior(evidence: dict[str, Any], tie: bool) -> float | None:
    """The α a round trains with: the previous evidence's, when the prior is tied."""
    return scalar_alpha(evidence["prior_precision"]) if tie else None


def _scored_model(
    state: dict[str, torch.Tensor], dataset_meta: dict[str, Any], parameters: dict[str, Any],
) -> tuple[RunConfig, DatasetMeta, torch.nn.Module]:
    """The run configuration, the dataset's metadata and the model holding ``state``."""
    config = run_config_of(parameters)
    meta = DatasetMeta.from_dict(dataset_meta)
    return config, meta, model_from_state(config, meta, state)


def score_round(
    state: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    kept: dict[str, torch.Tensor],
    train: Split,
    dataset_meta: dict[str, Any],
    parameters: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Phase B: Laplace evidence at θ*, every weight's Δ_j, and how close θ* is to a mode
    of the log joint (the Laplace's expansion point)."""
    config, meta, model = _scored_model(state, dataset_meta, parameters)
    started = time.perf_counter()
    phase_b = score_weights(model, masks, kept[KEPT], train, config.jmds,
                            evidence_config(config, meta), config.resolved_device())
    result = phase_b.evidence
    weight_scores = dict(result.weight_scores)
    if config.jmds.granularity == "channel" and config.jmds.prune_model:
        weight_scores = channel_scores(run_channel_groups(config, meta, model), result, masks)
    alpha = result.prior_precision
    evidence = {
        "log_evidence": result.log_evidence,
        # log Z − λ1‖m‖₀ − λ2‖s‖₀: what penalty mode maximises (log Z when λ = 0)
        "objective": penalised_objective(result.log_evidence, masks, kept[KEPT], config.jmds),
        "log_likelihood": result.log_likelihood,
        "log_det_ratio": result.log_det_ratio,
        "prior_term": result.prior_term,
        "prior_precision": alpha if isinstance(alpha, float) else dict(alpha),
        "num_active": result.num_active,
        "stationarity": phase_b.stationarity.as_dict(),
        "seconds": time.perf_counter() - started,
        "timings": dict(result.timings),
    }
    return weight_scores, evidence


def score_round_samples(
    state: dict[str, torch.Tensor],
    masks_before: dict[str, torch.Tensor],
    masks_after: dict[str, torch.Tensor],
    kept: dict[str, torch.Tensor],
    train: Split,
    dataset_meta: dict[str, Any],
    parameters: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Phase C's scores: every sample's contribution c_i under the mask phase B has just
    chosen (``jmds.rescore_samples: false``: under the mask before it), and the time that
    scoring took (part of the run's cost)."""
    config, meta, model = _scored_model(state, dataset_meta, parameters)
    started = time.perf_counter()
    masks = masks_after if config.jmds.rescore_samples else masks_before
    result = score_samples(model, masks, kept[KEPT], train, config.jmds,
                           evidence_config(config, meta), config.resolved_device())
    labels = train["y"] if train["y"].dim() == 1 else torch.full_like(train["id"], -1)
    scoring = {"seconds": time.perf_counter() - started, "timings": dict(result.timings)}
    return pd.DataFrame(
        {
            "id": train["id"].numpy(),
            "label": labels.numpy(),
            "kept": kept[KEPT].numpy(),
            "contribution": result.sample_contribution.double().numpy(),
            "loss": result.sample_loss.double().numpy(),
            "leverage": result.sample_leverage.double().numpy(),
        }
    ), scoring


def update_mask(
    weight_scores: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    parameters: dict[str, Any],
    dataset_meta: dict[str, Any] | None = None,
    *,
    round_index: int,
) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """Phase B's update: drop the weights (channel mode: the whole units) whose removal
    costs the least evidence."""
    run = run_config_of(parameters)
    config = run.jmds
    groups = None
    if config.granularity == "channel":
        if dataset_meta is None:
            raise ValueError("jmds.granularity = 'channel' needs the dataset's metadata")
        meta = DatasetMeta.from_dict(dataset_meta)
        with torch.random.fork_rng(devices=[]):  # the architecture only: leave the RNG be
            groups = run_channel_groups(run, meta, seeded_model(run, meta))
    new_masks = next_masks(weight_scores, masks, config, round_index, groups=groups)
    return new_masks, layer_summary(new_masks)


def update_samples(
    sample_scores: pd.DataFrame,
    kept: dict[str, torch.Tensor],
    train: Split,
    parameters: dict[str, Any],
    previous_table: pd.DataFrame | None = None,
    *,
    round_index: int,
) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """Phase C's update: keep the samples with the best score under the budget. The score
    is this round's c_i, or (``sample_score: contribution_mean``) its mean over the rounds
    so far, carried in the previous round's table."""
    config = run_config_of(parameters).jmds
    score = torch.tensor(sample_scores["contribution"].to_numpy())
    if config.sample_score == "contribution_mean" and previous_table is not None:
        if not (previous_table["id"].to_numpy() == sample_scores["id"].to_numpy()).all():
            raise ValueError("the previous round's sample table is not aligned with this one")
        score = running_mean(torch.tensor(previous_table["score"].to_numpy()), score,
                             round_index)
    new_kept = next_kept(score, train["y"], kept[KEPT], config, round_index)
    table = sample_scores.assign(kept=new_kept.numpy(), score=score.double().numpy())
    return {KEPT: new_kept, "id": kept["id"].clone()}, table


def final_retrain(
    rewind_state: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    kept: dict[str, torch.Tensor],
    last_evidence: dict[str, Any],
    train: Split,
    dataset_meta: dict[str, Any],
    parameters: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], pd.DataFrame, dict[str, Any]]:
    """Retrain from the rewind point on the final (m, s), with the last round's prior α
    when it is tied; pruned weights stay exactly 0."""
    config = run_config_of(parameters)
    meta = DatasetMeta.from_dict(dataset_meta)
    model = model_from_state(config, meta, rewind_state)
    alpha = _tied_prior(last_evidence, config.jmds.tie_prior)
    with epoch_tracker(config, "jmds/final") as on_epoch:
        outcome = train_model(
            model, train, config.training, device=config.resolved_device(), seed=config.seed,
            masks=masks, kept=kept[KEPT], epochs=config.jmds.final_epochs, description="final",
            prior_precision=alpha,
            prior_count=prior_count(train, kept[KEPT], config.jmds.rescale_kept),
            on_epoch=on_epoch,
        )
    summary = {"seconds": outcome.seconds, "samples_seen": outcome.samples_seen,
               "epochs": len(outcome.history), "prior_precision": alpha}
    return cpu_state(model), history_frame(outcome.history, "final"), summary
