"""Catalog datasets for the shipped model: a torch.export program (one ``.pt2`` file, its
description inside as ``config.json``) and a CSR state (``export.sparse``). Both write a
temporary file and rename it over the target, as ``io.TensorDictDataset`` does."""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from kedro.io import AbstractDataset, DatasetError

from jmds_pipeline.export.sparse import load_sparse, save_sparse


class ProgramDataset(AbstractDataset[tuple, Any]):
    """save: ``(ExportedProgram, config dict)``; load: the program's ``nn.Module``."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def save(self, data: tuple) -> None:
        from torch.export import save

        program, config = data
        path = Path(self._filepath)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        save(program, str(partial), extra_files={"config.json": json.dumps(config)})
        os.replace(partial, path)

    def load(self) -> Any:
        from torch.export import load

        path = Path(self._filepath)
        if not path.exists():
            raise DatasetError(f"no exported program at {path}: run the stage that writes it")
        return load(str(path)).module()

    def _exists(self) -> bool:
        return Path(self._filepath).exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class SparseStateDataset(AbstractDataset[dict, dict[str, torch.Tensor]]):
    """save: ``{"state": ..., "masks": ...}`` (CSR for the masked tensors); load: the dense
    state with zeros where pruned."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def save(self, data: dict) -> None:
        path = Path(self._filepath)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        save_sparse(data["state"], data["masks"], partial)
        os.replace(partial, path)

    def load(self) -> dict[str, torch.Tensor]:
        path = Path(self._filepath)
        if not path.exists():
            raise DatasetError(f"no sparse state at {path}: run the stage that writes it")
        return load_sparse(path)

    def _exists(self) -> bool:
        return Path(self._filepath).exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
