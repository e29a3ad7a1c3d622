"""Masked K-FAC log det against the dense restricted log det and its stated bound.

For a layer with P = A⊗G + αI and active set S, ``curvature.kfac`` states

    log det P_S ≤ min( Σ_{j∈S} log P_jj ,  log det P + Σ_{j∉S} log [P⁻¹]_jj )

(both by Hadamard's inequality; the second is exact for one removed weight, the first for
S empty) and uses the minimum. Here A and G of the output layer are built by hand from the
network's activations and softmax (exact Fisher: G = Σ_i diag(p_i) − p_i p_iᵀ, A = Σ_i
a_i a_iᵀ / N with the bias column appended), P is formed densely, and the change of the
public ``estimate_evidence`` log-det ratio under a mask is compared with the bound
computed from that dense P. Nothing of the engine's eigenbasis maths is reused.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence

D_IN, D_HIDDEN, D_OUT, N = 4, 6, 3, 40


def _setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(D_IN, D_HIDDEN), nn.Tanh(), nn.Linear(D_HIDDEN, D_OUT))
    model = model.double()
    x = torch.randn(N, D_IN, generator=generator, dtype=torch.float64)
    y = torch.randint(0, D_OUT, (N,), generator=generator)
    return model, x, y


MODEL, X, Y = _setup()


def _dense_output_layer_precision(alpha: float) -> torch.Tensor:
    """P = G ⊗ A + αI of layer "2" in the [W | b] view, entry (o, i) at o·(D_HIDDEN+1) + i."""
    with torch.no_grad():
        hidden = MODEL[1](MODEL[0](X))
        a = torch.cat([hidden, torch.ones(N, 1, dtype=torch.float64)], dim=1)
        p = torch.softmax(MODEL[2](hidden), dim=1)
    factor_a = a.t() @ a / N
    factor_g = torch.diag(p.sum(0)) - p.t() @ p
    return torch.kron(factor_g, factor_a) + alpha * torch.eye(D_OUT * (D_HIDDEN + 1),
                                                              dtype=torch.float64)


def _log_det_ratio(mask: torch.Tensor | None, alpha: float) -> float:
    config = EvidenceConfig(structure="kfac", prior_precision=alpha, fisher="exact",
                            subsample_size=None)
    masks = None if mask is None else {"2.weight": mask}
    return estimate_evidence(MODEL, X, Y, masks=masks, config=config, score_samples=False,
                             score_weights=False).log_det_ratio


def _bounds(dense: torch.Tensor, removed: list[int]) -> tuple[float, float, float, float]:
    """(log det P, direct bound, Schur bound, exact log det P_S) for removed W entries."""
    keep = torch.ones(dense.shape[0], dtype=torch.bool)
    for flat in removed:  # W entry (o, i) → row o·(D_HIDDEN + 1) + i of the [W | b] view
        o, i = divmod(flat, D_HIDDEN)
        keep[o * (D_HIDDEN + 1) + i] = False
    full = float(torch.logdet(dense))
    direct = float(torch.log(torch.diagonal(dense)[keep]).sum())
    schur = full + float(torch.log(torch.diagonal(torch.linalg.inv(dense))[~keep]).sum())
    exact = float(torch.logdet(dense[keep][:, keep]))
    return full, direct, schur, exact


@settings(max_examples=30, deadline=None)
@given(
    count=st.sampled_from([1, 2, 5, D_HIDDEN * D_OUT]),
    alpha=st.sampled_from([0.3, 1.0, 4.0]),
    data=st.data(),
)
def test_masked_log_det_is_the_tighter_hadamard_bound(count: int, alpha: float, data) -> None:
    removed = data.draw(st.lists(st.integers(0, D_HIDDEN * D_OUT - 1), min_size=count,
                                 max_size=count, unique=True))
    mask = torch.ones(D_OUT, D_HIDDEN, dtype=torch.bool)
    for flat in removed:
        mask[divmod(flat, D_HIDDEN)] = False
    full, direct, schur, exact = _bounds(_dense_output_layer_precision(alpha), removed)
    # log_det_ratio = log det P_m − (number active)·log α: each removed weight adds log α.
    change = _log_det_ratio(mask, alpha) - _log_det_ratio(None, alpha) - count * math.log(alpha)
    masked = full + change
    if count == D_HIDDEN * D_OUT:  # only the bias column left: rectangular, hence exact
        assert masked == pytest.approx(exact, abs=1e-8)
        return
    assert masked == pytest.approx(min(direct, schur), abs=1e-8)
    assert masked >= exact - 1e-9  # an upper bound of the true restricted log det
    if count == 1:
        assert masked == pytest.approx(exact, abs=1e-8)  # Schur is exact for one weight


def test_all_weights_but_one_removed_uses_the_direct_bound() -> None:
    # S = one weight and the bias column (not rows × columns, so no exact Kronecker form):
    # the direct bound Σ_{j∈S} log P_jj wins over the Schur form (Hadamard on P⁻¹ makes the
    # Schur form ≥ the log det of the diagonal it misses).
    alpha = 1.0
    removed = list(range(1, D_HIDDEN * D_OUT))
    full, direct, schur, _ = _bounds(_dense_output_layer_precision(alpha), removed)
    assert direct < schur
    mask = torch.zeros(D_OUT, D_HIDDEN, dtype=torch.bool)
    mask[0, 0] = True
    masked = full + _log_det_ratio(mask, alpha) - _log_det_ratio(None, alpha)
    assert masked == pytest.approx(direct, abs=1e-8)


def test_all_weights_removed_is_exact() -> None:
    # S = the bias column of every row: rows × columns, so P_S = G ⊗ A_bb + αI exactly.
    alpha = 1.0
    removed = list(range(D_HIDDEN * D_OUT))
    full, direct, _, exact = _bounds(_dense_output_layer_precision(alpha), removed)
    assert exact < direct - 1e-3  # the bound it replaces was not tight here
    mask = torch.zeros(D_OUT, D_HIDDEN, dtype=torch.bool)
    masked = full + _log_det_ratio(mask, alpha) - _log_det_ratio(None, alpha)
    assert masked == pytest.approx(exact, abs=1e-8)
