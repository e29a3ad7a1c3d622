"""Inference with CSR weights: Linear and Conv1d/2d layers whose weight is a
``torch.sparse_csr`` matrix (the 2-D view ``save_sparse`` stores), multiplied with
``torch.sparse.mm``. For measuring what sparse kernels buy on a CPU, not for training.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn


class CSRLinear(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        out = torch.sparse.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], out.shape[-1])


class CSRConv(nn.Module):
    """A Conv1d/2d (groups = 1, zero padding) as CSR weight × unfolded patches."""

    def __init__(self, conv: nn.Conv1d | nn.Conv2d, weight: torch.Tensor) -> None:
        super().__init__()
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("CSRConv supports groups=1 and numeric zero padding only")
        self.weight, self.bias = weight, conv.bias
        self.one_d = isinstance(conv, nn.Conv1d)
        k, s, p, d = conv.kernel_size, conv.stride, conv.padding, conv.dilation
        self.kernel, self.stride, self.padding, self.dilation = (
            ((1, *k), (1, *s), (0, *p), (1, *d)) if self.one_d else (k, s, p, d)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols, shape = self._patches(x)  # (C·k, B·L)
        out = torch.sparse.mm(self.weight, cols)  # (C_out, B·L)
        out = out.reshape(out.shape[0], *shape).transpose(0, 1)
        if self.bias is not None:
            out = out + self.bias.reshape(1, -1, *([1] * (out.dim() - 2)))
        return out

    def _patches(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        if self.one_d:
            # Tensor.unfold views: F.unfold on a (1, k) kernel is ~90x slower on CPU
            # (measured in evidence.curvature.capture)
            k, s, p, d = self.kernel[1], self.stride[1], self.padding[1], self.dilation[1]
            padded = F.pad(x, (p, p))
            win = padded.unfold(2, d * (k - 1) + 1, s)[..., ::d]  # (B, C, L, k)
            cols = win.permute(1, 3, 0, 2).reshape(x.shape[1] * k, -1)
            return cols, (x.shape[0], win.shape[2])
        out_h = (
            x.shape[2] + 2 * self.padding[0] - self.dilation[0] * (self.kernel[0] - 1) - 1
        ) // self.stride[0] + 1
        out_w = (
            x.shape[3] + 2 * self.padding[1] - self.dilation[1] * (self.kernel[1] - 1) - 1
        ) // self.stride[1] + 1
        patches = F.unfold(x, self.kernel, self.dilation, self.padding, self.stride)
        cols = patches.transpose(0, 1).reshape(patches.shape[1], -1)
        return cols, (x.shape[0], out_h, out_w)


def csr_model(model: nn.Module, csr_weights: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` whose layers named in ``csr_weights`` (``"<module>.weight"`` →
    CSR matrix, as ``load_sparse(..., layout="csr")`` returns) multiply sparsely."""
    out = copy.deepcopy(model).eval()
    modules = dict(out.named_modules())
    for name, weight in csr_weights.items():
        if weight.layout != torch.sparse_csr:
            continue
        owner, _, attr = name.rpartition(".")
        module = modules[owner]
        if attr != "weight":
            raise ValueError(f"{name!r}: only weights can be CSR")
        if isinstance(module, nn.Linear):
            new: nn.Module = CSRLinear(weight, module.bias)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
            new = CSRConv(module, weight)
        else:
            raise ValueError(
                f"{name!r}: CSR inference supports Linear and Conv1d/2d, not "
                f"{type(module).__name__}"
            )
        parent_name, _, child = owner.rpartition(".")
        setattr(modules[parent_name] if parent_name else out, child, new)
    return out
