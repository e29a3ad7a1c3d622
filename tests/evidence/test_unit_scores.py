"""Unit (channel) scores and the exact log det of channel-masked K-FAC layers, against the
dense masked precision built as an explicit Kronecker product (brute force).

For a layer with P = G ⊗ A + αI in the [W | b] view (entry (o, i) at o·d_in + i), the
active set rows R × columns C, and unit k ∈ R:

    occam_k = −½ [log det P_{(R∖k)×C} − log det P_{R×C}] − ½ |C| log α
    diag fit_k = −½ θ_gᵀ P_gg θ_g,    obs fit_k = −½ θ_gᵀ [(P_{R×C})⁻¹]_gg⁻¹ θ_g

with g the active entries of row k; every matrix here is formed densely and inverted or
log-det'ed with torch.linalg (nothing of the eigenbasis maths is reused).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.evidence.curvature.kfac import KronBlock, _eigh
from jmds_pipeline.evidence.units import leave_one_out_eigvals, unit_scores


def _psd(n: int, generator: torch.Generator) -> torch.Tensor:
    m = torch.randn(n, n + 2, generator=generator, dtype=torch.float64)
    return m @ m.t() / n


def _block(d_out: int, d_in: int, rows: torch.Tensor, cols: torch.Tensor, seed: int) -> KronBlock:
    g = torch.Generator().manual_seed(seed)
    mask = rows[:, None] & cols[None, :]
    theta = torch.randn(d_out, d_in, generator=g, dtype=torch.float64) * mask
    handler = SimpleNamespace(module_name="layer", params={"weight": "layer.weight"})
    block = KronBlock(
        handler,
        A=_psd(d_in, g),
        G=_psd(d_out, g),
        theta=theta,
        mask=None if bool(mask.all()) else mask,
    )
    block.lam_a, block.V = _eigh(block.A)
    block.lam_g, block.U = _eigh(block.G)
    return block


def _dense_precision(block: KronBlock, alpha: float) -> torch.Tensor:
    n = block.theta.numel()
    return torch.kron(block.G, block.A) + alpha * torch.eye(n, dtype=torch.float64)


def _active_index(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    return torch.nonzero((rows[:, None] & cols[None, :]).reshape(-1)).squeeze(1)


def _logdet(p: torch.Tensor, index: torch.Tensor) -> float:
    if index.numel() == 0:
        return 0.0
    return float(torch.linalg.slogdet(p[index][:, index])[1])


CASES = [  # d_out, d_in, removed rows, removed columns, α
    (5, 4, [], [], 0.7),
    (6, 5, [1, 4], [], 2.0),
    (6, 5, [0], [2, 3], 0.3),
    (3, 7, [0, 2], [6], 1.5),  # one row left: removing it empties the layer
]


@pytest.mark.parametrize("case", CASES)
def test_unit_scores_match_dense_kronecker(case: tuple) -> None:
    d_out, d_in, gone_rows, gone_cols, alpha = case
    rows = torch.ones(d_out, dtype=torch.bool)
    rows[gone_rows] = False
    cols = torch.ones(d_in, dtype=torch.bool)
    cols[gone_cols] = False
    block = _block(d_out, d_in, rows, cols, seed=d_out * 10 + d_in)
    a = torch.tensor([alpha], dtype=torch.float64)
    p = _dense_precision(block, alpha)
    active = _active_index(rows, cols)
    base = _logdet(p, active)
    # the layer's masked log det is exact for a rectangular mask
    assert float(block.logdet(a)) == pytest.approx(base, rel=1e-10, abs=1e-9)
    p_s_inv = torch.linalg.inv(p[active][:, active])
    theta = block.theta.reshape(-1)
    for kind in ("diag", "obs"):
        score, parts = unit_scores(block, a, kind)
        for k in range(d_out):
            if not rows[k]:
                assert math.isinf(float(score[k])) and float(score[k]) > 0
                continue
            without = rows.clone()
            without[k] = False
            occam = -0.5 * (_logdet(p, _active_index(without, cols)) - base) - 0.5 * int(
                cols.sum()
            ) * math.log(alpha)
            g = _active_index(torch.arange(d_out) == k, cols)
            th = theta[g]
            if kind == "diag":
                fit = -0.5 * float(th @ p[g][:, g] @ th)
            else:
                pos = torch.searchsorted(active, g)  # g's places inside the active set
                fit = -0.5 * float(th @ torch.linalg.inv(p_s_inv[pos][:, pos]) @ th)
            assert float(parts["occam"][k]) == pytest.approx(occam, rel=1e-9, abs=1e-9)
            assert float(parts["fit"][k]) == pytest.approx(fit, rel=1e-9, abs=1e-9)
            assert float(score[k]) == pytest.approx(fit + occam, rel=1e-9, abs=1e-9)


def test_leave_one_out_eigenvalues() -> None:
    mat = _psd(5, torch.Generator().manual_seed(0))
    loo = leave_one_out_eigvals(mat)
    for k in range(5):
        keep = torch.arange(5) != k
        expected = torch.linalg.eigvalsh(mat[keep][:, keep])
        torch.testing.assert_close(loo[k], expected, rtol=1e-10, atol=1e-12)


def test_element_masks_are_refused() -> None:
    rows = torch.ones(3, dtype=torch.bool)
    cols = torch.ones(4, dtype=torch.bool)
    block = _block(3, 4, rows, cols, seed=1)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[0, 1] = False
    block.mask = mask
    with pytest.raises(ValueError, match="whole rows and columns"):
        unit_scores(block, torch.tensor([1.0], dtype=torch.float64), "diag")


def test_engine_channel_mask_logdet_is_exact() -> None:
    """Through ``estimate_evidence``: masking a whole output unit (weight row and bias) of
    the output layer changes the log-det ratio by exactly the dense restricted log det of
    G ⊗ A + αI (both runs see the same θ, whose row 1 is zero, hence the same factors)."""
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        model[2].weight[1] = 0
        model[2].bias[1] = 0
    x = torch.randn(40, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=gen)
    alpha = 0.8
    config = EvidenceConfig(
        structure="kfac", prior_precision=alpha, fisher="exact", subsample_size=None
    )
    rows = torch.tensor([True, False, True])
    masks = {"2.weight": rows[:, None].expand(3, 6).clone(), "2.bias": rows.clone()}
    with torch.no_grad():
        hidden = model[1](model[0](x))
        a_in = torch.cat([hidden, torch.ones(40, 1, dtype=torch.float64)], dim=1)
        prob = torch.softmax(model[2](hidden), dim=1)
    factor_a = a_in.t() @ a_in / 40
    factor_g = torch.diag(prob.sum(0)) - prob.t() @ prob
    p = torch.kron(factor_g, factor_a) + alpha * torch.eye(21, dtype=torch.float64)

    def ratio(m: dict | None) -> float:
        return estimate_evidence(
            model, x, y, masks=m, config=config, score_samples=False, score_weights=False
        ).log_det_ratio

    change = ratio(masks) - ratio(None)
    dense_change = _logdet(p, _active_index(rows, torch.ones(7, dtype=torch.bool))) - _logdet(
        p, torch.arange(21)
    )
    # log_det_ratio = log det P_m − d_m log α: 7 parameters fewer add 7 log α
    assert change == pytest.approx(dense_change + 7 * math.log(alpha), rel=1e-9, abs=1e-8)


@pytest.mark.parametrize("kind", ["diag", "first_order"])
def test_unit_set_scores_match_dense_kronecker(kind: str) -> None:
    from jmds_pipeline.evidence.units import unit_set_scores

    rows = torch.ones(6, dtype=torch.bool)
    rows[5] = False
    cols = torch.ones(4, dtype=torch.bool)
    cols[0] = False
    block = _block(6, 4, rows, cols, seed=7)
    alpha = 0.9
    a = torch.tensor([alpha], dtype=torch.float64)
    p = _dense_precision(block, alpha)
    base = _logdet(p, _active_index(rows, cols))
    sets = [[0, 2], [1], [3, 4, 0], [4, 5]]  # the last reaches a removed unit
    score, parts = unit_set_scores(block, a, sets, kind, num_data=3.0)
    theta = block.theta.reshape(-1)
    for s, units in enumerate(sets[:3]):
        left = rows.clone()
        left[units] = False
        occam = -0.5 * (_logdet(p, _active_index(left, cols)) - base) - 0.5 * len(units) * int(
            cols.sum()
        ) * math.log(alpha)
        g = _active_index(torch.isin(torch.arange(6), torch.tensor(units)), cols)
        if kind == "diag":
            fit = -0.5 * float(theta[g] @ p[g][:, g] @ theta[g])
        else:  # −Σ |θ_j| H_jj / N with H = G ⊗ A, Occam term 0 (the paper's saliency)
            h = torch.kron(block.G, block.A).diagonal()
            fit, occam = -float((theta[g].abs() * h[g]).sum()) / 3.0, 0.0
        assert float(parts["occam"][s]) == pytest.approx(occam, rel=1e-9, abs=1e-9)
        assert float(parts["fit"][s]) == pytest.approx(fit, rel=1e-9, abs=1e-9)
    assert math.isinf(float(score[3]))
    with pytest.raises(ValueError, match="obs"):
        unit_set_scores(block, a, sets, "obs")


def test_gpt2_head_units_are_the_heads_of_c_attn() -> None:
    """Zeroing head h's units of ``c_attn`` (weights and biases) zeroes exactly head h's
    block of the attention output that ``c_proj`` reads (v = 0 ⇒ that head outputs 0)."""
    from jmds_pipeline.data.types import DatasetMeta
    from jmds_pipeline.evidence.units import gpt2_head_units
    from jmds_pipeline.models import build_model

    model = build_model(
        "gpt2", DatasetMeta("pydoc", "language_modeling", 32, (8,)), {"size": "tiny"}
    ).eval()
    attention = model.lm.transformer.h[0].attn
    embed, heads = model.lm.config.n_embd, model.lm.config.n_head
    units = gpt2_head_units(heads, embed)
    assert sorted(u for head in units for u in head) == list(range(3 * embed))
    h = 1
    with torch.no_grad():
        attention.c_attn.weight[:, units[h]] = 0  # Conv1D: (in, out)
        attention.c_attn.bias[units[h]] = 0
    seen = {}
    handle = attention.c_proj.register_forward_hook(lambda _m, i, _o: seen.update(x=i[0]))
    with torch.no_grad():
        model(torch.randint(0, 32, (2, 8)))
    handle.remove()
    width = embed // heads
    block = seen["x"][..., h * width : (h + 1) * width]
    others = torch.cat([seen["x"][..., : h * width], seen["x"][..., (h + 1) * width :]], -1)
    assert torch.count_nonzero(block) == 0 and torch.count_nonzero(others) > 0
