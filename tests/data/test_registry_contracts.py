"""DatasetLoader's own contract, seen through a tiny registered stand-in dataset."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from jmds_pipeline.data import DatasetMeta, load_dataset, registry
from jmds_pipeline.data.registry import DatasetLoader
from jmds_pipeline.data.splits import make_split


@dataclass(frozen=True)
class _NoOptions:
    pass


def _split(first_id: int, n: int = 3):
    return make_split(
        torch.zeros(n, 2), torch.zeros(n, dtype=torch.int64), torch.arange(first_id, first_id + n)
    )


def _recording_loader(seeds: list[int], broken: str | None = None) -> DatasetLoader:
    """A loader that records the seed it is handed; ``broken`` names a split missing 'y'."""

    def load(options, raw_dir, seed):
        seeds.append(seed)
        splits = {"train": _split(0), "val": _split(10), "test": _split(20)}
        if broken is not None:
            del splits[broken]["y"]
        meta = DatasetMeta(name="mini", task="classification", num_classes=1, input_shape=(2,))
        return splits, meta

    return DatasetLoader("mini", _NoOptions, load, "a three-split stand-in")


def test_a_loader_called_without_a_seed_uses_seed_zero(tmp_path) -> None:
    seeds: list[int] = []
    loader = _recording_loader(seeds)
    loader(raw_dir=tmp_path)
    loader(raw_dir=tmp_path, seed=5)
    assert seeds == [0, 5]


def test_load_dataset_without_a_seed_uses_seed_zero(tmp_path, monkeypatch) -> None:
    seeds: list[int] = []
    monkeypatch.setitem(registry.DATASETS, "mini", _recording_loader(seeds))
    splits, meta = load_dataset("mini", raw_dir=tmp_path)
    load_dataset("mini", raw_dir=tmp_path, seed=7)
    assert seeds == [0, 7]
    assert splits["val"]["id"].tolist() == [10, 11, 12] and meta.name == "mini"


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_a_broken_split_is_named_by_dataset_and_split(tmp_path, split) -> None:
    loader = _recording_loader([], broken=split)
    with pytest.raises(ValueError, match=rf"^mini {split} lacks keys \['y'\]"):
        loader(raw_dir=tmp_path)
