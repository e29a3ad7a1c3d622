"""Forward passes of the classifiers, input normalisation and prunable weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jmds_pipeline.data import DatasetMeta
from jmds_pipeline.models import InputNormalisation, build_model, prunable_parameter_names

CIFAR = DatasetMeta(
    "cifar10", "classification", 10, (3, 32, 32), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
)
MNIST1D = DatasetMeta("mnist1d", "classification", 10, (1, 40))
DIGITS_IMAGE = DatasetMeta("digits", "classification", 10, (1, 8, 8))


@pytest.mark.parametrize(
    ("name", "meta", "options"),
    [
        ("mlp", DatasetMeta("digits", "classification", 10, (64,)), {}),
        ("mlp", CIFAR, {"hidden_sizes": [32]}),
        ("cnn1d", MNIST1D, {}),
        ("cnn", DIGITS_IMAGE, {}),
        ("cnn", CIFAR, {"channels": [8, 8, 8]}),
        ("resnet18", CIFAR, {}),
        (
            "resnet18",
            DatasetMeta("imagenet", "classification", 7, (3, 64, 64)),
            {"cifar_stem": False},
        ),
        ("resnet50", DatasetMeta("cifar100", "classification", 100, (3, 32, 32)), {}),
    ],
    ids=lambda value: value.name if isinstance(value, DatasetMeta) else None,
)
def test_forward_gives_logits_for_raw_inputs(name, meta, options) -> None:
    torch.manual_seed(0)
    model = build_model(name, meta, options).eval()
    if meta.mean is not None:  # image data stay uint8 in memory
        x = torch.randint(0, 256, (2, *meta.input_shape), dtype=torch.uint8)
    else:
        x = torch.randn(2, *meta.input_shape)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, meta.num_classes) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert isinstance(next(iter(model.children())), InputNormalisation)


def test_cifar_stem_keeps_32x32_resolution() -> None:
    stem = build_model("resnet18", CIFAR).net
    assert stem.conv1.kernel_size == (3, 3) and stem.conv1.stride == (1, 1)
    assert isinstance(stem.maxpool, nn.Identity)
    plain = build_model("resnet18", CIFAR, {"cifar_stem": False}).net
    assert plain.conv1.kernel_size == (7, 7)


def test_cnn1d_is_the_mnist1d_paper_cnn() -> None:
    model = build_model("cnn1d", MNIST1D)
    assert sum(p.numel() for p in model.parameters()) == 5210  # 3 convs of 25 + 125 -> 10


def test_input_normalisation_scales_uint8_and_standardises() -> None:
    layer = InputNormalisation((0.5, 0.25), (0.5, 0.25))
    x = torch.tensor([[[[255]], [[0]]]], dtype=torch.uint8)  # (1, 2, 1, 1)
    assert layer(x).flatten().tolist() == [1.0, -1.0]
    assert layer(torch.tensor([[[[0.5]], [[0.5]]]])).flatten().tolist() == [0.0, 1.0]
    assert InputNormalisation()(torch.tensor([3])).dtype == torch.float32
    assert not list(layer.parameters()) and not layer.state_dict()  # nothing to save or prune
    with pytest.raises(ValueError, match="both mean and std"):
        InputNormalisation((0.5,), None)


def test_prunable_names_are_linear_and_conv_weights() -> None:
    model = build_model("mlp", DatasetMeta("digits", "classification", 10, (64,)))
    assert prunable_parameter_names(model) == ["net.fc1.weight", "net.fc2.weight"]
    assert prunable_parameter_names(model, include_output_layer=True)[-1] == "net.out.weight"
    resnet = build_model("resnet18", CIFAR)
    names = prunable_parameter_names(resnet)
    parameters = dict(resnet.named_parameters())
    assert len(names) == 20 and "net.fc.weight" not in names  # 17 convs + 3 downsamples
    assert "net.layer2.0.downsample.0.weight" in names
    assert all(parameters[name].ndim == 4 for name in names)  # no biases, no batch norms
    assert prunable_parameter_names(resnet, include_output_layer=True)[-1] == "net.fc.weight"
    conv1d = build_model("cnn1d", MNIST1D)
    assert prunable_parameter_names(conv1d) == [f"net.conv{i}.weight" for i in (1, 2, 3)]
