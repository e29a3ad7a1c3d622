"""Per-sample leverage of masked K-FAC layers against dense algebra on a tiny 1-D CNN.

For a layer with active set S the engine's leverage is Σ_k ψ_S,kᵀ (P⁻¹)_SS ψ_S,k with
P = G ⊗ A + αI (dense here, from the engine's factors, which ``test_factors.py`` checks by
hand) and ψ_k the sample's true gradient for backward vector k (autograd on one sample at a
time, no hooks). ``masked_leverage="sparse"`` (default) and ``"dense"`` must both give it;
``"diag"`` must give its stated approximation (1 − ρ) Σ_{j∈S} (P⁻¹)_jj ψ_j² on layers with
active fraction ρ ≤ ½, and the exact value elsewhere.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.evidence.curvature import kfac
from jmds_pipeline.evidence.curvature.kfac import DIAG_MAX_ACTIVE
from jmds_pipeline.evidence.engine import kron_factors

ALPHA = 0.7
LAYERS = {"0": "0.weight", "3": "3.weight"}  # the conv and the Linear layer


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 5, 3)
    ).double()
    x = torch.randn(7, 2, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (7,))
    return model.eval(), x, y


def _masks(model: nn.Module, keep: dict[str, float], seed: int) -> dict[str, torch.Tensor]:
    """Random weight masks with ~``keep`` active; row 0 of each layer is fully pruned and
    row 1 fully kept, so the rows' active sets have different sizes."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in model.named_parameters():
        if name in keep:
            m = torch.rand(p.shape, generator=g) < keep[name]
            m[0], m[1] = False, True
            out[name] = m
    return out


def _matrix_mask(weight_mask: torch.Tensor) -> torch.Tensor:
    """Weight mask -> the [W | b] view (bias column active), flattened row-major."""
    w = weight_mask.reshape(weight_mask.shape[0], -1)
    return torch.cat([w, torch.ones(w.shape[0], 1, dtype=torch.bool)], 1).reshape(-1)


def _psi(model, x, i, layer, v) -> torch.Tensor:
    logits = model(x[i : i + 1])[0]
    gw, gb = torch.autograd.grad(logits, [layer.weight, layer.bias], v)
    return torch.cat([gw.reshape(gw.shape[0], -1), gb[:, None]], 1).reshape(-1)


