"""Finite-value guards: in the training loop, on stored states, at the evidence's entry."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from kedro.io import DatasetError
from torch import nn

from jmds_pipeline.config import TrainingConfig
from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.guards import NonFiniteError, TrainingGuard, did_not_learn, warn_if_not_learned
from jmds_pipeline.integrity import MaskMismatchError, check_masks_fit, masked_state
from jmds_pipeline.io import TensorDictDataset
from jmds_pipeline.training.loop import train_model

QUIET = {"progress": False}


def test_a_nan_sample_stops_training_at_its_epoch_and_batch(blobs: dict, blob_mlp: nn.Module):
    blobs["x"][7, 2] = float("nan")
    n = blobs["x"].shape[0]
    # One batch per epoch, so the poisoned sample is in epoch 1's batch 1, whatever the order.
    config = TrainingConfig(epochs=3, batch_size=n, **QUIET)
    before = {k: v.clone() for k, v in blob_mlp.state_dict().items()}
    with pytest.raises(NonFiniteError, match=r"training 'train' at epoch 1, batch 1: loss = nan"):
        train_model(blob_mlp, blobs, config)
    # The loss is checked before backward: the poisoned step never reached the weights.
    for name, value in blob_mlp.state_dict().items():
        assert torch.equal(value, before[name])


def test_a_sample_entering_late_is_named_with_its_batch(blobs: dict, blob_mlp: nn.Module):
    n = blobs["x"].shape[0]
    kept = torch.zeros(n, dtype=torch.bool)
    kept[:40] = True  # 40 kept rows, batches of 10: 4 batches per epoch
    blobs["x"][39, 0] = float("inf")
    config = TrainingConfig(epochs=1, batch_size=10, **QUIET)
    with pytest.raises(NonFiniteError, match=r"epoch 1, batch (\d+)") as caught:
        train_model(blob_mlp, blobs, config, kept=kept)
    batch = int(caught.value.args[0].split("batch ")[1].split(":")[0])
    assert 1 <= batch <= 4


def test_weights_are_checked_every_k_steps_and_name_the_tensor():
    model = nn.Linear(3, 2)
    guard = TrainingGuard("dense", lr=0.1, every=5)
    with torch.no_grad():
        model.bias[1] = float("inf")
    for step in range(4):
        guard.after_step(model, epoch=0, batch=step)  # steps 1..4: not checked yet
    with pytest.raises(NonFiniteError, match=r"epoch 1, batch 5: weights 'bias' \(1 NaN/inf\)"):
        guard.after_step(model, epoch=0, batch=4)


def test_a_diverging_learning_rate_is_stopped(blobs: dict, blob_mlp: nn.Module):
    config = TrainingConfig(epochs=5, batch_size=30, lr=1e6, momentum=0.0, **QUIET)
    with pytest.raises(NonFiniteError, match=r"training\.lr = 1e\+06"):
        train_model(blob_mlp, blobs, config)


def test_states_with_nan_are_neither_saved_nor_loaded(tmp_path: Path):
    path = tmp_path / "state.safetensors"
    dataset = TensorDictDataset(str(path))
    dataset.save({"w": torch.ones(3), "mask": torch.tensor([True, False])})
    good = path.read_bytes()
    with pytest.raises(DatasetError, match=r"refusing to save .*'w' \(2 NaN/inf\)"):
        dataset.save({"w": torch.tensor([1.0, math.nan, math.inf])})
    assert path.read_bytes() == good  # the last good state survives

    from safetensors.torch import save_file

    save_file({"w": torch.tensor([0.0, math.nan])}, str(path))
    with pytest.raises(DatasetError, match=r"state\.safetensors holds non-finite values in 'w'"):
        dataset.load()


def test_truncated_and_foreign_files_are_named(tmp_path: Path):
    path = tmp_path / "masks.safetensors"
    dataset = TensorDictDataset(str(path))
    dataset.save({"w": torch.arange(100.0)})
    path.write_bytes(path.read_bytes()[:-37])
    with pytest.raises(DatasetError, match=r"masks\.safetensors is not a readable safetensors"):
        dataset.load()
    path.write_bytes(b"\x00\xff not a tensor file")
    with pytest.raises(DatasetError, match="truncated or corrupted"):
        dataset.load()


def test_scores_may_be_infinite_but_never_nan(tmp_path: Path):
    dataset = TensorDictDataset(str(tmp_path / "scores.safetensors"), allow_inf=True)
    dataset.save({"s": torch.tensor([1.0, math.inf])})
    assert torch.equal(dataset.load()["s"], torch.tensor([1.0, math.inf]))
    with pytest.raises(DatasetError, match="non-finite"):
        dataset.save({"s": torch.tensor([math.nan])})


def test_the_evidence_refuses_nan_weights(blob_mlp: nn.Module, blobs: dict):
    with torch.no_grad():
        blob_mlp[2].weight[0, 0] = math.nan
    with pytest.raises(NonFiniteError, match=r"'2\.weight' \(1 NaN/inf\)"):
        estimate_evidence(blob_mlp, blobs["x"], blobs["y"],
                          config=EvidenceConfig(structure="diag", prior_precision=1.0))


def test_a_state_read_with_masks_is_evaluated_as_theta_times_m(blob_mlp: nn.Module, blobs: dict):
    state = {k: v.clone() for k, v in blob_mlp.state_dict().items()}
    mask = torch.rand(state["0.weight"].shape, generator=torch.Generator().manual_seed(0)) > 0.5
    masks = {"0.weight": mask}
    fixed = masked_state(state, masks, "round_2.state")
    assert fixed is not None
    assert torch.equal(fixed["0.weight"], state["0.weight"] * mask)
    assert torch.equal(fixed["2.weight"], state["2.weight"])
    assert masked_state(fixed, masks, "round_2.state") is None  # already θ ⊙ m: untouched
    # Ground truth: the evidence of the fixed state is the evidence of an explicitly
    # zeroed network.
    config = EvidenceConfig(structure="diag", prior_precision=1.0)
    zeroed = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    zeroed.load_state_dict(state)
    with torch.no_grad():
        zeroed[0].weight[~mask] = 0.0
    blob_mlp.load_state_dict(fixed)
    a = estimate_evidence(blob_mlp, blobs["x"], blobs["y"], masks=masks, config=config)
    b = estimate_evidence(zeroed, blobs["x"], blobs["y"], masks=masks, config=config)
    assert a.log_evidence == b.log_evidence


def test_masks_must_cover_every_prunable_layer_with_its_shape(blob_mlp: nn.Module):
    prunable = ["0.weight", "2.weight"]
    full = {name: torch.ones_like(p, dtype=torch.bool)
            for name, p in blob_mlp.named_parameters() if name in prunable}
    check_masks_fit(full, blob_mlp, prunable, "m")  # complete: accepted
    with pytest.raises(MaskMismatchError, match=r"no mask for prunable layer\(s\) \['2\.weight'\]"):
        check_masks_fit({"0.weight": full["0.weight"]}, blob_mlp, prunable, "m")
    with pytest.raises(MaskMismatchError, match=r"shape \(16, 5\), the layer has \(16, 6\)"):
        check_masks_fit({**full, "0.weight": torch.ones(16, 5, dtype=torch.bool)},
                        blob_mlp, prunable, "m")
    with pytest.raises(MaskMismatchError, match=r"\['0\.bias'\], which the model does not prune"):
        check_masks_fit({**full, "0.bias": torch.ones(16, dtype=torch.bool)},
                        blob_mlp, prunable, "m")
    with pytest.raises(MaskMismatchError, match="not bool"):
        check_masks_fit({**full, "2.weight": torch.ones(3, 16)}, blob_mlp, prunable, "m")


def test_chance_level_loss_is_ln_c_and_is_reported(caplog: pytest.LogCaptureFixture):
    # Ground truth: uniform logits give cross-entropy exactly ln C.
    logits = torch.zeros(50, 10)
    labels = torch.arange(50) % 10
    uniform = float(nn.functional.cross_entropy(logits, labels))
    assert uniform == pytest.approx(math.log(10))
    assert did_not_learn(uniform, 10)
    assert not did_not_learn(0.3 * math.log(10), 10)
    with caplog.at_level(logging.WARNING):
        assert warn_if_not_learned(uniform, 10, "jmds.final_history")
    assert "jmds.final_history: training did not learn" in caplog.text
    assert "ln 10" in caplog.text


class _Trap:
    """Unpickling this creates a file: proof that a pickle was (not) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


def test_cifar_files_that_are_not_the_release_are_never_unpickled(tmp_path: Path):
    import pickle

    from jmds_pipeline.data import load_dataset
    from jmds_pipeline.data.vision import DatasetIntegrityError
    from tests.data.test_vision_datasets import write_cifar10

    write_cifar10(tmp_path)
    marker = tmp_path / "unpickled"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(DatasetIntegrityError, match=r"data_batch_1 has md5 [0-9a-f]{32}, not the "
                                                    r"official c99cafc152244af753f735de768cd75f"):
        load_dataset("cifar10", raw_dir=tmp_path, seed=0)
    assert not marker.exists()
