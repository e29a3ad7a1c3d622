"""Two "machines" on localhost: two torchrun agents of one process each meeting through the
c10d rendezvous, checked against one process."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from tests.distributed.cases import evidence_case, train_case
from tests.distributed.compare import assert_same_evidence, assert_same_training
from tests.distributed.launch import REPO, environment, free_port, torchrun_command, wait_all


@pytest.mark.slow
def test_two_nodes_give_the_single_process_results(tmp_path: Path):
    port = free_port()
    agents = []
    for node in (0, 1):
        command = torchrun_command(
            "--nnodes=2",
            f"--node-rank={node}",
            "--nproc-per-node=1",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{port}",
            # both agents match 127.0.0.1: say which one hosts the rendezvous store
            f"--rdzv-conf=is_host={'true' if node == 0 else 'false'}",
            "-m",
            "tests.distributed.worker",
            str(tmp_path),
            "kfac_mc",
            "mlp_sgd",
        )
        agents.append(
            subprocess.Popen(
                command,
                cwd=REPO,
                env=environment(),
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    wait_all(agents)
    torch.set_num_threads(1)
    evidence, training = evidence_case("kfac_mc"), train_case("mlp_sgd")
    for rank in (0, 1):
        got = torch.load(tmp_path / f"kfac_mc.rank{rank}.pt", weights_only=False)
        assert got["world_size"] == 2
        assert_same_evidence(got, evidence, f"node rank {rank}")
        got = torch.load(tmp_path / f"mlp_sgd.rank{rank}.pt", weights_only=False)
        assert_same_training(got, training, f"node rank {rank}")
