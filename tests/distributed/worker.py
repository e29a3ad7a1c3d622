"""Run under torchrun: ``python -m torch.distributed.run ... -m tests.distributed.worker
OUT_DIR CASE...``; each rank joins the gloo group and saves ``<case>.rank<r>.pt``."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from jmds_pipeline import distributed
from tests.distributed.cases import EVIDENCE_CASES, evidence_case, train_case


def main(out_dir: str, *cases: str) -> None:
    torch.set_num_threads(1)
    if not distributed.init_from_env("cpu"):
        raise SystemExit("worker: not launched by torchrun with WORLD_SIZE > 1")
    try:
        for case in cases:
            result = evidence_case(case) if case in EVIDENCE_CASES else train_case(case)
            result["world_size"] = distributed.world_size()
            torch.save(result, Path(out_dir) / f"{case}.rank{distributed.rank()}.pt")
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main(*sys.argv[1:])
