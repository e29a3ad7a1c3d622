"""Likelihood terms, backward vectors, the prior optimiser and the NTK subsample, each
against an independent reference: torch.distributions log densities, dense Λ written out,
the evidence-optimal α found by bracketing root search, counts worked out by hand."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from scipy.optimize import brentq

from jmds_pipeline.evidence import EvidenceConfig
from jmds_pipeline.evidence.likelihood import (
    backward_vectors,
    output_hessian,
    per_sample_nll,
    skip_backward_draws,
    use_exact_fisher,
)
from jmds_pipeline.evidence.prior import LOG_ALPHA_BOUNDS, optimise_prior
from jmds_pipeline.evidence.subsample import select_subsample

GEN = torch.Generator().manual_seed(11)
LOGITS = torch.randn(4, 3, generator=GEN, dtype=torch.float64)
LABELS = torch.tensor([0, 2, 1, 2])


def _dense_lambda(logits: torch.Tensor) -> torch.Tensor:
    """Hessian of −log softmax(z)_y in z, by autograd (independent of the closed form)."""
    out = []
    for z in logits:
        out.append(torch.autograd.functional.hessian(lambda t: -torch.log_softmax(t, -1)[0], z))
    return torch.stack(out)


# ------------------------------------------------------------------ per-sample NLL


def test_per_sample_nll_against_distributions():
    cls = per_sample_nll(LOGITS, LABELS, EvidenceConfig())
    ref = -torch.distributions.Categorical(logits=LOGITS).log_prob(LABELS)
    assert torch.allclose(cls, ref, rtol=1e-12)
    # language modelling: summed over the positions that are not ignored (-100)
    z = torch.randn(2, 3, 4, generator=GEN, dtype=torch.float64)
    y = torch.tensor([[1, -100, 3], [0, 2, -100]])
    lm = per_sample_nll(z, y, EvidenceConfig(likelihood="language_modeling"))
    lp = torch.log_softmax(z, -1)
    want = torch.tensor([-(lp[0, 0, 1] + lp[0, 2, 3]), -(lp[1, 0, 0] + lp[1, 1, 2])])
    assert torch.allclose(lm, want.double(), rtol=1e-12)
    # regression with two outputs and σ = 0.7: −log N(y; f, σ²) summed over outputs
    f = torch.randn(5, 2, generator=GEN, dtype=torch.float64)
    t = torch.randn(5, 2, generator=GEN, dtype=torch.float64)
    cfg = EvidenceConfig(likelihood="regression", sigma_noise=0.7)
    got = per_sample_nll(f, t, cfg)
    want = -torch.distributions.Normal(f, 0.7).log_prob(t).sum(1)
    assert torch.allclose(got, want, rtol=1e-12)
    # one output given as (N,) targets against (N, 1) predictions
    got1 = per_sample_nll(f[:, :1], t[:, 0], cfg)
    assert torch.allclose(got1, -torch.distributions.Normal(f[:, 0], 0.7).log_prob(t[:, 0]))


# ------------------------------------------------------------------ exact / MC choice


def test_use_exact_fisher_threshold_and_warning(caplog):
    cfg = EvidenceConfig(exact_fisher_max_classes=5, mc_samples=3)
    with caplog.at_level(logging.WARNING, logger="jmds_pipeline.evidence.likelihood"):
        assert use_exact_fisher(5, cfg) is True  # at the limit: still exact
        assert caplog.records == []
        assert use_exact_fisher(6, cfg, warn=False) is False
        assert caplog.records == []
        assert use_exact_fisher(6, cfg) is False
    (record,) = caplog.records
    assert record.getMessage() == (
        "fisher='exact' needs 6 backward passes per batch; using the MC Fisher "
        "(3 samples) instead (exact_fisher_max_classes=5)"
    )
    assert use_exact_fisher(2, EvidenceConfig(fisher="mc")) is False
    # regression has one exact vector per output whatever is asked for
    assert use_exact_fisher(10**6, EvidenceConfig(likelihood="regression", fisher="mc"))


# ------------------------------------------------------------------ backward vectors


def _outer_sum(pairs, shape_k: int) -> torch.Tensor:
    b = pairs[0][0].shape[0]
    out = torch.zeros(b, shape_k, shape_k, dtype=torch.float64)
    for v, om in pairs:
        f = v.reshape(b, -1)
        out += om * f[:, :, None] * f[:, None, :]
    return out


def test_exact_vectors_factor_the_softmax_hessian():
    pairs = list(backward_vectors(LOGITS, LABELS, EvidenceConfig(), None))
    assert len(pairs) == 3 and all(om == 1.0 for _, om in pairs)
    assert torch.allclose(_outer_sum(pairs, 3), _dense_lambda(LOGITS), atol=1e-12)
    assert torch.allclose(
        output_hessian(LOGITS, LABELS, EvidenceConfig()), _dense_lambda(LOGITS), atol=1e-12
    )


def test_exact_vectors_of_language_modelling_are_per_position():
    z = torch.randn(2, 3, 4, generator=GEN, dtype=torch.float64)
    y = torch.tensor([[1, -100, 3], [0, 2, 1]])
    cfg = EvidenceConfig(likelihood="language_modeling")
    pairs = list(backward_vectors(z, y, cfg, None))
    assert len(pairs) == 3 * 4
    # Λ per sequence: block diagonal over positions, an ignored position's block zero
    want = torch.zeros(2, 12, 12, dtype=torch.float64)
    for i in range(2):
        blocks = [_dense_lambda(z[i, t : t + 1])[0] * float(y[i, t] != -100) for t in range(3)]
        want[i] = torch.block_diag(*blocks)
    assert torch.allclose(_outer_sum(pairs, 12), want, atol=1e-12)
    assert torch.allclose(output_hessian(z, y, cfg), want, atol=1e-12)


def test_mc_vectors_are_one_hot_minus_p_and_average_to_lambda():
    cfg = EvidenceConfig(fisher="mc", mc_samples=4)
    gen = torch.Generator().manual_seed(0)
    pairs = list(backward_vectors(LOGITS, LABELS, cfg, gen))
    assert len(pairs) == 4 and all(om == 0.25 for _, om in pairs)
    p = LOGITS.softmax(-1)
    for v, _ in pairs:
        onehot = v + p
        assert torch.allclose(onehot.sum(-1), torch.ones(4, dtype=torch.float64))
        assert bool(((onehot.abs() < 1e-12) | ((onehot - 1).abs() < 1e-12)).all())
    # many draws: the average of v vᵀ is Λ (10⁴ draws, standard error ~ 0.005)
    big = EvidenceConfig(fisher="mc", mc_samples=10_000)
    z = LOGITS[:1]
    avg = _outer_sum(list(backward_vectors(z, LABELS[:1], big, gen)), 3)[0]
    assert torch.allclose(avg, _dense_lambda(z)[0], atol=0.02)
    # MC for language modelling: ignored positions get zero vectors
    zl = torch.randn(2, 3, 4, generator=GEN, dtype=torch.float64)
    yl = torch.tensor([[1, -100, 3], [-100, 2, 1]])
    lm = EvidenceConfig(likelihood="language_modeling", fisher="mc", mc_samples=2)
    for v, om in backward_vectors(zl, yl, lm, gen):
        assert om == 0.5
        assert bool((v[0, 1] == 0).all()) and bool((v[1, 0] == 0).all())
        assert torch.allclose((v[0, 0] + zl[0, 0].softmax(-1)).sum(), torch.tensor(1.0).double())


def test_exact_fisher_falls_back_to_mc_above_the_class_limit():
    cfg = EvidenceConfig(exact_fisher_max_classes=2, mc_samples=2)
    pairs = list(backward_vectors(LOGITS, LABELS, cfg, torch.Generator().manual_seed(0)))
    assert len(pairs) == 2 and all(om == 0.5 for _, om in pairs)
    # language modelling counts T·V passes: 3 positions × 4 classes = 12 > 11
    z = torch.randn(1, 3, 4, generator=GEN, dtype=torch.float64)
    y = torch.tensor([[1, 2, 3]])
    lm = EvidenceConfig(likelihood="language_modeling", exact_fisher_max_classes=11)
    assert len(list(backward_vectors(z, y, lm, torch.Generator().manual_seed(0)))) == 1
    lm12 = EvidenceConfig(likelihood="language_modeling", exact_fisher_max_classes=12)
    assert len(list(backward_vectors(z, y, lm12, None))) == 12


def test_regression_vector_and_hessian():
    cfg = EvidenceConfig(likelihood="regression", sigma_noise=0.5)
    f = torch.randn(3, 1, generator=GEN, dtype=torch.float64)
    (pair,) = list(backward_vectors(f, None, cfg, None))
    assert pair[1] == 1.0 and torch.allclose(pair[0], torch.full_like(f, 2.0))
    # Λ = I/σ² over the flattened outputs (here: three outputs)
    f3 = torch.randn(2, 3, generator=GEN, dtype=torch.float64)
    want = torch.eye(3, dtype=torch.float64).expand(2, 3, 3) * 4.0
    assert torch.allclose(output_hessian(f3, None, cfg), want)


def test_regression_vectors_factor_the_identity_for_several_outputs():
    cfg = EvidenceConfig(likelihood="regression", sigma_noise=0.5)
    f3 = torch.randn(2, 3, generator=GEN, dtype=torch.float64)
    pairs = list(backward_vectors(f3, None, cfg, None))
    want = torch.eye(3, dtype=torch.float64).expand(2, 3, 3) * 4.0
    assert torch.allclose(_outer_sum(pairs, 3), want)


def test_skip_backward_draws_consumes_what_the_draws_consume():
    """Skipping a batch leaves the generator where drawing that batch's MC vectors does."""
    for lik, shape, logits in (
        ("classification", (3,), torch.randn(5, 3, generator=GEN, dtype=torch.float64)),
        ("language_modeling", (2, 4), torch.randn(5, 2, 4, generator=GEN, dtype=torch.float64)),
    ):
        cfg = EvidenceConfig(likelihood=lik, fisher="mc", mc_samples=3)
        y = torch.zeros(logits.shape[:-1], dtype=torch.long)
        drawn = torch.Generator().manual_seed(5)
        list(backward_vectors(logits, y, cfg, drawn))
        skipped = torch.Generator().manual_seed(5)
        skip_backward_draws(5, shape, cfg, skipped)
        assert torch.equal(drawn.get_state(), skipped.get_state()), lik
        untouched = torch.Generator().manual_seed(5).get_state()
        fresh = torch.Generator().manual_seed(5)
        skip_backward_draws(5, shape, EvidenceConfig(likelihood=lik), fresh)  # exact: no draws
        assert torch.equal(fresh.get_state(), untouched)
    reg = torch.Generator().manual_seed(5)
    skip_backward_draws(5, (1,), EvidenceConfig(likelihood="regression", fisher="mc"), reg)
    assert torch.equal(reg.get_state(), torch.Generator().manual_seed(5).get_state())
    # language modelling with T·V above the exact limit draws too
    lm = EvidenceConfig(likelihood="language_modeling", exact_fisher_max_classes=7)
    a, b = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    z = torch.randn(3, 2, 4, generator=GEN, dtype=torch.float64)
    list(backward_vectors(z, torch.zeros(3, 2, dtype=torch.long), lm, a))
    skip_backward_draws(3, (2, 4), lm, b)
    assert torch.equal(a.get_state(), b.get_state())
    assert not torch.equal(a.get_state(), torch.Generator().manual_seed(9).get_state())


