"""Glue between plain catalog data (dicts, state dicts) and torch objects, for the nodes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from jmds_pipeline.config import RunConfig, build_run_config
from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.evidence import EvidenceConfig


def seeded_model(config: RunConfig, meta: DatasetMeta) -> nn.Module:
    """The run's model, initialised from the run's seed (same seed → same weights)."""
    from jmds_pipeline.models import build_model

    torch.manual_seed(config.seed)
    return build_model(config.model, meta, config.model_options)


def model_from_state(
    config: RunConfig, meta: DatasetMeta, state: Mapping[str, torch.Tensor]
) -> nn.Module:
    """The run's model with ``state`` loaded (exactly; a missing key is an error)."""
    model = seeded_model(config, meta)
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


def run_config_of(parameters: Mapping[str, Any]) -> RunConfig:
    """The validated run configuration from Kedro's merged ``parameters``."""
    return build_run_config(parameters)


def evidence_config(
    config: RunConfig, meta: DatasetMeta, *, seed: int | None = None,
    structure: str | None = None,
) -> EvidenceConfig:
    """The evidence engine's settings for this run (likelihood from the dataset's task)."""
    settings = config.jmds.evidence.model_dump()
    if structure is not None:
        settings["structure"] = structure
    likelihood = "language_modeling" if meta.task == "language_modeling" else "classification"
    # the layout follows training's (one layout per run); bf16 is the evidence's own choice
    return EvidenceConfig(likelihood=likelihood, seed=config.seed if seed is None else seed,
                          channels_last=config.training.channels_last, **settings)


def mask_names(config: RunConfig, meta: DatasetMeta, model: nn.Module) -> list[str]:
    """The parameters a run's masks cover: the prunable weights, and in channel mode also
    the producers of their channel groups (biases, norm affines; ``sparsity.channels``)."""
    from jmds_pipeline.models import prunable_parameter_names

    weights = prunable_parameter_names(
        model, include_output_layer=config.jmds.include_output_layer,
        include_embeddings=config.jmds.include_embeddings,
    )
    if config.jmds.granularity == "weight":
        return weights
    from jmds_pipeline.sparsity.channels import channel_mask_names

    return channel_mask_names(run_channel_groups(config, meta, model), weights)


def run_channel_groups(config: RunConfig, meta: DatasetMeta, model: nn.Module) -> list:
    """The channel groups of the run's prunable layers (channel granularity)."""
    from jmds_pipeline.models import prunable_parameter_names
    from jmds_pipeline.sparsity.channels import channel_groups, example_input

    if meta.task != "classification":
        raise ValueError(f"jmds.granularity = 'channel' is for classifiers; dataset "
                         f"{meta.name!r} is {meta.task} (accepted there: 'weight')")
    weights = prunable_parameter_names(
        model, include_output_layer=config.jmds.include_output_layer,
        include_embeddings=config.jmds.include_embeddings,
    )
    return channel_groups(model, weights, example_input(meta.input_shape))
