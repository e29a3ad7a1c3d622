"""Input validation and resolution of parameter names, masks and prunable sets."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .config import EvidenceConfig


def canonical_names(model: nn.Module) -> dict[int, str]:
    """id(parameter) -> its first name in ``named_parameters`` (tied weights appear once)."""
    return {id(p): n for n, p in model.named_parameters() if p.requires_grad}


def check_data(
    x: Tensor, y: Tensor, sample_weights: Tensor | None, config: EvidenceConfig
) -> Tensor:
    """Validate x, y and the sample weights; returns the weights (float64, CPU, (N,))."""
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x has {n} samples but y has {y.shape[0]}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or inf values")
    if y.is_floating_point() and not bool(torch.isfinite(y).all()):
        raise ValueError("y contains NaN or inf values")
    if config.likelihood == "language_modeling" and y.dim() != 2:
        raise ValueError(f"language_modeling needs targets of shape (N, T), got {tuple(y.shape)}")
    if config.likelihood == "classification" and y.dim() != 1:
        raise ValueError(f"classification needs labels of shape (N,), got {tuple(y.shape)}")
    if sample_weights is None:
        return torch.ones(n, dtype=torch.float64)
    s = sample_weights.detach().to("cpu", torch.float64).reshape(-1)
    if s.shape[0] != n:
        raise ValueError(f"sample_weights has {s.shape[0]} entries but x has {n} samples")
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError("sample_weights must be finite and >= 0")
    if not bool((s > 0).any()):
        raise ValueError("all sample weights are zero: no data to estimate the evidence on")
    return s


def check_masks(
    model: nn.Module, names: dict[int, str], masks: dict[str, Tensor] | None
) -> dict[str, Tensor]:
    """Masks as CPU bool tensors keyed by canonical names; errors name the parameter."""
    if not masks:
        return {}
    params = {n: p for n, p in model.named_parameters()}
    known = set(names.values())
    out = {}
    for name, m in masks.items():
        if name not in params:
            raise ValueError(f"mask given for unknown parameter {name!r}")
        if name not in known:
            raise ValueError(f"mask given for parameter {name!r}, which does not require grad")
        if tuple(m.shape) != tuple(params[name].shape):
            raise ValueError(
                f"mask for {name!r} has shape {tuple(m.shape)} but the parameter has shape "
                f"{tuple(params[name].shape)}"
            )
        if m.dtype != torch.bool:
            if not bool(((m == 0) | (m == 1)).all()):
                raise ValueError(f"mask for {name!r} must be boolean (or 0/1)")
            m = m != 0
        out[name] = m.detach().to("cpu")
    return out


def resolve_prunable(
    model: nn.Module,
    names: dict[int, str],
    masks: dict[str, Tensor],
    prunable: Sequence[str] | None,
) -> list[str]:
    """Parameters to score: given names, else the masks' keys, else Linear/Conv weights."""
    from .curvature.capture import KRON_KINDS, module_kind

    known = set(names.values())
    if prunable is not None:
        bad = [n for n in prunable if n not in known]
        if bad:
            raise ValueError(f"prunable names unknown parameters: {bad}")
        return list(prunable)
    if masks:
        return list(masks)
    shared = {}
    for _, mod in model.named_modules():
        for p in mod.parameters(recurse=False):
            shared[id(p)] = shared.get(id(p), 0) + 1
    out = []
    for _, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        if (
            module_kind(mod) in KRON_KINDS
            and isinstance(w, nn.Parameter)
            and id(w) in names
            and shared[id(w)] == 1
        ):
            out.append(names[id(w)])
    return out



def check_finite_weights(model: nn.Module) -> None:
    """Refuse NaN/inf in any parameter or buffer, naming the tensor.

    Left alone they surface as unrelated torch errors (``multinomial``, ``linalg.eigh``)
    deep in the curvature code. (The pipeline hands this engine θ ⊙ m: see
    ``jmds_pipeline.provenance.masked_state``.)
    """
    from jmds_pipeline.guards import check_finite_tensors, model_tensors

    check_finite_tensors(model_tensors(model), "the model given to the evidence")
