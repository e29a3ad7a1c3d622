"""Ground truth: exact Bayesian linear regression, and `full` vs a brute-force GGN."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from tests.evidence.helpers import brute_force_ggn, laplace_log_evidence


def _blr(n=50, d=4, sigma=0.5, alpha=2.0, active=None):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = x @ torch.randn(d, 1, generator=g, dtype=torch.float64) + 0.3
    y = y + sigma * torch.randn(n, 1, generator=g, dtype=torch.float64)
    feats = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1)
    keep = torch.ones(d + 1, dtype=torch.bool) if active is None else active
    f = feats[:, keep]
    post_prec = f.t() @ f / sigma**2 + alpha * torch.eye(f.shape[1], dtype=torch.float64)
    mean = torch.linalg.solve(post_prec, f.t() @ y / sigma**2)
    cov = sigma**2 * torch.eye(n, dtype=torch.float64) + f @ f.t() / alpha
    log_z = torch.distributions.MultivariateNormal(torch.zeros(n, dtype=torch.float64), cov)
    theta = torch.zeros(d + 1, dtype=torch.float64)
    theta[keep] = mean[:, 0]
    layer = nn.Linear(d, 1).double()
    with torch.no_grad():
        layer.weight.copy_(theta[:d].reshape(1, d))
        layer.bias.copy_(theta[d:])
    return layer, x, y, float(log_z.log_prob(y[:, 0]))


@pytest.mark.parametrize("structure", ["full", "kfac"])
def test_linear_regression_is_exact(structure):
    layer, x, y, exact = _blr()
    cfg = EvidenceConfig(
        structure=structure, likelihood="regression", sigma_noise=0.5, prior_precision=2.0
    )
    res = estimate_evidence(layer, x, y, config=cfg)
    assert res.log_evidence == pytest.approx(exact, rel=1e-6)
    assert res.num_active == 5


@pytest.mark.parametrize("structure", ["full", "kfac"])
def test_masked_linear_regression_is_exact(structure):
    """One masked input weight: the evidence of the smaller model (K-FAC: Schur is exact)."""
    active = torch.tensor([True, False, True, True, True])
    layer, x, y, exact = _blr(active=active)
    cfg = EvidenceConfig(
        structure=structure, likelihood="regression", sigma_noise=0.5, prior_precision=2.0
    )
    masks = {"weight": active[:4].reshape(1, 4)}
    res = estimate_evidence(layer, x, y, masks=masks, config=cfg)
    assert res.log_evidence == pytest.approx(exact, rel=1e-6)
    assert res.num_active == 4


def test_full_matches_brute_force_ggn(tiny_mlp, tiny_data):
    x, y = tiny_data
    h = brute_force_ggn(tiny_mlp, x, y)
    theta = torch.cat([p.detach().reshape(-1) for p in tiny_mlp.parameters()])
    with torch.no_grad():
        log_lik = -float(nn.functional.cross_entropy(tiny_mlp(x), y, reduction="sum"))
    for alpha in (0.3, 1.0, 4.0):
        res = estimate_evidence(
            tiny_mlp, x, y, config=EvidenceConfig(structure="full", prior_precision=alpha)
        )
        assert res.log_evidence == pytest.approx(
            laplace_log_evidence(h, theta, log_lik, alpha), rel=1e-9
        )
    # α by max evidence is a stationary point of the dense evidence in log α
    res = estimate_evidence(tiny_mlp, x, y, config=EvidenceConfig(structure="full"))
    a = res.prior_precision
    f = [laplace_log_evidence(h, theta, log_lik, a * math.exp(e)) for e in (-1e-3, 0, 1e-3)]
    assert f[1] >= max(f[0], f[2])
    assert abs(f[2] - f[0]) / 2e-3 < 1e-4
