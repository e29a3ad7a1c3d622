"""Engine plumbing (prior optimisation settings, subsampling, timings), the batched
backward's fallbacks and warnings, and the stationarity gradient's accumulation."""

from __future__ import annotations

import math
import time
import warnings
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.evidence.curvature.diag import DiagBlock
from jmds_pipeline.evidence.curvature.sweep import _batched_grad
from jmds_pipeline.evidence.engine import _prior_precision
from jmds_pipeline.evidence.stationarity import log_joint_stationarity
from tests.evidence.helpers import refuse_batched_grads

F64 = torch.float64


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()


def _data(n: int = 10, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=F64), torch.randint(0, 3, (n,), generator=g)


# ------------------------------------------------------------------ prior precision


def test_zero_prior_steps_keep_the_initial_alpha_exactly():
    model = _mlp()
    x, y = _data()
    cfg = EvidenceConfig(prior_init=0.1, prior_steps=0)
    res = estimate_evidence(model, x, y, config=cfg, score_weights=False, score_samples=False)
    assert res.prior_precision == pytest.approx(0.1, rel=1e-14)


def _optimal_alpha(h: torch.Tensor, sq: float) -> float:
    """argmax_α −½α‖θ‖² − ½[Σ log(h+α) − d log α] by bisection on its (decreasing) slope."""
    d = h.numel()
    lo, hi = math.log(2e-9), math.log(5e8)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        a = math.exp(mid)
        if -0.5 * sq - 0.5 * float((1.0 / (h + a)).sum()) + 0.5 * d / a > 0:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def test_separable_prior_groups_are_optimised_one_by_one():
    """Group 1 is fully pruned (its objective is flat: zero gradient and Hessian in log α),
    which makes a joint Newton step singular; per group, group 0 still converges."""
    h0 = torch.tensor([2.0, 0.5, 3.0], dtype=F64)
    th0 = torch.tensor([0.3, -0.2, 0.5], dtype=F64)
    blocks = [
        DiagBlock("a", h0, th0, None, 0),
        DiagBlock(
            "b",
            torch.ones(2, dtype=F64),
            torch.zeros(2, dtype=F64),
            torch.zeros(2, dtype=torch.bool),
            1,
        ),
    ]
    curvature = SimpleNamespace(separable_prior=True, blocks=blocks)
    alpha = _prior_precision(blocks, 2, EvidenceConfig(), curvature)
    assert float(alpha[0]) == pytest.approx(_optimal_alpha(h0, float((th0**2).sum())), rel=1e-9)
    assert float(alpha[1]) == 1.0  # prior_init: nothing pulls a flat group


# ------------------------------------------------------------------ subsample, timings