# ------------------------------------------------------------------ prior optimiser


def _objective(sq: float, lam: torch.Tensor):
    """α-dependent part of log Z for one eigenbasis block: −½α‖θ‖² − ½[Σ log(λ+α) − d log α]."""

    def f(alpha: torch.Tensor) -> torch.Tensor:
        a = alpha[0]
        return -0.5 * a * sq - 0.5 * (torch.log(lam + a).sum() - lam.numel() * torch.log(a))

    return f


def _optimum(sq: float, lam: torch.Tensor) -> float:
    """Root of d/dα: ‖θ‖² + Σ 1/(λ+α) − d/α = 0, by bracketing (no Newton, no autograd)."""
    lam_l = lam.tolist()

    def g(log_a: float) -> float:
        a = math.exp(log_a)
        return sq + sum(1 / (x + a) for x in lam_l) - len(lam_l) / a

    return math.exp(brentq(g, -15, 15, xtol=1e-14))


def test_prior_maximises_the_evidence():
    lam = torch.tensor([0.0, 0.3, 2.0, 15.0, 120.0], dtype=torch.float64)
    for sq, init in ((0.8, 1.0), (25.0, 1e-3), (0.01, 100.0)):
        alpha = optimise_prior(_objective(sq, lam), torch.tensor([init]))
        assert alpha.dtype == torch.float64 and alpha.shape == (1,)
        assert float(alpha[0]) == pytest.approx(_optimum(sq, lam), rel=1e-7)


