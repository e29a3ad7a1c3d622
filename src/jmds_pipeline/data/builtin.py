"""Datasets that need no files: scikit-learn's digits and the generated MNIST-1D."""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

import numpy as np
import torch

from jmds_pipeline.data.options import check_at_least, check_fraction
from jmds_pipeline.data.splits import TEST_SPLIT_SEED, carve, make_split
from jmds_pipeline.data.types import DatasetMeta, Split


@dataclass(frozen=True)
class DigitsOptions:
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    as_image: bool = False  # x as (N, 1, 8, 8) for the 2-D cnn instead of flat (N, 64)

    def __post_init__(self) -> None:
        check_fraction(self.val_fraction, "val_fraction")
        check_fraction(self.test_fraction, "test_fraction", allow_zero=False)


def load_digits(options: DigitsOptions, seed: int) -> tuple[dict[str, Split], DatasetMeta]:
    """scikit-learn's 1797 handwritten 8×8 digits, pixels scaled from 0..16 to [0, 1].

    The test split is a fixed 20 % (the same for every run seed); val is carved from the
    rest with ``seed``. Ids are the row numbers of ``sklearn.datasets.load_digits``.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)
    input_shape: tuple[int, ...] = (1, 8, 8) if options.as_image else (64,)
    x = x.reshape(-1, *input_shape)
    full = make_split(x, torch.from_numpy(bunch.target), torch.arange(x.shape[0]))
    rest, test = carve(full, options.test_fraction, TEST_SPLIT_SEED)
    train, val = carve(rest, options.val_fraction, seed)
    meta = DatasetMeta(
        name="digits", task="classification", num_classes=10, input_shape=input_shape
    )
    return {"train": train, "val": val, "test": test}, meta


@dataclass(frozen=True)
class MNIST1DOptions:
    num_samples: int = 5000  # the mnist1d package default: 4000 train + 1000 test
    seed: int = 42  # the package's generation seed (its default), not the split seed
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        check_at_least(self.num_samples, 10, "num_samples")  # one sample per class at least
        check_fraction(self.val_fraction, "val_fraction")


@functools.lru_cache(maxsize=4)
def _generate_mnist1d(num_samples: int, generation_seed: int) -> dict[str, np.ndarray]:
    """The package's dataset, generated offline (cached: generating 5000 takes seconds).

    ``make_dataset`` reseeds Python's and NumPy's global RNGs; their states are restored
    afterwards so that loading data never changes what a seeded run draws later.
    ``get_dataset`` is never used: it downloads a pickle.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = generation_seed
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    arrays = {key: np.asarray(data[key]) for key in ("x", "y", "x_test", "y_test")}
    for array in arrays.values():
        array.flags.writeable = False  # shared by the cache: callers must copy
    return arrays


def load_mnist1d(options: MNIST1DOptions, seed: int) -> tuple[dict[str, Split], DatasetMeta]:
    """MNIST-1D (Greydanus 2020): 40-step 1-D signals of ten digit templates.

    The package makes ``num_samples`` signals (rounded down to a multiple of ten) and
    splits them 80/20 into train and test; val is carved from train with ``seed``. x is
    ``(N, 1, 40)`` float32 (a channel axis for Conv1d), standardised with the mean and
    standard deviation of the final train split (the package standardises over all samples,
    test included). Ids: train rows first, then test rows, in the package's order.
    """
    arrays = _generate_mnist1d(options.num_samples, options.seed)
    x_train = torch.tensor(arrays["x"], dtype=torch.float32).unsqueeze(1)
    x_test = torch.tensor(arrays["x_test"], dtype=torch.float32).unsqueeze(1)
    n_train, n_test = x_train.shape[0], x_test.shape[0]
    train_all = make_split(x_train, torch.tensor(arrays["y"]), torch.arange(n_train))
    test = make_split(
        x_test, torch.tensor(arrays["y_test"]), torch.arange(n_train, n_train + n_test)
    )
    train, val = carve(train_all, options.val_fraction, seed)
    mean, std = train["x"].mean(), train["x"].std()
    for split in (train, val, test):
        split["x"] = (split["x"] - mean) / std
    meta = DatasetMeta(
        name="mnist1d",
        task="classification",
        num_classes=10,
        input_shape=(1, int(x_train.shape[-1])),
        extra={"num_samples": options.num_samples, "generation_seed": options.seed},
    )
    return {"train": train, "val": val, "test": test}, meta
