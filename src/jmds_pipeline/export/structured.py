"""Physical removal of masked channels with Torch-Pruning, and a self-contained export.

A channel-masked model (``sparsity.channels``) computes with zeros where whole units were
removed. ``physically_prune`` hands the removed units to Torch-Pruning's dependency graph
(``torch_pruning``), which shrinks every coupled layer (weights, biases, norm statistics,
the columns that read the unit, residual partners); no tensor surgery is written here. The
result is an ordinary, smaller, dense ``nn.Module`` with the same function as θ ⊙ m.

``export_structured`` saves it as a ``torch.export`` program (``model.pt2``, loadable with
``torch.export.load(path).module()`` and nothing of this project), its weights as
safetensors and a JSON description (parameter count, input shape, layer shapes).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from jmds_pipeline.sparsity.channels import ChannelGroup, group_active, root_pruning_fn
from jmds_pipeline.sparsity.masks import apply_masks

PROGRAM, WEIGHTS, CONFIG = "model.pt2", "weights.safetensors", "config.json"


def removed_channels(
    groups: Sequence[ChannelGroup], masks: Mapping[str, torch.Tensor]
) -> dict[str, list[int]]:
    """Root weight name → its removed unit indices (units whose producers are all masked)."""
    out: dict[str, list[int]] = {}
    for group in groups:
        if not group_active(group, masks):
            out.setdefault(group.root, []).append(group.channel)
    return out


def physically_prune(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    groups: Sequence[ChannelGroup],
    example_input: torch.Tensor,
) -> nn.Module:
    """A smaller copy of ``model`` without the units ``masks`` removed (θ ⊙ m applied first,
    so the copy computes what the masked model computes). ``groups`` come from
    ``channel_groups`` on the same architecture."""
    import torch_pruning as tp

    pruned = copy.deepcopy(model).eval()
    apply_masks(pruned, masks)
    removed = removed_channels(groups, masks)
    if not removed:  # weight granularity: nothing to trace (GPT-2 need not be traceable)
        return pruned
    modules = dict(pruned.named_modules())
    graph = tp.DependencyGraph().build_dependency(pruned, example_inputs=example_input)
    for root, channels in removed.items():
        module = modules[root[: -len(".weight")]]
        group = graph.get_pruning_group(module, root_pruning_fn(module), idxs=sorted(channels))
        if not graph.check_pruning_group(group):
            raise ValueError(
                f"Torch-Pruning refuses to remove units {sorted(channels)} of "
                f"{root!r} (it would leave a layer without channels)"
            )
        group.prune()
    return pruned


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def export_structured(
    model: nn.Module, directory: str | Path, example_input: torch.Tensor
) -> dict[str, Any]:
    """Write ``model.pt2`` (torch.export, dynamic batch), ``weights.safetensors`` and
    ``config.json`` under ``directory``; returns the config written."""
    from torch.export import save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    program = exported_program(model, example_input)
    save(program, directory / PROGRAM)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS))
    config = {**describe(model, example_input), "weights": WEIGHTS}
    (directory / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return config


def describe(model: nn.Module, example_input: torch.Tensor) -> dict[str, Any]:
    """The JSON description shipped with an exported model."""
    return {
        "format": "torch.export",
        "program": PROGRAM,
        "parameter_count": parameter_count(model),
        "input_shape": list(example_input.shape[1:]),
        "input_dtype": str(example_input.dtype).removeprefix("torch."),
        "parameters": {k: list(p.shape) for k, p in model.named_parameters()},
        "load": "torch.export.load('model.pt2').module()(x)",
    }


def load_structured(directory: str | Path) -> nn.Module:
    """The exported module (what a user without this project runs: torch.export.load)."""
    from torch.export import load

    return load(Path(directory) / PROGRAM).module()


def exported_program(model: nn.Module, example_input: torch.Tensor) -> Any:
    """``torch.export`` of ``model`` (eval mode) with a dynamic batch dimension."""
    from torch.export import Dim, export

    batch = Dim("batch", min=1, max=1 << 16)
    return export(model.eval(), (example_input,), dynamic_shapes=({0: batch},))