def _lambda_sqrt(p: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for c in range(p.shape[-1]):
        v = -p * p[c].sqrt()
        v[c] += p[c].sqrt()
        out.append(v)
    return out


def _dense_terms(model, x, factors, masks) -> dict[str, dict[str, torch.Tensor]]:
    """Per layer: exact Σ_c ψ_Sᵀ (P⁻¹)_SS ψ_S and Σ_c Σ_{j∈S} (P⁻¹)_jj ψ_j² (exact Fisher)."""
    out = {}
    for key, pname in LAYERS.items():
        a, g = factors[key]
        p_inv = torch.linalg.inv(torch.kron(g, a) + ALPHA * torch.eye(a.shape[0] * g.shape[0]))
        m = _matrix_mask(masks[pname]).double()
        exact = torch.zeros(x.shape[0], dtype=torch.float64)
        diag = torch.zeros_like(exact)
        for i in range(x.shape[0]):
            probs = model(x[i : i + 1])[0].softmax(-1).detach()
            for v in _lambda_sqrt(probs):
                psi = _psi(model, x, i, model[int(key)], v) * m
                exact[i] += psi @ p_inv @ psi
                diag[i] += (torch.diagonal(p_inv) * psi * psi).sum()
        out[key] = {"exact": exact, "diag": diag, "rho": float(m.mean())}
    return out


def _leverage(model, x, y, masks, **cfg) -> torch.Tensor:
    config = EvidenceConfig(prior_precision=ALPHA, subsample_size=None, **cfg)
    res = estimate_evidence(model, x, y, masks=masks, config=config, score_weights=False)
    return 2 * res.sample_leverage


KEEPS = {
    "half": {"0.weight": 0.5, "3.weight": 0.5},
    "sparse_and_dense": {"0.weight": 0.2, "3.weight": 0.8},
    "linear_all_pruned": {"0.weight": 0.6, "3.weight": 0.0},
}


@pytest.mark.parametrize("keep", KEEPS.values(), ids=KEEPS.keys())
@pytest.mark.parametrize("route", ["sparse", "dense"])
def test_exact_masked_routes_match_dense_algebra(cnn, keep, route):
    model, x, y = cnn
    masks = _masks(model, keep, seed=1)
    if keep["3.weight"] == 0.0:
        masks["3.weight"][:] = False
    factors = kron_factors(model, x, y, config=EvidenceConfig(subsample_size=None))
    terms = _dense_terms(model, x, factors, masks)
    want = terms["0"]["exact"] + terms["3"]["exact"]
    # chunk_elements=64: one sample per chunk, so the chunked path is exercised too
    got = _leverage(model, x, y, masks, masked_leverage=route, chunk_elements=64)
    # measured 1.3e-8 (as in test_leverage): the factors' tiny negative eigenvalues are
    # clamped at 0 in the engine, not in the dense inverse
    assert torch.allclose(got, want, rtol=1e-7, atol=0)


def test_sparse_and_dense_routes_agree_with_mc_fisher_and_batches(cnn):
    """The MC Fisher (one sampled label, the same draws in both runs) and several samples
    per chunk: the two exact routes give the same numbers."""
    model, x, y = cnn
    masks = _masks(model, KEEPS["half"], seed=2)
    got = {
        route: _leverage(model, x, y, masks, masked_leverage=route, fisher="mc")
        for route in ("sparse", "dense")
    }
    assert torch.allclose(got["sparse"], got["dense"], rtol=1e-10, atol=0)
    assert float(got["sparse"].min()) > 0


def test_diag_route_is_its_stated_approximation(cnn):
    """ρ ≤ ½ (the conv): (1 − ρ) Σ_{j∈S} (P⁻¹)_jj ψ_j²; ρ > ½ (the Linear): exact."""
    model, x, y = cnn
    masks = _masks(model, KEEPS["sparse_and_dense"], seed=1)
    factors = kron_factors(model, x, y, config=EvidenceConfig(subsample_size=None))
    terms = _dense_terms(model, x, factors, masks)
    conv, linear = terms["0"], terms["3"]
    assert conv["rho"] <= DIAG_MAX_ACTIVE < linear["rho"]
    want = (1 - conv["rho"]) * conv["diag"] + linear["exact"]
    got = _leverage(model, x, y, masks, masked_leverage="diag")
    # measured 1.3e-8 (as in test_leverage): the factors' tiny negative eigenvalues are
    # clamped at 0 in the engine, not in the dense inverse
    assert torch.allclose(got, want, rtol=1e-7, atol=0)


def test_unknown_masked_leverage_route_is_refused():
    with pytest.raises(ValueError, match="masked_leverage must be sparse, dense or diag"):
        EvidenceConfig(masked_leverage="fast")


def test_diag_route_error_against_the_exact_route():
    """The approximation's error on a trained tiny CNN with magnitude masks keeping 30 %
    (conv ρ = 0.41, Linear ρ = 0.31 with the bias column), exact Fisher: measured relative
    L2 error 0.155, Spearman 0.997, sum ratio 0.85; the raw diagonal sum Σ_{j∈S} (P⁻¹)_jj ψ_j²
    (no (1 − ρ)) has relative error 0.28 and fails the bound."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 2, 12, generator=g, dtype=torch.float64)
    y = (x[:, 0, :6].sum(1) > 0).long() + (x[:, 1, 6:].sum(1) > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(2, 8, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(96, 3)
    ).double()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    masks = {}
    for name, p in model.named_parameters():
        if name.endswith("weight"):
            cut = p.detach().abs().flatten().kthvalue(int(0.7 * p.numel())).values
            masks[name] = p.detach().abs() > cut
    got = {
        route: _leverage(model, x, y, masks, masked_leverage=route) for route in ("sparse", "diag")
    }
    exact, approx = got["sparse"], got["diag"]
    rank = [t.argsort().argsort().double() for t in (exact, approx)]
    assert float(torch.corrcoef(torch.stack(rank))[0, 1]) >= 0.99
    assert float((approx - exact).norm() / exact.norm()) <= 0.2


def test_sparse_route_in_row_blocks_gives_the_same_numbers(cnn, monkeypatch):
    """A layer whose gathered V exceeds ``SPARSE_MAX_GATHERED`` is gathered a block of rows
    at a time (here one row per block): the numbers do not change."""
    model, x, y = cnn
    masks = _masks(model, KEEPS["half"], seed=3)
    whole = _leverage(model, x, y, masks, masked_leverage="sparse")
    monkeypatch.setattr(kfac, "SPARSE_MAX_GATHERED", 1)
    blocked = _leverage(model, x, y, masks, masked_leverage="sparse")
    dense = _leverage(model, x, y, masks, masked_leverage="dense")
    assert torch.allclose(blocked, whole, rtol=1e-12, atol=0)
    assert torch.allclose(blocked, dense, rtol=1e-10, atol=0)
