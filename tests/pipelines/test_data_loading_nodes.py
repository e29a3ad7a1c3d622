"""``load_splits``: the registered dataset's train/val/test in that order, and its metadata
as a plain dict; the run's dataset, raw_dir, seed and dataset options are what it loads."""

from __future__ import annotations

import torch

from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.pipelines.data_loading import nodes
from jmds_pipeline.pipelines.data_loading.nodes import load_splits


def test_digits_come_back_as_train_val_test_and_metadata() -> None:
    parameters = {"dataset": "digits", "model": "mlp", "seed": 3,
                  "dataset_options": {"val_fraction": 0.25, "test_fraction": 0.5}}
    train, val, test, meta = load_splits(parameters)
    # scikit-learn's digits: 1797 rows; half of them the test split, a quarter of the rest
    # carved off for validation (sizes by the options, never by the defaults 0.1 / 0.2)
    assert len(test["id"]) in (898, 899)
    assert len(val["id"]) in (224, 225)
    assert len(train["id"]) + len(val["id"]) + len(test["id"]) == 1797
    ids = torch.cat([train["id"], val["id"], test["id"]])
    assert sorted(ids.tolist()) == list(range(1797))  # disjoint, nothing lost
    assert train["x"].shape[1:] == (64,)
    assert meta == {"name": "digits", "task": "classification", "num_classes": 10,
                    "input_shape": (64,), "mean": None, "std": None, "extra": {}}
    assert DatasetMeta.from_dict(meta).num_classes == 10
    # the seed decides the validation carve (the test split is fixed)
    _, val_other, test_other, _ = load_splits({**parameters, "seed": 4})
    assert torch.equal(test_other["id"], test["id"])
    assert not torch.equal(val_other["id"], val["id"])


def test_the_runs_dataset_settings_are_what_is_loaded(monkeypatch) -> None:
    calls = []
    meta = DatasetMeta(name="digits", task="classification", num_classes=3, input_shape=(2,))
    splits = {name: {"x": torch.zeros(n, 2), "y": torch.zeros(n, dtype=torch.long),
                     "id": torch.arange(n)} for name, n in (("train", 5), ("val", 2),
                                                             ("test", 3))}

    def fake_load(name, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((name, kwargs))
        return splits, meta

    monkeypatch.setattr(nodes, "load_dataset", fake_load)
    parameters = {"dataset": "digits", "model": "mlp", "seed": 7, "raw_dir": "/data/raw",
                  "dataset_options": {"val_fraction": 0.3}}
    train, val, test, meta_out = load_splits(parameters)
    assert calls == [("digits", {"raw_dir": "/data/raw", "seed": 7,
                                 "options": {"val_fraction": 0.3}})]
    assert train is splits["train"] and val is splits["val"] and test is splits["test"]
    assert meta_out == meta.to_dict()
    assert isinstance(meta_out, dict)
