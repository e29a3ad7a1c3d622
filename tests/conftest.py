"""Shared fixtures: tiny splits and models that make every test run in seconds."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings
from torch import nn

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(autouse=True)
def _single_thread() -> None:
    # Small tensors: more threads only add scheduling noise on a 2-core CI machine.
    torch.set_num_threads(1)


def make_blobs(n: int = 120, features: int = 6, classes: int = 3, seed: int = 0) -> dict:
    """Separable Gaussian blobs as a split (x float32, y int64, id int64)."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centres = torch.randn(classes, features, generator=generator) * 3
    x = centres[y] + torch.randn(n, features, generator=generator)
    return {"x": x.float(), "y": y.long(), "id": torch.arange(1000, 1000 + n).long()}


@pytest.fixture
def blobs() -> dict:
    return make_blobs()


@pytest.fixture
def blob_mlp() -> nn.Module:
    """An untrained 6-16-3 ReLU MLP for the blobs (tests/evidence has its own MAP-trained
    ``map_mlp``; the two never share a name)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def seeded_blob_mlp(state: dict | None = None, hidden: int = 16) -> nn.Module:
    """``run_rounds``' ``build(state)``: the same seeded 6-hidden-3 MLP, with ``state``
    loaded when given (every rewind returns the same initialisation)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, hidden), nn.ReLU(), nn.Linear(hidden, 3))
    if state is not None:
        model.load_state_dict(state)
    return model


# Property tests draw the same examples on every run (seeded runs reproducible), and no
# example database is written into the working tree.
settings.register_profile("jmds", derandomize=True, database=None)
settings.load_profile("jmds")
