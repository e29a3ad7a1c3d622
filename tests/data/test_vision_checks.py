"""Vision loaders' integrity checks, option errors and metadata (tiny fake files)."""

from __future__ import annotations

import hashlib
import re
from typing import ClassVar

import pytest

from jmds_pipeline.data import load_dataset
from jmds_pipeline.data.vision import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DatasetIntegrityError,
    check_cifar_md5,
    md5_of,
)
from tests.data.test_vision_datasets import FAKE, _save, write_cifar10, write_cifar100

GOOD, BAD = b"official bytes", b"tampered bytes"


class FakeRelease:
    base_folder = "release"
    filename = "release.tar.gz"
    train_list: ClassVar = [["good", hashlib.md5(GOOD).hexdigest()], ["absent", "0" * 32]]
    test_list: ClassVar = [["unchecked", None]]
    meta: ClassVar = {"filename": "meta", "md5": hashlib.md5(GOOD).hexdigest()}


def test_md5_of_is_the_files_md5(tmp_path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc" * 1000)
    assert md5_of(path) == hashlib.md5(b"abc" * 1000).hexdigest()


def test_cifar_md5_check_rejects_a_changed_file_naming_both_sums(tmp_path) -> None:
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "good").write_bytes(GOOD)
    (folder / "unchecked").write_bytes(BAD)  # no known md5: not checked
    (folder / "meta").write_bytes(GOOD)
    check_cifar_md5(tmp_path, FakeRelease)  # "absent" is missing: not checked here either
    (folder / "meta").write_bytes(BAD)
    message = (
        f"{folder / 'meta'} has md5 {hashlib.md5(BAD).hexdigest()}, not the official "
        f"{hashlib.md5(GOOD).hexdigest()}: it is not the FakeRelease release (re-extract "
        "release.tar.gz); files you made yourself are read with dataset_options.verify_md5=false"
    )
    with pytest.raises(DatasetIntegrityError, match=f"^{re.escape(message)}$"):
        check_cifar_md5(tmp_path, FakeRelease)
    (folder / "meta").write_bytes(GOOD)
    (folder / "good").write_bytes(BAD)
    with pytest.raises(DatasetIntegrityError, match="good has md5"):
        check_cifar_md5(tmp_path, FakeRelease)


def test_cifar_files_that_are_not_the_release_are_refused_by_default(tmp_path) -> None:
    write_cifar10(tmp_path)
    with pytest.raises(DatasetIntegrityError, match="data_batch_1 has md5"):
        load_dataset("cifar10", raw_dir=tmp_path)


def test_cifar_metadata(tmp_path) -> None:
    write_cifar10(tmp_path)
    write_cifar100(tmp_path)
    _, meta10 = load_dataset("cifar10", raw_dir=tmp_path, options=FAKE)
    _, meta100 = load_dataset("cifar100", raw_dir=tmp_path, options=FAKE)
    assert (meta10.name, meta10.task, meta10.num_classes) == ("cifar10", "classification", 10)
    assert (meta10.mean, meta10.std) == (CIFAR10_MEAN, CIFAR10_STD)
    assert meta10.extra["classes"][:2] == ["airplane", "automobile"]
    assert (meta100.name, meta100.task, meta100.num_classes) == ("cifar100", "classification", 100)
    assert (meta100.mean, meta100.std) == (CIFAR100_MEAN, CIFAR100_STD)
    with pytest.raises(
        ValueError, match=re.escape("option 'val_fraction' = 1.0; accepted: a number in [0, 1)")
    ):
        load_dataset("cifar10", raw_dir=tmp_path, options={**FAKE, "val_fraction": 1.0})


def _tiny_imagenet(root, val_classes=("n1",)) -> None:
    for wnid in ("n1", "n2"):
        for i in range(2):
            _save(root / "imagenet" / "train" / wnid / f"{i}.png", (10, 20, 30), (12, 9), "RGB")
    for wnid in val_classes:
        _save(root / "imagenet" / "val" / wnid / "v.png", (30, 20, 10), (9, 12), "RGB")


def test_imagenet_metadata_and_smallest_settings(tmp_path) -> None:
    _tiny_imagenet(tmp_path)
    options = {"image_size": 8, "workers": 1, "val_fraction": 0.25}
    splits, meta = load_dataset("imagenet", raw_dir=tmp_path, options=options)
    assert (meta.name, meta.task, meta.num_classes) == ("imagenet", "classification", 2)
    assert (meta.mean, meta.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert meta.extra == {"classes": ["n1", "n2"], "image_size": 8}
    assert splits["test"]["x"].shape == (1, 3, 8, 8)
    assert splits["test"]["y"].tolist() == [0] and splits["test"]["id"].tolist() == [4]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_size": 7}, "option 'image_size' = 7; accepted: an integer >= 8"),
        ({"workers": 0}, "option 'workers' = 0; accepted: an integer >= 1"),
        ({"val_fraction": -0.5}, "option 'val_fraction' = -0.5; accepted: a number in [0, 1)"),
    ],
)
def test_imagenet_option_errors(tmp_path, options, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        load_dataset("imagenet", raw_dir=tmp_path, options=options)


def test_imagenet_val_classes_must_exist_in_train(tmp_path) -> None:
    unknown = ("n3", "n4", "n5", "n6", "n7", "n8")
    _tiny_imagenet(tmp_path, val_classes=("n1", *unknown))
    message = (
        f"dataset 'imagenet': {tmp_path / 'imagenet' / 'val'} has classes absent from "
        "train: ['n3', 'n4', 'n5', 'n6', 'n7']"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        load_dataset("imagenet", raw_dir=tmp_path, options={"workers": 1})


def test_imagenet_missing_folder_names_the_dataset_and_its_layout(tmp_path) -> None:
    root = tmp_path / "imagenet"
    with pytest.raises(FileNotFoundError) as caught:
        load_dataset("imagenet", raw_dir=tmp_path)
    message = str(caught.value)
    assert message.startswith(f"dataset 'imagenet': no data found at {root / 'train'}.")
    assert f"{root}/train/<wnid>/*.JPEG and {root}/val/<wnid>/*.JPEG" in message
