"""The Laplace log evidence over the active weights (design.md §2).

    log Z(m, s) ≈ −Σ_i s_i ℓ_i(θ*) − ½ Σ_g α_g ‖θ*_g‖² − ½ [log det P_m − Σ_g d_g log α_g]
    P_m = (H_s + diag(α)) restricted to the active weights,  H_s = Σ_i s_i J_iᵀ Λ_i J_i

which is laplace-torch's ``log_likelihood − ½ (log_det_ratio + scatter)``. Blocks
(K-FAC layers, diagonal parameters, or one exact block) each give log det of their part of
P_m as a differentiable function of α; masked K-FAC blocks use the Schur/Hadamard bound
described in ``curvature.kfac`` (exact for one removed weight, and for an empty layer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .curvature.block import CurvatureBlock


@dataclass
class EvidenceTerms:
    log_evidence: float
    log_likelihood: float
    log_det_ratio: float
    prior_term: float
    num_active: int


def group_stats(blocks: Sequence[CurvatureBlock], n_groups: int) -> tuple[Tensor, Tensor]:
    """‖θ_g‖² and d_g (active weights) per prior group, float64."""
    sq = torch.zeros(n_groups, dtype=torch.float64)
    d = torch.zeros(n_groups, dtype=torch.float64)
    for b in blocks:
        b.group_stats(sq, d)
    return sq, d


def logdet_sum(blocks: Sequence[CurvatureBlock], alpha: Tensor) -> Tensor:
    """log det P_m as a differentiable function of α (n_groups,) float64 on CPU."""
    total = alpha.new_zeros(())
    for b in blocks:
        total = total + b.logdet(alpha)
    return total


def alpha_objective(blocks: Sequence[CurvatureBlock], n_groups: int) -> Callable[[Tensor], Tensor]:
    """α ↦ −½ Σ α_g‖θ_g‖² − ½ [log det P_m − Σ d_g log α_g] (the α-dependent part of log Z)."""
    sq, d = group_stats(blocks, n_groups)

    def f(alpha: Tensor) -> Tensor:
        return -0.5 * (alpha * sq).sum() - 0.5 * (
            logdet_sum(blocks, alpha) - (d * alpha.log()).sum()
        )

    return f


def evidence_terms(
    blocks: Sequence[CurvatureBlock], alpha: Tensor, log_likelihood: float
) -> EvidenceTerms:
    """All terms of log Z at α (n_groups,)."""
    sq, d = group_stats(blocks, len(alpha))
    with torch.no_grad():
        logdet = float(logdet_sum(blocks, alpha))
    ldr = logdet - float((d * alpha.log()).sum())
    prior = -0.5 * float((alpha * sq).sum())
    return EvidenceTerms(
        log_evidence=log_likelihood + prior - 0.5 * ldr,
        log_likelihood=log_likelihood,
        log_det_ratio=ldr,
        prior_term=prior,
        num_active=int(d.sum()),
    )
