"""Building blocks shared by the classifiers: input normalisation and the wrapper."""

from __future__ import annotations

import torch
from torch import nn


class InputNormalisation(nn.Module):
    """Scale ``uint8`` inputs to [0, 1], then subtract ``mean`` and divide by ``std``.

    Images stay ``uint8`` in memory (a quarter of float32's size) and become float only
    here, on the device, one batch at a time. Float inputs skip the scaling. ``mean`` and
    ``std`` are per channel (axis 1); without them only the dtype changes. The statistics
    are non-persistent buffers: they follow ``.to(device)`` but stay out of state dicts,
    which therefore hold exactly the learnable tensors. No parameters: nothing to prune.
    """

    def __init__(
        self, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None
    ) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("InputNormalisation needs both mean and std, or neither")
        self.mean: torch.Tensor | None
        self.std: torch.Tensor | None
        self.register_buffer("mean", None if mean is None else torch.tensor(mean), persistent=False)
        self.register_buffer("std", None if std is None else torch.tensor(std), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.to(torch.get_default_dtype()) / 255.0
        elif not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        if self.mean is None or self.std is None:
            return x
        shape = (1, -1) + (1,) * (x.ndim - 2)  # broadcast over the channel axis
        return (x - self.mean.to(x.dtype).view(shape)) / self.std.to(x.dtype).view(shape)

    def extra_repr(self) -> str:
        if self.mean is None or self.std is None:
            return "identity"
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


class Classifier(nn.Module):
    """``net(normalise(x))``: logits ``(B, num_classes)`` for raw (uint8 or float) inputs.

    Parameter names are ``net.<layer>.weight``, the same for every classifier, so masks
    and curvature factors can be keyed on them.
    """

    def __init__(self, normalise: InputNormalisation, net: nn.Module) -> None:
        super().__init__()
        self.normalise = normalise  # registered first: the first module of the model
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalise(x))
