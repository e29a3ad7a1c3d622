"""Device-generic precision helpers, checked on the CPU (the same code path as CUDA)."""

from __future__ import annotations

import warnings

import torch

from jmds_pipeline.training.precision import autocast, device_type, pin_memory_for, to_device


def test_device_type_drops_the_index() -> None:
    assert device_type("cuda:1") == "cuda"
    assert device_type("cpu") == "cpu"
    assert device_type(torch.device("cuda", 0)) == "cuda"


def test_autocast_computes_matmuls_in_bf16_only_when_enabled() -> None:
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast("cpu", True):
        assert (a @ b).dtype == torch.bfloat16
    with autocast("cpu", False):
        assert (a @ b).dtype == torch.float32
    # bf16 on CUDA too, whose autocast default is fp16 (the context is inert without a GPU)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available": expected here
        assert autocast("cuda", True).fast_dtype == torch.bfloat16


def test_only_a_cuda_target_pins_memory() -> None:
    assert pin_memory_for("cuda:0") is True
    assert pin_memory_for("cuda") is True
    assert pin_memory_for("cpu") is False


def test_to_device_makes_image_batches_nhwc_only_when_asked() -> None:
    images = torch.randn(2, 3, 4, 5)
    nhwc = to_device(images, "cpu", channels_last=True)
    assert nhwc.is_contiguous(memory_format=torch.channels_last)
    assert not images.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(nhwc, images)
    plain = to_device(images, "cpu", channels_last=False)
    assert plain.is_contiguous() and not plain.is_contiguous(memory_format=torch.channels_last)
    assert to_device(images, "meta", channels_last=False).device.type == "meta"
    signals = torch.randn(2, 3, 7)  # not an image batch: left as it is
    assert to_device(signals, "cpu", channels_last=True).is_contiguous()
