"""The data catalog of a torchrun job: rank 0 alone writes files, the others wait for it.

Under ``torchrun ... -m kedro run`` every rank runs the whole pipeline (each node's heavy
passes are shared out inside the library, ``distributed``). Every rank calls
``catalog.save`` for the same datasets in the same order, so a save is a collective:

- rank 0 writes the file, then enters a barrier;
- the other ranks write nothing and enter the same barrier; when they leave it the file is
  complete, so a later ``load`` on any rank reads what rank 0 wrote (never a half-written
  file) and every rank starts each node from the same bytes;
- in-memory datasets (a node's unnamed outputs) are saved on every rank as usual: each
  rank keeps its own copy, which the next node reads.

A rank that fails raises before its barrier; torchrun then stops every rank. Without a
process group (a plain ``kedro run``) this is Kedro's ``DataCatalog`` unchanged.
"""

from __future__ import annotations

from typing import Any

from kedro.io import DataCatalog, MemoryDataset

from jmds_pipeline import distributed


class RankZeroCatalog(DataCatalog):
    """``DataCatalog`` whose saves of persisted datasets happen on rank 0 only."""

    def save(self, ds_name: str, data: Any) -> None:
        if not distributed.is_distributed() or isinstance(self[ds_name], MemoryDataset):
            super().save(ds_name, data)
            return
        if distributed.is_rank_zero():
            super().save(ds_name, data)
        distributed.barrier()
