"""``estimate_evidence``: curvature pass, prior, log evidence, weight and sample scores.

The four passes, whatever the curvature backend (``full``, ``diag`` or ``kfac``; each
returns blocks that implement ``curvature.block.CurvatureBlock``):

1. curvature, on the (sub)sampled kept samples with rescaled weights (``curvature.fit``);
2. α by Newton on log α (``prior``), then the log evidence (``laplace``), from the blocks;
3. samples: ℓ_i and tr(P⁻¹H_i) on all N samples (weight 0 included) at the current θ
   (``curvature.score_samples``); skipped with ``score_samples=False`` (then one forward
   over the kept samples gives ℓ_i only);
4. weights: Δ_j from each block's diag(P⁻¹) and diag(H) (``scores``).

The model runs in eval mode (BatchNorm uses running statistics) and is restored afterwards.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor, nn

from jmds_pipeline import distributed

from .checks import (
    canonical_names,
    check_data,
    check_finite_weights,
    check_masks,
    resolve_prunable,
)
from .config import EvidenceConfig, EvidenceResult
from .context import Context, to_logits
from .curvature.block import CurvatureBlock
from .curvature.full import FullCurvature
from .curvature.kfac import KronBlock
from .curvature.layerwise import LayerwiseCurvature
from .laplace import alpha_objective, evidence_terms
from .likelihood import per_sample_nll
from .prior import optimise_prior
from .scores import block_weight_scores
from .subsample import select_subsample
from .units import block_unit_scores

__all__ = ["estimate_evidence", "kron_factors", "to_logits"]


class Curvature(Protocol):
    """A curvature backend: its two data passes and the blocks the first one builds."""

    blocks: Sequence[CurvatureBlock]
    # one block per prior group makes the α objective separable (kfac, diag); full couples them
    separable_prior: bool

    def fit(self, idx: Tensor, weights: Tensor) -> None: ...

    def score_samples(self, alpha: Tensor, idx: Tensor, loss: Tensor, leverage: Tensor) -> None: ...


def make_curvature(ctx: Context) -> Curvature:
    if ctx.cfg.structure == "full":
        return FullCurvature(ctx)
    return LayerwiseCurvature(ctx, kron=ctx.cfg.structure == "kfac")


def estimate_evidence(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    sample_weights: Tensor | None = None,
    masks: dict[str, Tensor] | None = None,
    prunable: Sequence[str] | None = None,
    config: EvidenceConfig = EvidenceConfig(),  # noqa: B008 - frozen dataclass
    device: str | torch.device = "cpu",
    score_samples: bool = True,
    score_weights: bool = True,
    score_units: bool = False,
) -> EvidenceResult:
    """Laplace log evidence of ``model`` at its current weights under masks and sample weights.

    See ``laplace`` for the formula, ``curvature.kfac`` for the K-FAC maths (masked log det,
    peak memory, ``leverage`` modes), ``scores`` for Δ_j and ``subsample`` for the NTK
    subsample. Sample terms: c_i = −ℓ_i − ½ tr(P⁻¹H_i) = ∂ log Z/∂s_i, for every sample
    (weight 0 too). For masked K-FAC layers tr(P⁻¹H_i) uses (P⁻¹)_SS for (P_S)⁻¹ (an upper
    bound; ``masked_leverage="diag"`` approximates even that); diag and full are exact.
    With ``score_samples=False`` only ℓ_i of samples with s_i > 0 are computed; the other
    sample tensors are NaN. The prior α is a function of the data and the mask only.
    """
    t_start = time.perf_counter()
    cfg = config
    device = torch.device(device)
    s = check_data(x, y, sample_weights, cfg)
    names = canonical_names(model)
    if not names:
        raise ValueError("model has no parameters that require grad")
    masks_c = check_masks(model, names, masks)
    check_finite_weights(model)
    prunable_l = resolve_prunable(model, names, masks_c, prunable)
    first = next(iter(model.parameters()))
    orig_device, was_training = first.device, model.training
    model.eval()
    model.to(device)
    relayout = cfg.channels_last and not _is_channels_last(model)
    if relayout:
        model.to(memory_format=torch.channels_last)
    timings: dict[str, float] = {}
    try:
        ctx = Context(model, x, y, cfg, device, names, masks_c)
        with _timed(timings, "curvature"):
            curvature = make_curvature(ctx)
            labels = y if cfg.likelihood == "classification" else None
            cidx, cw = select_subsample(s, labels, cfg.subsample_size, cfg.class_balanced, cfg.seed)
            curvature.fit(cidx, cw)
            blocks = curvature.blocks
        with _timed(timings, "prior"):
            alpha = _prior_precision(blocks, len(ctx.groups), cfg, curvature)
        with _timed(timings, "samples"):
            loss, leverage = _sample_terms(ctx, curvature, alpha, s, score_samples)
        kept = s > 0
        terms = evidence_terms(blocks, alpha, -float((s[kept] * loss[kept]).sum()))
        with _timed(timings, "weights"):
            scores, parts = {}, {}
            if score_weights and prunable_l:
                scores, parts = block_weight_scores(
                    blocks, cfg.weight_score, alpha, prunable_l, float(s.sum())
                )
            units = None
            if score_units:
                units = block_unit_scores(
                    blocks, cfg.weight_score, alpha, prunable_l, float(s.sum())
                )
    finally:
        model.to(orig_device)
        if relayout:  # hand the caller's model back in the layout it came in
            model.to(memory_format=torch.contiguous_format)
        model.train(was_training)
    timings["total"] = time.perf_counter() - t_start
    if cfg.prior_mode == "scalar":
        prior_out: float | dict[str, float] = float(alpha[0])
    else:
        prior_out = {g: float(a) for g, a in zip(ctx.groups.names, alpha, strict=False)}
    half_trace = 0.5 * leverage
    return EvidenceResult(
        log_evidence=terms.log_evidence,
        log_likelihood=terms.log_likelihood,
        log_det_ratio=terms.log_det_ratio,
        prior_term=terms.prior_term,
        prior_precision=prior_out,
        num_active=terms.num_active,
        weight_scores=scores,
        weight_score_parts=parts or None,
        unit_scores=units,
        sample_contribution=-loss - half_trace,
        sample_loss=loss,
        sample_leverage=half_trace,
        timings=timings,
    )


def _is_channels_last(model: nn.Module) -> bool:
    """Whether the model's 4-D weights are already NHWC (as the trainer leaves them)."""
    nhwc = torch.channels_last
    # a 1×1 kernel is contiguous in both layouts and says nothing either way
    telling = [
        p
        for p in model.parameters()
        if p.dim() == 4 and not (p.is_contiguous() and p.is_contiguous(memory_format=nhwc))
    ]
    return bool(telling) and all(p.is_contiguous(memory_format=nhwc) for p in telling)


