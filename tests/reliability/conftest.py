"""A finished 2-round run on `digits` (tiny schedule), copied afresh for each fault."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.helpers import make_project, run


@pytest.fixture(scope="session")
def finished_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = make_project(tmp_path_factory.mktemp("reliability") / "project")
    run(project)
    return project


@pytest.fixture
def project(finished_project: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the finished run, to break."""
    copy = tmp_path / "project"
    shutil.copytree(finished_project, copy)
    yield copy
