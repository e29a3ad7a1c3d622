"""The training loop's ``--env gpu`` path (bf16 autocast, channels_last, pinned batches) on CPU.

Ground truth: the same seeded run in float32 / NCHW. bf16 changes only the rounding of the
forward pass, so the loss curve and the trained weights must agree within a few bf16
round-offs (``BF16_U``); the probes show the path really ran in bf16 and NHWC.
"""

from __future__ import annotations

import warnings

import torch

from jmds_pipeline.config import TrainingConfig
from jmds_pipeline.training.batches import batch_loader
from jmds_pipeline.training.loop import train_model
from jmds_pipeline.training.precision import pin_memory_for
from tests.gpu_path.helpers import BF16_U, LayerProbe, image_split, relative, small_cnn

RECIPE = dict(epochs=3, batch_size=32, lr=0.05, progress=False)


def _train(mixed: bool) -> tuple[torch.nn.Module, list[dict[str, float]], LayerProbe]:
    model = small_cnn()
    probe = LayerProbe({"conv": model[0], "linear": model[5]})
    config = TrainingConfig(**RECIPE, mixed_precision=mixed, channels_last=mixed)
    outcome = train_model(model, image_split(), config, seed=0)
    probe.remove()
    return model, outcome.history, probe


def test_bf16_channels_last_training_matches_fp32_within_bf16_rounding() -> None:
    fp32_model, fp32_history, fp32_probe = _train(mixed=False)
    bf16_model, bf16_history, bf16_probe = _train(mixed=True)

    # the path really ran: bf16 outputs, NHWC conv inputs (and fp32 / NCHW without it)
    assert bf16_probe.seen["conv"] == {(True, torch.bfloat16)}
    assert bf16_probe.seen["linear"] == {(False, torch.bfloat16)}
    assert fp32_probe.seen["conv"] == {(False, torch.float32)}
    assert bf16_model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert bf16_model[0].weight.dtype == torch.float32  # autocast never casts the master weights

    # it learns the task as fp32 does, epoch by epoch
    for fp32, bf16 in zip(fp32_history, bf16_history, strict=True):
        assert abs(bf16["train_loss"] - fp32["train_loss"]) <= 2 * BF16_U * fp32["train_loss"]
    assert bf16_history[-1]["train_accuracy"] >= 0.95
    # and lands on the same weights, within a few roundings (measured: 0.9 u overall)
    fp32_flat = torch.cat([p.detach().flatten() for p in fp32_model.parameters()])
    bf16_flat = torch.cat([p.detach().flatten() for p in bf16_model.parameters()])
    assert relative(bf16_flat, fp32_flat) <= 4 * BF16_U
    assert relative(bf16_flat, fp32_flat) > 0  # bf16 did change the rounding


def test_pinned_loader_degrades_to_the_same_batches_without_cuda() -> None:
    split = image_split(n=40)
    plain = batch_loader(split, batch_size=16, shuffle=False)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        pinned = list(batch_loader(split, batch_size=16, shuffle=False, pin_memory=True))
    for a, b in zip(plain, pinned, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key])
            # pinned exactly when CUDA can pin (a CUDA build without a driver cannot)
            assert b[key].is_pinned() == torch.cuda.is_available()


def test_cpu_training_does_not_ask_for_pinned_memory() -> None:
    # pinning needs CUDA: a CPU run must not request it (the DataLoader would warn, and a
    # CPU-only torch build raises on .pin_memory())
    assert pin_memory_for("cpu") is False
    assert pin_memory_for(torch.device("cuda", 1)) is True
    config = TrainingConfig(**{**RECIPE, "epochs": 1}, mixed_precision=True, channels_last=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*pin_memory.*")
        train_model(small_cnn(), image_split(n=64), config, seed=0)
