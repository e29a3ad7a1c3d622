"""Brute-force references for the evidence tests (per-sample Jacobians, dense algebra)."""

from __future__ import annotations

import math

import torch
from torch import nn


def flat_params(model: nn.Module) -> list[nn.Parameter]:
    return [p for _, p in model.named_parameters()]


def brute_force_ggn(model: nn.Module, x, y, likelihood: str = "classification", sigma=1.0):
    """H = Σ_i J_iᵀ Λ_i J_i from per-sample Jacobians built one output at a time."""
    params = flat_params(model)
    d = sum(p.numel() for p in params)
    h = torch.zeros(d, d, dtype=torch.float64)
    for i in range(x.shape[0]):
        out = model(x[i : i + 1]).reshape(-1)
        rows = []
        for k in range(out.numel()):
            grads = torch.autograd.grad(out[k], params, retain_graph=True, allow_unused=True)
            rows.append(
                torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(p)).reshape(-1)
                        for g, p in zip(grads, params, strict=False)
                    ]
                )
            )
        j = torch.stack(rows).double()
        if likelihood == "regression":
            lam = torch.eye(out.numel(), dtype=torch.float64) / sigma**2
        else:
            logits = out.detach().double().reshape(-1, model_vocab(out, y, i))
            p = logits.softmax(-1)
            blocks = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
            if likelihood == "language_modeling":
                blocks = blocks * (y[i] != -100).double()[:, None, None]
            lam = torch.block_diag(*blocks)
        h += j.t() @ lam @ j
    return h


def model_vocab(out, y, i) -> int:
    return out.numel() if y.dim() == 1 else out.numel() // y.shape[1]


def laplace_log_evidence(h, theta, log_lik, alpha):
    """−Σℓ − ½α‖θ‖² − ½[log det(H + αI) − d log α] with dense algebra."""
    d = h.shape[0]
    logdet = torch.linalg.slogdet(h + alpha * torch.eye(d, dtype=h.dtype))[1]
    return float(
        log_lik - 0.5 * alpha * (theta * theta).sum() - 0.5 * (logdet - d * math.log(alpha))
    )


def refuse_batched_grads(monkeypatch) -> None:
    """Make ``autograd.grad(..., is_grads_batched=True)`` raise as an op without a batching
    rule would, so ``sweep._batched_grad`` takes its per-vector fallback."""
    from jmds_pipeline.evidence.curvature import sweep

    real = torch.autograd.grad

    def no_batching(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("no batching rule")
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep.torch.autograd, "grad", no_batching)
