"""Per-sample leverage tr(P⁻¹H_i) of K-FAC layers against dense algebra on a tiny 1-D CNN.

P_l = G_l ⊗ A_l + αI per layer (dense, from the engine's factors, which
``test_factors.py`` checks by hand). ``exact``: H_i from true per-sample gradients (autograd
on one sample at a time, no hooks). ``kron``: H_i ≈ A_i ⊗ G_i from explicit patches
(``F.unfold``) and output gradients.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.evidence.engine import kron_factors

ALPHA = 0.7


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv1d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 5, 3)
    ).double()
    x = torch.randn(6, 2, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    return model.eval(), x, y


def _lambda_sqrt(logits: torch.Tensor) -> list[torch.Tensor]:
    p = logits.softmax(-1).detach()
    vs = []
    for c in range(p.shape[-1]):
        v = -p * p[c].sqrt()
        v[c] += p[c].sqrt()
        vs.append(v)
    return vs


def _dense_inverse(a, g):
    return torch.linalg.inv(torch.kron(g, a) + ALPHA * torch.eye(a.shape[0] * g.shape[0]))


def _exact_terms(model, x, factors) -> dict[str, torch.Tensor]:
    """Per layer: Σ_c ψ_icᵀ P_l⁻¹ ψ_ic with ψ_ic the sample's gradient of √Λ-row c."""
    layers = {"0": model[0], "3": model[3]}
    inv = {k: _dense_inverse(*factors[k]) for k in layers}
    out = {k: torch.zeros(x.shape[0], dtype=torch.float64) for k in layers}
    for i in range(x.shape[0]):
        logits = model(x[i : i + 1])[0]
        for v in _lambda_sqrt(logits):
            for k, layer in layers.items():
                gw, gb = torch.autograd.grad(
                    logits, [layer.weight, layer.bias], v, retain_graph=True
                )
                psi = torch.cat([gw.reshape(gw.shape[0], -1), gb[:, None]], 1).reshape(-1)
                out[k][i] += psi @ inv[k] @ psi
    return out


def _conv_kron_term(model, x, factors) -> torch.Tensor:
    """tr(P_0⁻¹ (A_i ⊗ G_i)), A_i = Σ_r a_r a_rᵀ / R, G_i = Σ_c Σ_r g_rc g_rcᵀ."""
    conv = model[0]
    inv0 = _dense_inverse(*factors["0"])
    out = torch.zeros(x.shape[0], dtype=torch.float64)
    for i in range(x.shape[0]):
        seen = []
        hook = conv.register_forward_hook(lambda m, inp, o, seen=seen: seen.append(o))
        logits = model(x[i : i + 1])[0]
        hook.remove()
        patches = nn.functional.unfold(x[i : i + 1, :, None], (1, 3), padding=(0, 1))[0].t()
        patches = torch.cat([patches, torch.ones(patches.shape[0], 1).double()], 1)
        a_i = patches.t() @ patches / patches.shape[0]
        g_i = torch.zeros(3, 3, dtype=torch.float64)
        for v in _lambda_sqrt(logits):
            (go,) = torch.autograd.grad(logits, seen[0], v, retain_graph=True)
            g_i += go[0] @ go[0].t()
        out[i] = torch.trace(inv0 @ torch.kron(g_i, a_i))
    return out


@pytest.mark.parametrize("leverage", ["exact", "kron"])
def test_leverage_against_dense_algebra(cnn, leverage):
    model, x, y = cnn
    cfg = EvidenceConfig(prior_precision=ALPHA, subsample_size=None, leverage=leverage)
    res = estimate_evidence(model, x, y, config=cfg, score_weights=False)
    factors = kron_factors(model, x, y, config=cfg)
    terms = _exact_terms(model, x, factors)
    conv = terms["0"] if leverage == "exact" else _conv_kron_term(model, x, factors)
    want = conv + terms["3"]  # the Linear layer (R = 1) is exact in both modes
    # measured 9e-9: the factors' tiny negative eigenvalues are clamped at 0 in the engine
    assert torch.allclose(2 * res.sample_leverage, want, rtol=1e-7, atol=0)


def test_kron_differs_from_exact_only_through_weight_sharing(cnn, tiny_mlp, tiny_data):
    """No weight sharing (an MLP): the modes agree; a conv layer: they differ."""
    x, y = tiny_data
    mlp = {
        lev: estimate_evidence(tiny_mlp, x, y, config=EvidenceConfig(leverage=lev))
        for lev in ("exact", "kron")
    }
    assert torch.allclose(mlp["exact"].sample_leverage, mlp["kron"].sample_leverage, rtol=1e-10)
    model, xc, yc = cnn
    conv = {
        lev: estimate_evidence(model, xc, yc, config=EvidenceConfig(leverage=lev))
        for lev in ("exact", "kron")
    }
    gap = (conv["exact"].sample_leverage - conv["kron"].sample_leverage).abs().max()
    assert float(gap) > 1e-3 * float(conv["exact"].sample_leverage.abs().max())


def test_unknown_leverage_mode_is_refused():
    with pytest.raises(ValueError, match="leverage must be exact, kron or lowrank, got 'fast'"):
        EvidenceConfig(leverage="fast")


def _tail_replaced(mat: torch.Tensor, rank: int) -> torch.Tensor:
    """``mat`` with its eigenvalues outside the top ``rank`` replaced by their mean."""
    lam, vec = torch.linalg.eigh(mat)
    lam[:-rank] = lam[:-rank].mean()
    return vec @ torch.diag(lam) @ vec.t()


def _check_lowrank_through_the_engine(model, x, y, side: str) -> None:
    """The conv layer's term is the exact leverage with its ``side`` factor ("a" or "g")
    tail-replaced at rank 2, the Linear layer's (R = 1) stays exact, and log Z and the
    weight scores do not change at all."""
    base = dict(prior_precision=ALPHA, subsample_size=None)
    exact = estimate_evidence(model, x, y, config=EvidenceConfig(**base))
    cfg = EvidenceConfig(**base, leverage="lowrank", leverage_rank=2)
    res = estimate_evidence(model, x, y, config=cfg)
    factors = kron_factors(model, x, y, config=cfg)
    a, g = factors["0"]
    replaced = (_tail_replaced(a, 2), g) if side == "a" else (a, _tail_replaced(g, 2))
    tilde = dict(factors, **{"0": replaced})
    want = _exact_terms(model, x, tilde)["0"] + _exact_terms(model, x, factors)["3"]
    assert torch.allclose(2 * res.sample_leverage, want, rtol=1e-7, atol=0)
    assert not torch.allclose(res.sample_leverage, exact.sample_leverage, rtol=1e-4)
    assert res.log_evidence == exact.log_evidence
    for name, scores in exact.weight_scores.items():
        assert torch.equal(res.weight_scores[name], scores)


def test_lowrank_leverage_through_the_engine(cnn):
    """``leverage="lowrank"`` on a conv with d_in > d_out truncates A (formed densely)."""
    _check_lowrank_through_the_engine(*cnn, side="a")


def test_g_side_lowrank_leverage_through_the_engine():
    """A conv with more outputs than inputs (8 channels from 1: d_out 8 > d_in 4): the low-
    rank route truncates G instead."""
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv1d(1, 8, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(8 * 5, 3)
    ).double().eval()
    x = torch.randn(6, 1, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    _check_lowrank_through_the_engine(model, x, y, side="g")
