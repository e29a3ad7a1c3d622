"""Unit (group) scores under K-FAC: the change of log Z when a whole output unit goes.

A K-FAC layer's precision is P = A ⊗ G + αI over the matrix view ψ = [W | b]
(``curvature.kfac``). Removing output unit k (row k of ψ: its weights and its bias) removes
index k of G; removing input unit c (a column) removes index c of A. When the active set is
*rectangular* — rows R × columns C, as whole-channel masks are — the masked precision stays
Kronecker,

    P_S = A_CC ⊗ G_RR + αI,    log det P_S = Σ_pq log(λ^A_p λ^G_q + α)

from the eigenvalues of the two sub-factors: exact under K-FAC, where element masks only
have the Schur/Hadamard bounds. The score of unit k ∈ R (higher = cheaper to remove):

    Δ_k = fit_k − ½ [log det P_{S∖k} − log det P_S] − ½ |C| log α

with S∖k = (R∖{k}) × C and, for the fit, θ_k the row's active entries:

    diag:         fit_k = −½ θ_kᵀ (G_kk A_CC + αI) θ_k        (no compensation; = −½ θ_gᵀ P_gg θ_g)
    obs:          fit_k = −½ θ_kᵀ [(P_S⁻¹)_kk]⁻¹ θ_k           (block OBS: the rest re-fits)
    first_order:  fit_k = −Σ_j |θ_kj| G_kk A_jj / N_s           (the paper's saliency, summed)

(P_S⁻¹)_kk = V diag_p(Σ_q U_kq² / (λ^A_p λ^G_q + α)) Vᵀ with V, U the eigenvectors of A_CC
and G_RR. The diag fit is the change of the log joint −½θᵀPθ-model at a mode (∇ℓ = −αθ):
removing θ_g there costs exactly −½ θ_gᵀ P_gg θ_g under the quadratic model.

The columns that read a removed unit in the *next* layer are not part of its score: after
the unit is gone they see a zero input, so their A rows vanish and their Occam term
log(0·λ^G + α) − log α is 0, and their fit is the unit's own (block-diagonal K-FAC would
count it twice). They are masked along with the unit (``sparsity.channels``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from .curvature.kfac import KronBlock, _eigh, kron_logdet, rectangle

# Largest batch of (n−1)² sub-factors eigendecomposed at once (elements), ~80 MB float64.
_EIG_CHUNK = 10_000_000


def _sub(mat: Tensor, keep: Tensor) -> Tensor:
    return mat[keep][:, keep]


def rectangle_eigs(
    block: KronBlock, rows: Tensor, cols: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(λ^A, V) of A_CC and (λ^G, U) of G_RR, float64."""
    rows, cols = rows.to(block.A.device), cols.to(block.A.device)
    lam_a, v = _eigh(_sub(block.A, cols))
    lam_g, u = _eigh(_sub(block.G, rows))
    return lam_a, v, lam_g, u


