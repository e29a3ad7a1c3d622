"""K-FAC and diag against `full` on a tiny MLP; c_i and Δ_j against actual changes of log Z.

The tiny net is a 5-12-3 tanh MLP (111 weights) at its MAP for α = 1 on 120 samples.
Errors quoted in comments were measured with torch 2.14 (float64) and are the
approximations' own: K-FAC and diag are crude on a net this small and data this scarce.
"""

from __future__ import annotations

import copy

import pytest
import torch

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence


def _rank_corr(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.flatten().double().argsort().argsort().double()
    rb = b.flatten().double().argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def results(tiny_mlp, tiny_data):
    x, y = tiny_data
    return {
        s: estimate_evidence(
            tiny_mlp, x, y, config=EvidenceConfig(structure=s, prior_precision=1.0)
        )
        for s in ("full", "kfac", "diag")
    }


# measured: kfac 0.261, diag 0.644 relative error of log Z (full: −99.2)
@pytest.mark.parametrize(("structure", "bound"), [("kfac", 0.30), ("diag", 0.70)])
def test_log_evidence_vs_full(results, structure, bound):
    full, approx = results["full"], results[structure]
    rel = abs(approx.log_evidence - full.log_evidence) / abs(full.log_evidence)
    assert rel < bound
    # same likelihood and prior term; the approximation is all in the log det
    assert approx.log_likelihood == pytest.approx(full.log_likelihood, rel=1e-12)
    assert approx.prior_term == pytest.approx(full.prior_term, rel=1e-12)
    # both approximations overestimate log det P here (less evidence than full)
    assert approx.log_det_ratio > full.log_det_ratio


# measured rank correlations with full's OBS Δ_j: kfac 0.972 / 0.998, diag 0.840 / 0.971
@pytest.mark.parametrize(("structure", "bounds"), [("kfac", (0.95, 0.99)), ("diag", (0.80, 0.95))])
def test_weight_scores_vs_full(results, structure, bounds):
    full, approx = results["full"], results[structure]
    for name, bound in zip(("0.weight", "2.weight"), bounds, strict=False):
        assert approx.weight_scores[name].shape == full.weight_scores[name].shape
        assert _rank_corr(approx.weight_scores[name], full.weight_scores[name]) > bound


# measured: c_i relative error kfac 0.267, diag 0.654; rank correlation 0.983, 0.985
@pytest.mark.parametrize(("structure", "rel_bound"), [("kfac", 0.30), ("diag", 0.70)])
def test_sample_contributions_vs_full(results, structure, rel_bound):
    full, approx = results["full"], results[structure]
    assert torch.equal(approx.sample_loss, full.sample_loss)
    assert _rel(approx.sample_contribution, full.sample_contribution) < rel_bound
    assert _rank_corr(approx.sample_contribution, full.sample_contribution) > 0.98
    assert bool((approx.sample_leverage > 0).all())


@pytest.mark.parametrize("prior_precision", [1.0, None])
def test_sample_contribution_is_derivative_of_log_evidence(tiny_mlp, tiny_data, prior_precision):
    """c_i = ∂ log Z / ∂ s_i (full); with α optimised this holds by the envelope theorem."""
    x, y = tiny_data
    cfg = EvidenceConfig(structure="full", prior_precision=prior_precision, subsample_size=None)
    base = estimate_evidence(tiny_mlp, x, y, config=cfg, score_weights=False)
    eps = 1e-4
    for i in (0, 5, 17):
        vals = []
        for sign in (1.0, -1.0):
            s = torch.ones(x.shape[0], dtype=torch.float64)
            s[i] += sign * eps
            r = estimate_evidence(
                tiny_mlp,
                x,
                y,
                sample_weights=s,
                config=cfg,
                score_samples=False,
                score_weights=False,
            )
            vals.append(r.log_evidence)
        fd = (vals[0] - vals[1]) / (2 * eps)
        # measured agreement ~1e-10 (fixed α) and ~1e-9 (optimised α)
        assert float(base.sample_contribution[i]) == pytest.approx(fd, abs=1e-6)


def test_diag_weight_score_matches_actual_change(tiny_mlp, tiny_data):
    """Δ_j (diag form) vs log Z recomputed with weight j masked and zeroed."""
    x, y = tiny_data
    cfg = EvidenceConfig(structure="diag", prior_precision=1.0, weight_score="diag")
    base = estimate_evidence(tiny_mlp, x, y, config=cfg)
    params = dict(tiny_mlp.named_parameters())
    for name in ("0.weight", "2.weight"):
        # the weights a pruner would remove first: the smallest |θ_j|
        for flat in params[name].detach().abs().flatten().argsort()[:3].tolist():
            j = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), params[name].shape))
            mask = torch.ones_like(params[name], dtype=torch.bool)
            mask[j] = False
            # Occam part: exact when only the mask changes (θ_j kept, so H is unchanged)
            masked = estimate_evidence(
                tiny_mlp, x, y, masks={name: mask}, config=cfg, score_samples=False
            )
            occam = base.weight_score_parts[name]["occam"][j]
            assert -0.5 * (masked.log_det_ratio - base.log_det_ratio) == pytest.approx(
                float(occam), abs=1e-5
            )
            # total: θ_j → 0 changes fit to second order; measured |error| ≤ 0.023
            model = copy.deepcopy(tiny_mlp)
            with torch.no_grad():
                dict(model.named_parameters())[name][j] = 0.0
            removed = estimate_evidence(
                model, x, y, masks={name: mask}, config=cfg, score_samples=False
            )
            actual = removed.log_evidence - base.log_evidence
            assert float(base.weight_scores[name][j]) == pytest.approx(actual, abs=0.03)


