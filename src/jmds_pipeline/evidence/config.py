"""Configuration and result types of the evidence engine (no torch maths here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

Structure = Literal["full", "diag", "kfac"]
Likelihood = Literal["classification", "language_modeling", "regression"]


@dataclass(frozen=True)
class EvidenceConfig:
    """How to estimate the Laplace log evidence (design.md §2).

    Attributes beyond the round loop's contract:
        sigma_noise: observation noise σ of the Gaussian likelihood (regression only).
        mc_samples: sampled labels per sample (per token for language modelling) when
            ``fisher == "mc"``.
        exact_fisher_max_classes: ``fisher="exact"`` needs one backward pass per class
            (C; T·V for language modelling); above this many passes the engine uses the MC
            Fisher instead and logs a warning.
        kfac_max_dim: a Linear/Conv layer whose input (with bias) or output dimension exceeds
            this falls back to the diagonal (keeps the d_in² / d_out² factors bounded).
        prior_init: starting α of the evidence maximisation.
        prior_steps: maximum Newton steps on log α.
        chunk_elements: largest per-sample chunk tensor (elements) when unfolding conv inputs
            or materialising per-sample gradients; bounds the extra memory to ~4·this bytes.
        mixed_precision: run the model's forward passes under bf16 autocast on the device
            (kfac and diag only). The captured layer inputs and output gradients are cast
            back to the parameters' dtype before any product, and the factors, diagonals
            and every sum are float64, so only the forward activations carry bf16 rounding.
        channels_last: image batches (and the model) in NHWC, as the training loop does.
        leverage: per-sample tr(P⁻¹H_i) of K-FAC layers: ``exact`` (the sample's own
            gradients against the K-FAC P⁻¹) or ``kron`` (the per-sample Kronecker
            approximation A_i ⊗ G_i, no cross-position terms; cheaper for layers with
            weight sharing and the exact Fisher, identical for Linear layers; see
            ``curvature.kfac``) or ``lowrank`` (opt-in approximation: only A's top
            ``leverage_rank`` eigenvectors are projected on, the rest of A's spectrum
            takes its mean eigenvalue; the same on G's side for layers with d_out > d_in;
            used on a layer only where it is cheaper than the exact routes; log Z and the
            weight scores are unchanged).
        leverage_rank: the k of ``leverage="lowrank"``.
        masked_leverage: tr(P⁻¹H_i) of K-FAC layers with a mask: ``sparse`` (exact, each
            row's active entries only), ``dense`` (exact, the whole masked ψ rotated: the
            former route, same numbers, more work) or ``diag`` (opt-in approximation
            Σ_{j∈S} (P⁻¹)_jj ψ_j², off-diagonal terms of (P⁻¹)_SS dropped; see
            ``curvature.kfac``).
    """

    structure: Structure = "kfac"
    likelihood: Likelihood = "classification"
    subsample_size: int | None = 1024
    class_balanced: bool = True
    prior_precision: float | None = None
    prior_mode: Literal["scalar", "layerwise"] = "scalar"
    weight_score: Literal["obs", "diag", "first_order"] = "obs"
    fisher: Literal["exact", "mc"] = "exact"
    batch_size: int = 256
    seed: int = 0
    sigma_noise: float = 1.0
    mc_samples: int = 1
    exact_fisher_max_classes: int = 32
    kfac_max_dim: int = 8192
    prior_init: float = 1.0
    prior_steps: int = 50
    chunk_elements: int = 1 << 23
    leverage: Literal["exact", "kron", "lowrank"] = "exact"
    leverage_rank: int = 32
    masked_leverage: Literal["sparse", "dense", "diag"] = "sparse"
    mixed_precision: bool = False
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.structure not in ("full", "diag", "kfac"):
            raise ValueError(f"structure must be full, diag or kfac, got {self.structure!r}")
        if self.likelihood not in ("classification", "language_modeling", "regression"):
            raise ValueError(f"unknown likelihood {self.likelihood!r}")
        if self.subsample_size is not None and self.subsample_size < 1:
            raise ValueError(f"subsample_size must be >= 1 or None, got {self.subsample_size}")
        if self.prior_precision is not None and not self.prior_precision > 0:
            raise ValueError(f"prior_precision must be > 0, got {self.prior_precision}")
        if self.prior_mode not in ("scalar", "layerwise"):
            raise ValueError(f"prior_mode must be scalar or layerwise, got {self.prior_mode!r}")
        if self.weight_score not in ("obs", "diag", "first_order"):
            raise ValueError(f"unknown weight_score {self.weight_score!r}")
        if self.fisher not in ("exact", "mc"):
            raise ValueError(f"fisher must be exact or mc, got {self.fisher!r}")
        if self.batch_size < 1 or self.mc_samples < 1 or self.chunk_elements < 1:
            raise ValueError("batch_size, mc_samples and chunk_elements must be >= 1")
        if self.leverage not in ("exact", "kron", "lowrank"):
            raise ValueError(f"leverage must be exact, kron or lowrank, got {self.leverage!r}")
        if isinstance(self.leverage_rank, bool) or not (
            isinstance(self.leverage_rank, int) and self.leverage_rank >= 1
        ):
            raise ValueError(f"leverage_rank must be an integer >= 1, got {self.leverage_rank!r}")
        if self.masked_leverage not in ("sparse", "dense", "diag"):
            raise ValueError(
                f"masked_leverage must be sparse, dense or diag, got {self.masked_leverage!r}"
            )
        if self.mixed_precision and self.structure == "full":
            raise ValueError(
                "mixed_precision = True with structure = 'full': the full GGN is built in "
                "float64 from exact Jacobians; accepted: structure 'kfac' or 'diag'"
            )
        if not self.sigma_noise > 0:
            raise ValueError(f"sigma_noise must be > 0, got {self.sigma_noise}")


@dataclass
class EvidenceResult:
    """What one evidence estimate returns; all tensors on CPU.

    ``log_evidence = log_likelihood + prior_term − ½ log_det_ratio`` with
    ``prior_term = −½ Σ_g α_g ‖θ_g‖²`` and ``log_det_ratio = log det P_m − Σ_g d_g log α_g``.
    ``weight_scores[name]``: Δ_j, the change of log Z if weight j is removed (higher = cheaper
    to remove; already-masked weights are +inf). ``sample_contribution`` c_i =
    −ℓ_i − ½ tr(P⁻¹H_i) = ∂ log Z / ∂ s_i; ``sample_leverage`` is ½ tr(P⁻¹H_i).
    ``unit_scores[weight name]`` (when asked for): Δ_k of each output unit of a K-FAC layer,
    shape (d_out,), +inf for removed units (``units``).
    """

    log_evidence: float
    log_likelihood: float
    log_det_ratio: float
    prior_term: float
    prior_precision: float | dict[str, float]
    num_active: int
    weight_scores: dict[str, torch.Tensor] = field(default_factory=dict)
    weight_score_parts: dict[str, dict[str, torch.Tensor]] | None = None
    sample_contribution: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    sample_loss: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    sample_leverage: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    timings: dict[str, float] = field(default_factory=dict)
    unit_scores: dict[str, torch.Tensor] | None = None