def test_prior_per_group_and_coupled():
    lam1 = torch.tensor([0.5, 4.0], dtype=torch.float64)
    lam2 = torch.tensor([10.0, 30.0, 0.1], dtype=torch.float64)
    f1, f2 = _objective(2.0, lam1), _objective(0.3, lam2)

    def both(alpha):
        return f1(alpha[:1]) + f2(alpha[1:])

    want = [_optimum(2.0, lam1), _optimum(0.3, lam2)]
    for separable in (True, False):
        alpha = optimise_prior(both, torch.tensor([1.0, 1.0]), separable=separable)
        assert alpha.tolist() == pytest.approx(want, rel=1e-7)
    # a coupled objective (a 2×2 log det with α on its diagonal): the dense Newton path
    h = torch.tensor([[3.0, 1.2], [1.2, 0.7]], dtype=torch.float64)
    sq = torch.tensor([0.4, 1.5], dtype=torch.float64)

    def coupled(alpha):
        return -0.5 * (alpha * sq).sum() - 0.5 * (
            torch.logdet(h + torch.diag(alpha)) - alpha.log().sum()
        )

    alpha = optimise_prior(coupled, torch.tensor([1.0, 1.0]), separable=False)
    eps = 1e-5
    for k in range(2):  # stationary in each log α_k (central differences)
        up, dn = alpha.clone().log(), alpha.clone().log()
        up[k] += eps
        dn[k] -= eps
        grad = (float(coupled(up.exp())) - float(coupled(dn.exp()))) / (2 * eps)
        assert abs(grad) < 1e-7


