"""What the K-FAC evidence engine will allocate and compute for a model, before running it.

Built from the engine's own decisions (``capture.build_handlers`` chooses K-FAC or diagonal
per layer; ``KronBlock.leverage_cost`` chooses the per-sample leverage method), so it
works on a model on the ``meta`` device (no memory, no data) and stays in step with the
engine. ``benchmarks/scale.py`` turns these counts into memory and time at paper scale.

Per K-FAC layer (matrix view d_out × d_in, bias column included): the factors A (d_in²)
and G (d_out²) in float64, then their eigenvectors (as much again) and θ (d_out·d_in).
Per diagonal parameter: the GGN diagonal and θ in float64. The eigendecomposition costs
``EIGH_FLOPS_PER_D3`` · d³ per factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .checks import canonical_names
from .curvature.capture import KRON_KINDS, Handler, build_handlers
from .curvature.kfac import KronBlock

FLOAT64_BYTES = 8
# Symmetric eigendecomposition with eigenvectors: ≈ 4/3 d³ for the tridiagonal reduction,
# 4/3 d³ to accumulate its Householder vectors and ≈ 6 d³ for implicit QR on the
# tridiagonal's vectors (Golub & Van Loan, Matrix Computations, 4th ed., §8.3): c ≈ 9.
# Divide and conquer (LAPACK syevd, cuSOLVER's syevd) usually does less; 9 is the bound.
EIGH_FLOPS_PER_D3 = 9.0


@dataclass(frozen=True)
class LayerFootprint:
    """One parameter-owning module as the engine treats it."""

    module: str
    kind: str  # linear, conv, gpt2, embedding, layernorm, batchnorm
    kron: bool  # K-FAC factors (else diagonal)
    reason: str  # why diagonal ("" for K-FAC layers)
    d_in: int  # K-FAC matrix view (bias column included); 0 for non-K-FAC kinds
    d_out: int
    params: int  # parameters this module's block(s) cover (a shared one counted once)
    factor_bytes: int  # what the curvature pass allocates: A + G, or the GGN diagonals
    state_bytes: int  # factors + eigenvectors + θ (K-FAC), diagonals + θ (diag)
    eigh_flops: float  # eigendecompositions of A and G (0 for diagonal blocks)

    @property
    def max_dim(self) -> int:
        return max(self.d_in, self.d_out)


def _diag_reason(h: Handler, shared: bool, kfac_max_dim: int, kron_allowed: bool) -> str:
    """Why the engine chose the diagonal for ``h`` (descriptive; the choice is the engine's)."""
    if not kron_allowed:
        return "structure is diag"
    if h.kind not in KRON_KINDS:
        return f"{h.kind}: not a Kronecker-factored kind (Linear, Conv, GPT-2 Conv1D)"
    if shared:
        return "weight shared with another module (tied embedding)"
    if h.kind == "conv" and h.module.groups != 1:
        return "grouped convolution"
    if "weight" not in h.params:
        return "no trainable weight"
    return f"factor dimension {max(h.d_in, h.d_out)} > kfac_max_dim = {kfac_max_dim}"


def layer_footprints(
    model: nn.Module, kfac_max_dim: int = 8192, structure: str = "kfac"
) -> list[LayerFootprint]:
    """One entry per parameter-owning module, in ``named_modules`` order."""
    names = canonical_names(model)
    handlers = build_handlers(model, names, structure == "kfac", kfac_max_dim)
    owners: dict[str, int] = {}
    for h in handlers:
        for n in h.params.values():
            owners[n] = owners.get(n, 0) + 1
    sizes = {n: p.numel() for n, p in model.named_parameters() if id(p) in names}
    seen: set[str] = set()
    out = []
    for h in handlers:
        kron_kind = h.kind in KRON_KINDS
        d_in, d_out = (h.d_in, h.d_out) if kron_kind else (0, 0)
        if h.kron:
            params = d_in * d_out
            factors = FLOAT64_BYTES * (d_in**2 + d_out**2)
            state = 2 * factors + FLOAT64_BYTES * params
            eigh = EIGH_FLOPS_PER_D3 * (d_in**3 + d_out**3)
            reason = ""
        else:
            own = [n for n in h.params.values() if n not in seen]  # the engine dedups names
            seen.update(own)
            params = sum(sizes[n] for n in own)
            factors = FLOAT64_BYTES * params
            state = 2 * factors
            eigh = 0.0
            shared = any(owners[n] > 1 for n in h.params.values())
            reason = _diag_reason(h, shared, kfac_max_dim, structure == "kfac")
        out.append(
            LayerFootprint(
                h.module_name, h.kind, h.kron, reason, d_in, d_out, params, factors, state, eigh
            )
        )
    return out


def leverage_method(
    d_in: int, d_out: int, positions: int, vectors: int, masked: bool, mode: str = "exact",
    rank: int = 0,
) -> tuple[str, int]:
    """(method, multiply-adds per sample) of one call's tr(P⁻¹H_i), as the engine picks it."""
    meta = torch.device("meta")
    block = KronBlock(
        handler=None,  # type: ignore[arg-type]  # only the shapes and the mask are read
        A=torch.empty(d_in, d_in, device=meta),
        G=torch.empty(d_out, d_out, device=meta),
        theta=torch.empty(d_out, d_in, device=meta),
        mask=torch.empty(d_out, d_in, dtype=torch.bool, device=meta) if masked else None,
    )
    return block.leverage_cost(positions, vectors, mode, rank=rank)
