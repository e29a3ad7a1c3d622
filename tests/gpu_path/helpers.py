"""A tiny image task and CNN for the bf16 / channels_last tests, and the tolerance unit."""

from __future__ import annotations

import torch
from torch import nn

# bf16 keeps 8 significant bits: unit round-off u = 2⁻⁸ ≈ 3.9e-3. The tolerances of these
# tests are small multiples of u (a few roundings per layer of a 4-layer net), far below
# the O(1) errors of a wrong path (wrong layout, dropped term, bf16 sums over a batch).
BF16_U = 2.0**-8


def image_split(n: int = 192, seed: int = 0) -> dict[str, torch.Tensor]:
    """Three noisy 2×8×8 prototypes (2 channels: with one, NCHW and NHWC coincide)."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    prototypes = torch.randn(3, 2, 8, 8, generator=generator)
    x = prototypes[y] + 0.7 * torch.randn(n, 2, 8, 8, generator=generator)
    return {"x": x, "y": y, "id": torch.arange(n)}


def small_cnn() -> nn.Sequential:
    """Two convs (where channels_last matters) and two linears, seeded."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 36, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ in float64."""
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


class LayerProbe:
    """Forward hooks that record each probed layer's input layout and output dtype."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.seen: dict[str, set[tuple[bool, torch.dtype]]] = {name: set() for name in modules}
        self._handles = [
            module.register_forward_hook(self._hook(name)) for name, module in modules.items()
        ]

    def _hook(self, name: str):  # type: ignore[no-untyped-def]
        def hook(_module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            x = inputs[0]
            nhwc = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
            self.seen[name].add((nhwc, output.dtype))

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