def test_prior_bounds_steps_and_step_size():
    lo, hi = (math.exp(b) for b in LOG_ALPHA_BOUNDS)
    assert LOG_ALPHA_BOUNDS == (-20.0, 20.0)
    # θ = 0 and no curvature: the evidence rises with α for ever -> the upper bound
    flat = _objective(0.0, torch.tensor([0.0, 1.0, 5.0], dtype=torch.float64))
    assert float(optimise_prior(flat, torch.tensor([1.0]))[0]) == pytest.approx(hi, rel=1e-12)

    # a huge ‖θ‖² and d = 0: falls for ever -> the lower bound
    def falling(alpha):
        return -0.5 * alpha[0] * 1e12

    assert float(optimise_prior(falling, torch.tensor([1.0]))[0]) == pytest.approx(lo, rel=1e-9)
    # no steps: the (clamped) start
    assert float(optimise_prior(flat, torch.tensor([3.0]), steps=0)[0]) == pytest.approx(3.0)
    assert float(optimise_prior(flat, torch.tensor([1e30]), steps=0)[0]) == pytest.approx(hi)
    assert float(optimise_prior(flat, torch.tensor([1e-30]), steps=0)[0]) == pytest.approx(lo)
    # one Newton step far from the optimum moves log α by at most 2
    far = _objective(1e-6, torch.tensor([1.0, 2.0], dtype=torch.float64))
    one = float(optimise_prior(far, torch.tensor([1.0]), steps=1)[0])
    assert one == pytest.approx(math.exp(2.0), rel=1e-12)

    def down(alpha):  # Newton step −5 in log α, clamped to −2
        return -((alpha.log() + 5.0) ** 2).sum()

    assert float(optimise_prior(down, torch.tensor([1.0]), steps=1)[0]) == pytest.approx(
        math.exp(-2.0), rel=1e-12
    )
    assert float(optimise_prior(down, torch.tensor([1.0]))[0]) == pytest.approx(
        math.exp(-5.0), rel=1e-9
    )


