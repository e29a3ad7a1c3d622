"""Dataset registry and loaders; every sample carries a stable int64 id.

``splits, meta = load_dataset("mnist1d", raw_dir="data/01_raw", seed=0)`` gives the
train/val/test splits (see :mod:`jmds_pipeline.data.types`) and the dataset's description.
"""

from jmds_pipeline.data.errors import DatasetNotFoundError
from jmds_pipeline.data.registry import DATASETS, DatasetLoader, load_dataset
from jmds_pipeline.data.types import SPLIT_NAMES, DatasetMeta, Split, validate_split

__all__ = [
    "DATASETS",
    "SPLIT_NAMES",
    "DatasetLoader",
    "DatasetMeta",
    "DatasetNotFoundError",
    "Split",
    "load_dataset",
    "validate_split",
]
