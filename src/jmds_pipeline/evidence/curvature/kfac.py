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

Per-sample leverage tr(P⁻¹H_i), H_i = Σ_k ω_k ψ_ik ψ_ikᵀ with ψ_ik = Σ_r g_irk a_irᵀ:

- ``exact``: the formula above on each ψ_ik, computed in the eigenbasis from the rotated
  inputs ã = aV (once per sample, shared by all k) and gradients g̃ = gU, or by forming ψ
  first when R·d_in² is the larger cost (wide convs, many positions);
- ``kron``: the per-sample analogue of K-FAC "expand", H_i ≈ A_i ⊗ G_i with
  A_i = Σ_r a_ir a_irᵀ / R and G_i = Σ_k ω_k Σ_r g_irk g_irkᵀ, so
  tr(P⁻¹H_i) ≈ Σ_qp W_qp (Σ_k ω_k Σ_r g̃_irkq²) (Σ_r ã_irp² / R): no per-sample d_out×d_in
  matrix and no cross-position terms. Identical to ``exact`` for R = 1 (Linear layers);
  used on a layer only where it is cheaper than ``exact`` (else ``exact`` is used there).

- ``lowrank`` (approximation, opt-in, ``leverage_rank`` = k): both routes above cost
  R·d_in² per sample for the rotated inputs aV, more than the layer's forward
  (R·d_in·d_out) when d_in > d_out, as in most convs. This route projects only on A's top
  k eigenvectors V_k and gives the rest of A's spectrum one eigenvalue, the mean λ̄ of the
  others: the exact leverage of P̃ = Ã ⊗ G + αI, Ã = V_k Λ_k V_kᵀ + λ̄ (I − V_k V_kᵀ) (A's
  trace kept). X = Uᵀψ V's mass outside the top columns is ‖(Uᵀψ)_q‖² − Σ_{p≤k} X_qp² per
  row, from the R × R Gram matrix a aᵀ (R·d_in·k + R²·d_in) or from Uᵀψ itself
  (R·d_in·d_out + d_out·d_in·k), whichever is cheaper. Bracketed by the same sum with λ̄ =
  the largest left-out eigenvalue (below) and λ̄ = 0 (above). Used on a layer only where it
  is cheaper than the exact routes; on masked layers (``masked_lowrank``, (ψ⊙M) in place
  of ψ) where it is cheaper than ``sparse``/``dense``. log det P, diag(P⁻¹) and the weight
  scores stay exact: only tr(P⁻¹H_i) is approximated. Errors: benchmarks/evidence.py.
  Layers with d_out > d_in (GPT-2's c_attn and c_fc) pay on G's side instead (R·d_out² for
  gU, R·d_out·d_in for ψ): the same approximation on G (``lowrank_g_gram``,
  ``lowrank_g_psi``: G's top k eigenvectors U_k, the mean for the rest) is then an option.

Masked layers whose active set is rectangular (whole rows R × columns C: channel masks) keep
the Kronecker form, P_S = A_CC ⊗ G_RR + αI, and their log det is exact from the eigenvalues
of the two sub-factors (``evidence.units``). Other masked layers (active set S): log det P_S
is bounded above both by the Schur-complement form
log det P + Σ_{j∉S} log [P⁻¹]_jj (Hadamard's inequality applied to (P⁻¹)_{S̄S̄} = (P/P_SS)⁻¹; exact
when one weight is removed) and by the direct form Σ_{j∈S} log P_jj (Hadamard on P_S; exact
when S is empty, so a fully pruned layer contributes 0); we take the smaller (tighter) bound.
Their leverage is ψ_Sᵀ (P⁻¹)_SS ψ_S = Σ_qp W_qp (Uᵀ (ψ⊙M) V)_qp², ψ⊙M the masked ψ
(``masked_leverage`` selects how):

- ``sparse`` (default, exact): row o of (ψ⊙M) V is ψ_o,S_o V_S_o,: — only the row's active
  inputs S_o are multiplied, as one batched GEMM over rows against the gathered rows of V
  (padded to the longest row, s = max_o |S_o|); then Uᵀ from the left and W. Per sample and
  backward vector: R·d_in·d_out (ψ) + d_out·s·d_in + d_out²·d_in, against
  R·d_in·d_out + d_out·d_in·(d_in + d_out) for ``dense``; equal to it for s = d_in. The
  gathered V (d_out·s·d_in elements) is kept per layer up to ``SPARSE_MAX_GATHERED``, else
  gathered a block of rows at a time in each chunk;
- ``dense`` (exact, the former route): the whole masked ψ rotated, Uᵀ (ψ⊙M) V;
- ``diag`` (approximation, opt-in): (1 − ρ) Σ_{j∈S} (P⁻¹)_jj ψ_j² on layers whose active
  fraction ρ = |S| / (d_out·d_in) is at most ``DIAG_MAX_ACTIVE`` (the exact ``sparse`` route
  on the others): R·d_in·d_out + d_in·d_out. Why (1 − ρ): for a mask independent of ψ,
  E_S[ψ_Sᵀ (P⁻¹)_SS ψ_S] = ρ² ψᵀP⁻¹ψ + ρ(1 − ρ) Σ_j (P⁻¹)_jj ψ_j² and
  E_S[Σ_{j∈S} (P⁻¹)_jj ψ_j²] = ρ Σ_j (P⁻¹)_jj ψ_j²; gradients lie where the curvature is
  high, so ψᵀP⁻¹ψ is a small part of Σ_j (P⁻¹)_jj ψ_j² (0.05–0.15 of it on the MNIST-1D
  CNN's layers) and the ρ² term, which would cost the unmasked leverage, is dropped. That fails as
  ρ → 1 (hence the cap). The raw diagonal sum overestimates the exact value ~1/(1 − ρ)-fold.
  Measured against the exact route (benchmarks/cost.py, ``masked``; tests/evidence), not
  bounded.

Peak memory per layer: A, G, V, U in float64 = 16 (d_in² + d_out²) bytes, plus W and
diag(P⁻¹) (16 d_out d_in) when scoring, plus per-sample chunks c · K · d_out · d_in (c from
``chunk_elements``) for the exact leverage of weight-shared or masked layers.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .capture import Handler

# largest active fraction of a layer on which ``masked_leverage="diag"`` approximates (above
# it the dropped ρ² ψᵀP⁻¹ψ term matters: per-layer relative errors 0.1–0.3 at ρ = 0.75 and
# 0.3–0.6 at ρ = 0.9 on the MNIST-1D CNN of benchmarks/, against 0.02–0.2 for ρ ≤ 0.6 on its
# 161- and 321-input layers, random and magnitude masks; its 6-input first conv: up to 0.55)
DIAG_MAX_ACTIVE = 0.6
# largest gathered V (d_out·s·d_in elements) of the ``sparse`` route held at once: a layer
# within it keeps its gathered V for the whole sample pass (≤ 16 MiB in float32; the CNNs
# here: ≤ 0.6 M elements per layer); a larger one gathers blocks of rows per chunk instead
SPARSE_MAX_GATHERED = 1 << 22
# most row groups (one batched GEMM each) of the ``sparse`` route; see ``_row_groups``
SPARSE_ROW_GROUPS = 4


@dataclass
class KronBlock:
    """One K-FAC layer: factors, eigendecomposition, parameters and mask in matrix view."""

    handler: Handler
    A: Tensor  # (d_in, d_in) float64, running sum until ``finalise``
    G: Tensor  # (d_out, d_out) float64
    theta: Tensor  # (d_out, d_in) float64, masked entries zeroed
    mask: Tensor | None = None  # (d_out, d_in) bool; None = all active
    group: int = 0
    lam_a: Tensor | None = None
    lam_g: Tensor | None = None
    V: Tensor | None = None
    U: Tensor | None = None
    # (rows' active column indices (d_out, s), Vᵀ's gathered rows (d_out, s, d_in)), per dtype
    _gathered: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        # An all-ones mask (every prunable layer carries one from the start) is no mask:
        # the unmasked leverage routes are exact for it and far cheaper than "masked".
        mask = self.mask
        if mask is not None and mask.device.type != "meta" and bool(mask.all()):
            self.mask = None

    # ---- protocol (``block.CurvatureBlock``) ----
    def group_stats(self, sq_norm: Tensor, num_active: Tensor) -> None:
        sq_norm[self.group] += float(self.theta.pow(2).sum())
        num_active[self.group] += int(self.theta.numel() if self.mask is None else self.mask.sum())

    @property
    def param_names(self) -> list[str]:
        return list(self.handler.params.values())

    def prior_of(self, alpha: Tensor) -> Tensor:
        return alpha[self.group].to(self.theta.device)

    def to_params(self, view: Tensor) -> dict[str, Tensor]:
        return self.handler.from_matrix(view)

    def diag_h(self) -> Tensor:
        """K-FAC diagonal of H, G_oo A_ii, shape (d_out, d_in)."""
        return torch.outer(torch.diagonal(self.G), torch.diagonal(self.A))

    def diag_inv(self, alpha: Tensor) -> Tensor:
        return self._diag_inv(self.prior_of(alpha))

    def _diag_inv(self, a: Tensor) -> Tensor:
        """diag(P⁻¹) = (U∘U) W (V∘V)ᵀ, shape (d_out, d_in); a the layer's 0-d α."""
        w = 1.0 / (self._eig_outer() + a)
        return (self.U * self.U) @ w @ (self.V * self.V).t()

    def logdet(self, alpha: Tensor) -> Tensor:
        """log det P_S (exact for rectangular masks, else the bound above), float64 0-d CPU."""
        a = self.prior_of(alpha)
        full = torch.log(self._eig_outer() + a).sum()
        if self.mask is None or bool(self.mask.all()):
            return full.cpu()
        sub = self._rectangle_eigvals()
        if sub is not None:
            return kron_logdet(sub[0], sub[1], a).cpu()
        direct = torch.log(self.diag_h()[self.mask] + a).sum()
        schur = full + torch.log(self._diag_inv(a)[~self.mask]).sum()
        return torch.minimum(direct, schur).cpu()

    # ---- curvature pass ----
    def accumulate_a(self, a: Tensor, w: Tensor, scale: float = 1.0) -> None:
        """a: (b, R, d_in), w: (b,) sample weights; adds scale · Σ_i w_i Σ_r a aᵀ / R."""
        self.A += _weighted_gram(a, w * (scale / a.shape[1]))

    def accumulate_g(self, g: Tensor, w: Tensor) -> None:
        """g: (K, b, R, d_out), w: (K, b) = sample weight × ω_k; adds Σ_ik w_ik Σ_r g gᵀ."""
        self.G += _weighted_gram(g, w)

    def finalise(self, total_weight: float) -> None:
        """Normalise A by Σ w and eigendecompose both factors in float64."""
        self.A = self.A / max(total_weight, 1e-300)
        self.lam_a, self.V = _eigh(self.A)
        self.lam_g, self.U = _eigh(self.G)

    def _eig_outer(self) -> Tensor:
        return torch.outer(self.lam_g, self.lam_a)

    def _rectangle_eigvals(self) -> tuple[Tensor, Tensor] | None:
        """Eigenvalues of A_CC and G_RR when the mask is rows R × columns C, else None;
        cached (the α optimisation calls ``logdet`` many times)."""
        if not hasattr(self, "_rect_cache"):
            rect = rectangle(self.mask)
            self._rect_cache = None
            if rect is not None:
                rows, cols = rect
                lam_a = _eigh(self.A[cols][:, cols])[0]
                lam_g = _eigh(self.G[rows][:, rows])[0]
                self._rect_cache = (lam_a, lam_g)
        return self._rect_cache

    # ---- sample pass ----
    def leverage_cost(
        self, r: int, k: int, mode: str, masked: str = "sparse", rank: int = 0
    ) -> tuple[str, int]:
        """(method, multiply-adds per sample) of the leverage of one call; see the module doc.

        ``mode``: the ``leverage`` setting; ``masked``: the ``masked_leverage`` setting (used
        only when the layer has a mask); ``rank``: the ``leverage_rank`` setting (read only
        with ``mode="lowrank"``, which takes a low-rank route only where it is cheaper).
        """
        d_in, d_out = self.A.shape[0], self.G.shape[0]
        low = mode == "lowrank" and 0 < rank < d_in
        if self.mask is not None:
            psi = r * d_in * d_out
            if masked == "diag" and self._active_fraction() <= DIAG_MAX_ACTIVE:
                return "masked_diag", k * (psi + d_in * d_out)
            if masked == "dense":
                exact = ("masked_dense", k * (psi + d_out * d_in * (d_in + d_out)))
            else:
                area, rows = self._sparse_work()
                exact = ("masked", k * (psi + area * d_in + rows * d_out * d_in))
            if low:
                lowrank = k * (psi + d_out * d_out * d_in + d_out * d_in * rank)
                if lowrank < exact[1]:
                    return "masked_lowrank", lowrank
            return exact
        rotate = r * d_in * d_in + k * r * d_out * d_out
        options = {
            "rotate": rotate + k * r * d_in * d_out,
            "matrix": k * (r * d_in * d_out + d_out * d_in * (d_in + d_out)),
        }
        if r == 1 or mode == "kron":
            options["kron"] = rotate + d_in * d_out
        if r == 1:  # rank one: kron is exact and cheapest
            return "kron", options["kron"]
        if low:
            gt = k * r * d_out * d_out  # g rotated by U
            options["lowrank_gram"] = (gt + r * d_in * rank + r * r * d_in
                                       + k * (r * d_out * rank + r * r * d_out))
            options["lowrank_psi"] = gt + k * (r * d_out * d_in + d_out * d_in * rank)
        if mode == "lowrank" and 0 < rank < d_out:  # G's side, for layers with d_out > d_in
            at = r * d_in * d_in  # a rotated by V (shared by the K vectors)
            options["lowrank_g_gram"] = at + k * (r * d_out * rank + r * rank * d_in
                                                  + r * r * d_out + r * r * d_in)
            options["lowrank_g_psi"] = at + k * (r * d_out * d_in + d_out * d_in * rank)
        best = min(options, key=options.get)
        return best, options[best]

    def leverage(
        self, a: Tensor, g: Tensor, wk: Tensor, alpha: Tensor, method: str, rank: int = 0
    ) -> Tensor:
        """Σ_k w_k ψ_ikᵀ P⁻¹ ψ_ik (or its ``kron``/low-rank approximation) per sample, (b,).

        a (b, R, d_in); g (K, b, R, d_out); wk (K, b) = ω_k (× sample weight); α
        (n_groups,); ``method`` (and ``rank``, for the low-rank routes) from
        ``leverage_cost``.
        """
        dt = a.dtype
        if method in ("lowrank_gram", "lowrank_psi", "masked_lowrank"):
            return self.lowrank_leverage(a, g, wk.to(dt), alpha, rank, method)
        if method in ("lowrank_g_gram", "lowrank_g_psi"):
            return self.lowrank_g_leverage(a, g, wk.to(dt), alpha, rank, method)
        w = (1.0 / (self._eig_outer() + self.prior_of(alpha))).to(dt)
        U, V = self.U.to(dt), self.V.to(dt)
        if method == "kron":
            at2 = (a @ V).pow(2).mean(1)  # (b, d_in): diag of Vᵀ A_i V
            gt2 = torch.einsum("kb,kbq->bq", wk.to(dt), (g @ U).pow(2).sum(2))
            return ((gt2 @ w) * at2).sum(-1)
        if method == "rotate":
            rotated = torch.einsum("kbrq,brp->kbqp", g @ U, a @ V)
            return torch.einsum("kb,kbqp->b", wk.to(dt), rotated * rotated * w)
        psi = torch.einsum("kbro,bri->kboi", g, a)
        if method == "masked":
            return self._sparse_masked(psi, wk.to(dt), w, U)
        if method == "masked_diag":
            d = (1.0 - self._active_fraction()) * self._diag_inv(self.prior_of(alpha)) * self.mask
            # in place: an einsum here permuted ψ² into a copy, the slowest step of the route
            per = psi.square_().mul_(d.to(dt)).sum((2, 3))
            return (wk.to(dt) * per).sum(0)
        if method == "masked_dense":
            psi = psi * self.mask.to(dt)
        rotated = U.t() @ psi @ V
        return torch.einsum("kb,kbqp->b", wk.to(dt), rotated * rotated * w)

    def lowrank_leverage(
        self,
        a: Tensor,
        g: Tensor,
        wk: Tensor,
        alpha: Tensor,
        rank: int,
        method: str = "lowrank_psi",
        tail_eigenvalue: Tensor | float | None = None,
    ) -> Tensor:
        """Σ_k w_k Σ_qp W̃_qp X_qp², X = Uᵀ ψ_k V (ψ⊙M on masked layers; ``method``:
        ``lowrank_gram``, ``lowrank_psi`` or ``masked_lowrank``, the same number).

        A's eigenvalues outside its top ``rank`` are replaced by one value λ̄
        (``tail_eigenvalue``; default their mean), so only the top eigenvectors are
        projected on: the exact leverage of P̃ = Ã ⊗ G + αI with
        Ã = V_k Λ_k V_kᵀ + λ̄ (I − V_k V_kᵀ) (for the mean, the same trace as A). Since the
        weight 1/(λ^G_q λ + α) falls with λ, λ̄ = the largest tail eigenvalue gives a lower
        bound of the exact leverage and λ̄ = 0 an upper one.
        """
        dt = a.dtype
        top, w_head, w_tail = _truncated_weights(self.lam_a, self.lam_g, rank, tail_eigenvalue,
                                                 self.prior_of(alpha), dt)
        U, v_top = self.U.to(dt), self.V[:, top].to(dt)
        if method == "lowrank_gram":
            gt = g @ U  # (K, b, R, d_out)
            x = torch.einsum("kbrq,brp->kbqp", gt, a @ v_top)  # X's top columns
            gram = a @ a.transpose(1, 2)  # (b, R, R): ‖(Uᵀψ)_q‖² = g̃_qᵀ (a aᵀ) g̃_q
            row_sq = ((gram @ gt) * gt).sum(-2)
        else:
            if method == "masked_lowrank":
                psi = torch.einsum("kbro,bri->kboi", g, a) * self.mask.to(dt)
                y = U.t() @ psi
            else:
                y = torch.einsum("kbrq,bri->kbqi", g @ U, a)  # Uᵀψ
            x = y @ v_top
            row_sq = y.square().sum(-1)
        return _truncated_sum(x, row_sq, w_head, w_tail, wk)

    def lowrank_g_leverage(
        self,
        a: Tensor,
        g: Tensor,
        wk: Tensor,
        alpha: Tensor,
        rank: int,
        method: str = "lowrank_g_psi",
        tail_eigenvalue: Tensor | float | None = None,
    ) -> Tensor:
        """``lowrank_leverage`` on G's side (unmasked layers): G's eigenvalues outside its
        top ``rank`` replaced by λ̄ (default their mean), the exact leverage of
        P̃ = A ⊗ G̃ + αI, G̃ = U_k Λ_k U_kᵀ + λ̄ (I − U_k U_kᵀ); bracketed the same way.
        X = Uᵀ ψ V's mass outside the top rows is ‖(ψV)_p‖² − Σ_{q≤k} X_qp² per column,
        from the R × R Gram matrix g gᵀ (``lowrank_g_gram``) or from ψV (``lowrank_g_psi``).
        """
        dt = a.dtype
        top, w_head, w_tail = _truncated_weights(self.lam_g, self.lam_a, rank, tail_eigenvalue,
                                                 self.prior_of(alpha), dt)
        at = a @ self.V.to(dt)  # (b, R, d_in)
        u_top = self.U[:, top].to(dt)
        if method == "lowrank_g_gram":
            x = torch.einsum("kbrq,brp->kbqp", g @ u_top, at)  # X's top rows
            gram = g @ g.transpose(-1, -2)  # (K, b, R, R): ‖(ψV)_p‖² = ã_pᵀ (g gᵀ) ã_p
            col_sq = ((gram @ at) * at).sum(-2)
        else:
            y = torch.einsum("kbro,brp->kbop", g, at)  # ψV
            x = u_top.t() @ y
            col_sq = y.square().sum(-2)
        # columns of X play the part of rows: Xᵀ = Vᵀ ψᵀ U
        return _truncated_sum(x.transpose(-1, -2), col_sq, w_head, w_tail, wk)

    def _active_fraction(self) -> float:
        """ρ = |S| / (d_out·d_in); 0 on ``meta`` (no values: the requested route's cost)."""
        if self.mask.device.type == "meta":
            return 0.0
        return float(self.mask.double().mean())

    def _sparse_work(self) -> tuple[int, int]:
        """(padded area Σ_g n_g·s_g of the row groups, rows with an active entry): the
        ``sparse`` route's per-sample work is d_in·area + rows·d_out·d_in (on ``meta``, no
        values: the whole layer)."""
        if self.mask.device.type == "meta":
            return self.G.shape[0] * self.A.shape[0], self.G.shape[0]
        groups = self._row_groups(self.mask.device)
        return (sum(idx.numel() for _, idx, _ in groups),
                sum(rows.numel() for rows, _, _ in groups))

    def _row_groups(self, device: torch.device) -> list[tuple[Tensor, Tensor, Tensor]]:
        """The rows with an active entry, in at most ``SPARSE_ROW_GROUPS`` groups of similar
        width: per group (rows, idx, live), idx[t] = row rows[t]'s active columns first
        (padded with inactive ones to the group's widest row), live[t, u] = slot u is active.
        The groups minimise the padded area (evidence-chosen masks leave some rows whole and
        others nearly empty, so one width for all rows did up to twice the work)."""
        key = ("rows", str(device))
        if key not in self._gathered:
            mask = self.mask.to(device)
            count = mask.sum(1)
            order = torch.argsort(count, stable=True)
            order = order[count[order] > 0]  # empty rows: (ψ⊙M)_o = 0, nothing to multiply
            groups = []
            for part in _width_groups(count[order], SPARSE_ROW_GROUPS):
                rows = order[part]
                width = int(count[rows].max())
                # stable sort puts each row's active columns first, in their original order
                idx = torch.argsort((~mask[rows]).to(torch.int8), dim=1, stable=True)[:, :width]
                live = torch.arange(width, device=device) < count[rows, None]
                groups.append((rows, idx, live))
            self._gathered[key] = groups
        return self._gathered[key]

    def _gathered_v(self, group: int, rows: slice, device: torch.device, dt: torch.dtype
                    ) -> Tensor:
        """Vg[t, u] = V[idx[t, u]] on live slots, 0 on padding, for the rows ``rows`` of
        group ``group``, so ψ_o,idx[t] @ Vg[t] is (ψ⊙M)_o V exactly; a whole group's is kept
        once built when it is within ``SPARSE_MAX_GATHERED``."""
        _, idx, live = self._row_groups(device)[group]
        whole = rows == slice(0, idx.shape[0])
        whole = whole and idx.numel() * self.V.shape[0] <= SPARSE_MAX_GATHERED
        key = ("v", group, str(device), dt)
        if whole and key in self._gathered:
            return self._gathered[key]
        vg = self.V.to(device=device, dtype=dt)[idx[rows]] * live[rows, :, None].to(dt)
        if whole:
            self._gathered[key] = vg
        return vg

    def _sparse_masked(self, psi: Tensor, wk: Tensor, w: Tensor, U: Tensor) -> Tensor:
        """Σ_k w_k Σ_qp W_qp (Uᵀ (ψ_k⊙M) V)_qp² from each row's active entries only."""
        k, b, d_out, d_in = psi.shape
        groups = self._row_groups(psi.device)
        live_rows = sum(rows.numel() for rows, _, _ in groups)
        if live_rows == 0:  # fully pruned layer: ψ⊙M = 0
            return psi.new_zeros(b)
        flat = psi.reshape(k * b, d_out * d_in)
        # (ψ⊙M) V of every row with an active entry, group after group, then one Uᵀ product:
        # a Uᵀ product per group rewrote the whole d_out × Kb × d_in result each time
        y = psi.new_zeros(live_rows, k * b, d_in)  # zeros: a row left unwritten shows
        done = 0
        for group, (rows, idx, _) in enumerate(groups):
            n, width = idx.shape
            step = max(1, SPARSE_MAX_GATHERED // (width * d_in))  # rows whose Vg is held
            entries = (rows[:, None] * d_in + idx).reshape(-1)  # into ψ's flattened rows
            for o in range(0, n, step):
                blk = slice(o, min(o + step, n))
                picked = flat.index_select(1, entries[blk.start * width: blk.stop * width])
                picked = picked.reshape(k * b, blk.stop - blk.start, width).transpose(0, 1)
                vg = self._gathered_v(group, blk, psi.device, psi.dtype)
                torch.bmm(picked, vg, out=y[done: done + vg.shape[0]])
                done += vg.shape[0]
        order = torch.cat([rows for rows, _, _ in groups])
        z = (U[order].t() @ y.reshape(live_rows, -1)).reshape(d_out, k * b, d_in)
        # in place, then one reduction: einsum's per-q matrix-vector products and fresh
        # temporaries were each ~3× slower on the MNIST-1D CNN (CPU)
        per = z.square_().mul_(w[:, None, :]).sum((0, 2))
        return (wk * per.reshape(k, b)).sum(0)


def _width_groups(widths: Tensor, most: int) -> list[slice]:
    """Split ascending ``widths`` into at most ``most`` consecutive groups that minimise
    Σ_g len(g)·max(g) (each group is padded to its widest row); exact, by dynamic
    programming over the distinct widths."""
    if widths.numel() == 0:
        return []
    distinct, counts = torch.unique_consecutive(widths.cpu().double(), return_counts=True)
    ends = counts.cumsum(0).double()  # ends[j]: one past the last row of width ≤ distinct[j]
    m = distinct.numel()
    # cost[j]: least area covering the rows up to ends[j] with the groups so far
    cost = ends * distinct
    back: list[list[int]] = []
    for _ in range(1, min(most, m)):
        new, arg = cost.clone(), [-1] * m  # -1: no further cut, as with one group fewer
        for j in range(1, m):
            # last group = the rows after ends[i], padded to distinct[j]
            c = cost[:j] + (ends[j] - ends[:j]) * distinct[j]
            i = int(torch.argmin(c))
            if c[i] < new[j]:
                new[j], arg[j] = c[i], i
        cost = new
        back.append(arg)
    cuts, j = [int(ends[-1])], m - 1
    for arg in reversed(back):
        if arg[j] >= 0:
            j = arg[j]
            cuts.append(int(ends[j]))
    cuts.reverse()
    return [slice(s, e) for s, e in itertools.pairwise([0, *cuts])]


def _truncated_weights(
    lam: Tensor, other: Tensor, rank: int, given: Tensor | float | None, prior: Tensor,
    dt: torch.dtype,
) -> tuple[slice, Tensor, Tensor]:
    """The low-rank routes' weights for the factor with eigenvalues ``lam`` (ascending)
    kept to its top ``rank`` and the other factor's ``other``: (the top eigenpairs' slice,
    W_head = 1/(other ⊗ λ_top + α) of shape (len(other), rank), W_tail = 1/(other·λ̄ + α))."""
    rank = min(rank, lam.numel())
    top = slice(lam.numel() - rank, lam.numel())  # eigh sorts ascending: the top come last
    lam_bar = _tail_eigenvalue(lam, rank, given)
    w_head = (1.0 / (torch.outer(other, lam[top]) + prior)).to(dt)
    w_tail = (1.0 / (other * lam_bar + prior)).to(dt)
    return top, w_head, w_tail


def _truncated_sum(x: Tensor, full_sq: Tensor, w_head: Tensor, w_tail: Tensor, wk: Tensor
                   ) -> Tensor:
    """Σ_k w_k [Σ W_head X² + Σ_rows W_tail (‖row‖² − Σ_top X²)] per sample: ``x`` (K, b,
    rows, rank) the rows' projections on the kept eigenvectors, ``full_sq`` (K, b, rows)
    each row's whole squared norm, so the mass outside the top is their difference."""
    head = x.square()
    tail = (full_sq - head.sum(-1)).clamp_min(0.0)  # ≥ 0 up to rounding
    per = (head * w_head).sum((-2, -1)) + tail @ w_tail
    return (wk * per).sum(0)


def _tail_eigenvalue(lam: Tensor, rank: int, given: Tensor | float | None) -> Tensor:
    """λ̄ of a low-rank route: ``given``, else the mean of the eigenvalues (ascending) below
    the top ``rank``; 0 when there is no tail (full rank: its zero mass takes any weight)."""
    if given is not None:
        return torch.as_tensor(given, dtype=lam.dtype)
    rest = lam[: lam.numel() - rank]
    return rest.mean() if rest.numel() else lam.new_zeros(())


def _weighted_gram(x: Tensor, w: Tensor) -> Tensor:
    """Σ_i w_i Σ_r x_ir x_irᵀ in float64 for x (*w.shape, R, d): equal weights (the usual
    case: rescaled kept samples, one MC draw) scale the product instead of a copy of x."""
    flat = x.reshape(-1, x.shape[-1])
    first = w.reshape(-1)[:1]
    if bool((w == first).all()):
        return (flat.t() @ flat).double() * float(first)
    xw = (x * w.sqrt()[..., None, None]).reshape(-1, x.shape[-1])
    return (xw.t() @ xw).double()


def rectangle(mask: Tensor | None) -> tuple[Tensor, Tensor] | None:
    """(rows, cols) bool vectors if ``mask`` is exactly their outer product, else None."""
    if mask is None:
        return None
    rows, cols = mask.any(1), mask.any(0)
    if not bool(torch.equal(mask, rows[:, None] & cols[None, :])):
        return None
    return rows, cols


def kron_logdet(lam_a: Tensor, lam_g: Tensor, alpha: Tensor) -> Tensor:
    """log det(A ⊗ G + αI) from the factors' eigenvalues (0 for an empty factor)."""
    if lam_a.numel() == 0 or lam_g.numel() == 0:
        return alpha.new_zeros(()) * alpha
    return torch.log(torch.outer(lam_g, lam_a) + alpha).sum()


def _eigh(mat: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric eigendecomposition in float64, eigenvalues clamped at 0 (PSD by construction)."""
    mat = 0.5 * (mat + mat.t())
    try:
        lam, vec = torch.linalg.eigh(mat)
    except RuntimeError:  # ill-conditioned: retry with a relative jitter
        jitter = 1e-10 * float(mat.diagonal().abs().max().clamp_min(1e-30))
        lam, vec = torch.linalg.eigh(mat + jitter * torch.eye(len(mat), dtype=mat.dtype))
    return lam.clamp_min(0.0), vec