def test_prior_takes_gradient_sign_steps_where_newton_does_not_ascend():
    # f = α is convex in t = log α: Newton's step is not an ascent, a unit step in t is taken
    def linear(alpha):
        return alpha.sum()

    for separable in (True, False):
        a = optimise_prior(linear, torch.tensor([1.0, 1.0]), steps=1, separable=separable)
        assert a.tolist() == pytest.approx([math.e, math.e], rel=1e-12)
        a3 = optimise_prior(linear, torch.tensor([1.0, 1.0]), steps=3, separable=separable)
        assert a3.tolist() == pytest.approx([math.e**3, math.e**3], rel=1e-12)

    # an indefinite Hessian in t: Newton's step is orthogonal to the gradient -> sign step
    def saddle(alpha):
        return alpha[0] - alpha[1]

    for separable in (True, False):
        a = optimise_prior(saddle, torch.tensor([1.0, 1.0]), steps=1, separable=separable)
        assert a.tolist() == pytest.approx([math.e, 1 / math.e], rel=1e-12)

    # a singular Hessian (f = log α_0 + log α_1 is linear in t): solve fails -> sign step
    def linear_t(alpha):
        return alpha.log().sum()

    a = optimise_prior(linear_t, torch.tensor([1.0, 1.0]), steps=1, separable=False)
    assert a.tolist() == pytest.approx([math.e, math.e], rel=1e-12)


def test_prior_backtracks_an_overshooting_step():
    """A concave quadratic in t (Newton is exact), and a function convex at the start whose
    unit step overshoots and is halved until f is no lower than at the start."""

    def quad(alpha):
        t = alpha.log()
        return -((t - 0.3) ** 2).sum()

    a = optimise_prior(quad, torch.tensor([1.0]))
    assert float(a[0]) == pytest.approx(math.exp(0.3), rel=1e-10)

    # convex at t = 0 (sign step +1) but f falls beyond t = 0.4: the step is halved to 0.5,
    # then to 0.25, where f is above f(0)
    def bump(alpha):
        t = alpha.log()[0]
        return 0.01 * (t + 1) ** 2 + torch.where(t > 0.4, -10.0 * (t - 0.4), torch.zeros_like(t))

    a = optimise_prior(bump, torch.tensor([1.0]), steps=1)
    assert float(a[0]) == pytest.approx(math.exp(0.25), rel=1e-12)


# ------------------------------------------------------------------ subsample


def test_subsample_keeps_everything_when_small():
    w = torch.tensor([1.0, 0.0, 2.0, 0.5], dtype=torch.float64)
    for size in (None, 3, 10):
        idx, sw = select_subsample(w, None, size, True, 0)
        assert idx.tolist() == [0, 2, 3] and sw.tolist() == [1.0, 2.0, 0.5]
        assert sw.dtype == torch.float64


