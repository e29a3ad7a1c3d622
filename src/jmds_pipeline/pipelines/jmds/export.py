"""The node that turns the final (θ, m) into models users can ship (``export``)."""

from __future__ import annotations

from typing import Any

import torch

from jmds_pipeline.data.types import DatasetMeta, Split
from jmds_pipeline.export.structured import describe, exported_program, physically_prune
from jmds_pipeline.runtime import model_from_state, run_channel_groups, run_config_of


def export_model(
    final_state: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    train: Split,
    dataset_meta: dict[str, Any],
    parameters: dict[str, Any],
) -> tuple[tuple[Any, dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """(torch.export program with its description, CSR state, description).

    Channel granularity: the removed units are taken out by Torch-Pruning, so the program
    is a smaller dense model; weight granularity: the program is θ ⊙ m at full size (dense
    kernels gain nothing from zeros) and the CSR state is the compact form."""
    config = run_config_of(parameters)
    meta = DatasetMeta.from_dict(dataset_meta)
    model = model_from_state(config, meta, final_state)
    example = train["x"][:2]
    channel = config.jmds.granularity == "channel"
    groups = run_channel_groups(config, meta, model) if channel else []
    shipped = physically_prune(model, masks, groups, example)
    nonzero = sum(int(torch.count_nonzero(v)) for v in final_state.values())
    description = {
        **describe(shipped, example),
        "granularity": config.jmds.granularity,
        "dense_parameter_count": sum(p.numel() for p in model.parameters()),
        "nonzero_parameters": nonzero,
    }
    sparse = {"state": dict(final_state), "masks": masks}
    return (exported_program(shipped, example), description), sparse, description