class _timed:
    """``with _timed(timings, key):`` adds the block's wall time to ``timings[key]``."""

    def __init__(self, timings: dict[str, float], key: str) -> None:
        self.timings, self.key = timings, key

    def __enter__(self) -> None:
        self.t = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timings[self.key] = time.perf_counter() - self.t


def _prior_precision(
    blocks: Sequence[CurvatureBlock], n_groups: int, cfg: EvidenceConfig, curvature: Curvature
) -> Tensor:
    """α per prior group: fixed, or maximising the evidence (pass 2)."""
    if cfg.prior_precision is not None:
        return torch.full((n_groups,), float(cfg.prior_precision), dtype=torch.float64)
    init = torch.full((n_groups,), float(cfg.prior_init), dtype=torch.float64)
    return optimise_prior(
        alpha_objective(blocks, n_groups),
        init,
        steps=cfg.prior_steps,
        separable=curvature.separable_prior,
    )


def _sample_terms(
    ctx: Context, curvature: Curvature, alpha: Tensor, s: Tensor, score_samples: bool
) -> tuple[Tensor, Tensor]:
    """(ℓ_i, tr(P⁻¹H_i)) per sample, float64 CPU; NaN where not computed (pass 3)."""
    n = ctx.x.shape[0]
    loss = torch.full((n,), math.nan, dtype=torch.float64)
    leverage = torch.full((n,), math.nan, dtype=torch.float64)
    if score_samples:
        idx = torch.arange(n)
        curvature.score_samples(alpha, idx, loss, leverage)
    else:
        idx = (s > 0).nonzero().squeeze(1)
        with torch.no_grad():
            for rows, xb, yb, _ in ctx.batches(idx, None):
                with ctx.autocast():
                    logits = to_logits(ctx.model(xb))
                loss[rows] = per_sample_nll(logits.to(ctx.dtype), yb, ctx.cfg).double().cpu()
    # under torchrun each rank scored its own batches: every rank gets all rows back
    owned = distributed.owned_items(idx, ctx.cfg.batch_size)
    for values in (loss, leverage):
        distributed.merge_rows_(values, owned, idx)
    return loss, leverage


def kron_factors(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    sample_weights: Tensor | None = None,
    config: EvidenceConfig = EvidenceConfig(),  # noqa: B008
    device: str | torch.device = "cpu",
) -> dict[str, tuple[Tensor, Tensor]]:
    """K-FAC factors (A, G) per K-FAC module name (float64, CPU); for tests and inspection."""
    s = check_data(x, y, sample_weights, config)
    names = canonical_names(model)
    was_training = model.training
    model.eval()
    try:
        ctx = Context(model, x, y, config, torch.device(device), names, {})
        labels = y if config.likelihood == "classification" else None
        idx, w = select_subsample(
            s, labels, config.subsample_size, config.class_balanced, config.seed
        )
        curvature = LayerwiseCurvature(ctx, kron=True)
        curvature.fit(idx, w)
    finally:
        model.train(was_training)
    return {
        b.handler.module_name: (b.A.cpu(), b.G.cpu())
        for b in curvature.blocks
        if isinstance(b, KronBlock)
    }
