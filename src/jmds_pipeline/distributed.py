"""Data-parallel helpers for runs launched by ``torchrun`` (PyTorch's elastic launcher).

torchrun starts one process per rank with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`init_from_env` joins the process group
(gloo on CPU, NCCL on CUDA) the first time a run asks for it, never at import. Without
those variables, or with ``WORLD_SIZE=1``, every helper here is a no-op that returns its
single-process answer, so library code calls them unconditionally.

Conventions the callers rely on:

- every rank holds the whole data set in memory and runs the same code in the same
  order; a rank works on its share of the *batches* (:func:`owns_batch`) or of each global
  batch's *rows* (:func:`local_slice`), and sums are formed with :func:`all_reduce_sum_`;
- per-sample results computed on shards are merged with :func:`merge_rows_`, after
  which *every* rank holds all of them in the original order (every rank makes the same
  mask / kept-sample decision from them, so no decision has to be broadcast);
- only rank 0 writes files (:func:`is_rank_zero`); the others wait at :func:`barrier`.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence

import torch
from torch import Tensor
from torch import distributed as dist

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """True when this process is one of several ranks started by torchrun."""
    return all(v in os.environ for v in LAUNCH_VARIABLES) and int(os.environ["WORLD_SIZE"]) > 1


def is_distributed() -> bool:
    """True when a process group of more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 without a process group; torchrun's RANK before init)."""
    if is_distributed():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Number of ranks taking part in collectives (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def group_rank() -> int:
    """This rank within the collectives (0 without a process group, whatever RANK says:
    a launched process that never joined works alone, on everything)."""
    return dist.get_rank() if is_distributed() else 0


def is_rank_zero() -> bool:
    """True in the one process that writes files: rank 0, or the only process."""
    return rank() == 0


def init_from_env(device: str = "cpu", timeout_s: float = 1800.0) -> bool:
    """Join torchrun's process group if launched and not joined yet; True if joined here.

    ``device`` is the run's resolved device: ``cuda`` selects NCCL and pins this process
    to GPU ``LOCAL_RANK`` (so plain ``"cuda"`` means its own GPU), anything else gloo.
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return False
    if not dist.is_available():
        raise RuntimeError("torchrun started several ranks but torch.distributed is unavailable")
    on_cuda = str(device).startswith("cuda")
    if on_cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(
        backend="nccl" if on_cuda else "gloo",
        init_method="env://",
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    return True


def teardown() -> None:
    """Leave the process group (after a last barrier, so no rank exits while one still
    needs it); a no-op without one."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _comm_device() -> torch.device:
    """Where the backend wants tensors: NCCL reduces CUDA tensors only, gloo CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum_(tensors: Sequence[Tensor]) -> None:
    """Sum each tensor over the ranks, in place; one collective per dtype (flat buffer)."""
    if not is_distributed() or not tensors:
        return
    comm = _comm_device()
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.detach().reshape(-1).to(comm) for t in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for t in group:
            n = t.numel()
            t.copy_(flat[offset : offset + n].view_as(t))
            offset += n


def owns_batch(batch_number: int) -> bool:
    """Whether this rank processes batch ``batch_number`` of a sharded pass (round robin)."""
    return batch_number % world_size() == group_rank()


def owned_items(idx: Tensor, batch_size: int) -> Tensor:
    """The entries of ``idx`` in the batches this rank owns, in order."""
    if not is_distributed():
        return idx
    parts = [
        idx[start : start + batch_size]
        for k, start in enumerate(range(0, idx.numel(), batch_size))
        if owns_batch(k)
    ]
    return torch.cat(parts) if parts else idx[:0]


def merge_rows_(values: Tensor, owned: Tensor, covered: Tensor) -> None:
    """Per-sample ``values`` (rows ``owned`` computed here) → all rows of ``covered`` on
    every rank, in place and exactly (each row comes from the one rank that owns it: a sum
    with zeros). Rows outside ``covered`` keep their value."""
    if not is_distributed():
        return
    share = torch.zeros_like(values)
    share[owned] = values[owned]
    all_reduce_sum_([share])
    values[covered] = share[covered]


def local_slice(num_rows: int) -> slice:
    """This rank's contiguous part of a global batch of ``num_rows`` rows (sizes differ by
    at most one; the first ``num_rows mod W`` ranks get the extra row)."""
    w, r = world_size(), group_rank()
    base, extra = divmod(num_rows, w)
    start = r * base + min(r, extra)
    return slice(start, start + base + (1 if r < extra else 0))


def gather_rows(local: Tensor, num_rows: int) -> Tensor:
    """The global batch of ``num_rows`` rows from every rank's :func:`local_slice` part."""
    if not is_distributed():
        return local
    w = world_size()
    longest = -(-num_rows // w)
    comm = _comm_device()
    padded = local.new_zeros((longest, *local.shape[1:])).to(comm)
    padded[: local.shape[0]] = local.to(comm)
    parts = [torch.empty_like(padded) for _ in range(w)]
    dist.all_gather(parts, padded)
    base, extra = divmod(num_rows, w)
    sizes = [base + (1 if r < extra else 0) for r in range(w)]
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)]).to(local.device)
