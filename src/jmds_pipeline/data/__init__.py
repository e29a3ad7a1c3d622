"""Dataset registry and loaders; every sample carries a stable int64 id.

    from jmds_pipeline.data import DATASETS, load_dataset
    splits, meta = load_dataset("mnist1d", raw_dir="data/01_raw", seed=0)
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
