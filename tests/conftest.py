"""Shared fixtures: tiny splits and models that make every test run in seconds."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings
from torch import nn
from tqdm import auto, std

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

# tqdm's write lock made process-local for every process that collects the tests (moved
# here from tests/training so every package's mutation run is covered):
# tqdm's write lock made process-local for every process that collects these tests.
#
# tqdm guards its bars with a ``multiprocessing.RLock`` (a POSIX semaphore) created on the
# first bar, even a disabled one, and kept on the class. A process forked after that
# shares the semaphore. mutmut (``process_isolation = "fork"``) runs the tests once in its
# own process, then forks one child per mutant: a mutant that raises while a bar holds the
# lock (``unit=None`` in ``train_model``'s bar fails inside ``display()``, between tqdm's
# ``acquire`` and ``release``) leaves the shared semaphore taken, and every later child
# blocks in ``tqdm.__new__`` until mutmut's time limit: the timeouts were a deadlock, not
# kills (benchmarks/mutation.py, issue 12). No test here draws bars from several processes
# at once, so a thread lock is enough; it is set while collecting, before any bar exists.
std.TqdmDefaultWriteLock.mp_lock = None  # create_mp_lock keeps an existing attribute
for _cls in {std.tqdm, auto.tqdm}:
    if "_lock" in vars(_cls):  # a bar was made before collection: replace its lock too
        _cls.set_lock(std.TqdmDefaultWriteLock())


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
