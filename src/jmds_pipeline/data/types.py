"""The in-memory form every dataset takes once loaded.

A split is a plain ``dict[str, Tensor]`` so it round-trips through safetensors and the
Kedro catalog unchanged:

- ``"x"``:  inputs. ``float32`` features / signals, ``uint8`` NCHW images (scaled to
  [0, 1] and normalised by the model's first layer), or ``int64`` token ids ``(N, T)``.
- ``"y"``:  ``int64`` class labels ``(N,)``, or next-token targets ``(N, T)`` for text.
- ``"id"``: ``int64`` stable sample ids ``(N,)``, unique across all splits of a dataset,
  fixed by the seed: data sparsification keeps or drops samples by these ids.

``DatasetMeta`` describes the task so that models and losses can be built from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import torch

Split = dict[str, torch.Tensor]
SPLIT_NAMES = ("train", "val", "test")
Task = Literal["classification", "language_modeling"]


@dataclass(frozen=True)
class DatasetMeta:
    name: str
    task: Task
    num_classes: int  # number of labels, or vocabulary size for language modelling
    input_shape: tuple[int, ...]  # shape of one sample's x
    mean: tuple[float, ...] | None = None  # per-channel normalisation for image inputs
    std: tuple[float, ...] | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict) -> DatasetMeta:
        payload = dict(payload)
        payload["input_shape"] = tuple(payload["input_shape"])
        for key in ("mean", "std"):
            if payload.get(key) is not None:
                payload[key] = tuple(payload[key])
        return cls(**payload)


def validate_split(split: Split, name: str = "split") -> None:
    """Raise ``ValueError`` naming what is wrong if ``split`` breaks the contract above."""
    missing = {"x", "y", "id"} - split.keys()
    if missing:
        raise ValueError(f"{name} lacks keys {sorted(missing)}; a split needs 'x', 'y', 'id'")
    n = split["id"].shape[0]
    for key in ("x", "y"):
        if split[key].shape[0] != n:
            raise ValueError(
                f"{name}['{key}'] has {split[key].shape[0]} rows but {name}['id'] has {n}"
            )
    if split["id"].dtype != torch.int64 or split["y"].dtype != torch.int64:
        raise ValueError(f"{name}: 'id' and 'y' must be int64")
    if torch.unique(split["id"]).numel() != n:
        raise ValueError(f"{name}: sample ids are not unique")