def test_kfac_obs_occam_is_exact_schur(tiny_mlp, tiny_data):
    """K-FAC masked log det for one removed weight equals log det P + log [P⁻¹]_jj."""
    x, y = tiny_data
    cfg = EvidenceConfig(structure="kfac", prior_precision=1.0)
    base = estimate_evidence(tiny_mlp, x, y, config=cfg)
    for name, j in (("0.weight", (3, 1)), ("2.weight", (1, 4)), ("2.bias", (2,))):
        mask = torch.ones_like(dict(tiny_mlp.named_parameters())[name], dtype=torch.bool)
        mask[j] = False
        r = estimate_evidence(
            tiny_mlp,
            x,
            y,
            masks={name: mask},
            config=cfg,
            score_samples=False,
            score_weights=False,
        )
        if name in base.weight_score_parts:
            occam = float(base.weight_score_parts[name]["occam"][j])
            assert r.log_det_ratio - base.log_det_ratio == pytest.approx(-2 * occam, abs=1e-6)
        assert r.num_active == base.num_active - 1


def test_kfac_masked_log_det_against_dense(tiny_mlp, tiny_data):
    """One removed weight: compare with the dense A⊗G + αI, row and column j deleted."""
    from jmds_pipeline.evidence.engine import kron_factors

    x, y = tiny_data
    factors = kron_factors(tiny_mlp, x, y)
    a, g = factors["2"]
    dense = torch.kron(g, a) + torch.eye(a.shape[0] * g.shape[0], dtype=torch.float64)
    j = 1 * a.shape[0] + 4  # (out 1, in 4) of the [W | b] matrix view
    keep = torch.ones(dense.shape[0], dtype=torch.bool)
    keep[j] = False
    change = torch.logdet(dense[keep][:, keep]) - torch.logdet(dense)
    cfg = EvidenceConfig(structure="kfac", prior_precision=1.0)
    base = estimate_evidence(tiny_mlp, x, y, config=cfg, score_samples=False)
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, 4] = False
    r = estimate_evidence(tiny_mlp, x, y, masks={"2.weight": mask}, config=cfg, score_samples=False)
    # log_det_ratio also drops one log α (= 0 at α = 1)
    assert r.log_det_ratio - base.log_det_ratio == pytest.approx(float(change), abs=1e-9)
