"""JMDS's phase B and phase C scores from the Laplace evidence, shared by the Kedro nodes
and the comparison's plain loop.

Phase B fixes θ and s and scores every weight by Δ_j, the change in log Z when it goes;
the same evidence pass gives log Z, the prior α and how far θ is from a mode of the log
joint. Phase C fixes θ and the mask phase B has *just chosen* and scores every sample by
c_i = ∂log Z/∂s_i (the paper's order: m first, then s under the new m).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from jmds_pipeline.config import JMDSConfig
from jmds_pipeline.data.types import Split
from jmds_pipeline.evidence import EvidenceConfig, EvidenceResult, estimate_evidence
from jmds_pipeline.evidence.stationarity import Stationarity, log_joint_stationarity
from jmds_pipeline.sparsity.channels import ChannelGroup, group_scores, spread_group_scores
from jmds_pipeline.sparsity.masks import apply_masks
from jmds_pipeline.training.losses import tokens_per_sample

Masks = dict[str, torch.Tensor]


def kept_weights(kept: torch.Tensor, rescale: bool) -> torch.Tensor:
    """Sample weights for the evidence: 1 per kept row, or N/K so that every subset's
    evidence is on the full data's scale (design.md §2)."""
    weights = kept.float()
    if rescale:
        weights = weights * (kept.numel() / max(int(kept.sum()), 1))
    return weights


def prior_count(train: Split, kept: torch.Tensor, rescale: bool) -> float:
    """The n of the training loss's prior term α/(2n)·Σθ²: the evidence's weighted count of
    predictions (Σ_i w_i·T_i; T_i = 1 for a label, the counted tokens for text), so that
    minimising (Σ_i w_i ℓ_i)/n + α/(2n)·Σθ² is the MAP the evidence expands around."""
    weights = kept_weights(kept, rescale).double()
    return float((weights * tokens_per_sample(train["y"]).double()).sum())


def scalar_alpha(alpha: float | dict[str, float]) -> float:
    """One α for the training loss (a layer-wise prior is averaged, see JMDSConfig)."""
    if isinstance(alpha, dict):
        return float(torch.tensor(list(alpha.values()), dtype=torch.float64).mean())
    return float(alpha)


@dataclass
class PhaseB:
    evidence: EvidenceResult
    stationarity: Stationarity


def score_weights(
    model: nn.Module, masks: Masks, kept: torch.Tensor, train: Split, jmds: JMDSConfig,
    config: EvidenceConfig, device: str = "cpu", *, with_samples: bool = False,
) -> PhaseB:
    """log Z at θ under (m, s), every weight's Δ_j (when the model is pruned) and the
    stationarity of the log joint at θ. ``with_samples`` also scores the samples under
    the *current* mask (the old, un-faithful order, kept as the ``rescore_samples: false``
    variant)."""
    weights = kept_weights(kept, jmds.rescale_kept)
    evidence = estimate_evidence(
        model, train["x"], train["y"], sample_weights=weights, masks=masks,
        prunable=list(masks), config=config, device=device,
        score_samples=with_samples, score_weights=jmds.prune_model,
        score_units=jmds.prune_model and jmds.granularity == "channel",
    )
    stationarity = log_joint_stationarity(
        model, train["x"], train["y"], sample_weights=weights,
        alpha=scalar_alpha(evidence.prior_precision), masks=masks,
        batch_size=config.batch_size, device=device,
    )
    return PhaseB(evidence, stationarity)


def channel_scores(groups: list[ChannelGroup], evidence: EvidenceResult, masks: Masks
                   ) -> dict[str, torch.Tensor]:
    """Channel mode's phase-B scores: each unit's Δ_g (``sparsity.channels``) spread over
    its producer entries, so they travel as parameter-shaped tensors like Δ_j."""
    scores = group_scores(groups, evidence.unit_scores or {}, evidence.weight_scores)
    return spread_group_scores(groups, scores, masks)


def score_samples(
    model: nn.Module, masks: Masks, kept: torch.Tensor, train: Split, jmds: JMDSConfig,
    config: EvidenceConfig, device: str = "cpu",
) -> EvidenceResult:
    """Every sample's c_i at θ ⊙ m for the mask ``masks`` (a copy of the model is masked;
    the caller's model is left as it is)."""
    masked = copy.deepcopy(model)
    apply_masks(masked, masks)
    return estimate_evidence(
        masked, train["x"], train["y"], sample_weights=kept_weights(kept, jmds.rescale_kept),
        masks=masks, prunable=list(masks), config=config, device=device,
        score_samples=True, score_weights=False,
    )


def running_mean(previous: torch.Tensor | None, current: torch.Tensor, rounds: int
                 ) -> torch.Tensor:
    """The mean of a score over ``rounds`` rounds, given the mean over the rounds before."""
    current = current.double()
    if previous is None:
        return current
    return previous + (current - previous) / rounds
