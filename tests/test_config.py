"""Bad input stops the run with a message naming the key, the value and what is accepted."""

import pytest

from jmds_pipeline.config import ConfigError, build_run_config

BASE = {"dataset": "digits", "training": {"epochs": 2}}


def _error(parameters: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        build_run_config(parameters)
    return str(caught.value)


def test_valid_parameters_take_the_dataset_recipe_and_user_overrides():
    recipes = {"digits": {"model": "mlp", "training": {"epochs": 9, "lr": 0.3}}}
    config = build_run_config({**BASE, "recipes": recipes})
    assert config.model == "mlp"
    assert config.training.epochs == 2  # user beats recipe
    assert config.training.lr == 0.3  # recipe beats default


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ({"dataset": "mnist2d"}, ["dataset = 'mnist2d'", "accepted", "mnist1d"]),
        ({"model": "vgg"}, ["model = 'vgg'", "accepted", "resnet18"]),
        ({"training": {"lr": -0.1}}, ["training.lr = -0.1", "greater than 0"]),
        ({"training": {"epochs": 0}}, ["training.epochs = 0"]),
        ({"training": {"optimiser": "sgd"}}, ["training.optimiser", "unknown key"]),
        ({"jmds": {"target_model_sparsity": 1.0}}, ["jmds.target_model_sparsity = 1.0",
                                                    "less than 1"]),
        ({"jmds": {"target_data_sparsity": -0.1}}, ["jmds.target_data_sparsity = -0.1"]),
        ({"jmds": {"rounds": 0}}, ["jmds.rounds = 0"]),
        ({"jmds": {"schedule": "linear"}}, ["jmds.schedule = 'linear'", "geometric",
                                            "cubic"]),
        ({"jmds": {"lambda_model": -1.0}}, ["jmds.lambda_model = -1.0"]),
        ({"jmds": {"evidence": {"structure": "kron"}}}, ["jmds.evidence.structure = 'kron'",
                                                         "kfac"]),
        ({"device": "tpu"}, ["device = 'tpu'", "cpu"]),
    ],
)
def test_bad_values_are_named(override: dict, fragments: list[str]):
    message = _error({**BASE, **override})
    for fragment in fragments:
        assert fragment in message, message


def test_cuda_on_a_machine_without_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = build_run_config({**BASE, "device": "cuda"})
    with pytest.raises(ConfigError, match=r"device = 'cuda'.*no CUDA"):
        config.resolved_device()
    assert build_run_config({**BASE, "device": "auto"}).resolved_device() == "cpu"
