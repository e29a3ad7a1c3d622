"""Iterative sparsification rounds, shared by JMDS and the iterative baselines (IMP).

A round takes a trained model and the current (m, s), asks a *scorer* for weight scores
(higher = cheaper to remove) and sample scores (higher = more worth keeping), and moves
(m, s) to the round's targets. JMDS's scorer is the Laplace evidence; IMP's is |θ|.
The Kedro pipeline runs the same steps as separate nodes (one namespace per round);
:func:`run_rounds` runs them in a plain loop for the comparison benchmark.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from jmds_pipeline.config import JMDSConfig, RunConfig
from jmds_pipeline.data.types import Split
from jmds_pipeline.sparsity.channels import (
    ChannelGroup,
    prune_channels_to_target,
    read_group_scores,
)
from jmds_pipeline.sparsity.jmds_scoring import kept_weights as kept_weights  # re-export
from jmds_pipeline.sparsity.jmds_scoring import prior_count, running_mean
from jmds_pipeline.sparsity.sample_selection import select_by_threshold, select_samples
from jmds_pipeline.sparsity.schedules import round_targets
from jmds_pipeline.sparsity.weight_selection import prune_by_threshold, prune_to_target
from jmds_pipeline.training.evaluate import evaluate
from jmds_pipeline.training.loop import train_model

Masks = dict[str, torch.Tensor]


@dataclass
class RoundScores:
    weight_scores: Masks | None = None  # Δ_j: higher = cheaper to remove
    sample_scores: torch.Tensor | None = None  # higher = more worth keeping (see keep=)
    log_evidence: float | None = None
    prior_precision: float | None = None  # α of the evidence: the next round's prior
    extra: dict[str, Any] = field(default_factory=dict)


class Scorer(Protocol):
    """(trained model, masks, kept rows) → scores. ``weights`` asks for weight scores (and
    the evidence), ``samples`` for sample scores under ``masks``."""

    def __call__(self, model: nn.Module, masks: Masks, kept: torch.Tensor, *,
                 weights: bool, samples: bool) -> RoundScores: ...


def next_masks(scores: Masks, masks: Masks, config: JMDSConfig, round_index: int,
               groups: Sequence[ChannelGroup] | None = None) -> Masks:
    """Drop the cheapest weights: to the round's target, or while Δ_j + λ1 > 0. Channel
    granularity drops whole units (``groups``; ``scores`` as ``spread_group_scores``)."""
    if not config.prune_model:
        return masks
    if config.granularity == "channel":
        if groups is None:
            raise ValueError("jmds.granularity = 'channel' needs the model's channel groups")
        target = round_targets(config.target_model_sparsity, config.rounds,
                               config.schedule)[round_index - 1]
        return prune_channels_to_target(read_group_scores(groups, scores), groups, masks,
                                        target)
    if config.mode == "target":
        target = round_targets(config.target_model_sparsity, config.rounds,
                               config.schedule)[round_index - 1]
        return prune_to_target(scores, masks, target, scope=config.weight_scope)
    return prune_by_threshold(scores, masks, config.lambda_model,
                              max_sparsity=config.max_model_sparsity)


def next_kept(
    scores: torch.Tensor, labels: torch.Tensor, kept: torch.Tensor, config: JMDSConfig,
    round_index: int,
) -> torch.Tensor:
    """Keep the best-scoring samples under the round's data budget (or by λ2)."""
    if not config.prune_data:
        return kept
    if config.mode == "target":
        target = round_targets(config.target_data_sparsity, config.rounds,
                               config.schedule)[round_index - 1]
        # Sequence targets (N, T) have no class: select_samples falls back to top-k.
        return select_samples(scores, labels, kept, target, mode=config.sample_selection,
                              keep=config.keep, strata=config.strata,
                              hard_cutoff=config.hard_cutoff,
                              generator=torch.Generator().manual_seed(round_index))
    return select_by_threshold(scores, kept, config.lambda_data,
                               max_sparsity=config.max_data_sparsity)


