"""CIFAR-10/100 and ImageNet read from tiny files in their real on-disk formats."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jmds_pipeline.data import SPLIT_NAMES, DatasetNotFoundError, load_dataset
from jmds_pipeline.data.vision import CIFAR10_MEAN

PER_BATCH = 6  # images per CIFAR-10 data batch (the real batches hold 10 000)
FAKE = {"verify_md5": False}  # the files below are not the official release


def _pickle(path: Path, payload: dict) -> None:
    with open(path, "wb") as handle:
        pickle.dump(payload, handle, protocol=2)  # the release's pickles are protocol 2


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    # One image per row: 1024 red, then 1024 green, then 1024 blue values, row-major.
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for index in range(1, 6):
        data = _rows(rng, PER_BATCH)
        batch_labels = rng.integers(0, 10, PER_BATCH).tolist()
        _pickle(
            folder / f"data_batch_{index}",
            {
                "batch_label": f"training batch {index} of 5",
                "labels": batch_labels,
                "data": data,
                "filenames": [f"img_{index}_{i}.png" for i in range(PER_BATCH)],
            },
        )
        rows.append(data)
        labels += batch_labels
    test_rows, test_labels = _rows(rng, 4), [0, 1, 2, 9]
    _pickle(
        folder / "test_batch",
        {"batch_label": "testing batch 1 of 1", "labels": test_labels, "data": test_rows},
    )
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    _pickle(
        folder / "batches.meta",
        {"num_cases_per_batch": PER_BATCH, "label_names": names, "num_vis": 3072},
    )
    return {
        "train": np.concatenate(rows),
        "train_labels": np.array(labels),
        "test": test_rows,
        "test_labels": np.array(test_labels),
    }


def write_cifar100(root: Path) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in (("train", 20), ("test", 5)):
        fine = rng.integers(0, 100, n).tolist()
        _pickle(
            folder / name,
            {
                "filenames": [f"{name}_{i}.png" for i in range(n)],
                "batch_label": f"{name} batch 1 of 1",
                "fine_labels": fine,
                "coarse_labels": [label // 5 for label in fine],
                "data": _rows(rng, n),
            },
        )
    _pickle(
        folder / "meta",
        {
            "fine_label_names": [f"fine_{i}" for i in range(100)],
            "coarse_label_names": [f"coarse_{i}" for i in range(20)],
        },
    )


def test_cifar10_reads_the_python_batches(tmp_path) -> None:
    written = write_cifar10(tmp_path)
    splits, meta = load_dataset("cifar10", raw_dir=tmp_path, seed=0, options=FAKE)
    assert meta.num_classes == 10 and meta.input_shape == (3, 32, 32)
    assert meta.mean == CIFAR10_MEAN and meta.extra["classes"][0] == "airplane"
    n_train = 5 * PER_BATCH
    assert len(splits["train"]["id"]) == 27 and len(splits["val"]["id"]) == 3  # 10 % of 30
    test = splits["test"]
    assert test["x"].dtype == torch.uint8 and test["x"].shape == (4, 3, 32, 32)
    # NCHW with the channel planes of the pickled rows: pixel (c, h, w) = row[1024c + 32h + w]
    expected = torch.from_numpy(written["test"]).reshape(4, 3, 32, 32)
    assert torch.equal(test["x"], expected)
    assert test["y"].tolist() == [0, 1, 2, 9]
    assert test["id"].tolist() == list(range(n_train, n_train + 4))
    for name in ("train", "val"):
        rows = splits[name]["id"]
        assert torch.equal(
            splits[name]["x"],
            torch.from_numpy(written["train"][rows.numpy()]).reshape(-1, 3, 32, 32),
        )
        assert splits[name]["y"].tolist() == written["train_labels"][rows.numpy()].tolist()


def test_cifar10_splits_are_fixed_by_the_seed(tmp_path) -> None:
    write_cifar10(tmp_path)
    first, _ = load_dataset("cifar10", raw_dir=tmp_path, seed=2, options=FAKE)
    again, _ = load_dataset("cifar10", raw_dir=tmp_path, seed=2, options=FAKE)
    for name in SPLIT_NAMES:
        assert torch.equal(first[name]["id"], again[name]["id"])
    # download: true with the files present must not touch the network (none here).
    whole, _ = load_dataset(
        "cifar10", raw_dir=tmp_path, options={"val_fraction": 0, "download": True, **FAKE}
    )
    assert len(whole["val"]["id"]) == 0 and whole["val"]["x"].shape == (0, 3, 32, 32)


def test_cifar100_reads_fine_labels(tmp_path) -> None:
    write_cifar100(tmp_path)
    splits, meta = load_dataset("cifar100", raw_dir=tmp_path, seed=0, options=FAKE)
    assert meta.num_classes == 100 and meta.extra["classes"][3] == "fine_3"
    assert [len(splits[name]["id"]) for name in SPLIT_NAMES] == [18, 2, 5]
    assert meta.std is not None and len(meta.std) == 3


def test_cifar_missing_files_give_one_clear_error(tmp_path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("cifar10", raw_dir=tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "data_batch_3" in message and "download: true" in message
    assert "cifar-10-python.tar.gz" in message
    with pytest.raises(DatasetNotFoundError, match=r"cifar-100-python.*Missing: train, test, meta"):
        load_dataset("cifar100", raw_dir=tmp_path)


def _save(path: Path, colour: tuple[int, int, int], size: tuple[int, int], mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    (image.convert("L") if mode == "L" else image).save(path)


def write_imagenet(root: Path) -> None:
    colours = {"n01440764": (200, 10, 50), "n01443537": (20, 120, 240)}
    for wnid, colour in colours.items():
        for i in range(5):
            _save(root / "imagenet" / "train" / wnid / f"{wnid}_{i}.JPEG", colour, (40, 30), "RGB")
        _save(root / "imagenet" / "train" / wnid / "extra.png", colour, (30, 50), "RGB")
    # The val folder may lack classes: labels must follow train's class indices.
    _save(root / "imagenet" / "val" / "n01443537" / "val_0.png", (20, 120, 240), (64, 64), "RGB")
    _save(root / "imagenet" / "val" / "n01443537" / "val_1.png", (90, 90, 90), (16, 20), "L")


def test_imagenet_reads_image_folders(tmp_path) -> None:
    write_imagenet(tmp_path)
    options = {"image_size": 16, "val_fraction": 0.25, "workers": 2}
    splits, meta = load_dataset("imagenet", raw_dir=tmp_path, seed=0, options=options)
    assert meta.num_classes == 2 and meta.input_shape == (3, 16, 16)
    assert meta.extra["classes"] == ["n01440764", "n01443537"]
    assert [len(splits[name]["id"]) for name in SPLIT_NAMES] == [9, 3, 2]
    test = splits["test"]
    assert test["x"].dtype == torch.uint8 and test["x"].shape == (2, 3, 16, 16)
    assert test["y"].tolist() == [1, 1]
    assert test["id"].tolist() == [12, 13]
    assert test["x"][0, :, 8, 8].tolist() == [20, 120, 240]  # PNG: exact colour
    assert test["x"][1, :, 8, 8].tolist() == [90, 90, 90]  # greyscale becomes RGB
    train = torch.cat([splits["train"]["x"], splits["val"]["x"]]).float()
    labels = torch.cat([splits["train"]["y"], splits["val"]["y"]])
    red = train[labels == 0].mean(dim=(0, 2, 3))
    assert torch.allclose(red, torch.tensor([200.0, 10.0, 50.0]), atol=6)  # JPEG: close


def test_imagenet_missing_folder_says_how_to_get_it(tmp_path) -> None:
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("imagenet", raw_dir=tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "imagenet" / "train") in message
    assert "image-net.org" in message and "<wnid>" in message