def test_regression_subsample_ignores_class_balancing():
    """Class balance needs classes: for regression targets the subsample is uniform."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(12, 3, generator=g, dtype=F64)
    y = torch.randn(12, 1, generator=g, dtype=F64)
    runs = []
    for balanced in (True, False):
        cfg = EvidenceConfig(
            likelihood="regression", subsample_size=5, class_balanced=balanced, prior_precision=1.0
        )
        runs.append(
            estimate_evidence(
                model, x, y, config=cfg, score_weights=False, score_samples=False
            ).log_det_ratio
        )
    assert runs[0] == runs[1]


def test_timings_are_elapsed_seconds_of_each_phase():
    model = _mlp()
    x, y = _data()
    t0 = time.perf_counter()
    res = estimate_evidence(model, x, y, config=EvidenceConfig(prior_precision=1.0))
    wall = time.perf_counter() - t0
    for key in ("curvature", "prior", "samples", "weights", "total"):
        assert isinstance(res.timings[key], float)
        assert 0.0 <= res.timings[key] <= wall


# ------------------------------------------------------------------ batched backward


def test_batched_grad_fallback_with_a_single_vector(monkeypatch):
    torch.manual_seed(6)
    lin = nn.Linear(3, 2).double()
    x = torch.randn(4, 3, dtype=F64)
    hidden = lin(x)
    logits = hidden.tanh() * 3
    v = torch.randn(1, 4, 2, dtype=F64)
    want = torch.autograd.grad(logits, hidden, v[0], retain_graph=True)[0]
    refuse_batched_grads(monkeypatch)
    (out,) = _batched_grad(logits, [hidden], v)
    assert out.shape == (1, 4, 2)
    torch.testing.assert_close(out[0], want, rtol=1e-12, atol=0)


def test_batched_grad_silences_only_the_batching_rule_warning():
    lin = nn.Linear(3, 2).double()
    hidden = lin(torch.randn(4, 3, dtype=F64))
    mid = hidden * 2

    def hook(grad):  # runs inside the batched backward, as a slow op's vmap fallback would
        warnings.warn(
            "There is a performance drop because we have not yet implemented "
            "the batching rule for aten::something",
            UserWarning,
            stacklevel=1,
        )
        warnings.warn("a warning of the model's own", UserWarning, stacklevel=1)

    mid.register_hook(hook)
    logits = mid.tanh()
    vs = torch.randn(3, 4, 2, dtype=F64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (out,) = _batched_grad(logits, [hidden], vs)
    assert [str(w.message) for w in caught] == ["a warning of the model's own"]
    assert out.shape == (3, 4, 2)


# ------------------------------------------------------------------ stationarity


def test_stationarity_sums_batches_in_float64():
    """float32 model whose per-batch gradients are exact: logits ±100 make the softmax
    exactly (1, 0), so each sample labelled 1 has ∂ℓ/∂logits = (1, −1) and the bias gradient
    is Σ_i w_i (1, −1). With weights 2²⁴ and 1 in separate batches, the sum 2²⁴ + 1 needs
    float64 (float32 rounds it to 2²⁴)."""
    model = nn.Linear(1, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([100.0, -100.0]))
    x = torch.zeros(2, 1)
    y = torch.ones(2, dtype=torch.long)
    w = torch.tensor([2.0**24, 1.0])
    alpha = 1e-3
    st = log_joint_stationarity(model, x, y, sample_weights=w, alpha=alpha, batch_size=1)
    g = 2.0**24 + 1.0
    assert st.likelihood_gradient_norm == pytest.approx(math.sqrt(2) * g, rel=1e-14)
    assert st.prior_gradient_norm == pytest.approx(alpha * 100 * math.sqrt(2), rel=1e-12)
    total = math.sqrt(2) * (g + alpha * 100)
    assert st.gradient_norm == pytest.approx(total, rel=1e-14)


def test_full_structure_takes_the_joint_newton_step_over_prior_groups():
    """The exact log det couples the groups, so one step on t = log α is the full Newton
    step −∇²f⁻¹∇f (dense objective from a brute-force GGN), not a per-group one."""
    from tests.evidence.helpers import brute_force_ggn

    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    g = torch.Generator().manual_seed(9)
    x = torch.randn(7, 2, generator=g, dtype=F64)
    y = torch.randint(0, 2, (7,), generator=g)
    cfg = EvidenceConfig(structure="full", prior_mode="layerwise", prior_steps=1)
    res = estimate_evidence(model, x, y, config=cfg, score_weights=False, score_samples=False)
    h = brute_force_ggn(model, x, y)
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    group = torch.cat(
        [
            torch.full((p.numel(),), 0 if n.startswith("0.") else 1)
            for n, p in model.named_parameters()
        ]
    )
    sq = torch.stack([(theta[group == k] ** 2).sum() for k in (0, 1)])
    d = torch.stack([(group == k).sum() for k in (0, 1)]).to(F64)

    def f(t):
        a = t.exp()
        logdet = torch.linalg.slogdet(h + torch.diag(a[group]))[1]
        return -0.5 * (a * sq).sum() - 0.5 * (logdet - (d * t).sum())

    t0 = torch.zeros(2, dtype=F64)  # prior_init = 1
    grad = torch.autograd.functional.jacobian(f, t0)
    hess = torch.autograd.functional.hessian(f, t0)
    step = -torch.linalg.solve(hess, grad)
    assert float(step @ grad) > 0  # an ascent direction, so the Newton step is taken
    t1 = step.clamp(-2.0, 2.0)
    while float(f(t1)) < float(f(t0)) - 1e-12 * abs(float(f(t0))):
        t1 = 0.5 * t1
    assert set(res.prior_precision) == {"0", "2"}
    got = torch.tensor([res.prior_precision["0"], res.prior_precision["2"]], dtype=F64)
    torch.testing.assert_close(got, t1.exp(), rtol=1e-9, atol=0)
