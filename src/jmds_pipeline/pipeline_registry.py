"""The project's pipelines (nodes read the validated run configuration from ``parameters``)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from kedro.framework.project import settings
from kedro.pipeline import Pipeline

from jmds_pipeline.conf_loader import NamingConfigLoader
from jmds_pipeline.pipelines.compare import pipeline as compare
from jmds_pipeline.pipelines.data_loading import pipeline as data_loading
from jmds_pipeline.pipelines.evaluation import pipeline as evaluation
from jmds_pipeline.pipelines.jmds import pipeline as jmds
from jmds_pipeline.pipelines.pretraining import pipeline as pretraining

logger = logging.getLogger(__name__)
DEFAULT_ROUNDS = 3


def run_env() -> str:
    """The configuration environment of this run, as far as it is known when pipelines are
    built: ``KEDRO_ENV``, else ``--env``/``-e`` on the command line, else ``local``."""
    env = os.environ.get("KEDRO_ENV")
    if env:
        return env
    argv = sys.argv[1:]
    for index, arg in enumerate(argv):
        if arg.startswith("--env="):
            return arg.split("=", 1)[1]
        if arg in ("--env", "-e") and index + 1 < len(argv):
            return argv[index + 1]
    return "local"


def rounds_source(conf_source: str | Path | None = None) -> str:
    """Where :func:`configured_rounds` reads ``jmds.rounds`` (for error messages)."""
    source = Path(conf_source or Path.cwd() / settings.CONF_SOURCE)
    env = run_env()
    return "conf/base" + (f" and conf/{env}" if (source / env).is_dir() else "")


def configured_rounds(conf_source: str | Path | None = None) -> int:
    """``jmds.rounds`` from ``conf/base`` and the run's environment (``conf/local`` unless
    ``KEDRO_ENV`` / ``--env`` names another): the number of round namespaces to build.

    Kedro builds pipelines before it reads ``--params``, so the round count is a
    configuration-file setting; the run-time hook rejects a different ``jmds.rounds``.
    """
    source = Path(conf_source or Path.cwd() / settings.CONF_SOURCE)
    if not (source / "base").is_dir():
        logger.warning("no %s/base: building %d JMDS rounds", source, DEFAULT_ROUNDS)
        return DEFAULT_ROUNDS
    env = run_env()
    loader = NamingConfigLoader(
        str(source), base_env="base", default_run_env="base",
        env=env if (source / env).is_dir() else None,
        merge_strategy={"parameters": "soft"},
        config_patterns={"parameters": ["parameters*", "parameters*/**", "**/parameters*"]},
    )
    return int((loader["parameters"].get("jmds") or {}).get("rounds", DEFAULT_ROUNDS))


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
