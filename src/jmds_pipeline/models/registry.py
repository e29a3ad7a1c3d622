"""The model registry: ``build_model(name, meta, options)`` for every model the pipelines use.

Every model maps raw split inputs (``uint8`` images, float signals or int64 tokens) to
logits, ``(B, num_classes)`` or ``(B, T, vocab)``. torchvision and transformers are
imported only when their models are built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from jmds_pipeline.data.options import parse_options
from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.models import gpt2, small, vision


@dataclass(frozen=True)
class ModelBuilder:
    """A registered model: its options dataclass, its builder and the task it solves."""

    name: str
    options: type
    build: Callable[[DatasetMeta, Any], nn.Module]
    task: str
    description: str

    def __call__(self, meta: DatasetMeta, options: Mapping[str, Any] | None = None) -> nn.Module:
        parsed = parse_options(self.options, options, owner=f"model {self.name!r}")
        if meta.task != self.task:
            raise ValueError(
                f"model {self.name!r} is for {self.task}; dataset {meta.name!r} is {meta.task}"
            )
        return self.build(meta, parsed)


MODELS: dict[str, ModelBuilder] = {
    builder.name: builder
    for builder in (
        ModelBuilder("mlp", small.MLPOptions, small.build_mlp, "classification", "MLP"),
        ModelBuilder(
            "cnn1d", small.CNN1DOptions, small.build_cnn1d, "classification", "MNIST-1D CNN"
        ),
        ModelBuilder("cnn", small.CNNOptions, small.build_cnn, "classification", "small 2-D CNN"),
        ModelBuilder(
            "resnet18",
            vision.ResNetOptions,
            lambda meta, options: vision.build_resnet(18, meta, options),
            "classification",
            "torchvision ResNet-18",
        ),
        ModelBuilder(
            "resnet50",
            vision.ResNetOptions,
            lambda meta, options: vision.build_resnet(50, meta, options),
            "classification",
            "torchvision ResNet-50",
        ),
        ModelBuilder(
            "gpt2", gpt2.GPT2Options, gpt2.build_gpt2, "language_modeling", "GPT-2 (transformers)"
        ),
    )
}

DEFAULT_MODELS = {
    "digits": "mlp",
    "mnist1d": "cnn1d",
    "cifar10": "resnet18",
    "cifar100": "resnet50",
    "imagenet": "resnet50",
    "pydoc": "gpt2",
    "wikitext2": "gpt2",
    "wikitext103": "gpt2",
}


def build_model(
    name: str, meta: DatasetMeta, options: Mapping[str, Any] | None = None
) -> nn.Module:
    """Build model ``name`` for the dataset ``meta`` describes (freshly initialised from
    the global torch RNG, so seed before calling). Unknown names or options raise
    ``ValueError`` listing what is accepted."""
    if name not in MODELS:
        raise ValueError(f"model = {name!r} is not a known model; accepted: {sorted(MODELS)}")
    return MODELS[name](meta, options)


def default_model_for(dataset_name: str) -> str:
    """The model a dataset uses when none is named."""
    if dataset_name not in DEFAULT_MODELS:
        raise ValueError(
            f"dataset = {dataset_name!r} has no default model; accepted: {sorted(DEFAULT_MODELS)}"
        )
    return DEFAULT_MODELS[dataset_name]
