"""Kedro project settings."""

from jmds_pipeline.conf_loader import NamingConfigLoader
from jmds_pipeline.hooks import RunSetupHooks

HOOKS = (RunSetupHooks(),)

CONFIG_LOADER_CLASS = NamingConfigLoader  # names the file when one is unreadable
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
