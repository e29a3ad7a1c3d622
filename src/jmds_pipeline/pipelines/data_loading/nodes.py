"""Load a registered dataset into train/val/test splits with stable sample ids."""

from __future__ import annotations

from typing import Any

from jmds_pipeline.data import load_dataset
from jmds_pipeline.data.types import Split
from jmds_pipeline.runtime import run_config_of


def load_splits(parameters: dict[str, Any]) -> tuple[Split, Split, Split, dict[str, Any]]:
    config = run_config_of(parameters)
    splits, meta = load_dataset(
        config.dataset, raw_dir=config.raw_dir, seed=config.seed, options=config.dataset_options
    )
    return splits["train"], splits["val"], splits["test"], meta.to_dict()
