"""The curvature protocol: what every block of P = H + diag(α) answers.

A block is a part of the parameters whose curvature is treated independently of the rest:
one K-FAC layer (``kfac.KronBlock``), one parameter with a diagonal GGN (``diag.DiagBlock``)
or all parameters at once (``full.FullBlock``). log det P and the prior terms are sums over
blocks, so the engine never asks which kind it holds. Each block works in its own view of
its weights (the K-FAC matrix [W | b], the parameter's shape, or the flat vector) and maps
that view back to parameter shapes with ``to_params``.

Per-sample leverage tr(P⁻¹H_i) is also a block method, but its inputs are what its backend's
data pass captures (layer inputs and output gradients for K-FAC, per-sample gradients for
diag, Jacobians for full), so its signature is the backend's.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor


class CurvatureBlock(Protocol):
    theta: Tensor  # float64 weights in the block's view, masked entries zeroed
    mask: Tensor | None  # bool, same view; None = all active

    @property
    def param_names(self) -> list[str]:
        """Canonical names of the parameters the block covers."""

    def group_stats(self, sq_norm: Tensor, num_active: Tensor) -> None:
        """Add the block's ‖θ_g‖² and active-weight count d_g into the per-group tensors."""

    def logdet(self, alpha: Tensor) -> Tensor:
        """log det of the block's part of P_m; α (n_groups,) float64; 0-d CPU tensor."""

    def prior_of(self, alpha: Tensor) -> Tensor:
        """α of each weight (or one 0-d α for the whole block), on the block's device."""

    def diag_h(self) -> Tensor:
        """H_jj in the block's view."""

    def diag_inv(self, alpha: Tensor) -> Tensor:
        """[P⁻¹]_jj in the block's view, α (n_groups,) (undefined for masked entries)."""

    def to_params(self, view: Tensor) -> dict[str, Tensor]:
        """Block-view tensor -> {canonical parameter name: parameter-shaped tensor}."""
