"""The project's pipelines (nodes read the validated run configuration from ``parameters``)."""

from __future__ import annotations

import logging
from pathlib import Path

from kedro.config import OmegaConfigLoader
from kedro.framework.project import settings
from kedro.pipeline import Pipeline

from jmds_pipeline.pipelines.compare import pipeline as compare
from jmds_pipeline.pipelines.data_loading import pipeline as data_loading
from jmds_pipeline.pipelines.evaluation import pipeline as evaluation
from jmds_pipeline.pipelines.jmds import pipeline as jmds
from jmds_pipeline.pipelines.pretraining import pipeline as pretraining

logger = logging.getLogger(__name__)
DEFAULT_ROUNDS = 3


def configured_rounds(conf_source: str | Path | None = None) -> int:
    """``jmds.rounds`` from ``conf/base``: the number of round namespaces to build.

    Kedro builds pipelines before it reads ``--params``, so the round count is a
    configuration-file setting; the run-time hook rejects a different ``jmds.rounds``.
    """
    source = Path(conf_source or Path.cwd() / settings.CONF_SOURCE)
    if not (source / "base").is_dir():
        logger.warning("no %s/base: building %d JMDS rounds", source, DEFAULT_ROUNDS)
        return DEFAULT_ROUNDS
    loader = OmegaConfigLoader(str(source), base_env="base", default_run_env="base")
    return int(loader["parameters"].get("jmds", {}).get("rounds", DEFAULT_ROUNDS))


def register_pipelines() -> dict[str, Pipeline]:
    rounds = configured_rounds()
    loading = data_loading.create_pipeline()
    dense = pretraining.create_pipeline()
    rounds_pipeline = jmds.create_pipeline(rounds)
    evaluate = evaluation.create_pipeline(rounds)
    return {
        "data_loading": loading,
        "pretraining": dense,
        "jmds": rounds_pipeline,
        "evaluation": evaluate,
        "dense": loading + dense + evaluation.create_pipeline(),
        "compare": loading + compare.create_pipeline(),
        "__default__": loading + dense + rounds_pipeline + evaluate,
    }
