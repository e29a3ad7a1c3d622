"""Per-sample negative log-likelihoods and the GGN's output curvature Λ.

The GGN is H = Σ_i s_i J_iᵀ Λ_i J_i with Λ_i the Hessian of ℓ_i w.r.t. the network output:

- classification: Λ = diag(p) − ppᵀ (softmax cross-entropy),
- language modelling: the same per position t, summed over positions whose target is not
  ``IGNORE_INDEX`` (block-diagonal over positions),
- regression: Λ = I/σ² (Gaussian with noise σ on each output).

Curvature backends never form Λ; they backpropagate vectors v_k with Σ_k ω_k v_k v_kᵀ = Λ
(exact) or E[Σ_k ω_k v_k v_kᵀ] = Λ (Monte Carlo):

- exact: v_c = √p_c (e_c − p) for every class c, ω = 1, since Σ_c p_c (e_c − p)(e_c − p)ᵀ =
  diag(p) − ppᵀ; costs one backward pass per class (per class and position for language
  modelling, T·V passes: tiny vocabularies and sequences only);
- MC: v = e_ŷ − p with ŷ ~ Cat(p), ω = 1/S for S samples; for language modelling one ŷ per
  position in the same backward pass (cross-position terms vanish in expectation).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import EvidenceConfig

IGNORE_INDEX = -100
log = logging.getLogger(__name__)


def per_sample_nll(logits: Tensor, y: Tensor, config: EvidenceConfig) -> Tensor:
    """ℓ_i for each sample (summed over positions for language modelling), shape (B,)."""
    if config.likelihood == "classification":
        return F.cross_entropy(logits, y, reduction="none")
    if config.likelihood == "language_modeling":
        b, t, v = logits.shape
        nll = F.cross_entropy(
            logits.reshape(b * t, v), y.reshape(b * t), reduction="none", ignore_index=IGNORE_INDEX
        )
        return nll.reshape(b, t).sum(1)
    sigma2 = config.sigma_noise**2
    resid = logits.reshape(logits.shape[0], -1) - y.reshape(y.shape[0], -1).to(logits.dtype)
    return (resid.pow(2) / (2 * sigma2)).sum(1) + 0.5 * resid.shape[1] * math.log(
        2 * math.pi * sigma2
    )


def use_exact_fisher(num_outputs: int, config: EvidenceConfig, warn: bool = True) -> bool:
    """Whether the per-class exact Fisher is used (else MC), warning when it is overridden."""
    if config.likelihood == "regression":
        return True
    if config.fisher == "mc":
        return False
    if num_outputs > config.exact_fisher_max_classes:
        if not warn:
            return False
        log.warning(
            "fisher='exact' needs %d backward passes per batch; using the MC Fisher "
            "(%d samples) instead (exact_fisher_max_classes=%d)",
            num_outputs,
            config.mc_samples,
            config.exact_fisher_max_classes,
        )
        return False
    return True


def backward_vectors(
    logits: Tensor, y: Tensor, config: EvidenceConfig, generator: torch.Generator | None
) -> Iterator[tuple[Tensor, float]]:
    """Yield (v_k, ω_k), v_k shaped like ``logits``, with Σ_k ω_k v_k v_kᵀ = Λ (or E[·] = Λ)."""
    logits = logits.detach()
    if config.likelihood == "regression":
        # Λ = I/σ² over each sample's flattened outputs: one unit vector per output (a
        # single all-ones vector would give 11ᵀ/σ², cross-output terms included)
        flat = logits.reshape(logits.shape[0], -1)
        for k in range(flat.shape[1]):
            v = torch.zeros_like(flat)
            v[:, k] = 1.0 / config.sigma_noise
            yield v.reshape(logits.shape), 1.0
        return
    probs = logits.softmax(-1)
    if config.likelihood == "language_modeling":
        valid = (y != IGNORE_INDEX).unsqueeze(-1).to(logits.dtype)
    else:
        valid = torch.ones(1, dtype=logits.dtype, device=logits.device)
    n_cls = logits.shape[-1]
    # language modelling: positions must be separate vectors, since one vector over all
    # positions adds the deterministic cross-position terms Σ_{t≠t'} J_tᵀ v_t v_t'ᵀ J_t' (they
    # only vanish in expectation for MC); so the exact Fisher costs T·V backward passes
    lm = config.likelihood == "language_modeling"
    n_passes = n_cls * logits.shape[1] if lm else n_cls
    if use_exact_fisher(n_passes, config):
        positions = range(logits.shape[1]) if config.likelihood == "language_modeling" else [None]
        for t in positions:
            for c in range(n_cls):
                v = -probs * probs[..., c : c + 1].sqrt()
                v[..., c] += probs[..., c].sqrt()
                v = v * valid
                if t is not None:
                    only = torch.zeros_like(v)
                    only[:, t] = v[:, t]
                    v = only
                yield v, 1.0
        return
    cdf = probs.reshape(-1, n_cls).float().cumsum(-1)
    for _ in range(config.mc_samples):
        draw = sample_classes(cdf, generator).reshape(probs.shape[:-1])
        v = F.one_hot(draw, n_cls).to(logits.dtype) - probs
        yield v * valid, 1.0 / config.mc_samples


def sample_classes(cdf: Tensor, generator: torch.Generator | None) -> Tensor:
    """One class per row of ``cdf`` (rows' cumulative probabilities) by inverse CDF.

    One uniform per row: ``torch.multinomial`` takes one exponential variate per class,
    3.3 s for 2048 tokens over GPT-2's 50 257 classes against 0.4 s here (2-core CPU). Class
    c is drawn with probability cdf[c] − cdf[c−1], the float32 increment, within one
    rounding (≤ 1.2e-7) of p_c whatever the number of classes; classes of probability 0
    are never drawn (``right=True``).
    """
    total = cdf[:, -1:]
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device, dtype=cdf.dtype)
    # below the total even where u·total rounds up to it: the first cdf[c] above it then
    # always exists and has a positive increment
    point = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, point, right=True).squeeze(1)


def skip_backward_draws(
    rows: int, output_shape: tuple[int, ...], config: EvidenceConfig, generator: torch.Generator
) -> None:
    """Advance ``generator`` exactly as ``backward_vectors`` would on a batch of ``rows``
    samples with per-sample logits of ``output_shape`` (a batch another rank runs).

    The MC draw (``sample_classes``) takes one uniform variate per sample and position
    whatever the probabilities hold, so drawing as many uniforms consumes the same stream;
    the distributed tests check the draws that follow agree.
    """
    if config.likelihood == "regression":
        return
    n_cls = output_shape[-1]
    lm = config.likelihood == "language_modeling"
    if use_exact_fisher(n_cls * output_shape[0] if lm else n_cls, config, warn=False):
        return
    entries = rows * math.prod(output_shape[:-1])
    for _ in range(config.mc_samples):
        torch.rand(entries, 1, generator=generator, device=generator.device)


def output_hessian(logits: Tensor, y: Tensor, config: EvidenceConfig) -> Tensor:
    """Dense Λ_i for each sample over its flattened outputs, shape (B, K, K); tiny nets only."""
    b = logits.shape[0]
    if config.likelihood == "regression":
        k = logits[0].numel()
        eye = torch.eye(k, dtype=logits.dtype, device=logits.device)
        return eye.expand(b, k, k) / config.sigma_noise**2
    probs = logits.softmax(-1)
    lam = torch.diag_embed(probs) - probs.unsqueeze(-1) * probs.unsqueeze(-2)
    if config.likelihood == "classification":
        return lam
    valid = (y != IGNORE_INDEX).to(logits.dtype)
    lam = lam * valid[..., None, None]
    t, v = probs.shape[1], probs.shape[2]
    out = logits.new_zeros(b, t * v, t * v)
    for pos in range(t):
        out[:, pos * v : (pos + 1) * v, pos * v : (pos + 1) * v] = lam[:, pos]
    return out
