"""Iterative sparsification rounds, shared by JMDS and the iterative baselines (IMP).

A round takes a trained model and the current (m, s), asks a *scorer* for weight scores
(higher = cheaper to remove) and sample scores (higher = more worth keeping), and moves
(m, s) to the round's targets. JMDS's scorer is the Laplace evidence; IMP's is |θ|.
The Kedro pipeline runs the same steps as separate nodes (one namespace per round);
:func:`run_rounds` runs them in a plain loop for the comparison benchmark.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from jmds_pipeline.config import JMDSConfig, RunConfig
from jmds_pipeline.data.types import Split
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
    extra: dict[str, Any] = field(default_factory=dict)


Scorer = Callable[[nn.Module, Masks, torch.Tensor], RoundScores]
"""(trained model, current masks, current kept rows) → scores."""


def kept_weights(kept: torch.Tensor, rescale: bool) -> torch.Tensor:
    """Sample weights for the evidence: 1 per kept row, or N/K so that every subset's
    evidence is on the full data's scale (design.md §2)."""
    weights = kept.float()
    if rescale:
        weights = weights * (kept.numel() / max(int(kept.sum()), 1))
    return weights


def next_masks(scores: Masks, masks: Masks, config: JMDSConfig, round_index: int) -> Masks:
    """Drop the cheapest weights: to the round's target, or while Δ_j + λ1 > 0."""
    if not config.prune_model:
        return masks
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
                              keep=config.keep)
    return select_by_threshold(scores, kept, config.lambda_data,
                               max_sparsity=config.max_data_sparsity)


@dataclass
class RoundsOutcome:
    masks: Masks
    kept: torch.Tensor
    trace: list[dict[str, float]]
    seconds: float


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
) -> RoundsOutcome:
    """R rounds of score → update (m, s) → retrain (from the rewind point, or continued
    from the scored model when ``jmds.rewind`` is false).

    ``build(state)`` returns the model with ``state`` loaded. Round 1 scores the model
    in ``trained_state`` (the dense run); the last round's (m, s) are returned without
    a further training pass, which the caller's final retrain does.
    """
    started = time.perf_counter()
    kept = torch.ones_like(train["id"], dtype=torch.bool)
    model = build(trained_state)
    trace = []
    for round_index in range(1, jmds.rounds + 1):
        if round_index > 1:
            # Rewind (lottery-ticket style) or continue from the model just scored.
            model = build(rewind_state) if jmds.rewind else model
            train_model(model, train, config.training, device=device, seed=config.seed,
                        masks=masks, kept=kept, epochs=jmds.round_epochs,
                        description=f"round {round_index}")
        scored_at = time.perf_counter()
        scores = scorer(model, masks, kept)
        scoring_seconds = time.perf_counter() - scored_at
        val_accuracy = evaluate(model, val, task=task, device=device,
                                batch_size=config.training.eval_batch_size)["accuracy"]
        if scores.weight_scores is not None:
            masks = next_masks(scores.weight_scores, masks, jmds, round_index)
        if scores.sample_scores is not None:
            kept = next_kept(scores.sample_scores, train["y"], kept, jmds, round_index)
        trace.append({"round": round_index, "val_accuracy": val_accuracy,
                      "log_evidence": scores.log_evidence, "score_seconds": scoring_seconds})
    return RoundsOutcome(masks, kept, trace, time.perf_counter() - started)
