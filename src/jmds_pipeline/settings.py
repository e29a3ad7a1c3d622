"""Kedro project settings."""

from jmds_pipeline.conf_loader import NamingConfigLoader
from jmds_pipeline.hooks import RunSetupHooks
from jmds_pipeline.rank_catalog import RankZeroCatalog

HOOKS = (RunSetupHooks(),)

# Under torchrun only rank 0 writes through the catalog (README, "Distributed (torchrun)").
DATA_CATALOG_CLASS = RankZeroCatalog

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
