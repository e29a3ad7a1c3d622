"""``footprint.layer_footprints`` predicts exactly what the engine allocates.

Ground truth: the blocks ``LayerwiseCurvature`` really builds (A, G, the GGN diagonals)
and, after ``fit``, the eigenvectors it keeps, summed per module in bytes; on a CNN with
a layer above ``kfac_max_dim`` and on the registry's GPT-2 (tied embeddings), on CPU and
again for the same models on the meta device (as ``benchmarks/scale.py`` uses them).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.evidence import EvidenceConfig
from jmds_pipeline.evidence.checks import canonical_names
from jmds_pipeline.evidence.context import Context
from jmds_pipeline.evidence.curvature.kfac import KronBlock
from jmds_pipeline.evidence.curvature.layerwise import LayerwiseCurvature
from jmds_pipeline.evidence.footprint import EIGH_FLOPS_PER_D3, layer_footprints, leverage_method
from jmds_pipeline.models import build_model

MAX_DIM = 40


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 16, 12),
        nn.ReLU(),  # d_in 65 > MAX_DIM: diagonal
        nn.Linear(12, 3),
    ).eval()


def _gpt2(device: str = "cpu") -> nn.Module:
    meta = DatasetMeta("toy", "language_modeling", 50, (8,))
    torch.manual_seed(0)
    with torch.device(device):
        return build_model("gpt2", meta, {"size": "tiny"}).eval()


CASES = {
    "cnn": (_cnn, lambda: (torch.randn(24, 2, 6, 6), torch.arange(24) % 3), "classification"),
    "gpt2": (
        _gpt2,
        lambda: (torch.randint(0, 50, (6, 8)), torch.randint(0, 50, (6, 8))),
        "language_modeling",
    ),
}


def _allocated(model: nn.Module, x: torch.Tensor, y: torch.Tensor, likelihood: str):
    """(module → bytes of the factors / diagonals, module → bytes after fit) as built."""
    config = EvidenceConfig(
        likelihood=likelihood, kfac_max_dim=MAX_DIM, subsample_size=None, fisher="mc"
    )
    names = canonical_names(model)
    ctx = Context(model, x, y, config, torch.device("cpu"), names, {})
    curvature = LayerwiseCurvature(ctx, kron=True)
    module_of: dict[str, str] = {}  # a tied parameter belongs to the first module using it
    for h in curvature.handlers:
        for n in h.params.values():
            module_of.setdefault(n, h.module_name)
    factors: dict[str, int] = {}
    for block in curvature.kron.values():
        factors[block.handler.module_name] = block.A.nbytes + block.G.nbytes
    for name, block in curvature.diag.items():
        module = module_of[name]
        factors[module] = factors.get(module, 0) + block.h.nbytes
    curvature.fit(torch.arange(x.shape[0]), torch.ones(x.shape[0], dtype=torch.float64))
    state = {}
    for block in curvature.blocks:
        if isinstance(block, KronBlock):
            parts = (block.A, block.G, block.V, block.U, block.theta)
            module = block.handler.module_name
        else:
            parts, module = (block.h, block.theta), module_of[block.name]
        state[module] = state.get(module, 0) + sum(t.nbytes for t in parts)
    return factors, state


@pytest.mark.parametrize("case", sorted(CASES))
def test_factor_memory_equals_what_the_engine_allocates(case: str) -> None:
    build, data, likelihood = CASES[case]
    model = build()
    factors, state = _allocated(model, *data(), likelihood)
    predicted = {f.module: f for f in layer_footprints(model, kfac_max_dim=MAX_DIM)}
    # modules whose only parameter is listed under another module (tied lm_head) own none
    assert {m: f.factor_bytes for m, f in predicted.items() if f.params} == factors
    assert {m: f.state_bytes for m, f in predicted.items() if f.params} == state
    # the same on the meta device, where benchmarks/scale.py builds the paper-size models
    with torch.device("meta"):
        on_meta = build() if case == "cnn" else _gpt2("meta")
    assert layer_footprints(on_meta, kfac_max_dim=MAX_DIM) == list(predicted.values())


def test_fallbacks_are_named_and_the_eigh_cost_follows_d_cubed() -> None:
    cnn = {f.module: f for f in layer_footprints(_cnn(), kfac_max_dim=MAX_DIM)}
    assert not cnn["4"].kron and cnn["4"].reason == "factor dimension 65 > kfac_max_dim = 40"
    assert cnn["1"].reason.startswith("batchnorm: not a Kronecker-factored kind")
    assert cnn["0"].kron and (cnn["0"].d_in, cnn["0"].d_out) == (2 * 9 + 1, 4)
    assert cnn["0"].eigh_flops == EIGH_FLOPS_PER_D3 * (19**3 + 4**3)
    gpt2 = {f.module: f for f in layer_footprints(_gpt2(), kfac_max_dim=MAX_DIM)}
    assert gpt2["lm.lm_head"].reason.startswith("weight shared")
    assert gpt2["lm.lm_head"].params == 0  # its table is counted once, under wte
    assert gpt2["lm.transformer.wte"].params == 50 * 64


def test_leverage_method_is_the_engines_choice() -> None:
    assert leverage_method(65, 10, positions=1, vectors=1, masked=False)[0] == "kron"
    method, cost = leverage_method(65, 10, positions=16, vectors=1, masked=True)
    assert method == "masked" and cost == 16 * 65 * 10 + 10 * 65 * (65 + 10)
