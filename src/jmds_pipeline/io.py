"""Catalog dataset for tensors: a ``dict[str, Tensor]`` in one safetensors file.

Masks, model weights and data splits all take this form. Saving writes a temporary file
and renames it over the target, so an interrupted save never leaves a truncated file.
Both directions refuse NaN/inf in floating tensors: a diverged state is never written
over a good one, and a corrupted one is never trained on.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from kedro.io import AbstractDataset, DatasetError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from jmds_pipeline.guards import describe_nonfinite, nonfinite_entries


class TensorDictDataset(AbstractDataset[dict[str, torch.Tensor], dict[str, torch.Tensor]]):
    """``dict[str, Tensor]`` ↔ ``filepath`` (safetensors). Bool tensors round-trip as bool.

    ``allow_inf``: ±inf is a legal value (weight scores mark pruned weights +inf); NaN
    never is.
    """

    def __init__(
        self, filepath: str, metadata: dict[str, Any] | None = None, allow_inf: bool = False
    ) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata
        self._allow_inf = allow_inf

    def load(self) -> dict[str, torch.Tensor]:
        path = Path(self._filepath)
        if not path.exists():
            raise DatasetError(f"no tensors at {path}: run the stage that writes it first")
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise DatasetError(
                f"{path} is not a readable safetensors file (truncated or corrupted: "
                f"{error}); rerun the stage that writes it"
            ) from None
        bad = nonfinite_entries(tensors, allow_inf=self._allow_inf)
        if bad:
            raise DatasetError(
                f"{path} holds non-finite values in {describe_nonfinite(bad)}; "
                "rerun the stage that writes it"
            )
        return tensors

    def save(self, data: dict[str, torch.Tensor]) -> None:
        if not isinstance(data, dict) or not all(
            isinstance(v, torch.Tensor) for v in data.values()
        ):
            raise DatasetError(f"{self._filepath}: expected a dict of tensors")
        bad = nonfinite_entries(data, allow_inf=self._allow_inf)
        if bad:
            raise DatasetError(
                f"refusing to save {self._filepath}: non-finite values in "
                f"{describe_nonfinite(bad)}; the previous file is kept"
            )
        path = Path(self._filepath)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Tied or strided tensors (GPT-2 shares its embedding) must be stored apart.
        tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in data.items()}
        partial = path.with_name(path.name + ".partial")
        save_file(tensors, str(partial))
        os.replace(partial, path)

    def _exists(self) -> bool:
        return Path(self._filepath).exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
