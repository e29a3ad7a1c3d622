"""Project hooks: validate every parameter and set up torch before the first node runs."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from jmds_pipeline.config import ConfigError, validate_parameters
from jmds_pipeline.pipeline_registry import configured_rounds

logger = logging.getLogger(__name__)


class RunSetupHooks:
    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """Fail fast: a bad key stops the run here, before data loading or training."""
        parameters = catalog.load("parameters")
        config = validate_parameters(parameters)
        device = config.resolved_device()  # raises if CUDA is asked for but absent
        runs_rounds = any((n.namespace or "").startswith("round_") for n in pipeline.nodes)
        built = configured_rounds()
        if runs_rounds and built != config.jmds.rounds:
            raise ConfigError(
                f"jmds.rounds = {config.jmds.rounds} but the pipeline was built with "
                f"{built} rounds; set jmds.rounds in "
                "conf/base/parameters_jmds.yml (it fixes the pipeline's shape), not --params"
            )
        import torch

        if config.torch_threads is not None:
            torch.set_num_threads(config.torch_threads)
        logger.info(
            "dataset=%s model=%s device=%s seed=%d", config.dataset, config.model, device,
            config.seed,
        )
