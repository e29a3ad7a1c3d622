"""Exact GGN with ``torch.func`` (the ground truth; tiny nets only).

H = Σ_i w_i J_iᵀ Λ_i J_i with J_i = ∂f(x_i)/∂θ over all parameters (flattened in
``named_parameters`` order). Memory: d² for H plus B·K·d for a batch of Jacobians (K outputs
per sample), so keep d ≲ 10⁴. Masked: P_S = H_SS + diag(α)_S exactly; log det by Cholesky.
One ``FullBlock`` covers every parameter; its view is the flat vector.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from jmds_pipeline import distributed

from ..context import Context, to_logits
from ..likelihood import output_hessian, per_sample_nll


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


class FullBlock:
    """H over all coordinates with coordinate prior groups and an active set (mask)."""

    def __init__(
        self,
        h: Tensor,
        theta: Tensor,
        active: Tensor,
        coord_group: Tensor,
        shapes: dict[str, torch.Size],
    ) -> None:
        self.h = h  # (d, d) float64
        self.theta = theta * active  # (d,) float64
        self.mask = active  # (d,) bool
        self.coord_group = coord_group  # (d,) long
        self.shapes = shapes  # canonical name -> parameter shape, in flattening order
        self.idx = active.nonzero().squeeze(1)
        self.h_s = h[self.idx][:, self.idx]

    # ---- protocol (``block.CurvatureBlock``) ----
    @property
    def param_names(self) -> list[str]:
        return list(self.shapes)

    def group_stats(self, sq_norm: Tensor, num_active: Tensor) -> None:
        th = self.theta[self.idx].cpu()
        g = self.coord_group[self.idx].cpu()
        sq_norm.index_add_(0, g, th * th)
        num_active.index_add_(0, g, torch.ones_like(th))

    def prior_of(self, alpha: Tensor) -> Tensor:
        return alpha.to(self.h.device)[self.coord_group]

    def to_params(self, view: Tensor) -> dict[str, Tensor]:
        sizes = [s.numel() for s in self.shapes.values()]
        parts = view.split(sizes)
        return {n: p.reshape(s) for (n, s), p in zip(self.shapes.items(), parts, strict=True)}

    def diag_h(self) -> Tensor:
        return torch.diagonal(self.h)

    def diag_inv(self, alpha: Tensor) -> Tensor:
        out = torch.full_like(self.theta, torch.nan)
        out[self.idx] = torch.diagonal(self.inverse(alpha))
        return out

    def logdet(self, alpha: Tensor) -> Tensor:
        """log det(H_SS + diag α_S); α: (n_groups,) float64."""
        if self.idx.numel() == 0:
            return alpha.sum() * 0
        chol = torch.linalg.cholesky(self._precision(alpha))
        return (2 * torch.log(torch.diagonal(chol)).sum()).cpu()

    # ---- sample pass ----
    def inverse(self, alpha: Tensor) -> Tensor:
        """P_S⁻¹ over the active coordinates, (d_S, d_S)."""
        return torch.cholesky_inverse(torch.linalg.cholesky(self._precision(alpha)))

    def leverage(self, j: Tensor, lam: Tensor, p_inv: Tensor) -> Tensor:
        """tr(Λ_i J_i P⁻¹ J_iᵀ) over the active coordinates; j (b, K, d), lam (b, K, K)."""
        j = j[:, :, self.idx]
        return ((j @ p_inv @ j.transpose(1, 2)) * lam).sum((1, 2))

    def _precision(self, alpha: Tensor) -> Tensor:
        a = alpha.to(self.h.device)[self.coord_group[self.idx]]
        return self.h_s + torch.diag(a)


class FullCurvature:
    """The ``full`` backend: Jacobians by ``torch.func`` in both data passes."""

    separable_prior = False  # one block spans every prior group

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.names = list(ctx.params)
        self.params = {n: p.detach() for n, p in ctx.params.items()}
        self.jac = jacobian_fn(ctx.model, self.names, to_logits)
        self.blocks: list[FullBlock] = []

    def fit(self, idx: Tensor, weights: Tensor) -> None:
        """Pass 1: H = Σ_i w_i J_iᵀ Λ_i J_i on the curvature samples."""
        ctx = self.ctx
        d = sum(p.numel() for p in self.params.values())
        h = torch.zeros(d, d, dtype=torch.float64, device=ctx.device)
        for _, xb, yb, wb in ctx.batches(idx, weights):
            j = self.jac(self.params, xb).double()
            with torch.no_grad():
                logits = to_logits(ctx.model(xb)).double()
            lj = output_hessian(logits, yb, ctx.cfg) @ j * wb.reshape(-1, 1, 1)
            h += torch.einsum("bkd,bke->de", j, lj)
        distributed.all_reduce_sum_([h])  # each rank summed its own batches
        theta = torch.cat([p.reshape(-1) for p in self.params.values()]).double()
        active = torch.cat(
            [
                ctx.masks[n].reshape(-1) if n in ctx.masks else torch.ones(p.numel(), dtype=bool)
                for n, p in self.params.items()
            ]
        ).to(ctx.device)
        groups = torch.cat(
            [
                torch.full((p.numel(),), ctx.groups.index(n), dtype=torch.long)
                for n, p in self.params.items()
            ]
        ).to(ctx.device)
        shapes = {n: p.shape for n, p in self.params.items()}
        self.blocks = [FullBlock(h, theta, active, groups, shapes)]

    def score_samples(self, alpha: Tensor, idx: Tensor, loss: Tensor, leverage: Tensor) -> None:
        """Pass 3: ℓ_i and tr(P⁻¹H_i) for the samples ``idx``, written into the outputs."""
        ctx = self.ctx
        (block,) = self.blocks
        p_inv = block.inverse(alpha)
        for rows, xb, yb, _ in ctx.batches(idx, None):
            j = self.jac(self.params, xb).double()
            with torch.no_grad():
                logits = to_logits(ctx.model(xb))
            loss[rows] = per_sample_nll(logits, yb, ctx.cfg).double().cpu()
            lam = output_hessian(logits.double(), yb, ctx.cfg)
            leverage[rows] = block.leverage(j, lam, p_inv).cpu()
