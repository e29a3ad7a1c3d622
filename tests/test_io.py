from pathlib import Path

import pytest
import torch
from kedro.io import DatasetError

from jmds_pipeline.io import TensorDictDataset


def test_round_trip_keeps_dtypes_and_values_and_unties_shared_tensors(tmp_path: Path):
    shared = torch.arange(6.0).view(2, 3)
    data = {"w": shared, "tied": shared, "mask": torch.tensor([True, False]),
            "ids": torch.arange(3)}
    dataset = TensorDictDataset(str(tmp_path / "nested" / "t.safetensors"))
    dataset.save(data)
    loaded = dataset.load()
    assert loaded.keys() == data.keys()
    for key, value in data.items():
        assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value)


def test_a_failed_save_leaves_the_previous_file_intact(tmp_path: Path):
    dataset = TensorDictDataset(str(tmp_path / "t.safetensors"))
    dataset.save({"a": torch.ones(2)})
    with pytest.raises(DatasetError, match="expected a dict of tensors"):
        dataset.save({"a": [1, 2]})  # type: ignore[dict-item]
    assert torch.equal(dataset.load()["a"], torch.ones(2))
    assert not list(tmp_path.glob("*.partial"))


def test_loading_a_missing_file_names_it(tmp_path: Path):
    with pytest.raises(DatasetError, match=r"no tensors at .*missing\.safetensors"):
        TensorDictDataset(str(tmp_path / "missing.safetensors")).load()
