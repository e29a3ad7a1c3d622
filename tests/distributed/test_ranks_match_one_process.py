"""Two ranks on one machine (torchrun, gloo) against one process: the same evidence, the
same per-sample contributions in the same order on every rank, the same DDP weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.distributed.cases import EVIDENCE_CASES, TRAIN_CASES, evidence_case, train_case
from tests.distributed.compare import assert_same_evidence, assert_same_training
from tests.distributed.launch import REPO, free_port, run, single_node, torchrun_command

CASES = [*EVIDENCE_CASES, *TRAIN_CASES]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two_ranks")
    run(
        torchrun_command(
            *single_node(2, free_port()), "-m", "tests.distributed.worker", str(out), *CASES
        ),
        cwd=REPO,
    )
    return out


@pytest.fixture(scope="module")
def one_process() -> dict[str, dict]:
    torch.set_num_threads(1)  # as each rank: thread count can change float rounding
    return {
        case: evidence_case(case) if case in EVIDENCE_CASES else train_case(case) for case in CASES
    }


def _ranks(folder: Path, case: str) -> list[dict]:
    results = [torch.load(folder / f"{case}.rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert all(result["world_size"] == 2 for result in results)
    return results


@pytest.mark.parametrize("case", list(EVIDENCE_CASES))
def test_evidence_of_two_ranks_is_the_single_process_evidence(two_ranks, one_process, case):
    for rank, result in enumerate(_ranks(two_ranks, case)):
        errors = assert_same_evidence(result, one_process[case], f"{case} rank {rank}")
        print(case, rank, {k: f"{v:.1e}" for k, v in errors.items()})


def test_the_ranks_shared_the_evidence_passes(two_ranks, one_process):
    """Each rank ran its model on about half the rows the single process did (so the equal
    results above come from summed shards, not from each rank doing all the work)."""
    for case in EVIDENCE_CASES:
        alone = one_process[case]["rows_seen"]
        seen = [result["rows_seen"] for result in _ranks(two_ranks, case)]
        assert all(s < 0.7 * alone for s in seen), (case, seen, alone)
        assert sum(seen) >= alone, (case, seen, alone)


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_ddp_training_gives_the_single_process_weights(two_ranks, one_process, case):
    first, second = _ranks(two_ranks, case)
    for k in first["state"]:  # DDP keeps the replicas identical
        assert torch.equal(first["state"][k], second["state"][k]), k
    err = assert_same_training(first, one_process[case], case)
    print(case, f"max relative weight difference {err:.1e}")
