"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

from jmds_pipeline.hooks import RunSetupHooks

HOOKS = (RunSetupHooks(),)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # `--env gpu` overrides single keys (training.epochs) without restating whole sections.
    "merge_strategy": {"parameters": "soft", "catalog": "soft"},
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "globals": ["globals*.yml"],
    },
}
