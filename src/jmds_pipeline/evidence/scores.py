"""Weight contributions Δ_j: the change of log Z when weight j is removed (θ_j → 0).

    obs:          Δ_j = −θ_j² / (2 [P⁻¹]_jj) − ½ log(α [P⁻¹]_jj)
    diag:         Δ_j = −½ P_jj θ_j² + ½ log(P_jj / α)
    first_order:  Δ_j = −|θ_j| · E[H_jj],   E[H_jj] = H_jj / N_s   (the paper's saliency)

The first term is the loss of fit (OBS; SpaM's θ²·P_jj for a diagonal), the second the Occam
bonus (≥ 0) for one parameter fewer; with one weight removed the Occam term is exact for
K-FAC P (Schur complement). Higher Δ_j = cheaper to remove; masked weights get +inf.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def weight_scores(
    kind: str,
    theta: Tensor,
    alpha: float,
    mask: Tensor | None,
    diag_inv: Tensor | None = None,
    diag_p: Tensor | None = None,
    diag_h: Tensor | None = None,
    num_data: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Δ (same shape as θ, float64) and its parts {"fit", "occam"}."""
    theta = theta.double()
    if kind == "obs":
        fit = -(theta * theta) / (2 * diag_inv)
        occam = -0.5 * torch.log(alpha * diag_inv)
    elif kind == "diag":
        fit = -0.5 * diag_p * theta * theta
        occam = 0.5 * (torch.log(diag_p) - math.log(alpha))
    elif kind == "first_order":
        fit = -theta.abs() * diag_h / max(num_data, 1e-300)
        occam = torch.zeros_like(fit)
    else:
        raise ValueError(f"unknown weight score {kind!r}")
    score = fit + occam
    if mask is not None:
        inf = torch.tensor(math.inf, dtype=score.dtype, device=score.device)
        score = torch.where(mask, score, inf)
    return score, {"fit": fit, "occam": occam}