def leave_one_out_eigvals(mat: Tensor) -> Tensor:
    """(n, n−1): the eigenvalues of ``mat`` with row and column k removed, for every k."""
    n = mat.shape[0]
    if n <= 1:
        return mat.new_zeros(n, 0)
    keep = torch.ones(n, n, dtype=torch.bool, device=mat.device)
    keep.fill_diagonal_(False)
    index = torch.nonzero(keep)[:, 1].reshape(n, n - 1)  # row k: every index but k
    out = []
    step = max(1, _EIG_CHUNK // (n * n))
    sym = 0.5 * (mat + mat.t())
    for start in range(0, n, step):
        idx = index[start : start + step]
        sub = sym[idx[:, :, None], idx[:, None, :]]
        out.append(torch.linalg.eigvalsh(sub).clamp_min(0.0))
    return torch.cat(out)


def unit_scores(
    block: KronBlock, alpha: Tensor, kind: str, num_data: float = 1.0
) -> tuple[Tensor, dict[str, Tensor]]:
    """Δ_k for every output unit of a K-FAC layer, shape (d_out,) float64 (+inf where the
    unit is already removed), and its parts {"fit", "occam"}.

    The layer's mask must be rectangular (whole rows and columns); element masks have no
    Kronecker-structured masked precision and are refused.
    """
    a = block.prior_of(alpha)
    d_out, d_in = block.theta.shape
    if block.mask is None:
        rows = torch.ones(d_out, dtype=torch.bool)
        cols = torch.ones(d_in, dtype=torch.bool)
    else:
        rect = rectangle(block.mask.cpu())
        if rect is None:
            raise ValueError(
                f"unit scores of {block.handler.module_name!r} need a mask of whole rows and "
                "columns (channel granularity); this layer has element-wise masks"
            )
        rows, cols = rect
    fit = torch.full((d_out,), math.inf, dtype=torch.float64)
    occam = torch.full((d_out,), math.inf, dtype=torch.float64)
    if not bool(rows.any()) or not bool(cols.any()):
        return fit + occam, {"fit": fit, "occam": occam}
    lam_a, v, lam_g, u = rectangle_eigs(block, rows, cols)
    dev = lam_a.device
    rows_d, cols_d = rows.to(dev), cols.to(dev)
    a_cc = _sub(block.A, cols_d)
    g_rr = _sub(block.G, rows_d)
    theta = block.theta[rows_d][:, cols_d].double()  # (|R|, |C|)
    base = kron_logdet(lam_a, lam_g, a)
    loo = leave_one_out_eigvals(g_rr)  # (|R|, |R|−1)
    if loo.shape[1] == 0:
        new = a.new_zeros(loo.shape[0])
    else:
        new = torch.log(loo[:, :, None] * lam_a[None, None, :] + a).sum((1, 2))
    occ = -0.5 * (new - base) - 0.5 * cols.sum() * torch.log(a)
    if kind == "first_order":  # the paper's saliency has no Occam term (as for weights)
        occ = torch.zeros_like(occ)
    if kind == "diag":
        quad = torch.einsum("ki,ij,kj->k", theta, a_cc, theta)
        f = -0.5 * (torch.diagonal(g_rr) * quad + a * theta.pow(2).sum(1))
    elif kind == "obs":
        w = (u * u) @ (1.0 / (torch.outer(lam_g, lam_a) + a))  # (|R|, |C|): Σ_q U_kq² / (…)
        rot = theta @ v  # (Vᵀ θ_k)_p per row
        f = -0.5 * (rot.pow(2) / w).sum(1)
    elif kind == "first_order":
        f = -(theta.abs() * torch.outer(torch.diagonal(g_rr), torch.diagonal(a_cc))).sum(1)
        f = f / max(num_data, 1e-300)
    else:
        raise ValueError(f"unknown weight score {kind!r}; accepted: ['diag', 'obs', 'first_order']")
    fit[rows] = f.cpu()
    occam[rows] = occ.detach().cpu()
    return fit + occam, {"fit": fit, "occam": occam}


def block_unit_scores(
    blocks: Iterable[object], kind: str, alpha: Tensor, wanted: Iterable[str], num_data: float
) -> dict[str, Tensor]:
    """Δ_k per output unit (float32, CPU, (d_out,)) of each K-FAC layer whose weight is
    wanted, keyed by the weight's name. Layers on the diagonal backend have none: a caller
    sums their element scores (exact for a diagonal precision)."""
    want = set(wanted)
    out: dict[str, Tensor] = {}
    for b in blocks:
        if not isinstance(b, KronBlock):
            continue
        name = b.handler.params["weight"]
        if name in want:
            out[name] = unit_scores(b, alpha, kind, num_data)[0].float().cpu()
    return out


def unit_set_scores(
    block: KronBlock,
    alpha: Tensor,
    sets: Sequence[Sequence[int]],
    kind: str = "diag",
    num_data: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Δ_K for removing each *set* K of output units of one K-FAC layer together (float64,
    (len(sets),)): an attention head is the q, k and v units of its columns of GPT-2's
    ``c_attn``. With S = R × C active and K ⊆ R,

        occam_K = −½ [log det(A_CC ⊗ G_{R∖K} + αI) − log det P_S] − ½ |K||C| log α
        diag fit_K = −½ [Σ_{k,k'∈K} G_kk' θ_kᵀ A_CC θ_k' + α ‖θ_K‖²]    (= −½ θ_Kᵀ P_KK θ_K)

    ``first_order`` sums the units' saliencies; ``obs`` (a |K||C|-square inverse per set) is
    not offered here. A set that reaches a removed unit is +inf.
    """
    if kind not in ("diag", "first_order"):
        raise ValueError(
            f"unit-set scores support weight_score 'diag' or 'first_order', not {kind!r}"
        )
    a = block.prior_of(alpha)
    d_out, d_in = block.theta.shape
    rect = (
        rectangle(block.mask.cpu())
        if block.mask is not None
        else (torch.ones(d_out, dtype=torch.bool), torch.ones(d_in, dtype=torch.bool))
    )
    if rect is None:
        raise ValueError(
            f"unit-set scores of {block.handler.module_name!r} need a mask of "
            "whole rows and columns"
        )
    rows, cols = rect
    dev = block.A.device
    a_cc = _sub(block.A, cols.to(dev))
    lam_a = _eigh(a_cc)[0]
    base = kron_logdet(lam_a, _eigh(_sub(block.G, rows.to(dev)))[0], a)
    theta = block.theta[:, cols.to(dev)].double()
    fit = torch.full((len(sets),), math.inf, dtype=torch.float64)
    occam = torch.full((len(sets),), math.inf, dtype=torch.float64)
    for s, units in enumerate(sets):
        k = torch.as_tensor(list(units), dtype=torch.long)
        if k.numel() == 0 or not bool(rows[k].all()):
            continue
        left = rows.clone()
        left[k] = False
        lam_g = _eigh(_sub(block.G, left.to(dev)))[0] if bool(left.any()) else lam_a[:0]
        occam[s] = float(
            -0.5 * (kron_logdet(lam_a, lam_g, a) - base)
            - 0.5 * k.numel() * int(cols.sum()) * torch.log(a)
        )
        th = theta[k.to(dev)]
        g_kk = block.G[k.to(dev)][:, k.to(dev)]
        if kind == "diag":
            cross = th @ a_cc @ th.t()  # θ_kᵀ A θ_k'
            fit[s] = float(-0.5 * ((g_kk * cross).sum() + a * th.pow(2).sum()))
        else:
            sal = th.abs() * torch.outer(torch.diagonal(g_kk), torch.diagonal(a_cc))
            fit[s] = float(-sal.sum() / max(num_data, 1e-300))
            occam[s] = 0.0
    return fit + occam, {"fit": fit, "occam": occam}


def gpt2_head_units(num_heads: int, embed_dim: int) -> list[list[int]]:
    """The output units of GPT-2's ``c_attn`` (q | k | v, each ``embed_dim`` wide) that
    belong to each attention head: head h owns columns h·d_h … (h+1)·d_h − 1 of each."""
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim = {embed_dim} is not divisible by num_heads = {num_heads}")
    width = embed_dim // num_heads
    return [
        [part * embed_dim + h * width + j for part in range(3) for j in range(width)]
        for h in range(num_heads)
    ]
