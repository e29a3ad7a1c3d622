"""Device-generic mixed precision and memory layout: what ``--env gpu`` switches on.

The same code runs on CPU and CUDA (``torch.autocast(device_type=...)``), so the GPU
settings are exercised by CPU tests and cannot rot unseen. bf16 only: it has float32's
exponent range, so no loss scaling is needed (fp16 would need a GradScaler).
"""

from __future__ import annotations

import contextlib

import torch


def device_type(device: str | torch.device) -> str:
    """``"cuda"`` for ``"cuda:1"``, ``"cpu"`` for ``"cpu"`` (what ``torch.autocast`` takes)."""
    return torch.device(device).type


def autocast(device: str | torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device``'s type when ``enabled`` (a no-op context otherwise)."""
    return torch.autocast(device_type=device_type(device), dtype=torch.bfloat16, enabled=enabled)


def pin_memory_for(device: str | torch.device) -> bool:
    """Whether host batches should be pinned: only for a CUDA target (pinning needs the
    CUDA driver; a CPU-only torch build raises, a CUDA build on a driverless machine too)."""
    return device_type(device) == "cuda"


def to_device(x: torch.Tensor, device: str | torch.device, channels_last: bool) -> torch.Tensor:
    """``x`` on ``device`` (asynchronously from pinned memory), image batches in NHWC when
    ``channels_last`` (the layout cuDNN's and oneDNN's fast convolutions want)."""
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
