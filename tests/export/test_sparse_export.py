"""CSR export of element-pruned models: round trip, exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.export import load_sparse, save_sparse
from jmds_pipeline.models import build_model, prunable_parameter_names
from jmds_pipeline.sparsity.masks import apply_masks


def _pruned_cnn1d() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = build_model("cnn1d", DatasetMeta("mnist1d", "classification", 10, (1, 40)))
    params = dict(model.named_parameters())
    gen = torch.Generator().manual_seed(1)
    masks = {
        n: torch.rand(params[n].shape, generator=gen) > 0.8
        for n in prunable_parameter_names(model, include_output_layer=True)
    }
    apply_masks(model, masks)
    with torch.no_grad():  # a kept weight that is exactly 0.0 must survive as kept
        params["net.conv2.weight"][masks["net.conv2.weight"].nonzero()[0].tolist()] = 0.0
    return model, masks


def test_round_trip_is_exact(tmp_path: Path) -> None:
    model, masks = _pruned_cnn1d()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    path = tmp_path / "sparse.safetensors"
    save_sparse(state, masks, path)
    dense = load_sparse(path)
    assert dense.keys() == state.keys()
    for name, value in state.items():
        assert torch.equal(dense[name], value)
    csr = load_sparse(path, layout="csr")
    for name, mask in masks.items():
        assert csr[name].layout == torch.sparse_csr
        assert csr[name].values().numel() == int(mask.sum())  # the stored 0.0 included
        rebuilt = torch.zeros(mask.numel(), dtype=torch.bool)
        rows = torch.repeat_interleave(torch.arange(mask.shape[0]), csr[name].crow_indices().diff())
        rebuilt.view(mask.shape[0], -1)[rows, csr[name].col_indices()] = True
        assert torch.equal(rebuilt.view(mask.shape), mask)
        assert torch.equal(csr[name].to_dense().reshape(mask.shape), state[name])
    fresh = build_model("cnn1d", DatasetMeta("mnist1d", "classification", 10, (1, 40)))
    fresh.load_state_dict(dense)
    x = torch.randn(8, 1, 40)
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)
    assert path.stat().st_size < sum(v.numel() * 4 for v in state.values())


def test_loader_refuses_other_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "dense.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a sparse state"):
        load_sparse(path)
    with pytest.raises(ValueError, match="layout"):
        load_sparse(path, layout="coo")


def test_csr_model_computes_what_the_masked_model_computes(tmp_path: Path) -> None:
    from jmds_pipeline.export.sparse_inference import csr_model

    model, masks = _pruned_cnn1d()
    path = tmp_path / "sparse.safetensors"
    save_sparse(model.state_dict(), masks, path)
    sparse = csr_model(model, load_sparse(path, layout="csr"))
    assert not isinstance(sparse.net.conv1, torch.nn.Conv1d)
    assert not isinstance(sparse.net.out, torch.nn.Linear)  # CSRLinear too
    x = torch.randn(5, 1, 40)
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "conv", [torch.nn.Conv2d(3, 4, 3, 2, 1), torch.nn.Conv1d(3, 4, 5, 1, 2, dilation=2)]
)
def test_csr_conv_matches_torch_conv(conv: torch.nn.Module) -> None:
    from jmds_pipeline.export.sparse import to_csr
    from jmds_pipeline.export.sparse_inference import CSRConv

    mask = torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(0)) > 0.5
    with torch.no_grad():
        conv.weight.mul_(mask)
    x = torch.randn(2, 3, *([9, 7] if isinstance(conv, torch.nn.Conv2d) else [11]))
    with torch.no_grad():
        torch.testing.assert_close(
            CSRConv(conv, to_csr(conv.weight, mask))(x), conv(x), rtol=1e-5, atol=1e-6
        )
