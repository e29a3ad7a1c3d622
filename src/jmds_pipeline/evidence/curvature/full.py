"""Exact GGN with ``torch.func`` (the ground truth; tiny nets only).

H = Σ_i w_i J_iᵀ Λ_i J_i with J_i = ∂f(x_i)/∂θ over all parameters (flattened in
``named_parameters`` order). Memory: d² for H plus B·K·d for a batch of Jacobians (K outputs
per sample), so keep d ≲ 10⁴. Masked: P_S = H_SS + diag(α)_S exactly; log det by Cholesky.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap


def jacobian_fn(
    model: nn.Module, names: list[str], to_logits: Callable[[object], Tensor]
) -> Callable[[dict[str, Tensor], Tensor], Tensor]:
    """Batched Jacobian: (params, x (B, …)) -> J (B, K, d), K = outputs per sample."""

    def f(params: dict[str, Tensor], xi: Tensor) -> Tensor:
        out = to_logits(functional_call(model, params, (xi.unsqueeze(0),)))
        return out.reshape(-1)

    def jac(params: dict[str, Tensor], x: Tensor) -> Tensor:
        j = vmap(jacrev(f), in_dims=(None, 0))(params, x)
        return torch.cat([j[n].reshape(x.shape[0], j[n].shape[1], -1) for n in names], dim=2)

    return jac


class FullCurvature:
    """H over all coordinates with coordinate groups and an active set (mask)."""

    def __init__(self, h: Tensor, theta: Tensor, active: Tensor, coord_group: Tensor) -> None:
        self.h = h  # (d, d) float64
        self.theta = theta  # (d,) float64
        self.active = active  # (d,) bool
        self.coord_group = coord_group  # (d,) long
        idx = active.nonzero().squeeze(1)
        self.idx = idx
        self.h_s = h[idx][:, idx]

    def prior_diag(self, alpha: Tensor) -> Tensor:
        return alpha[self.coord_group[self.idx]]

    def logdet(self, alpha: Tensor) -> Tensor:
        """log det(H_SS + diag α_S); α: (n_groups,) float64."""
        if self.idx.numel() == 0:
            return alpha.sum() * 0
        p = self.h_s + torch.diag(self.prior_diag(alpha))
        return 2 * torch.log(torch.diagonal(torch.linalg.cholesky(p))).sum()

    def inverse(self, alpha: Tensor) -> Tensor:
        """P_S⁻¹ over the active coordinates, (d_S, d_S)."""
        p = self.h_s + torch.diag(self.prior_diag(alpha))
        return torch.cholesky_inverse(torch.linalg.cholesky(p))
