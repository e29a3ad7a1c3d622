"""Conv patches: patches · Wᵀ + b must reproduce the convolution itself (ground truth)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jmds_pipeline.evidence.curvature.capture import _unfold


@pytest.mark.parametrize(
    ("conv", "shape"),
    [
        (nn.Conv1d(3, 4, 5, stride=2, padding=2), (2, 3, 13)),
        (nn.Conv1d(2, 3, 3, padding="same", dilation=2), (2, 2, 9)),
        (nn.Conv1d(2, 3, 4, padding="same"), (2, 2, 8)),  # even kernel: asymmetric padding
        (nn.Conv2d(2, 3, (2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1)), (2, 2, 6, 7)),
        (nn.Conv2d(3, 2, 3, padding="valid"), (1, 3, 5, 5)),
    ],
)
def test_patches_reproduce_the_convolution(conv, shape):
    torch.manual_seed(0)
    conv = conv.double()
    x = torch.randn(*shape, dtype=torch.float64)
    out = conv(x)
    patches = _unfold(conv, x)  # (B, R, C·k)
    w = conv.weight.reshape(conv.out_channels, -1)
    again = patches @ w.t() + conv.bias
    assert torch.allclose(again.transpose(1, 2).reshape(out.shape), out, atol=1e-12)
