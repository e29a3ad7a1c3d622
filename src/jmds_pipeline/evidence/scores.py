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
from collections.abc import Iterable

import torch
from torch import Tensor

from .curvature.block import CurvatureBlock


def weight_scores(
    kind: str,
    theta: Tensor,
    alpha: float | Tensor,
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
        occam = 0.5 * (torch.log(diag_p) - torch.log(torch.as_tensor(alpha, dtype=torch.float64)))
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


def block_weight_scores(
    blocks: Iterable[CurvatureBlock],
    kind: str,
    alpha: Tensor,
    wanted: Iterable[str],
    num_data: float,
) -> tuple[dict[str, Tensor], dict[str, dict[str, Tensor]]]:
    """Δ_j and its parts for the wanted parameters (float32, CPU, parameter-shaped)."""
    want = set(wanted)
    scores: dict[str, Tensor] = {}
    parts: dict[str, dict[str, Tensor]] = {}
    for b in blocks:
        if not want.intersection(b.param_names):
            continue
        a = b.prior_of(alpha)
        dh = b.diag_h()
        view_scores, view_parts = weight_scores(
            kind,
            b.theta,
            a,
            b.mask,
            diag_inv=b.diag_inv(alpha) if kind == "obs" else None,
            diag_p=dh + a,
            diag_h=dh,
            num_data=num_data,
        )
        param_scores = b.to_params(view_scores)
        param_parts = {k: b.to_params(v) for k, v in view_parts.items()}
        for name in b.param_names:
            if name in want:
                scores[name] = param_scores[name].float().cpu()
                parts[name] = {k: v[name].float().cpu() for k, v in param_parts.items()}
    return scores, parts