@dataclass
class RoundsOutcome:
    masks: Masks
    kept: torch.Tensor
    trace: list[dict[str, float]]
    seconds: float
    prior_precision: float | None = None  # the last round's α (the final retrain's prior)
    samples_seen: int = 0  # training samples drawn by the rounds' phase A


def penalised_objective(log_evidence: float | None, masks: Masks, kept: torch.Tensor,
                        config: JMDSConfig) -> float | None:
    """J = log Z − λ1‖m‖₀ − λ2‖s‖₀, the quantity penalty mode maximises."""
    if log_evidence is None:
        return None
    active = sum(int(mask.sum()) for mask in masks.values())
    return log_evidence - config.lambda_model * active - config.lambda_data * int(kept.sum())


def run_rounds(
    build: Callable[[dict[str, torch.Tensor] | None], nn.Module],
    trained_state: dict[str, torch.Tensor],
    rewind_state: dict[str, torch.Tensor],
    train: Split,
    val: Split,
    config: RunConfig,
    jmds: JMDSConfig,
    masks: Masks,
    scorer: Scorer,
    *,
    task: str,
    device: str = "cpu",
    groups: Sequence[ChannelGroup] | None = None,
) -> RoundsOutcome:
    """R rounds of (A) train → (B) score weights, update m → (C) score samples under the
    new m, update s. Training restarts from the rewind point (or continues from the
    scored model when ``jmds.rewind`` is false) and, with ``jmds.tie_prior``, carries the
    previous round's evidence-optimal prior α in its loss.

    ``build(state)`` returns the model with ``state`` loaded. Round 1 scores the model
    in ``trained_state`` (the dense run); the last round's (m, s) are returned without
    a further training pass, which the caller's final retrain does (with the returned α).
    ``groups``: the model's channel groups, for ``jmds.granularity: channel``.
    """
    started = time.perf_counter()
    kept = torch.ones_like(train["id"], dtype=torch.bool)
    model = build(trained_state)
    trace = []
    alpha: float | None = None
    mean_scores: torch.Tensor | None = None
    samples_seen = 0
    for round_index in range(1, jmds.rounds + 1):
        if round_index > 1:
            # Rewind (lottery-ticket style) or continue from the model just scored.
            model = build(rewind_state) if jmds.rewind else model
            trained = train_model(model, train, config.training, device=device,
                                  seed=config.seed, masks=masks, kept=kept,
                                  epochs=jmds.round_epochs, description=f"round {round_index}",
                                  prior_precision=alpha if jmds.tie_prior else None,
                                  prior_count=prior_count(train, kept, jmds.rescale_kept))
            samples_seen += trained.samples_seen
        scored_at = time.perf_counter()
        rescore = jmds.rescore_samples and jmds.prune_data
        scores = scorer(model, masks, kept, weights=True,
                        samples=jmds.prune_data and not rescore)
        scored_masks = masks
        if scores.weight_scores is not None:
            masks = next_masks(scores.weight_scores, masks, jmds, round_index, groups)
        sample_scores = scores.sample_scores
        if rescore:
            sample_scores = scorer(model, masks, kept, weights=False, samples=True).sample_scores
        scoring_seconds = time.perf_counter() - scored_at
        val_accuracy = evaluate(model, val, task=task, device=device,
                                batch_size=config.training.eval_batch_size)["accuracy"]
        if sample_scores is not None:
            if jmds.sample_score == "contribution_mean":
                mean_scores = running_mean(mean_scores, sample_scores, round_index)
                sample_scores = mean_scores
            kept_before = kept
            kept = next_kept(sample_scores, train["y"], kept, jmds, round_index)
        else:
            kept_before = kept
        alpha = scores.prior_precision
        trace.append({
            "round": round_index, "val_accuracy": val_accuracy,
            "log_evidence": scores.log_evidence,
            "objective": penalised_objective(scores.log_evidence, scored_masks, kept_before,
                                             jmds),
            "prior_precision": alpha, "score_seconds": scoring_seconds, **scores.extra,
        })
    return RoundsOutcome(masks, kept, trace, time.perf_counter() - started, alpha,
                         samples_seen)
