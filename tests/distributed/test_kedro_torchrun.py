"""``torchrun --nproc-per-node=2 -m kedro run`` on digits against a single-process run: the
same masks and kept samples each round, the same files, and rank 1 writes none of them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file

from jmds_pipeline.provenance import SUFFIX, file_digest, read_record
from jmds_pipeline.runlock import RunLock, lock_path
from tests.distributed.launch import environment, free_port, run, single_node, torchrun_command
from tests.reliability.helpers import JMDS, RUN, make_project
from tests.reliability.helpers import run as run_in_process


def _params(section: dict, prefix: str = "") -> list[str]:
    """RUN as ``--params`` items: {"training": {"epochs": 2}} -> ["training.epochs=2"]."""
    items = []
    for key, value in section.items():
        if isinstance(value, dict):
            items += _params(value, f"{prefix}{key}.")
        else:
            items.append(f"{prefix}{key}={json.dumps(value) if isinstance(value, bool) else value}")
    return items


def _files(project: Path) -> set[str]:
    return {str(p.relative_to(project)) for p in (project / "data").rglob("*") if p.is_file()}


@pytest.mark.slow
def test_torchrun_kedro_run_equals_one_process_and_only_rank_zero_writes(tmp_path: Path):
    alone = make_project(tmp_path / "alone")
    run_in_process(alone, RUN)
    ranks = make_project(tmp_path / "ranks")
    logs = tmp_path / "writes"
    logs.mkdir()
    run(
        torchrun_command(
            *single_node(2, free_port()),
            "-m",
            "tests.distributed.kedro_watch",
            str(logs),
            "run",
            "--params",
            ",".join(_params(RUN)),
        ),
        cwd=ranks,
    )

    for r in (1, 2):  # each round's decisions, byte for byte
        for name in ("masks", "kept"):
            path = JMDS / f"round_{r}" / f"{name}.safetensors"
            got, want = load_file(str(ranks / path)), load_file(str(alone / path))
            assert got.keys() == want.keys()
            assert all(bool((got[k] == want[k]).all()) for k in want), path
    assert _files(ranks) == _files(alone)

    writes = {r: json.loads((logs / f"writes.rank{r}.json").read_text()) for r in (0, 1)}
    assert writes[1] == [], writes[1][:10]
    assert any(w.endswith("round_2/masks.safetensors") for w in writes[0])  # the watch works

    # rank 0's provenance records describe the final files and name the same inputs
    for side in (ranks / "data").rglob(f"*{SUFFIX}"):
        path = side.with_name(side.name[: -len(SUFFIX)])
        record = read_record(path)
        assert record["content"] == file_digest(path), path
        twin = read_record(alone / path.relative_to(ranks))
        assert (record["node"], sorted(record["inputs"])) == (twin["node"], sorted(twin["inputs"]))
        assert all(d is not None for d in record["inputs"].values()), (path, record["inputs"])


@pytest.mark.slow
def test_a_busy_dataset_stops_the_whole_torchrun_job(tmp_path: Path):
    """The lock is rank 0's: another run holding it refuses the job (every rank stops, none
    waits forever at the barrier), while the job's own ranks never refuse each other (the
    run above)."""
    project = make_project(tmp_path / "project")
    holder = RunLock(lock_path(project, "digits"))
    holder.acquire()
    try:
        command = torchrun_command(
            *single_node(2, free_port()), "-m", "kedro", "run", "--params", ",".join(_params(RUN))
        )
        done = subprocess.run(
            command,
            cwd=project,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        holder.release()
    assert done.returncode != 0
    assert f"pid {os.getpid()}" in done.stdout + done.stderr
    assert not (project / "data" / "02_intermediate").exists()  # nothing was written
