"""K-FAC blocks: H_l ≈ A_l ⊗ G_l per layer, in the eigenbasis (float64).

Conventions (as curvlinops' KFAC "expand", so laplace-torch's ``kron`` agrees): for a layer
with per-sample inputs a_ir (bias column appended) and output gradients g_irk over R
weight-sharing positions and backward vectors k (weights ω_k, see ``likelihood``),

    A = Σ_i w_i Σ_r a_ir a_irᵀ / (R Σ_i w_i),      G = Σ_i w_i Σ_k ω_k Σ_r g_irk g_irkᵀ,

with w_i the (rescaled) sample weights. The K-FAC matrix view of the layer's parameters is
ψ = [W | b] ∈ R^{d_out×d_in}; entry j = (o, i) has curvature G_oo A_ii.

With G = U diag(λ^G) Uᵀ, A = V diag(λ^A) Vᵀ and P = A⊗G + αI:

    log det P        = Σ_qp log(λ^G_q λ^A_p + α)
    diag(P⁻¹)        = (U∘U) W (V∘V)ᵀ,          W_qp = 1 / (λ^G_q λ^A_p + α)
    ψᵀ P⁻¹ ψ         = Σ_qp (Uᵀ ψ V)_qp² W_qp   (per-sample leverage, no d×d matrix)

Masked layers (active set S): log det P_S is bounded above both by the Schur-complement form
log det P + Σ_{j∉S} log [P⁻¹]_jj (Hadamard's inequality applied to (P⁻¹)_{S̄S̄} = (P/P_SS)⁻¹; exact
when one weight is removed) and by the direct form Σ_{j∈S} log P_jj (Hadamard on P_S; exact
when S is empty, so a fully pruned layer contributes 0); we take the smaller (tighter) bound.

Peak memory per layer: A, G, V, U in float64 = 16 (d_in² + d_out²) bytes, plus W and
diag(P⁻¹) (16 d_out d_in) when scoring, plus per-sample chunks c · d_out · d_in (c =
``leverage_chunk``) for weight-shared or masked layers. No d×d matrix (d = d_out d_in).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .capture import Handler


@dataclass
class KronBlock:
    """One K-FAC layer: factors, eigendecomposition, parameters and mask in matrix view."""

    handler: Handler
    A: Tensor  # (d_in, d_in) float64, running sum until ``finalise``
    G: Tensor  # (d_out, d_out) float64
    theta: Tensor | None = None  # (d_out, d_in) float64
    mask: Tensor | None = None  # (d_out, d_in) bool; None = all active
    group: int = 0
    lam_a: Tensor | None = None
    lam_g: Tensor | None = None
    V: Tensor | None = None
    U: Tensor | None = None

    @property
    def num_active(self) -> int:
        return int(self.theta.numel() if self.mask is None else self.mask.sum())

    @property
    def sq_norm(self) -> Tensor:
        return self.theta.pow(2).sum()

    def accumulate_a(self, a: Tensor, w: Tensor) -> None:
        """a: (b, R, d_in), w: (b,) sample weights; adds Σ_i w_i Σ_r a aᵀ / R."""
        r = a.shape[1]
        aw = (a * (w / r).sqrt().reshape(-1, 1, 1)).reshape(-1, a.shape[-1])
        self.A += (aw.t() @ aw).double()

    def accumulate_g(self, g: Tensor, w: Tensor) -> None:
        """g: (b, R, d_out), w: (b,) = sample weight × ω_k; adds Σ_i w_i Σ_r g gᵀ."""
        gw = (g * w.sqrt().reshape(-1, 1, 1)).reshape(-1, g.shape[-1])
        self.G += (gw.t() @ gw).double()

    def finalise(self, total_weight: float) -> None:
        """Normalise A by Σ w and eigendecompose both factors in float64."""
        self.A = self.A / max(total_weight, 1e-300)
        self.lam_a, self.V = _eigh(self.A)
        self.lam_g, self.U = _eigh(self.G)

    # ---- maths in the eigenbasis (α is a 0-d float64 tensor, differentiable) ----
    def eig_outer(self) -> Tensor:
        return torch.outer(self.lam_g, self.lam_a)

    def diag_h(self) -> Tensor:
        """K-FAC diagonal of H, G_oo A_ii, shape (d_out, d_in)."""
        return torch.outer(torch.diagonal(self.G), torch.diagonal(self.A))

    def diag_inv(self, alpha: Tensor) -> Tensor:
        """diag(P⁻¹) = (U∘U) W (V∘V)ᵀ, shape (d_out, d_in)."""
        w = 1.0 / (self.eig_outer() + alpha)
        return (self.U * self.U) @ w @ (self.V * self.V).t()

    def logdet(self, alpha: Tensor) -> Tensor:
        """log det P_S (masked approximation above), float64 0-d tensor."""
        full = torch.log(self.eig_outer() + alpha).sum()
        if self.mask is None or bool(self.mask.all()):
            return full
        direct = torch.log(self.diag_h()[self.mask] + alpha).sum()
        removed = ~self.mask
        if int(removed.sum()) == 0:
            return full
        schur = full + torch.log(self.diag_inv(alpha)[removed]).sum()
        return torch.minimum(direct, schur)

    def leverage(
        self, a: Tensor, gs: list[tuple[Tensor, Tensor]], alpha: float, chunk: int
    ) -> Tensor:
        """Σ_k w_k ψ_ikᵀ P⁻¹ ψ_ik for ψ_ik = Σ_r g_irk a_irᵀ (masked entries zeroed), shape (b,).

        ``gs``: (g_k, w_k) per backward vector, g_k (b, R, d_out), w_k (b,). The rotation
        Vᵀa (R·d_in² per sample, the dominant cost when d_in ≫ d_out) is shared by all k.
        R = 1 and no mask: rank-one, Σ_qp (Uᵀg)_q² (Vᵀa)_p² W_qp. Otherwise per-sample
        matrices in chunks, rotating positions first or the summed gradient, whichever is
        cheaper.
        """
        dt = a.dtype
        w = (1.0 / (self.eig_outer() + alpha)).to(dt)
        U, V = self.U.to(dt), self.V.to(dt)
        b, r, d_in = a.shape
        d_out = w.shape[0]
        k = len(gs)
        out = a.new_zeros(b)
        if self.mask is None and r == 1:
            at2 = (a[:, 0] @ V).pow(2)
            for g, wk in gs:
                gt = g[:, 0] @ U
                out += wk * ((gt * gt) @ w * at2).sum(-1)
            return out
        cost_rotate = r * d_in * d_in + k * r * (d_out * d_out + d_in * d_out)
        cost_matrix = k * (r * d_in * d_out + d_out * d_in * (d_in + d_out))
        rotate_first = self.mask is None and cost_rotate < cost_matrix
        m = None if self.mask is None else self.mask.to(device=a.device, dtype=dt)
        for s in range(0, b, chunk):
            sl = slice(s, s + chunk)
            ac = a[sl] @ V if rotate_first else a[sl]
            for g, wk in gs:
                if rotate_first:
                    pt = torch.einsum("bro,bri->boi", g[sl] @ U, ac)
                else:
                    psi = torch.einsum("bro,bri->boi", g[sl], ac)
                    if m is not None:
                        psi = psi * m
                    pt = U.t() @ psi @ V
                out[sl] += wk[sl] * (pt * pt * w).sum((1, 2))
        return out


def _eigh(mat: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric eigendecomposition in float64, eigenvalues clamped at 0 (PSD by construction)."""
    mat = 0.5 * (mat + mat.t())
    try:
        lam, vec = torch.linalg.eigh(mat)
    except RuntimeError:  # ill-conditioned: retry with a relative jitter
        jitter = 1e-10 * float(mat.diagonal().abs().max().clamp_min(1e-30))
        lam, vec = torch.linalg.eigh(mat + jitter * torch.eye(len(mat), dtype=mat.dtype))
    return lam.clamp_min(0.0), vec
