"""Model registry: names, options, defaults and task checks."""

from __future__ import annotations

import pytest

from jmds_pipeline.data import DATASETS, DatasetMeta
from jmds_pipeline.models import MODELS, build_model, default_model_for

DIGITS = DatasetMeta("digits", "classification", 10, (64,))
TEXT = DatasetMeta("pydoc", "language_modeling", 256, (16,))


def test_every_design_model_is_registered() -> None:
    assert sorted(MODELS) == ["cnn", "cnn1d", "gpt2", "mlp", "resnet18", "resnet50"]


def test_unknown_model_names_value_and_accepted() -> None:
    with pytest.raises(ValueError, match=r"'vgg16'.*accepted.*'cnn1d'.*'resnet18'"):
        build_model("vgg16", DIGITS)


def test_unknown_option_names_key_and_accepted() -> None:
    with pytest.raises(ValueError, match=r"model 'mlp'.*'hidden'.*accepted.*hidden_sizes"):
        build_model("mlp", DIGITS, {"hidden": [10]})


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("mlp", {"hidden_sizes": [10, 0]}, r"'hidden_sizes' = 0"),
        ("mlp", {"hidden_sizes": 10}, r"'hidden_sizes' = 10.*list"),
        ("resnet18", {"cifar_stem": "no"}, r"'cifar_stem' = 'no'"),
        ("gpt2", {"size": "large"}, r"'size' = 'large'.*'tiny', 'small', 'medium'"),
    ],
)
def test_bad_option_values_are_rejected(name, options, message) -> None:
    meta = TEXT if name == "gpt2" else DatasetMeta("cifar10", "classification", 10, (3, 32, 32))
    with pytest.raises(ValueError, match=message):
        build_model(name, meta, options)


def test_models_refuse_the_wrong_task_or_input_shape() -> None:
    with pytest.raises(ValueError, match=r"'gpt2' is for language_modeling.*'digits'"):
        build_model("gpt2", DIGITS)
    with pytest.raises(ValueError, match=r"'mlp' is for classification"):
        build_model("mlp", TEXT)
    with pytest.raises(ValueError, match=r"'cnn' needs image inputs.*as_image"):
        build_model("cnn", DIGITS)
    with pytest.raises(ValueError, match=r"'cnn1d' needs inputs of shape"):
        build_model("cnn1d", DIGITS)


def test_default_models() -> None:
    assert {name: default_model_for(name) for name in DATASETS} == {
        "digits": "mlp",
        "mnist1d": "cnn1d",
        "cifar10": "resnet18",
        "cifar100": "resnet50",
        "imagenet": "resnet50",
        "pydoc": "gpt2",
        "wikitext2": "gpt2",
        "wikitext103": "gpt2",
    }
    with pytest.raises(ValueError, match=r"'svhn'.*accepted"):
        default_model_for("svhn")
