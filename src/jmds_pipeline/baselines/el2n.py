"""EL2N and GraNd scores (Paul, Ganguli & Dziugaite, NeurIPS 2021, "Deep Learning on a
Data Diet: Finding Important Examples Early in Training").

For K models f_1..f_K (the paper: K = 10 independent initialisations, a few epochs in):

    EL2N(x, y)  = 1/K Σ_k ‖softmax(f_k(x)) − e_y‖₂
    GraNd(x, y) = 1/K Σ_k ‖∇_θ ℓ(f_k(x; θ), y)‖₂          (ℓ = cross-entropy)

Both measure difficulty: high = hard. The paper keeps the **highest** scores, i.e.
``select_samples(scores, ..., keep="high")``.

Language modelling (``y`` of shape (N, T), positions equal to ``IGNORE_INDEX`` skipped):
a sequence's EL2N is the mean over its counted positions of the per-token EL2N, and its
GraNd the gradient norm of its *mean* token cross-entropy, so sequences of different
lengths are comparable (a sequence with no counted position scores 0).

Models are evaluated in ``eval()`` mode (dropout off, BatchNorm on running statistics;
per-sample gradients are not defined through batch statistics) and restored afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from jmds_pipeline.training.losses import IGNORE_INDEX


def _device_of(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _check(models: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
    if len(models) == 0:
        raise ValueError("models is empty; pass at least one model")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
    if y.dim() not in (1, 2):
        raise ValueError(f"y must be (N,) labels or (N, T) tokens, got {tuple(y.shape)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size = {batch_size!r} must be an integer >= 1")


def el2n_from_logits(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample EL2N of one model's logits: (B, C) with y (B,), or (B, T, V) with y (B, T).

    Uses ‖p − e_y‖² = Σ_c p_c² − 2 p_y + 1 (never materialises a one-hot over a large
    vocabulary), computed in float64.
    """
    probs = torch.softmax(logits.to(torch.float64), dim=-1)
    counted = y != IGNORE_INDEX
    target = torch.where(counted, y, torch.zeros_like(y))
    p_y = probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    error = (probs.square().sum(dim=-1) - 2 * p_y + 1).clamp_(min=0).sqrt()
    if y.dim() == 1:
        return error
    error = torch.where(counted, error, torch.zeros_like(error))
    return error.sum(dim=1) / counted.sum(dim=1).clamp(min=1)


@torch.no_grad()
def el2n_scores(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """EL2N (N,) ``float64`` on CPU, averaged over ``models`` (see the module docstring)."""
    _check(models, x, y, batch_size)
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for model in models:
        target_device = _device_of(model, device)
        was_training = model.training
        model.eval()
        try:
            for start in range(0, x.shape[0], batch_size):
                xb = x[start:start + batch_size].to(target_device)
                yb = y[start:start + batch_size].to(target_device)
                total[start:start + batch_size] += el2n_from_logits(model(xb), yb).cpu()
        finally:
            model.train(was_training)
    return total / len(models)


def _sample_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of one sample: a label, or the mean over a sequence's counted tokens."""
    if target.dim() == 0:
        return F.cross_entropy(logits.float(), target)
    token = F.cross_entropy(logits.float(), target, reduction="none", ignore_index=IGNORE_INDEX)
    counted = (target != IGNORE_INDEX).sum()
    return token.sum() / counted.clamp(min=1)


def grand_scores(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """GraNd (N,) ``float64`` on CPU: ‖∇_θ ℓ_i‖₂ over all trainable parameters, averaged
    over ``models``.

    Per-sample gradients come from ``torch.func.vmap(grad(...))`` over a batch, so memory is
    about ``batch_size`` × #parameters floats. With ``masks`` (name → bool), pruned weights
    are left out of the norm (the gradient with respect to the active weights only).
    """
    _check(models, x, y, batch_size)
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for model in models:
        target_device = _device_of(model, device)
        params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
        buffers = {name: b.detach() for name, b in model.named_buffers()}
        unknown = sorted(set(masks or {}) - params.keys())
        if unknown:
            raise ValueError(f"masks name parameters the model does not train: {unknown}")
        weights = {name: mask.to(target_device, torch.float32)
                   for name, mask in (masks or {}).items()}

        def squared_norm(
            p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor,
            model: nn.Module = model, buffers: dict[str, torch.Tensor] = buffers,
            weights: dict[str, torch.Tensor] = weights,
        ) -> torch.Tensor:
            def loss(q: dict[str, torch.Tensor]) -> torch.Tensor:
                logits = functional_call(model, (q, buffers), (xi.unsqueeze(0),))
                return _sample_loss(logits.squeeze(0), yi)

            grads = grad(loss)(p)
            out = torch.zeros((), dtype=torch.float64, device=xi.device)
            for name, g in grads.items():
                if name in weights:
                    g = g * weights[name]
                out = out + g.to(torch.float64).square().sum()
            return out

        per_batch = vmap(squared_norm, in_dims=(None, 0, 0), randomness="same")
        was_training = model.training
        model.eval()
        try:
            for start in range(0, x.shape[0], batch_size):
                xb = x[start:start + batch_size].to(target_device)
                yb = y[start:start + batch_size].to(target_device)
                total[start:start + batch_size] += per_batch(params, xb, yb).sqrt().cpu()
        finally:
            model.train(was_training)
    return total / len(models)
