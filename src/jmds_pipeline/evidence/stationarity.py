"""How close θ is to a mode of the log joint that the Laplace approximation expands around.

The Laplace evidence is a second-order expansion of log p(D_s, θ | m) at a *mode* θ*. At a
mode the gradient of the negative log joint

    L(θ) = Σ_i w_i ℓ_i(θ ⊙ m) + ½ α ‖θ ⊙ m‖²

over the active weights is zero. This module measures that gradient, and its size relative
to its two parts (the likelihood's pull and the prior's pull), so a report can say whether
the evidence was taken at a mode (ratio ≈ 0) or at a point where the two do not balance
(ratio ≈ 1: e.g. a network trained without the prior it is scored with).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from jmds_pipeline import distributed
from jmds_pipeline.training.losses import per_sample_nll


@dataclass(frozen=True)
class Stationarity:
    gradient_norm: float  # ‖∇L‖ over the active weights
    likelihood_gradient_norm: float  # ‖∇ Σ w_i ℓ_i‖
    prior_gradient_norm: float  # ‖α θ‖
    relative: float  # ‖∇L‖ / max(‖∇likelihood‖, ‖αθ‖): 0 at a mode

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def log_joint_stationarity(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    sample_weights: Tensor,
    alpha: float,
    masks: dict[str, Tensor] | None = None,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
) -> Stationarity:
    """‖∇θ L‖ at the model's current weights (masked positions count as absent)."""
    if not alpha > 0:
        raise ValueError(f"alpha = {alpha!r}; accepted: a positive prior precision")
    if tuple(sample_weights.shape) != tuple(x.shape[:1]):  # (N, 1) would index rows in pairs
        raise ValueError(
            f"sample_weights has shape {tuple(sample_weights.shape)}; expected ({x.shape[0]},)"
        )
    masks = masks or {}
    was_training = model.training
    model.eval()
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    likelihood_grad = {name: torch.zeros_like(p, dtype=torch.float64) for name, p in params.items()}
    rows = torch.nonzero(sample_weights > 0).squeeze(1)
    try:
        for k, start in enumerate(range(0, rows.numel(), batch_size)):
            if not distributed.owns_batch(k):  # under torchrun: this rank's batches only
                continue
            index = rows[start : start + batch_size]
            logits = model(x[index].to(device))
            weights = sample_weights[index].to(device, torch.float32)
            loss = (per_sample_nll(logits, y[index].to(device)) * weights).sum()
            grads = torch.autograd.grad(loss, list(params.values()))
            for name, grad in zip(params, grads, strict=True):
                likelihood_grad[name] += grad.double()
    finally:
        model.train(was_training)
    distributed.all_reduce_sum_(list(likelihood_grad.values()))
    total = lik = prior = 0.0
    for name, param in params.items():
        active = (
            masks[name].to(param.device)
            if name in masks
            else torch.ones_like(param, dtype=torch.bool)
        )
        g_lik = likelihood_grad[name][active]
        g_prior = alpha * param.detach().double()[active]
        total += float((g_lik + g_prior).square().sum())
        lik += float(g_lik.square().sum())
        prior += float(g_prior.square().sum())
    total, lik, prior = total**0.5, lik**0.5, prior**0.5
    return Stationarity(total, lik, prior, total / max(lik, prior, 1e-300))
