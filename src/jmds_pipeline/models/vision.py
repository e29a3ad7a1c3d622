"""torchvision ResNets with an optional CIFAR stem."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.models.layers import Classifier, InputNormalisation


@dataclass(frozen=True)
class ResNetOptions:
    # 3×3 stride-1 first convolution and no max-pool (He et al. 2016's CIFAR variant): the
    # ImageNet stem would shrink 32×32 inputs to 8×8 before the first block.
    cifar_stem: bool = True


def build_resnet(depth: int, meta: DatasetMeta, options: ResNetOptions) -> Classifier:
    """torchvision's ResNet-``depth`` (18 or 50), randomly initialised, for ``meta``'s
    classes; the output layer is ``net.fc``."""
    from torchvision.models import resnet18, resnet50

    if len(meta.input_shape) != 3:
        raise ValueError(
            f"model 'resnet{depth}' needs image inputs (channels, height, width); dataset "
            f"{meta.name!r} has {meta.input_shape}"
        )
    constructor = {18: resnet18, 50: resnet50}[depth]
    net = constructor(weights=None, num_classes=meta.num_classes)
    in_channels = meta.input_shape[0]
    if options.cifar_stem:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    # Re-initialise the stem as torchvision initialises its own (kaiming normal, fan_out).
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return Classifier(InputNormalisation(meta.mean, meta.std), net)
