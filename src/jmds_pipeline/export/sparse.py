"""Element-pruned models saved with compressed sparse rows, and read back.

Every masked parameter is stored as the CSR form (``torch.sparse_csr``) of its 2-D view
(rows = output units, columns = everything else: a conv's ``C_in·k`` entries): three
tensors (int32 indices) ``<name>.crow_indices``, ``<name>.col_indices``, ``<name>.values`` in one
safetensors file, its shape in the file's metadata; every other tensor is stored dense.
Values are θ ⊙ m: a weight whose mask is 0 is not stored, and a stored weight is never
dropped (even if it happens to be 0.0), so the mask is recovered exactly.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from safetensors import safe_open
from safetensors.torch import save_file

_PARTS = ("crow_indices", "col_indices", "values")
_META = "jmds_sparse"


def to_csr(tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The CSR tensor of ``tensor``'s 2-D view holding exactly the entries where ``mask``."""
    view = tensor.detach().reshape(tensor.shape[0], -1)
    keep = mask.reshape(view.shape).to(torch.bool)
    counts = keep.sum(1)
    # int32 indices (half of int64's bytes) whenever they fit, as torch.sparse allows
    index = torch.int32 if max(view.shape[1], int(counts.sum())) < 2**31 else torch.int64
    crow = torch.zeros(view.shape[0] + 1, dtype=index)
    crow[1:] = torch.cumsum(counts, 0)
    col = torch.nonzero(keep)[:, 1].to(index)  # row-major order, as CSR needs
    return _csr(crow, col, view[keep], tuple(view.shape))


def _csr(
    crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": known, not news
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, size=size)


def save_sparse(
    state: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor], path: str | Path
) -> None:
    """Write ``state`` with its masked parameters in CSR form (see the module doc)."""
    missing = sorted(set(masks) - set(state))
    if missing:
        raise ValueError(f"masks name tensors the state does not have: {missing}")
    tensors: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    for name, value in state.items():
        if name in masks:
            csr = to_csr(value, masks[name])
            for part in _PARTS:
                tensors[f"{name}.{part}"] = getattr(csr, part)().contiguous()
            shapes[name] = list(value.shape)
        else:
            tensors[name] = value.detach().contiguous()
    save_file(tensors, str(path), metadata={_META: json.dumps(shapes)})


def load_sparse(
    path: str | Path, layout: Literal["csr", "dense"] = "dense"
) -> dict[str, torch.Tensor]:
    """The saved state: CSR parameters as ``torch.sparse_csr`` 2-D tensors (``"csr"``) or
    as dense tensors of their original shape with zeros where pruned (``"dense"``, ready
    for ``load_state_dict``)."""
    if layout not in ("csr", "dense"):
        raise ValueError(f"layout = {layout!r}; accepted: 'csr', 'dense'")
    with safe_open(str(path), framework="pt") as handle:
        meta = (handle.metadata() or {}).get(_META)
        if meta is None:
            raise ValueError(
                f"{path}: not a sparse state written by save_sparse (no {_META!r} metadata)"
            )
        shapes = json.loads(meta)
        raw = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    out: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        crow, col, values = (raw.pop(f"{name}.{part}") for part in _PARTS)
        rows = shape[0]
        csr = _csr(crow, col, values, (rows, int(torch.tensor(shape[1:]).prod())))
        out[name] = csr if layout == "csr" else csr.to_dense().reshape(shape)
    out.update(raw)
    return out
