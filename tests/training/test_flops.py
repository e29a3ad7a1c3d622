"""FLOP counts against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jmds_pipeline.training.flops import (
    dense_flops_by_module,
    masked_inference_flops,
    training_flops,
)


def small_net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_dense_flops_of_linear_layers_per_module() -> None:
    # A multiply-add is 2 FLOPs: 2·4·3 and 2·3·2 per sample.
    flops = dense_flops_by_module(small_net(), torch.randn(5, 4))
    assert flops == {"0": 5 * 2 * 4 * 3, "2": 5 * 2 * 3 * 2}


def test_dense_flops_of_a_conv1d() -> None:
    # Conv1d(2 -> 3, kernel 3, no padding) on length 10: 8 outputs × 3 channels × (2·3) MACs.
    net = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Linear(24, 4))
    flops = dense_flops_by_module(net, torch.randn(1, 2, 10))
    assert flops == {"0": 2 * 8 * 3 * 2 * 3, "2": 2 * 24 * 4}


class Nested(nn.Module):
    """A parent with its own matmul and a grandchild called past its child."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(4, 4))
        self.weight = nn.Parameter(torch.randn(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block[0](x) @ self.weight


def test_flops_go_to_the_innermost_module_and_add_up() -> None:
    flops = dense_flops_by_module(Nested(), torch.randn(1, 4))
    assert flops == {"block.0": 2 * 4 * 4, "": 2 * 4 * 2}


def test_counting_leaves_mode_and_batch_norm_statistics_alone() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).train()
    before = net[1].running_mean.clone()
    dense_flops_by_module(net, torch.randn(2, 1, 5, 5))
    assert net.training and torch.equal(net[1].running_mean, before)


def test_half_masked_layer_halves_its_share() -> None:
    net = small_net()
    mask = torch.ones(3, 4)
    mask[:, :2] = 0  # half of layer 0's weights
    masked, dense = masked_inference_flops(net, {"0.weight": mask}, torch.randn(1, 4))
    assert dense == 2 * 4 * 3 + 2 * 3 * 2
    assert masked == 2 * 4 * 3 // 2 + 2 * 3 * 2
    assert masked_inference_flops(net, {}, torch.randn(1, 4)) == (dense, dense)


def test_bad_masks_are_rejected() -> None:
    net = small_net()
    with pytest.raises(ValueError, match=r"'1\.weight' names no parameter"):
        masked_inference_flops(net, {"1.weight": torch.ones(3, 4)}, torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(4, 3\)"):
        masked_inference_flops(net, {"0.weight": torch.ones(4, 3)}, torch.randn(1, 4))


def test_gpt2_counts_attention_and_the_tied_head() -> None:
    from jmds_pipeline.data import DatasetMeta
    from jmds_pipeline.models import build_model

    torch.manual_seed(0)
    model = build_model("gpt2", DatasetMeta("pydoc", "language_modeling", 256, (16,)))
    x = torch.randint(0, 256, (1, 16))
    flops = dense_flops_by_module(model, x)
    t, d, v = 16, 64, 256
    # per block: qkv 3d², proj d², mlp 8d² (MACs per token); attention 2·T·d per token
    per_block = 2 * t * (12 * d * d) + 2 * 2 * t * t * d
    assert sum(flops.values()) == 2 * per_block + 2 * t * d * v
    assert flops["lm.lm_head"] == 2 * t * d * v
    head_mask = torch.zeros(v, d)  # the head's weight is the tied embedding
    masked, dense = masked_inference_flops(model, {"lm.transformer.wte.weight": head_mask}, x)
    assert dense - masked == 2 * t * d * v


def test_training_flops_are_three_forward_passes() -> None:
    assert training_flops(100, 7) == 2100


class Deep(nn.Module):
    """Three levels: ``inner`` (a Sequential of a Sequential) and ``side``, whose own
    forward calls ``side.deep.0`` past ``side.deep``; the root adds its own matmul."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Sequential(nn.Linear(4, 4)))
        self.side = Nested()
        self.weight = nn.Parameter(torch.randn(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.side(self.inner(x))[:, :2] @ self.weight


def test_flops_of_deeper_nesting_go_to_the_innermost_module() -> None:
    flops = dense_flops_by_module(Deep(), torch.randn(1, 4))
    assert flops == {
        "inner.0.0": 2 * 4 * 4,
        "side.block.0": 2 * 4 * 4,
        "side": 2 * 4 * 2,
        "": 2 * 2 * 3,
    }


def test_a_root_weight_mask_applies_to_the_root_only() -> None:
    # Nested has a root parameter named "weight" and a child with its own weight
    masked, dense = masked_inference_flops(
        Nested(), {"weight": torch.zeros(4, 2)}, torch.randn(1, 4)
    )
    assert dense == 2 * 4 * 4 + 2 * 4 * 2
    assert masked == 2 * 4 * 4  # the root's own product is fully masked, the child's not
