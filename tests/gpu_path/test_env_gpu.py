"""``kedro run --env gpu`` on a machine without CUDA refuses, before any node runs; what the
gpu environment sets reaches the training loop and the evidence."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from jmds_pipeline.conf_loader import NamingConfigLoader
from jmds_pipeline.config import ConfigError, build_run_config
from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.runtime import evidence_config
from jmds_pipeline.settings import CONFIG_LOADER_ARGS
from tests.reliability.helpers import RUN, make_project

REPO = Path(__file__).resolve().parents[2]


def _parameters(env: str | None, **runtime: object) -> dict:
    loader = NamingConfigLoader(
        str(REPO / "conf"), env=env, runtime_params=runtime, **CONFIG_LOADER_ARGS
    )
    return loader["parameters"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for CUDA-less machines")
def test_env_gpu_without_cuda_refuses_before_any_node(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    cwd = Path.cwd()
    os.chdir(project)
    try:
        bootstrap_project(project)
        with (
            KedroSession.create(project_path=project, env="gpu", runtime_params=RUN) as session,
            pytest.raises(ConfigError) as refused,
        ):
            session.run()
    finally:
        os.chdir(cwd)
    assert str(refused.value) == (
        "device = 'cuda' but this machine has no CUDA device; "
        "accepted here: 'cpu' or 'auto' (run without --env gpu)"
    )
    data = project / "data"
    written = [p for p in data.rglob("*") if p.is_file() and ".locks" not in p.parts]
    assert written == []  # refused before the data step wrote anything


def test_env_gpu_settings_reach_training_and_evidence() -> None:
    meta = DatasetMeta("digits", "classification", 10, (64,))
    gpu = build_run_config({**_parameters("gpu", dataset="digits"), "device": "cpu"})
    assert gpu.training.mixed_precision and gpu.training.channels_last
    settings = evidence_config(gpu, meta)
    assert settings.mixed_precision and settings.channels_last
    base = build_run_config(_parameters(None, dataset="digits"))
    assert not base.training.mixed_precision and not base.training.channels_last
    assert not evidence_config(base, meta).mixed_precision


def test_default_dataset_comes_from_globals_and_params_override_it() -> None:
    # parameters.yml no longer interpolates ${globals:dataset} (DVC's -S cannot resolve it)
    globals_default = NamingConfigLoader(str(REPO / "conf"), **CONFIG_LOADER_ARGS)["globals"]
    assert _parameters(None)["dataset"] == globals_default["dataset"]
    assert _parameters(None, dataset="digits")["dataset"] == "digits"
    assert "${" not in (REPO / "conf" / "base" / "parameters.yml").read_text(encoding="utf-8")
