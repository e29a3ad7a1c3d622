"""Forward hooks that give per-sample layer inputs a_i and output gradients g_i in one pass.

Why own hooks rather than curvlinops/laplace-torch: we need sample-weighted factors,
per-sample terms (for c_i) and masks, none of which those libraries expose (design.md §2).

How gradients are obtained: each hooked module's output is recorded in a forward hook and a
*clone* is handed downstream, so in-place ops after the module (ResNet's ``ReLU(inplace)``)
cannot corrupt the recorded tensor; ``torch.autograd.grad(logits, recorded_outputs, v)`` then
returns ∂(vᵀf)/∂out for every call of every module without computing any parameter gradient.
A module whose output has batch size 1 but is broadcast over the batch (GPT-2's position
embedding) gets its output expanded to the batch so that its gradient stays per-sample.

Handlers (one per parameter-owning module) turn (input, output-gradient) into:
- for K-FAC layers (Linear, Conv1d/2d with groups=1, GPT-2 ``Conv1D``): a (B, R, d_in[+1]) and
  g (B, R, d_out), R the weight-sharing positions (conv: output locations, "expand"; tokens);
- for every handler: per-sample gradients ψ_i of its parameters, for the diagonal GGN.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KRON_KINDS = ("linear", "conv", "gpt2")


def gpt2_conv1d_type() -> type | None:
    """transformers' ``Conv1D`` class if transformers is already imported (we never import it)."""
    mod = sys.modules.get("transformers.pytorch_utils")
    return getattr(mod, "Conv1D", None) if mod is not None else None


def module_kind(module: nn.Module) -> str | None:
    """Handler kind of a parameter-owning module, or None if unsupported."""
    conv1d = gpt2_conv1d_type()
    if conv1d is not None and isinstance(module, conv1d):
        return "gpt2"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return "conv"
    if isinstance(module, nn.Embedding):
        return "embedding"
    if isinstance(module, nn.LayerNorm):
        return "layernorm"
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return "batchnorm"
    return None


