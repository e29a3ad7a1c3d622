"""Fault injection through Kedro's runner: every fault is refused before anything is
overwritten, and an interrupted run resumed equals an uninterrupted one, bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from kedro.io import DatasetError
from safetensors.torch import load_file, save_file

from jmds_pipeline.guards import NonFiniteError
from jmds_pipeline.integrity import MaskMismatchError
from jmds_pipeline.provenance import ProvenanceError, sidecar
from jmds_pipeline.runlock import RunLockError
from tests.reliability.helpers import JMDS, REPO, digests, make_project, run, with_params

pytestmark = pytest.mark.slow
RESULT_KEYS = ("test_loss", "test_accuracy", "model_sparsity", "data_sparsity", "log_evidence",
               "inference_flops", "samples_seen")


def _metrics(project: Path) -> dict:
    metrics = json.loads((project / "data/08_reporting/digits/metrics.json").read_text())
    return {key: metrics[key] for key in RESULT_KEYS}


def test_a_diverging_dense_run_names_the_step_and_keeps_the_last_good_model(project: Path):
    before = digests(project / "data")
    with pytest.raises(NonFiniteError, match=r"training 'dense' at epoch 1, batch \d+: "
                                             r"(loss = nan|weights)"):
        run(project, with_params(training={"lr": 10000.0}), pipeline_names=["pretraining"])
    # dense.safetensors etc. byte-identical; DVCLive's live log of the failed attempt
    # (08_reporting/<dataset>/dvclive/) is a log, not an artefact a later node reads.
    after = digests(project / "data")
    assert ({k: v for k, v in after.items() if "/dvclive/" not in k}
            == {k: v for k, v in before.items() if "/dvclive/" not in k})


@pytest.mark.parametrize("keep_record", [True, False])
def test_a_nan_rewind_checkpoint_is_refused_before_round_two_trains(
    project: Path, keep_record: bool
):
    rewind = project / "data/06_models/digits/rewind.safetensors"
    state = load_file(str(rewind))
    name = sorted(state)[0]
    state[name].view(-1)[0] = float("nan")
    save_file(state, str(rewind))
    if not keep_record:
        sidecar(rewind).unlink()  # as if written before records existed
    before = digests(project / "data")
    # without its record the NaN itself is found, alone or listed with round 1's outputs
    # (made from the rewind point before it was edited)
    expected = (ProvenanceError, r"rewind_state .* changed after node pretrain_dense wrote it"
                ) if keep_record else ((DatasetError, ProvenanceError),
                                       rf"non-finite values in '{name}' \(1 ")
    with pytest.raises(expected[0], match=expected[1]):
        run(project, from_nodes=["round_2.train"])
    assert digests(project / "data") == before


def test_a_resume_over_stale_rounds_names_the_differing_parameter(project: Path):
    # A rerun at another target, killed after round 2's training: round 1 is new,
    # round 2's masks and kept ids are still the old run's.
    other = with_params(jmds={"target_model_sparsity": 0.8})
    run(project, other, to_nodes=["round_2.train"])
    before = digests(project / "data")
    with pytest.raises(ProvenanceError, match=r"round_2\.masks was made by node "
                       r"round_2\.update_mask .*jmds\.target_model_sparsity = 0\.6 there, "
                       r"0\.8 now"):
        run(project, other, from_nodes=["jmds.final_retrain"])
    assert digests(project / "data") == before


@pytest.mark.parametrize("keep_record", [True, False])
def test_a_truncated_evidence_file_is_found_before_round_two_starts(
    project: Path, keep_record: bool
):
    evidence = project / JMDS / "round_1/evidence.json"
    evidence.write_bytes(evidence.read_bytes()[:40])
    if not keep_record:
        sidecar(evidence).unlink()
    before = digests(project / "data")
    expected = (ProvenanceError, r"round_1\.evidence .* changed after node "
                                 r"round_1\.estimate_evidence wrote it") if keep_record else (
        DatasetError, r"round_1/evidence\.json")
    with pytest.raises(expected[0], match=expected[1]):
        run(project, from_nodes=["round_2.train"])
    assert digests(project / "data") == before  # round 2's state is still the old one


def test_a_mask_file_missing_a_layer_is_refused(project: Path):
    path = project / JMDS / "round_1/masks.safetensors"
    masks = load_file(str(path))
    dropped = sorted(masks)[-1]
    del masks[dropped]
    save_file(masks, str(path))
    sidecar(path).unlink()  # so that the mask check, not the digest, has to catch it
    before = digests(project / "data")
    expected = rf"round_1\.masks has no mask for prunable layer\(s\) \['{dropped}'\]"
    # alone, or listed with the round-1 outputs made from the masks before they were edited
    with pytest.raises((MaskMismatchError, ProvenanceError), match=expected):
        run(project, from_nodes=["round_2.train"])
    assert digests(project / "data") == before


HOLDER = """
import sys, time
from pathlib import Path
from jmds_pipeline.runlock import RunLock, lock_path
RunLock(lock_path(Path(sys.argv[1]), "digits")).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_concurrent_run_is_refused_and_a_dead_holders_lock_taken_over(
    project: Path, tmp_path: Path
):
    script = tmp_path / "hold_lock.py"
    script.write_text(HOLDER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen([sys.executable, str(script), str(project)],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = digests(project / "data")
        with pytest.raises(RunLockError, match=rf"pid {holder.pid} \(hold_lock\.py "):
            run(project, pipeline_names=["data_loading"])
        assert digests(project / "data") == before
    finally:
        holder.kill()  # kill -9: the lock file still names it, but the kernel freed the lock
        holder.wait()
    assert str(holder.pid) in (project / "data/.locks/digits.lock").read_text()
    run(project, pipeline_names=["data_loading"])
    assert str(os.getpid()) in (project / "data/.locks/digits.lock").read_text()


def _node_names(project: Path) -> list[str]:
    """The default pipeline's nodes in Kedro's (topological) order."""
    from jmds_pipeline.pipeline_registry import register_pipelines

    cwd = Path.cwd()
    os.chdir(project)
    try:
        return [node.name for node in register_pipelines()["__default__"].nodes]
    finally:
        os.chdir(cwd)


def _results(project: Path) -> dict[str, str]:
    """Digests of the result tensors (timings in JSON/parquet files legitimately differ)."""
    return {k: v for k, v in digests(project / "data").items()
            if k.endswith(".safetensors")}


@pytest.mark.parametrize("stop", ["round_1.update_mask", "round_2.train"])
def test_an_interrupted_run_resumed_equals_the_uninterrupted_one(
    finished_project: Path, tmp_path: Path, stop: str
):
    project = make_project(tmp_path / "project")
    names = _node_names(project)
    run(project, to_nodes=[stop])  # the run dies after `stop`
    from jmds_pipeline.pipeline_registry import register_pipelines

    cwd = Path.cwd()
    os.chdir(project)
    try:
        done = {n.name for n in register_pipelines()["__default__"].to_nodes(stop).nodes}
    finally:
        os.chdir(cwd)
    rest = [name for name in names if name not in done]
    assert rest and done  # a genuine interruption: some nodes ran, some did not
    run(project, from_nodes=rest)
    assert _results(project) == _results(finished_project)
    assert _metrics(project) == _metrics(finished_project)


def test_same_seed_runs_are_bit_identical(finished_project: Path, tmp_path: Path):
    project = make_project(tmp_path / "project")
    run(project)
    assert _results(project) == _results(finished_project)
    assert _metrics(project) == _metrics(finished_project)
    final = load_file(str(project / "data/06_models/digits/jmds_final.safetensors"))
    masks = load_file(str(project / JMDS / "round_2/masks.safetensors"))
    assert all(torch.count_nonzero(final[n][~m]) == 0 for n, m in masks.items())
