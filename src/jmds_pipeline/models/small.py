"""Small models for the fast tracks: an MLP, MNIST-1D's 1-D CNN and a 2-D CNN."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from torch import nn

from jmds_pipeline.data.options import check_at_least
from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.models.layers import Classifier, InputNormalisation


@dataclass(frozen=True)
class MLPOptions:
    hidden_sizes: tuple[int, ...] = (300, 100)  # LeNet-300-100, the classic pruning MLP

    def __post_init__(self) -> None:
        for size in self.hidden_sizes:
            check_at_least(size, 1, "hidden_sizes")


def build_mlp(meta: DatasetMeta, options: MLPOptions) -> Classifier:
    """Flatten, then Linear+ReLU per hidden size, then a Linear output layer ``out``."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    width = math.prod(meta.input_shape)
    for index, size in enumerate(options.hidden_sizes, start=1):
        layers[f"fc{index}"] = nn.Linear(width, size)
        layers[f"relu{index}"] = nn.ReLU()
        width = size
    layers["out"] = nn.Linear(width, meta.num_classes)
    return Classifier(InputNormalisation(meta.mean, meta.std), nn.Sequential(layers))


@dataclass(frozen=True)
class CNN1DOptions:
    channels: int = 25

    def __post_init__(self) -> None:
        check_at_least(self.channels, 1, "channels")


# (kernel, stride, padding) of the three convolutions of the MNIST-1D paper's CNN
# (Greydanus & Kobak 2024, ``ConvBase``), which reaches about 94 % test accuracy.
_CNN1D_LAYERS = ((5, 2, 1), (3, 2, 1), (3, 2, 1))


def build_cnn1d(meta: DatasetMeta, options: CNN1DOptions) -> Classifier:
    """Three strided Conv1d+ReLU layers, flatten, Linear ``out`` (input ``(C, L)``)."""
    if len(meta.input_shape) != 2:
        raise ValueError(
            f"model 'cnn1d' needs inputs of shape (channels, length); dataset "
            f"{meta.name!r} has {meta.input_shape}"
        )
    in_channels, length = meta.input_shape
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for index, (kernel, stride, padding) in enumerate(_CNN1D_LAYERS, start=1):
        layers[f"conv{index}"] = nn.Conv1d(in_channels, options.channels, kernel, stride, padding)
        layers[f"relu{index}"] = nn.ReLU()
        in_channels = options.channels
        length = (length + 2 * padding - kernel) // stride + 1
    if length < 1:
        raise ValueError(f"model 'cnn1d': inputs of length {meta.input_shape[1]} are too short")
    layers["flatten"] = nn.Flatten()
    layers["out"] = nn.Linear(options.channels * length, meta.num_classes)
    return Classifier(InputNormalisation(meta.mean, meta.std), nn.Sequential(layers))


@dataclass(frozen=True)
class CNNOptions:
    channels: tuple[int, ...] = (32, 64)  # one 3×3 conv + ReLU + 2×2 max-pool block each

    def __post_init__(self) -> None:
        check_at_least(len(self.channels), 1, "channels (number of blocks)")
        for width in self.channels:
            check_at_least(width, 1, "channels")


def build_cnn(meta: DatasetMeta, options: CNNOptions) -> Classifier:
    """Conv blocks (3×3 conv, ReLU, 2×2 max-pool), flatten, Linear ``out``; input (C, H, W)."""
    if len(meta.input_shape) != 3:
        raise ValueError(
            f"model 'cnn' needs image inputs (channels, height, width); dataset "
            f"{meta.name!r} has {meta.input_shape} (digits: set dataset option as_image: true)"
        )
    in_channels, height, width = meta.input_shape
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for index, channels in enumerate(options.channels, start=1):
        if min(height, width) < 2:
            raise ValueError(
                f"model 'cnn': {len(options.channels)} pooling blocks are too many for "
                f"{meta.input_shape[1]}×{meta.input_shape[2]} inputs"
            )
        layers[f"conv{index}"] = nn.Conv2d(in_channels, channels, 3, padding=1)
        layers[f"relu{index}"] = nn.ReLU()
        layers[f"pool{index}"] = nn.MaxPool2d(2)
        in_channels, height, width = channels, height // 2, width // 2
    layers["flatten"] = nn.Flatten()
    layers["out"] = nn.Linear(in_channels * height * width, meta.num_classes)
    return Classifier(InputNormalisation(meta.mean, meta.std), nn.Sequential(layers))