@dataclass
class Handler:
    """One parameter-owning module: how to read per-sample quantities from its calls."""

    module_name: str
    module: nn.Module
    kind: str
    params: dict[str, str]  # local name ("weight") -> canonical parameter name
    kron: bool = False  # treated by K-FAC (else its parameters are diagonal)
    calls: list[tuple[Tensor, Tensor]] = field(default_factory=list)  # (input, recorded output)

    # ---- shapes of the K-FAC matrix view [W | b] of shape (d_out, d_in (+1)) ----
    @property
    def has_bias(self) -> bool:
        return "bias" in self.params

    @property
    def d_out(self) -> int:
        w = self.module.weight
        return w.shape[1] if self.kind == "gpt2" else w.shape[0]

    @property
    def d_in_weight(self) -> int:
        w = self.module.weight
        return w.shape[0] if self.kind == "gpt2" else w[0].numel()

    @property
    def d_in(self) -> int:
        return self.d_in_weight + int(self.has_bias)

    def to_matrix(self, weight: Tensor, bias: Tensor | None) -> Tensor:
        """Parameter-shaped tensors -> the (d_out, d_in) matrix [W | b]."""
        w = weight.t() if self.kind == "gpt2" else weight.reshape(weight.shape[0], -1)
        if self.has_bias:
            b = bias if bias is not None else w.new_zeros(w.shape[0])
            w = torch.cat([w, b.reshape(-1, 1)], dim=1)
        return w

    def from_matrix(self, mat: Tensor) -> dict[str, Tensor]:
        """(…, d_out, d_in) matrix -> {canonical name: parameter-shaped tensor (…, *shape)}."""
        lead = mat.shape[:-2]
        w = mat[..., : self.d_in_weight]
        shape = self.module.weight.shape
        if self.kind == "gpt2":
            w = w.transpose(-1, -2)
        out = {self.params["weight"]: w.reshape(*lead, *shape)}
        if self.has_bias:
            out[self.params["bias"]] = mat[..., self.d_in_weight]
        return out

    # ---- per-call quantities ----
    def kron_inputs(self, x: Tensor) -> Tensor:
        """Layer input -> a of shape (B, R, d_in) (with a ones column for the bias)."""
        m = self.module
        conv = self.kind == "conv"
        if not self.has_bias:  # conv: patches (B, R, C_in·k); linear-like: positions as R
            return _unfold(m, x) if conv else x.reshape(x.shape[0], -1, x.shape[-1])
        if conv:  # a strided view of the patches, copied once below
            patches, (b, r, d) = _patch_view(m, x)
        else:
            patches = x.reshape(x.shape[0], -1, x.shape[-1])
            b, r, d = patches.shape
        # one copy into a buffer with the ones column (reshape, then cat, copied twice)
        out = x.new_empty(b, r, d + 1)
        out[..., :d].view(patches.shape).copy_(patches)
        out[..., d] = 1.0
        return out

    def kron_grads(self, g: Tensor) -> Tensor:
        """Output gradient -> (B, R, d_out)."""
        if self.kind == "conv":
            return g.reshape(g.shape[0], g.shape[1], -1).transpose(1, 2)
        return g.reshape(g.shape[0], -1, g.shape[-1])

    def psi(self, x: Tensor, g: Tensor) -> dict[str, Tensor]:
        """Per-sample gradients ψ_i of this module's parameters for one call, (B, *shape)."""
        m = self.module
        if self.kind in KRON_KINDS:
            a, gg = self.kron_inputs(x), self.kron_grads(g)
            return self.from_matrix(torch.einsum("bro,bri->boi", gg, a))
        if self.kind == "embedding":
            idx = x.reshape(x.shape[0], -1)
            gg = g.reshape(g.shape[0], -1, g.shape[-1])
            psi = gg.new_zeros(gg.shape[0], m.num_embeddings, gg.shape[-1])
            psi.scatter_add_(1, idx.unsqueeze(-1).expand_as(gg), gg)
            if m.padding_idx is not None:
                psi[:, m.padding_idx] = 0
            return {self.params["weight"]: psi}
        if self.kind == "layernorm":
            ns = tuple(m.normalized_shape)
            xhat = F.layer_norm(x, ns, eps=m.eps)
            dims = tuple(range(1, x.dim() - len(ns)))
            out = {}
            if "weight" in self.params:
                out[self.params["weight"]] = (g * xhat).sum(dims) if dims else g * xhat
            if "bias" in self.params:
                out[self.params["bias"]] = g.sum(dims) if dims else g
            return out
        if self.kind == "batchnorm":
            if m.training or m.running_mean is None:
                raise ValueError(
                    f"{self.module_name}: BatchNorm without running statistics couples samples; "
                    "per-sample curvature needs eval-mode batch norm with running stats"
                )
            shape = (1, -1) + (1,) * (x.dim() - 2)
            xhat = (x - m.running_mean.reshape(shape)) * torch.rsqrt(
                m.running_var.reshape(shape) + m.eps
            )
            dims = tuple(range(2, x.dim()))
            out = {}
            if "weight" in self.params:
                out[self.params["weight"]] = (g * xhat).sum(dims) if dims else g * xhat
            if "bias" in self.params:
                out[self.params["bias"]] = g.sum(dims) if dims else g
            return out
        raise AssertionError(self.kind)


def _unfold(m: nn.Module, x: Tensor) -> Tensor:
    """Conv input (B, C, *S) -> patches (B, R, C·prod(k)) in the weight's (C, k…) order."""
    view, shape = _patch_view(m, x)
    return view.reshape(shape)


