"""What every pass of one ``estimate_evidence`` call shares: model, data, masks, prior groups."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from jmds_pipeline import distributed

from .config import EvidenceConfig


def to_logits(out: object) -> Tensor:
    """Model output -> logits tensor (accepts HF ``ModelOutput`` and tuples)."""
    if isinstance(out, Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)):
        return out[0]
    raise TypeError(f"cannot read logits from a model output of type {type(out).__name__}")


class PriorGroups:
    """Prior-group index of each parameter: one group (``scalar``) or one per module."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.names: list[str] = []

    def index(self, param_name: str) -> int:
        key = "all" if self.mode == "scalar" else param_name.rsplit(".", 1)[0]
        if key not in self.names:
            self.names.append(key)
        return self.names.index(key)

    def __len__(self) -> int:
        return max(len(self.names), 1)


class Context:
    """Model (in eval mode, on ``device``), data, masks and the seeded generator of one call."""

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        config: EvidenceConfig,
        device: torch.device,
        names: dict[int, str],
        masks: dict[str, Tensor],
    ) -> None:
        self.model, self.x, self.y, self.cfg, self.device = model, x, y, config, device
        self.names = names  # id(parameter) -> canonical name
        self.params = {n: p for n, p in model.named_parameters() if id(p) in names}
        self.masks = masks
        self.gen = torch.Generator(device=device).manual_seed(config.seed)
        self.dtype = next(iter(self.params.values())).dtype
        self.groups = PriorGroups(config.prior_mode)

    def autocast(self) -> torch.autocast:
        """The forward passes' bf16 autocast on this device (disabled unless configured)."""
        return torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.cfg.mixed_precision
        )

    def batches(
        self,
        idx: Tensor,
        weights: Tensor | None,
        on_skip: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """(dataset indices, x, y, float64 sample weights) per batch; weights 1 when not given.

        Under torchrun each rank gets every W-th of the single-process batches
        (``distributed.owns_batch``); ``on_skip(rows)`` is called for each batch another
        rank runs, so a pass can advance ``gen`` past that batch's random draws.
        """
        bs = self.cfg.batch_size
        for k, s in enumerate(range(0, idx.numel(), bs)):
            if not distributed.owns_batch(k):
                if on_skip is not None:
                    on_skip(min(bs, idx.numel() - s))
                continue
            rows = idx[s : s + bs]
            xb = self.x[rows].to(self.device)
            if self.cfg.channels_last and xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = self.y[rows].to(self.device)
            if weights is None:
                wb = torch.ones(rows.numel(), dtype=torch.float64, device=self.device)
            else:
                wb = weights[s : s + bs].to(self.device, torch.float64)
            yield rows, xb, yb, wb
