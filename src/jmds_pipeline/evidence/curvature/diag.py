"""Diagonal GGN blocks: H_jj = Σ_i w_i Σ_k ω_k ψ_ikj² from per-sample gradients ψ.

log det P_S = Σ_{j∈S} log(H_jj + α) (masking is exact for a diagonal), leverage
tr(P⁻¹ H_i) = Σ_{j∈S} Σ_k ω_k ψ_ikj² / (H_jj + α). Peak memory: 2 d floats (H and θ) plus
one chunk of per-sample gradients (c · size of the largest parameter). Used for the whole
model with ``structure="diag"`` and, under ``kfac``, for everything K-FAC does not cover
(norm layers, embeddings, tied output embeddings, layers above ``kfac_max_dim``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class DiagBlock:
    """One parameter (canonical name) with its GGN diagonal; view = the parameter's shape."""

    name: str
    h: Tensor  # float64, parameter shape; running sum
    theta: Tensor  # float64, masked entries zeroed
    mask: Tensor | None = None  # bool, parameter shape; None = all active
    group: int = 0

    # ---- protocol (``block.CurvatureBlock``) ----
    def group_stats(self, sq_norm: Tensor, num_active: Tensor) -> None:
        sq_norm[self.group] += float(self.theta.pow(2).sum())
        num_active[self.group] += int(self.theta.numel() if self.mask is None else self.mask.sum())

    @property
    def param_names(self) -> list[str]:
        return [self.name]

    def prior_of(self, alpha: Tensor) -> Tensor:
        return alpha[self.group].to(self.h.device)

    def to_params(self, view: Tensor) -> dict[str, Tensor]:
        return {self.name: view}

    def diag_h(self) -> Tensor:
        return self.h

    def diag_inv(self, alpha: Tensor) -> Tensor:
        return 1.0 / (self.h + self.prior_of(alpha))

    def logdet(self, alpha: Tensor) -> Tensor:
        vals = self.h if self.mask is None else self.h[self.mask]
        return torch.log(vals + self.prior_of(alpha)).sum().cpu()

    # ---- passes ----
    def accumulate(self, psi: Tensor, w: Tensor) -> None:
        """psi: (b, *shape) per-sample gradients; w: (b,) weights (sample weight × ω)."""
        self.h += torch.einsum("b,b...->...", w, psi * psi).double()

    def leverage(self, psi: Tensor, alpha: Tensor) -> Tensor:
        """Σ_j m_j ψ_ij² / (H_jj + α) for each sample, shape (b,); α (n_groups,)."""
        inv = self.diag_inv(alpha).to(psi.dtype)
        if self.mask is not None:
            inv = inv * self.mask.to(psi.dtype)
        return (psi * psi * inv).reshape(psi.shape[0], -1).sum(1)