def _patch_view(m: nn.Module, x: Tensor) -> tuple[Tensor, tuple[int, int, int]]:
    """Conv input -> (a strided view (B, *L_out, C, *k) of the patches, (B, R, C·prod(k))).

    Built from ``Tensor.unfold`` views, no copy: ``F.unfold`` (im2col) is ~90× slower on
    CPU for the (1, k) kernels a Conv1d becomes (1.7 s against 0.02 s for a 256×32×40 input,
    kernel 5, measured on this machine) and dominated the evidence pass of 1-D CNNs.
    """
    if m.padding_mode != "zeros":
        raise NotImplementedError(f"K-FAC for padding_mode={m.padding_mode!r} is not supported")
    k, s, d = m.kernel_size, m.stride, m.dilation
    n = len(k)
    pad = m.padding
    if isinstance(pad, str):
        if pad == "valid":
            pad = (0,) * n
        else:  # "same" (stride 1): PyTorch puts the extra element on the right
            total = [di * (ki - 1) for di, ki in zip(d, k, strict=False)]
            lr: list[int] = []
            for t in reversed(total):
                lr += [t // 2, t - t // 2]
            x = F.pad(x, lr)
            pad = (0,) * n
    if any(pad):
        x = F.pad(x, [p for pi in reversed(pad) for p in (pi, pi)])
    for dim, (ki, si, di) in enumerate(zip(k, s, d, strict=False)):
        x = x.unfold(2 + dim, di * (ki - 1) + 1, si)  # (…, L_out, span)
        if di > 1:
            x = x[..., ::di]
    # (B, C, *L_out, *k) -> (B, *L_out, C, *k), read as (B, R, C·prod(k))
    x = x.permute(0, *range(2, 2 + n), 1, *range(2 + n, 2 + 2 * n))
    return x, (x.shape[0], math.prod(x.shape[1 : 1 + n]), math.prod(x.shape[1 + n :]))


def build_handlers(
    model: nn.Module, names: dict[int, str], kron_allowed: bool, kfac_max_dim: int
) -> list[Handler]:
    """One handler per parameter-owning module; decides which are K-FAC layers.

    A layer is K-FAC unless K-FAC is off, its weight is shared with another module (GPT-2's
    tied output embedding), it is a grouped conv, or a factor would exceed ``kfac_max_dim``.
    """
    owners: dict[int, int] = {}
    found: list[tuple[str, nn.Module, dict[str, nn.Parameter]]] = []
    for mname, mod in model.named_modules():
        own = {k: p for k, p in mod.named_parameters(recurse=False) if id(p) in names}
        if not own:
            continue
        found.append((mname, mod, own))
        for p in own.values():
            owners[id(p)] = owners.get(id(p), 0) + 1
    handlers = []
    for mname, mod, own in found:
        kind = module_kind(mod)
        if kind is None:
            raise NotImplementedError(
                f"evidence: module {mname!r} ({type(mod).__name__}) owns parameters but is not "
                "supported by the kfac/diag backends (Linear, Conv1d/2d, GPT-2 Conv1D, "
                "Embedding, LayerNorm, BatchNorm); use structure='full' for tiny nets"
            )
        h = Handler(mname, mod, kind, {k: names[id(p)] for k, p in own.items()})
        if kind in KRON_KINDS and kron_allowed:
            shared = any(owners[id(p)] > 1 for p in own.values())
            grouped = kind == "conv" and mod.groups != 1
            h.kron = not shared and not grouped and max(h.d_in, h.d_out) <= kfac_max_dim
            if "weight" not in own:
                h.kron = False
        handlers.append(h)
    return handlers


@contextmanager
def capturing(handlers: list[Handler], batch_size: list[int]) -> Iterator[None]:
    """Record (input, output) of every handler call while active; ``batch_size[0]`` is B."""

    def make_hook(h: Handler):
        def hook(_mod: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
            b = batch_size[0]
            x = inputs[0]
            if output.shape[0] == 1 and b > 1:  # broadcast over the batch downstream
                output = output.expand(b, *output.shape[1:])
                x = x.expand(b, *x.shape[1:])
            h.calls.append((x.detach(), output))
            return output.clone()

        return hook

    removers = [h.module.register_forward_hook(make_hook(h)) for h in handlers]
    try:
        yield
    finally:
        for r in removers:
            r.remove()
        for h in handlers:
            h.calls.clear()
