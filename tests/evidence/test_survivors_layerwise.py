"""Diagonal blocks of the layerwise backend against a brute-force GGN diagonal.

The model ties an embedding to the output head (one parameter, two diagonal handlers),
and calls one Linear three times, the first call's output unused (no gradient reaches it):
H_jj = Σ_i (J_iᵀ Λ_i J_i)_jj sums every call and every owner of a parameter.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.evidence.engine import kron_factors
from tests.evidence.helpers import brute_force_ggn

V, D = 5, 3


class TiedReuse(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.mid = nn.Linear(D, D)
        self.head = nn.Linear(D, V)
        self.head.weight = self.emb.weight  # tied: the head's weight is the embedding

    def forward(self, x):
        h = self.emb(x)
        self.mid(h)  # dead call: its output never reaches the logits
        h = torch.tanh(self.mid(h))
        h = torch.tanh(self.mid(h))
        return self.head(h)


def _case():
    torch.manual_seed(11)
    model = TiedReuse().double()
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, V, (12,), generator=g)
    y = torch.randint(0, V, (12,), generator=g)
    return model, x, y


def _diag_h(model, x, y):
    return torch.diagonal(brute_force_ggn(model, x, y)).clone()


def test_diag_logdet_sums_calls_and_tied_owners():
    model, x, y = _case()
    h = _diag_h(model, x, y)
    alpha = 0.7
    cfg = EvidenceConfig(structure="diag", prior_precision=alpha, fisher="exact")
    res = estimate_evidence(model, x, y, config=cfg, score_weights=False)
    d = h.numel()
    want = float(torch.log(h + alpha).sum()) - d * math.log(alpha)
    assert res.num_active == d
    assert res.log_det_ratio == pytest.approx(want, rel=1e-10)


def _optimal_alpha(h_g: torch.Tensor, sq: float) -> float:
    """argmax_α −½α‖θ‖² − ½[Σ log(h+α) − d log α] by bisection on its (decreasing) slope."""
    d = h_g.numel()

    def slope(a: float) -> float:
        return -0.5 * sq - 0.5 * float((1.0 / (h_g + a)).sum()) + 0.5 * d / a

    lo, hi = math.log(2e-9), math.log(5e8)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if slope(math.exp(mid)) > 0:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def test_diag_blocks_keep_their_layerwise_prior_group():
    model, x, y = _case()
    h = _diag_h(model, x, y)
    names = [n for n, _ in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])
    owner = [n.rsplit(".", 1)[0] for n in names]
    cfg = EvidenceConfig(structure="diag", prior_mode="layerwise", fisher="exact")
    res = estimate_evidence(model, x, y, config=cfg, score_weights=False)
    assert isinstance(res.prior_precision, dict)
    assert set(res.prior_precision) == set(owner) == {"emb", "mid", "head"}
    groups = torch.repeat_interleave(
        torch.tensor([sorted(set(owner)).index(o) for o in owner]), torch.tensor(sizes)
    )
    for gi, gname in enumerate(sorted(set(owner))):
        sel = groups == gi
        want = _optimal_alpha(h[sel], float((theta[sel] ** 2).sum()))
        assert res.prior_precision[gname] == pytest.approx(want, rel=1e-6)


def test_mc_fisher_weights_each_draw_by_one_over_s_in_full_precision():
    """S MC draws with ω = 1/S give G = (1/S) Σ_s G_s; one draw over the batch repeated S
    times consumes the generator identically (multinomial: one variate per entry, row by
    row), so its G, with ω = 1 exactly, is S times the first one's to rounding."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x = torch.randn(8, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))
    s = 3
    draws = kron_factors(model, x, y, config=EvidenceConfig(fisher="mc", mc_samples=s))
    rep = kron_factors(
        model, x.repeat(s, 1), y.repeat(s), config=EvidenceConfig(fisher="mc", mc_samples=1)
    )
    assert set(draws) == set(rep) == {"0", "2"}
    for name, (a, g) in draws.items():
        a_rep, g_rep = rep[name]
        torch.testing.assert_close(a, a_rep, rtol=1e-12, atol=0)
        assert float(g.abs().max()) > 0
        torch.testing.assert_close(g, g_rep / s, rtol=1e-12, atol=0)
