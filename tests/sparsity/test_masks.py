from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from jmds_pipeline.sparsity.masks import (
    apply_masks,
    count_active,
    count_total,
    density,
    enforce_masks,
    init_masks,
    layer_summary,
    mask_gradients,
    masks_from_tensors,
    masks_to_tensors,
    register_gradient_masks,
    sparsity,
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def _half_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    masks = init_masks(model, ["0.weight", "2.weight"])
    masks["0.weight"][:, ::2] = False  # 24 of 48 pruned
    masks["2.weight"][0] = False  # 8 of 24 pruned
    return masks


def test_init_and_counts() -> None:
    model = _model()
    masks = init_masks(model, ["0.weight", "2.weight"])
    assert set(masks) == {"0.weight", "2.weight"}
    assert all(m.dtype == torch.bool and bool(m.all()) for m in masks.values())
    assert count_total(masks) == 48 + 24
    masks = _half_masks(model)
    assert count_active(masks) == 24 + 16
    assert density(masks) == pytest.approx(40 / 72)
    assert sparsity(masks) == pytest.approx(32 / 72)
    assert density({}) == 1.0
    assert len(init_masks(model)) == 4


def test_init_unknown_name_raises() -> None:
    with pytest.raises(ValueError, match=r"nope.*accepted"):
        init_masks(_model(), ["nope"])


def test_apply_masks_zeroes_only_masked_and_untouched_params() -> None:
    model = _model()
    masks = _half_masks(model)
    bias_before = model[0].bias.detach().clone()
    kept_before = model[0].weight.detach()[masks["0.weight"]].clone()
    apply_masks(model, masks)
    assert torch.count_nonzero(model[0].weight[~masks["0.weight"]]) == 0
    assert torch.equal(model[0].weight[masks["0.weight"]], kept_before)
    assert torch.equal(model[0].bias, bias_before)
    assert model[0].weight.requires_grad


def test_apply_masks_rejects_wrong_shape() -> None:
    model = _model()
    with pytest.raises(ValueError, match="shape"):
        apply_masks(model, {"0.weight": torch.ones(3, 3, dtype=torch.bool)})


@pytest.mark.parametrize("optimizer_name", ["sgd", "adamw"])
def test_masked_weights_stay_zero_after_momentum_and_weight_decay(optimizer_name: str) -> None:
    model = _model()
    masks = _half_masks(model)
    apply_masks(model, masks)
    if optimizer_name == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(1))
    y = torch.arange(32) % 3
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        enforce_masks(model, masks, optimizer)
        for name, param in model.named_parameters():
            if name in masks:
                assert torch.count_nonzero(param[~masks[name]]) == 0
                assert torch.count_nonzero(param[masks[name]]) == int(masks[name].sum())
    state = optimizer.state[model[0].weight]
    buffer = state["momentum_buffer"] if optimizer_name == "sgd" else state["exp_avg"]
    assert torch.count_nonzero(buffer[~masks["0.weight"]]) == 0


def test_without_enforcement_momentum_revives_weights() -> None:
    # The reason enforce_masks exists: masking once is not enough.
    model = _model()
    masks = _half_masks(model)
    apply_masks(model, masks)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(16, 6), torch.arange(16) % 3
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    assert torch.count_nonzero(model[0].weight[~masks["0.weight"]]) > 0


def test_gradient_masking_helpers() -> None:
    model = _model()
    masks = _half_masks(model)
    x, y = torch.randn(16, 6), torch.arange(16) % 3
    nn.functional.cross_entropy(model(x), y).backward()
    mask_gradients(model, masks)
    assert torch.count_nonzero(model[0].weight.grad[~masks["0.weight"]]) == 0
    model.zero_grad()
    handles = register_gradient_masks(model, masks)
    nn.functional.cross_entropy(model(x), y).backward()
    assert torch.count_nonzero(model[2].weight.grad[~masks["2.weight"]]) == 0
    assert torch.count_nonzero(model[2].weight.grad[masks["2.weight"]]) > 0
    for handle in handles:
        handle.remove()


def test_layer_summary_columns_and_values() -> None:
    summary = layer_summary(_half_masks(_model()))
    assert list(summary.columns) == ["layer", "numel", "active", "density"]
    assert summary["layer"].tolist() == ["0.weight", "2.weight"]
    assert summary["numel"].tolist() == [48, 24]
    assert summary["active"].tolist() == [24, 16]
    assert summary["density"].tolist() == pytest.approx([0.5, 16 / 24])


def test_safetensors_round_trip(tmp_path) -> None:
    masks = _half_masks(_model())
    for dtype in (torch.uint8, torch.bool):
        flat = masks_to_tensors(masks, dtype)
        assert all(t.dtype == dtype and t.is_contiguous() for t in flat.values())
        save_file(flat, tmp_path / "masks.safetensors")
        loaded = masks_from_tensors(load_file(tmp_path / "masks.safetensors"))
        assert loaded.keys() == masks.keys()
        assert all(torch.equal(loaded[k], masks[k]) for k in masks)
    with pytest.raises(ValueError, match="0 and 1"):
        masks_from_tensors({"w": torch.tensor([0, 2], dtype=torch.uint8)})
    with pytest.raises(ValueError, match="accepted"):
        masks_to_tensors(masks, torch.float32)
