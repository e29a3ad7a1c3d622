"""The split contract's checks and conversions, with their exact messages."""

from __future__ import annotations

import re

import pytest
import torch

from jmds_pipeline.data.errors import DatasetNotFoundError
from jmds_pipeline.data.splits import check_splits, make_split
from jmds_pipeline.data.types import DatasetMeta, validate_split


def _split(n: int = 3, start: int = 0) -> dict[str, torch.Tensor]:
    return {
        "x": torch.zeros(n, 2),
        "y": torch.zeros(n, dtype=torch.int64),
        "id": torch.arange(start, start + n),
    }


def _raises(message: str):
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


def test_make_split_stores_labels_and_ids_as_int64() -> None:
    split = make_split(
        torch.ones(2, 3),
        torch.tensor([1, 0], dtype=torch.int32),
        torch.tensor([5, 6], dtype=torch.int16),
    )
    assert split["y"].dtype == torch.int64 and split["id"].dtype == torch.int64
    assert split["y"].tolist() == [1, 0] and split["id"].tolist() == [5, 6]


def test_validate_split_names_what_is_wrong() -> None:
    validate_split(_split())
    with _raises("split lacks keys ['id', 'y']; a split needs 'x', 'y', 'id'"):
        validate_split({"x": torch.zeros(2)})
    bad_rows = {**_split(), "y": torch.zeros(4, dtype=torch.int64)}
    with _raises("val['y'] has 4 rows but val['id'] has 3"):
        validate_split(bad_rows, "val")
    bad_rows = {**_split(), "x": torch.zeros(2, 5)}
    with _raises("split['x'] has 2 rows but split['id'] has 3"):
        validate_split(bad_rows)
    for key in ("y", "id"):
        wrong = {**_split(), key: _split()[key].to(torch.int32)}
        with _raises("train: 'id' and 'y' must be int64"):
            validate_split(wrong, "train")
    with _raises("split: sample ids are not unique"):
        validate_split({**_split(), "id": torch.tensor([1, 1, 2])})


def test_check_splits_needs_all_three_with_unique_ids() -> None:
    good = {"train": _split(3, 0), "val": _split(2, 3), "test": _split(2, 5)}
    check_splits(good)
    with _raises("splits lack ['test', 'val']; expected ['train', 'val', 'test']"):
        check_splits({"train": _split()})
    with _raises("sample ids are not unique across train/val/test"):
        check_splits({**good, "test": _split(2, 4)})


def test_meta_round_trips_through_plain_lists() -> None:
    meta = DatasetMeta(
        "cifar10",
        "classification",
        10,
        (3, 32, 32),
        mean=(0.1, 0.2, 0.3),
        std=(0.4, 0.5, 0.6),
        extra={"classes": ["a"]},
    )
    payload = meta.to_dict()
    plain = {
        **payload,
        "input_shape": [3, 32, 32],
        "mean": [0.1, 0.2, 0.3],
        "std": [0.4, 0.5, 0.6],
    }  # what YAML/JSON give back
    again = DatasetMeta.from_dict(plain)
    assert again == meta and type(again.mean) is tuple and type(again.std) is tuple
    bare = DatasetMeta("digits", "classification", 10, (64,))
    assert DatasetMeta.from_dict(bare.to_dict()) == bare  # mean/std None stay None


def test_dataset_not_found_error_keeps_its_fields() -> None:
    error = DatasetNotFoundError("cifar10", "/data/c", "Get it.")
    assert error.dataset == "cifar10" and str(error.path) == "/data/c"
    assert str(error) == "dataset 'cifar10': no data found at /data/c. Get it."
    assert isinstance(error, FileNotFoundError)
