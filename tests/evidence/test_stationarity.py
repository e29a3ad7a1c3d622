"""``log_joint_stationarity`` against the gradient of the negative log joint written out:
L(θ) = Σ_i w_i CE_i(θ) + ½ α ‖θ‖², its parts restricted to the active weights."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jmds_pipeline.evidence.stationarity import Stationarity, log_joint_stationarity


def _case():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3))
    g = torch.Generator().manual_seed(4)
    x = torch.randn(11, 3, generator=g)
    y = torch.randint(0, 3, (11,), generator=g)
    w = torch.rand(11, generator=g) * 2
    w[[2, 7]] = 0.0
    return model, x, y, w


def _reference(model, x, y, w, alpha, masks):
    loss = (nn.functional.cross_entropy(model(x), y, reduction="none") * w).sum()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    lik, prior, total = [], [], []
    for (name, p), g in zip(model.named_parameters(), grads, strict=True):
        keep = masks.get(name, torch.ones_like(p, dtype=torch.bool))
        gl = g.double()[keep]
        gp = alpha * p.detach().double()[keep]
        lik.append(gl)
        prior.append(gp)
        total.append(gl + gp)
    norms = [float(torch.cat(t).norm()) for t in (total, lik, prior)]
    return norms


@pytest.mark.parametrize("batch_size", [1024, 4])
def test_gradient_norms_against_autograd(batch_size):
    model, x, y, w = _case()
    masks = {"0.weight": torch.rand(5, 3, generator=torch.Generator().manual_seed(1)) > 0.5}
    model.train()
    got = log_joint_stationarity(
        model, x, y, sample_weights=w, alpha=0.7, masks=masks, batch_size=batch_size
    )
    assert model.training  # mode restored
    total, lik, prior = _reference(model, x, y, w, 0.7, masks)
    assert got.gradient_norm == pytest.approx(total, rel=1e-5)
    assert got.likelihood_gradient_norm == pytest.approx(lik, rel=1e-5)
    assert got.prior_gradient_norm == pytest.approx(prior, rel=1e-9)
    assert got.relative == pytest.approx(total / max(lik, prior), rel=1e-5)
    assert got.as_dict() == {
        "gradient_norm": got.gradient_norm,
        "likelihood_gradient_norm": got.likelihood_gradient_norm,
        "prior_gradient_norm": got.prior_gradient_norm,
        "relative": got.relative,
    }
    # without masks every weight counts, and the result differs from the masked one
    full = log_joint_stationarity(model, x, y, sample_weights=w, alpha=0.7)
    want = _reference(model, x, y, w, 0.7, {})
    assert full.gradient_norm == pytest.approx(want[0], rel=1e-5)
    assert full.prior_gradient_norm == pytest.approx(want[2], rel=1e-9)
    assert full.prior_gradient_norm > got.prior_gradient_norm


def test_relative_is_scaled_by_the_larger_part():
    """A strong prior: the prior's pull is the larger part and the denominator."""
    model, x, y, w = _case()
    model.eval()
    got = log_joint_stationarity(model, x, y, sample_weights=w, alpha=500.0)
    total, lik, prior = _reference(model, x, y, w, 500.0, {})
    assert prior > lik
    assert got.relative == pytest.approx(total / prior, rel=1e-6)
    assert not model.training


def test_zero_weight_rows_are_never_evaluated():
    """Rows with weight 0 are dropped before the forward: a NaN row changes nothing."""
    model, x, y, w = _case()
    bad = x.clone()
    bad[2] = math.nan  # weight 0: its loss would be NaN, and 0 · NaN = NaN
    got = log_joint_stationarity(model, bad, y, sample_weights=w, alpha=0.7)
    ref = log_joint_stationarity(model, x, y, sample_weights=w, alpha=0.7)
    assert math.isfinite(got.gradient_norm)
    assert got == ref


def test_stationarity_refusals():
    model, x, y, w = _case()
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(
            ValueError, match=f"^alpha = {bad!r}; accepted: a positive prior precision$"
        ):
            log_joint_stationarity(model, x, y, sample_weights=w, alpha=bad)
    with pytest.raises(ValueError, match=r"^sample_weights has shape \(10,\); expected \(11,\)$"):
        log_joint_stationarity(model, x, y, sample_weights=w[:10], alpha=1.0)
    # (N, 1) weights used to pass and index x in pairs of rows, a wrong gradient
    with pytest.raises(ValueError, match=r"^sample_weights has shape \(11, 1\); expected \(11,\)$"):
        log_joint_stationarity(model, x, y, sample_weights=w[:, None], alpha=1.0)
    assert isinstance(
        log_joint_stationarity(model, x, y, sample_weights=w, alpha=1e-9), Stationarity
    )


def test_relative_uses_the_larger_part_even_below_one():
    """Weak data and a weak prior: both parts below 1, the ratio still divides by the larger."""
    model, x, y, w = _case()
    got = log_joint_stationarity(model, x, y, sample_weights=w * 1e-4, alpha=1e-4)
    total, lik, prior = _reference(model, x, y, w * 1e-4, 1e-4, {})
    assert max(lik, prior) < 1e-2
    assert got.relative == pytest.approx(total / max(lik, prior), rel=1e-5)


def test_no_data_and_zero_weights_give_zero_not_a_division_error():
    model, x, y, _ = _case()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    got = log_joint_stationarity(model, x, y, sample_weights=torch.zeros(11), alpha=1.0)
    assert got.as_dict() == {
        "gradient_norm": 0.0,
        "likelihood_gradient_norm": 0.0,
        "prior_gradient_norm": 0.0,
        "relative": 0.0,
    }
