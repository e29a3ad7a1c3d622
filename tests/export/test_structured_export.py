"""Channel-pruned models made physically smaller by Torch-Pruning and exported with
torch.export: the loaded program (no project code) predicts what the masked model θ ⊙ m
predicts, and has the parameter count the masks imply.

The expected count is independent of Torch-Pruning: for every parameter, the product over
its dimensions of the number of indices whose slice is not entirely masked (a closed form
for the 1-D CNN as well).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.export import export_structured, load_structured, physically_prune
from jmds_pipeline.models import build_model, prunable_parameter_names
from jmds_pipeline.sparsity.channels import (
    channel_groups,
    example_input,
    prune_channels_to_target,
    remove_group,
)
from jmds_pipeline.sparsity.masks import apply_masks


def _all_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters()}


def _alive_count(masks: dict[str, torch.Tensor]) -> int:
    total = 0
    for mask in masks.values():
        kept = 1
        for dim in range(mask.dim()):
            others = [d for d in range(mask.dim()) if d != dim]
            alive = mask.any(dim=others) if others else mask
            kept *= int(alive.sum())
        total += kept
    return total


def _check(model: nn.Module, masks: dict, groups: list, x: torch.Tensor, tmp: Path) -> dict:
    masked = model.eval()
    apply_masks(masked, masks)
    pruned = physically_prune(model, masks, groups, x[:2])
    config = export_structured(pruned, tmp, x[:2])
    loaded = load_structured(tmp)
    with torch.no_grad():
        reference = masked(x)
        for batch in (x[:1], x):  # batch 1 and a larger batch: the batch is dynamic
            assert (loaded(batch) - reference[: len(batch)]).abs().max() <= 1e-5
    assert config["parameter_count"] == _alive_count(masks)
    assert config["parameter_count"] < sum(p.numel() for p in model.parameters())
    on_disk = json.loads((tmp / "config.json").read_text())
    assert on_disk["parameter_count"] == config["parameter_count"]
    # what a user without this project runs
    program = torch.export.load(tmp / "model.pt2")
    assert (
        sum(v.numel() for v in program.state_dict.values() if isinstance(v, nn.Parameter))
        == config["parameter_count"]
    )
    return config


def test_cnn1d_export_matches_the_masked_model(tmp_path: Path) -> None:
    meta = DatasetMeta("mnist1d", "classification", 10, (1, 40))
    torch.manual_seed(0)
    model = build_model("cnn1d", meta)
    roots = prunable_parameter_names(model)
    groups = channel_groups(model, roots, example_input(meta.input_shape))
    masks = _all_masks(model)
    scores = torch.randn(
        len(groups), generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    chosen = prune_channels_to_target(scores, groups, masks, 0.6)
    x = torch.randn(16, 1, 40, generator=torch.Generator().manual_seed(2))
    config = _check(model, chosen, groups, x, tmp_path)
    c1, c2, c3 = (int(chosen[f"net.conv{i}.bias"].sum()) for i in (1, 2, 3))
    assert min(c1, c2, c3) >= 1 and c1 + c2 + c3 < 75
    closed_form = c1 * (5 + 1) + c2 * (3 * c1 + 1) + c3 * (3 * c2 + 1) + 10 * 5 * c3 + 10
    assert config["parameter_count"] == closed_form


def test_resnet18_cifar_export_matches_the_masked_model(tmp_path: Path) -> None:
    meta = DatasetMeta("cifar10", "classification", 10, (3, 32, 32))
    torch.manual_seed(0)
    model = build_model("resnet18", meta).eval()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():  # random BN statistics: a removed channel's BN must go too
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=gen))
                module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
                module.weight.copy_(torch.randn(module.num_features, generator=gen))
                module.bias.copy_(torch.randn(module.num_features, generator=gen))
    roots = [
        "net.layer1.0.conv1.weight",
        "net.layer1.0.conv2.weight",
        "net.layer3.1.conv1.weight",
        "net.layer4.0.conv1.weight",
    ]
    groups = channel_groups(model, roots, torch.zeros(2, 3, 32, 32))
    # layer1.0.conv2 writes the residual stream: its unit couples the stem, every
    # layer-1 block's second conv and BN, and every reader of the stream
    stream = next(g for g in groups if g.root == "net.layer1.0.conv2.weight")
    assert len({s.param for s in stream.slices if s.producer}) >= 6
    masks = _all_masks(model)
    pick = torch.Generator().manual_seed(4)
    for root in roots:
        mine = [g for g in groups if g.root == root]
        for i in torch.randperm(len(mine), generator=pick)[: len(mine) // 3].tolist():
            remove_group(mine[i], masks)
    x = torch.randn(4, 3, 32, 32, generator=gen)
    _check(model, masks, groups, x, tmp_path)
