"""digits and MNIST-1D: shapes, ids, seeds and standardisation."""

from __future__ import annotations

import random

import numpy as np
import torch

from jmds_pipeline.data import SPLIT_NAMES, load_dataset


def _ids(splits: dict) -> dict[str, torch.Tensor]:
    return {name: splits[name]["id"] for name in SPLIT_NAMES}


def test_digits_shapes_ranges_and_ids(tmp_path) -> None:
    splits, meta = load_dataset("digits", raw_dir=tmp_path, seed=0)
    sizes = {name: len(splits[name]["id"]) for name in SPLIT_NAMES}
    assert sizes == {"train": 1294, "val": 144, "test": 359}  # 1797 = 80/20, then 10 % val
    assert meta.input_shape == (64,) and meta.num_classes == 10
    x = splits["train"]["x"]
    assert x.dtype == torch.float32 and x.shape[1:] == (64,)
    assert float(x.min()) >= 0.0 and float(x.max()) == 1.0
    every_id = torch.cat(list(_ids(splits).values()))
    assert sorted(every_id.tolist()) == list(range(1797))


def test_digits_as_image_keeps_the_same_pixels(tmp_path) -> None:
    flat, _ = load_dataset("digits", raw_dir=tmp_path, seed=0)
    image, meta = load_dataset("digits", raw_dir=tmp_path, seed=0, options={"as_image": True})
    assert meta.input_shape == (1, 8, 8)
    torch.testing.assert_close(image["train"]["x"].reshape(-1, 64), flat["train"]["x"])


def test_digits_seeds_move_val_but_not_test(tmp_path) -> None:
    first, _ = load_dataset("digits", raw_dir=tmp_path, seed=3)
    again, _ = load_dataset("digits", raw_dir=tmp_path, seed=3)
    other, _ = load_dataset("digits", raw_dir=tmp_path, seed=4)
    for name in SPLIT_NAMES:
        for key in ("x", "y", "id"):
            assert torch.equal(first[name][key], again[name][key])
    assert torch.equal(first["test"]["id"], other["test"]["id"])
    assert not torch.equal(first["val"]["id"], other["val"]["id"])


def test_a_sample_keeps_its_id_and_content_whatever_the_seed(tmp_path) -> None:
    a, _ = load_dataset("digits", raw_dir=tmp_path, seed=0)
    b, _ = load_dataset("digits", raw_dir=tmp_path, seed=1)

    def by_id(splits: dict) -> dict[int, torch.Tensor]:
        return {
            int(i): x
            for name in SPLIT_NAMES
            for i, x in zip(splits[name]["id"], splits[name]["x"], strict=True)
        }

    first, second = by_id(a), by_id(b)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[i], second[i]) for i in first)


def test_mnist1d_default_sizes_and_standardisation(tmp_path) -> None:
    splits, meta = load_dataset("mnist1d", raw_dir=tmp_path, seed=0)
    sizes = {name: len(splits[name]["id"]) for name in SPLIT_NAMES}
    assert sizes == {"train": 3600, "val": 400, "test": 1000}
    assert meta.input_shape == (1, 40) and meta.num_classes == 10
    x = splits["train"]["x"]
    assert x.dtype == torch.float32 and x.shape[1:] == (1, 40)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-4
    assert splits["test"]["id"].min() == 4000  # test ids follow the package's train rows
    assert set(splits["train"]["y"].tolist()) == set(range(10))


def test_mnist1d_is_reproducible_and_leaves_global_rngs_alone(tmp_path) -> None:
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    options = {"num_samples": 300, "seed": 7}
    first, _ = load_dataset("mnist1d", raw_dir=tmp_path, seed=1, options=options)
    assert (random.random(), np.random.rand()) == expected
    again, _ = load_dataset("mnist1d", raw_dir=tmp_path, seed=1, options=options)
    for name in SPLIT_NAMES:
        for key in ("x", "y", "id"):
            assert torch.equal(first[name][key], again[name][key])
    assert len(first["train"]["id"]) + len(first["val"]["id"]) == 240  # 80 % of 300


def test_mnist1d_generation_seed_changes_the_signals(tmp_path) -> None:
    a, _ = load_dataset("mnist1d", raw_dir=tmp_path, options={"num_samples": 100, "seed": 1})
    b, _ = load_dataset("mnist1d", raw_dir=tmp_path, options={"num_samples": 100, "seed": 2})
    assert not torch.equal(a["test"]["x"], b["test"]["x"])