def test_class_balanced_subsample_counts_by_hand():
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 7)
    w = torch.ones(20, dtype=torch.float64)
    w[5] = 0.0  # one class-0 sample dropped: 9 kept
    for size, want in ((9, [3, 3, 3]), (12, [5, 3, 4]), (6, [2, 2, 2]), (19, [9, 3, 7])):
        idx, sw = select_subsample(w, labels, size, True, seed=3)
        assert idx.numel() == size
        assert [int((labels[idx] == c).sum()) for c in range(3)] == want, size
        assert 5 not in idx.tolist()
        assert idx.tolist() == sorted(set(idx.tolist()))  # sorted, no repeats
        assert float(sw.sum()) == pytest.approx(19.0, rel=1e-12)  # rescaled to N_s
        assert torch.allclose(sw, torch.full_like(sw, 19.0 / size))
    a, _ = select_subsample(w, labels, 9, True, seed=3)
    b, _ = select_subsample(w, labels, 9, True, seed=3)
    c, _ = select_subsample(w, labels, 9, True, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_uniform_subsample_and_weight_rescale():
    w = torch.arange(1, 21, dtype=torch.float64)  # weights 1 … 20
    w[0] = 0.0
    labels = torch.zeros(20, dtype=torch.long)
    labels[10:] = 1
    for balanced, lab in ((False, labels), (True, None)):
        idx, sw = select_subsample(w, lab, 5, balanced, seed=1)
        assert idx.numel() == 5 and 0 not in idx.tolist()
        assert idx.tolist() == sorted(set(idx.tolist()))
        # the chosen rows' weights, scaled so that they sum to all kept weight (209)
        assert float(sw.sum()) == pytest.approx(float(w.sum()), rel=1e-12)
        ratio = sw / w[idx]
        assert torch.allclose(ratio, torch.full_like(ratio, float(ratio[0])))
    one, _ = select_subsample(w, None, 5, False, seed=1)
    two, _ = select_subsample(w, None, 5, False, seed=2)
    assert not torch.equal(one, two)
    # uniform draws are not class-balanced: with 18 of 19 kept rows in class 1, a 4-row
    # class-balanced draw takes 2 + 2 while seeds exist where a uniform draw does not
    lab = torch.ones(20, dtype=torch.long)
    lab[1] = 0
    w1 = torch.ones(20, dtype=torch.float64)
    w1[0] = 0.0
    bal, _ = select_subsample(w1, lab, 4, True, seed=0)
    assert 1 in bal.tolist()
    unif = [1 in select_subsample(w1, lab, 4, False, seed=s)[0].tolist() for s in range(10)]
    assert not all(unif)


def test_skip_backward_draws_at_the_exact_limits(caplog):
    """Whether a skipped batch draws follows the same limit as the batch itself: C passes
    for classification, T·V for language modelling; and skipping never logs the warning."""
    # classification, 3 classes, limit 5: exact, nothing drawn
    cls = EvidenceConfig(exact_fisher_max_classes=5)
    gen = torch.Generator().manual_seed(2)
    with caplog.at_level(logging.WARNING, logger="jmds_pipeline.evidence.likelihood"):
        skip_backward_draws(4, (3,), cls, gen)
        assert torch.equal(gen.get_state(), torch.Generator().manual_seed(2).get_state())
        # language modelling T = 2, V = 4: 8 passes within a limit of 10: nothing drawn
        lm = EvidenceConfig(likelihood="language_modeling", exact_fisher_max_classes=10)
        skip_backward_draws(4, (2, 4), lm, gen)
        assert torch.equal(gen.get_state(), torch.Generator().manual_seed(2).get_state())
        # over the limit: draws, silently
        over = EvidenceConfig(exact_fisher_max_classes=2)
        skip_backward_draws(4, (3,), over, gen)
        assert not torch.equal(gen.get_state(), torch.Generator().manual_seed(2).get_state())
    assert caplog.records == []
    # one class: a single draw per row still works and matches the batch's own draw
    one = EvidenceConfig(fisher="mc")
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    list(backward_vectors(torch.zeros(4, 1, dtype=torch.float64), LABELS, one, a))
    skip_backward_draws(4, (1,), one, b)
    assert torch.equal(a.get_state(), b.get_state())


def _quartic(alpha):
    """−(t − 10)⁴ in t = log α: Newton's step is exactly (10 − t)/3, so the iterates are
    known in closed form and converge geometrically (slowly enough to use all steps)."""
    return -((alpha.log() - 10.0) ** 4).sum()


def _newton_quartic(steps: int, tol: float = 1e-8) -> float:
    t = 0.0
    for _ in range(steps):
        step = max(-2.0, min(2.0, (10.0 - t) / 3.0))
        if abs(step) < tol:
            return t + step
        t += step
    return t


def test_prior_step_budget_and_tolerance():
    # the default budget of 50 steps ends before the 1e-8 tolerance is met
    assert abs(_newton_quartic(50) - _newton_quartic(51)) > 1e-9
    a50 = float(optimise_prior(_quartic, torch.tensor([1.0]))[0])
    assert math.log(a50) == pytest.approx(_newton_quartic(50), abs=1e-12)
    # with room to converge it stops at the first step below tol
    a90 = float(optimise_prior(_quartic, torch.tensor([1.0]), steps=90)[0])
    assert math.log(a90) == pytest.approx(_newton_quartic(90), abs=1e-12)

    # steps exactly at the tolerance do not stop it (strict <): unit sign steps, tol = 1
    def linear(alpha):
        return alpha.sum()

    a = optimise_prior(linear, torch.tensor([1.0]), steps=3, tol=1.0)
    assert float(a[0]) == pytest.approx(math.e**3, rel=1e-12)


def test_prior_default_is_the_separable_step():
    """One coordinate convex (sign step), one concave (Newton): the separable default takes
    +1 and the Newton step; the coupled solve would step the convex one down."""

    def mixed(alpha):
        t = alpha.log()
        return alpha[0] - (t[1] - 1.0) ** 2

    a = optimise_prior(mixed, torch.tensor([1.0, 1.0]), steps=1)
    assert a.tolist() == pytest.approx([math.e, math.e], rel=1e-12)
    # zero curvature in t (f linear in log α) is not concave: a unit sign step
    one = optimise_prior(lambda alpha: alpha.log().sum(), torch.tensor([1.0]), steps=1)
    assert float(one[0]) == pytest.approx(math.e, rel=1e-12)


def test_prior_backtracking_limits():
    # a step to an equally good point is accepted (f(t_new) ≥ f(t))
    def tent(alpha):
        t = alpha.log()[0]
        return torch.where(t < 0.5, t, 1.0 - t)

    assert float(optimise_prior(tent, torch.tensor([1.0]), steps=1)[0]) == pytest.approx(
        math.e, rel=1e-12
    )

    # every move up is worse: 20 halvings, then the last halved step is taken anyway
    def cliff(alpha):
        t = alpha.log()[0]
        return 0.01 * (t + 1) ** 2 - 100.0 * torch.relu(t)

    got = float(optimise_prior(cliff, torch.tensor([1.0]), steps=1)[0])
    assert math.log(got) == pytest.approx(2.0**-20, rel=1e-9)

    # the acceptance slack is 1e-12 relative, not 1: a step that loses 6 % of f is refused
    def bump(alpha):
        t = alpha.log()[0]
        return 10.0 + 0.01 * (t + 1) ** 2 - torch.relu(t - 0.4)

    got = float(optimise_prior(bump, torch.tensor([1.0]), steps=1)[0])
    assert got == pytest.approx(math.exp(0.25), rel=1e-12)
