"""The one error a user sees when a dataset's files are not where the loader looks."""

from __future__ import annotations

from pathlib import Path


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing; the message names the path and how to get them."""

    def __init__(self, dataset: str, path: str | Path, how_to_get: str) -> None:
        self.dataset = dataset
        self.path = Path(path)
        message = f"dataset {dataset!r}: no data found at {self.path}. {how_to_get}"
        super().__init__(message)
