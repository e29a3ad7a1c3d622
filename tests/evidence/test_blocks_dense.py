"""Weight scores, the diagonal and exact blocks and the evidence assembly against dense
algebra: Δ_j from the constrained minimum of the quadratic model and the log det of P with
row/column j removed, log Z from slogdet, leverage from explicit ψᵀ M ψ."""

from __future__ import annotations

import math

import pytest
import torch

from jmds_pipeline.evidence.curvature.diag import DiagBlock
from jmds_pipeline.evidence.curvature.full import FullBlock
from jmds_pipeline.evidence.laplace import alpha_objective, evidence_terms, group_stats
from jmds_pipeline.evidence.scores import block_weight_scores, weight_scores

G = torch.Generator().manual_seed(21)


def _spd(n: int) -> torch.Tensor:
    m = torch.randn(n, n + 2, generator=G, dtype=torch.float64)
    return m @ m.t() / n


def _refit_cost(p: torch.Tensor, theta: torch.Tensor, j: int) -> float:
    """min over δ with δ_j = −θ_j of ½ δᵀPδ: the rest re-fits (solved on the reduced system)."""
    rest = [k for k in range(len(theta)) if k != j]
    dj = -theta[j]
    d_rest = -torch.linalg.solve(p[rest][:, rest], p[rest, j] * dj)
    delta = torch.zeros_like(theta)
    delta[j] = dj
    delta[rest] = d_rest
    return float(0.5 * delta @ p @ delta)


def test_obs_and_diag_scores_against_dense_refits():
    n, alpha = 5, 0.8
    h = _spd(n)
    p = h + alpha * torch.eye(n, dtype=torch.float64)
    theta = torch.randn(n, generator=G, dtype=torch.float64)
    inv = torch.linalg.inv(p)
    obs, parts = weight_scores("obs", theta, alpha, None, diag_inv=inv.diagonal())
    diag, dparts = weight_scores("diag", theta, alpha, None, diag_p=p.diagonal())
    logdet = float(torch.logdet(p))
    for j in range(n):
        rest = [k for k in range(n) if k != j]
        occam = -0.5 * (float(torch.logdet(p[rest][:, rest])) - logdet) - 0.5 * math.log(alpha)
        assert float(parts["fit"][j]) == pytest.approx(-_refit_cost(p, theta, j), rel=1e-10)
        assert float(parts["occam"][j]) == pytest.approx(occam, rel=1e-10, abs=1e-12)
        assert float(obs[j]) == pytest.approx(-_refit_cost(p, theta, j) + occam, rel=1e-10)
        # diag: no re-fit, and the Occam term of a diagonal P
        fit_d = -0.5 * float(p[j, j]) * float(theta[j]) ** 2
        occ_d = 0.5 * math.log(float(p[j, j]) / alpha)
        assert float(dparts["fit"][j]) == pytest.approx(fit_d, rel=1e-12)
        assert float(dparts["occam"][j]) == pytest.approx(occ_d, rel=1e-12)
        assert float(diag[j]) == pytest.approx(fit_d + occ_d, rel=1e-12)
    # α as a tensor gives the same numbers
    obs_t, _ = weight_scores("obs", theta, torch.tensor(alpha).double(), None, inv.diagonal())
    diag_t, _ = weight_scores(
        "diag", theta, torch.tensor(alpha).double(), None, diag_p=p.diagonal()
    )
    assert torch.allclose(obs_t, obs) and torch.allclose(diag_t, diag)


def test_first_order_scores_masks_and_refusal():
    theta = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float32)
    dh = torch.tensor([4.0, 1.0, 2.0], dtype=torch.float64)
    score, parts = weight_scores("first_order", theta, 1.0, None, diag_h=dh, num_data=8.0)
    assert score.dtype == torch.float64
    assert score.tolist() == [-0.5, -0.25, -0.125]
    assert parts["occam"].tolist() == [0.0, 0.0, 0.0]
    floored, _ = weight_scores("first_order", theta, 1.0, None, diag_h=dh, num_data=0.0)
    assert floored.tolist() == pytest.approx([-4e300, -2e300, -1e300])
    mask = torch.tensor([True, False, True])
    masked, mparts = weight_scores("first_order", theta, 1.0, mask, diag_h=dh, num_data=8.0)
    assert masked.tolist() == [-0.5, math.inf, -0.125]
    assert mparts["fit"].tolist() == [-0.5, -0.25, -0.125]  # parts stay unmasked
    with pytest.raises(ValueError, match=r"^unknown weight score 'size'$"):
        weight_scores("size", theta, 1.0, None)


def test_diag_block_against_dense():
    h = torch.tensor([[0.5, 2.0], [0.0, 1.5]], dtype=torch.float64)
    theta = torch.tensor([[1.0, -1.0], [0.3, 2.0]], dtype=torch.float64)
    mask = torch.tensor([[True, False], [True, True]])
    blk = DiagBlock("w", h.clone(), theta * mask, mask, group=1)
    alpha = torch.tensor([9.0, 0.5], dtype=torch.float64)
    assert float(blk.logdet(alpha)) == pytest.approx(math.log(1.0) + math.log(0.5) + math.log(2.0))
    assert blk.logdet(alpha).device.type == "cpu"
    unmasked = DiagBlock("w", h.clone(), theta)
    assert float(unmasked.logdet(torch.tensor([0.5]).double())) == pytest.approx(
        math.log(1.0) + math.log(2.5) + math.log(0.5) + math.log(2.0)
    )
    assert torch.equal(blk.diag_inv(alpha), 1 / (h + 0.5)) and blk.diag_h() is blk.h
    assert blk.param_names == ["w"] and blk.to_params(h)["w"] is h
    sq, num = torch.zeros(2).double(), torch.zeros(2).double()
    blk.group_stats(sq, num)
    unmasked.group_stats(sq, num)
    assert num.tolist() == [4.0, 3.0]
    assert sq.tolist() == pytest.approx([1 + 1 + 0.09 + 4, 1 + 0.09 + 4])
    # accumulate: Σ_b w_b ψ_b²; leverage: Σ_{j∈S} ψ_j² / (H_jj + α)
    psi = torch.randn(3, 2, 2, generator=G, dtype=torch.float64)
    w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    before = blk.h.clone()
    blk.accumulate(psi, w)
    assert torch.allclose(blk.h - before, (w[:, None, None] * psi**2).sum(0))
    lev = blk.leverage(psi, alpha)
    want = ((psi**2) / (blk.h + 0.5) * mask).reshape(3, -1).sum(1)
    assert torch.allclose(lev, want)
    assert torch.allclose(unmasked.leverage(psi, alpha[:1]), ((psi**2) / (h + 9.0)).sum((1, 2)))


def test_full_block_against_dense():
    d = 5
    h = _spd(d)
    theta = torch.randn(d, generator=G, dtype=torch.float64)
    active = torch.tensor([True, False, True, True, False])
    groups = torch.tensor([0, 0, 1, 1, 1])
    shapes = {"a": torch.Size([2]), "b": torch.Size([3, 1])}
    blk = FullBlock(h, theta, active, groups, shapes)
    alpha = torch.tensor([0.5, 2.0], dtype=torch.float64)
    s = torch.nonzero(active).squeeze(1)
    p_s = h[s][:, s] + torch.diag(torch.tensor([0.5, 2.0, 2.0], dtype=torch.float64))
    assert float(blk.logdet(alpha)) == pytest.approx(float(torch.logdet(p_s)), rel=1e-12)
    inv = blk.diag_inv(alpha)
    assert torch.allclose(inv[s], torch.linalg.inv(p_s).diagonal())
    assert bool(inv[~active].isnan().all())
    assert blk.prior_of(alpha).tolist() == [0.5, 0.5, 2.0, 2.0, 2.0]
    assert blk.diag_h().tolist() == h.diagonal().tolist()
    params = blk.to_params(torch.arange(5.0))
    assert params["a"].tolist() == [0.0, 1.0] and params["b"].tolist() == [[2.0], [3.0], [4.0]]
    assert blk.param_names == ["a", "b"]
    sq, num = torch.zeros(2).double(), torch.zeros(2).double()
    blk.group_stats(sq, num)
    assert num.tolist() == [1.0, 2.0]
    assert sq.tolist() == pytest.approx(
        [float(theta[0] ** 2), float(theta[2] ** 2 + theta[3] ** 2)]
    )
    # leverage tr(Λ J_S P_S⁻¹ J_Sᵀ)
    j = torch.randn(2, 3, d, generator=G, dtype=torch.float64)
    lam = torch.stack([_spd(3), _spd(3)])
    got = blk.leverage(j, lam, blk.inverse(alpha))
    for i in range(2):
        js = j[i][:, s]
        assert float(got[i]) == pytest.approx(
            float(torch.trace(lam[i] @ js @ torch.linalg.inv(p_s) @ js.t())), rel=1e-10
        )
    empty = FullBlock(h, theta, torch.zeros(d, dtype=torch.bool), groups, shapes)
    out = empty.logdet(alpha)
    assert float(out) == 0.0 and out.shape == ()


def test_evidence_terms_against_slogdet():
    """log Z = log lik − ½ Σ α_g ‖θ_g‖² − ½ [log det P − Σ_g d_g log α_g], two groups."""
    h1 = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    h2 = torch.tensor([2.0, 0.5, 4.0], dtype=torch.float64)
    t1 = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    t2 = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    m2 = torch.tensor([True, True, False])
    blocks = [DiagBlock("a", h1, t1, None, 0), DiagBlock("b", h2, t2 * m2, m2, 1)]
    alpha = torch.tensor([0.7, 1.9], dtype=torch.float64)
    terms = evidence_terms(blocks, alpha, -12.5)
    logdet = math.log(1.7) + math.log(3.7) + math.log(3.9) + math.log(2.4)
    ldr = logdet - 2 * math.log(0.7) - 2 * math.log(1.9)
    prior = -0.5 * (0.7 * 1.25 + 1.9 * 5.0)
    assert terms.num_active == 4
    assert terms.log_det_ratio == pytest.approx(ldr, rel=1e-12)
    assert terms.prior_term == pytest.approx(prior, rel=1e-12)
    assert terms.log_likelihood == -12.5
    assert terms.log_evidence == pytest.approx(-12.5 + prior - 0.5 * ldr, rel=1e-12)
    f = alpha_objective(blocks, 2)
    assert float(f(alpha)) == pytest.approx(prior - 0.5 * ldr, rel=1e-12)
    sq, d = group_stats(blocks, 3)
    assert d.tolist() == [2.0, 2.0, 0.0] and sq.tolist() == pytest.approx([1.25, 5.0, 0.0])


def test_block_weight_scores_selects_and_reshapes():
    h = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    th = torch.tensor([[1.0, -2.0], [0.5, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True], [True, False]])
    blocks = [DiagBlock("x", h, th * mask, mask, 0), DiagBlock("y", h.clone(), th, None, 0)]
    alpha = torch.tensor([0.5], dtype=torch.float64)
    for kind in ("obs", "diag", "first_order"):
        scores, parts = block_weight_scores(blocks, kind, alpha, ["x"], 4.0)
        assert list(scores) == ["x"] and list(parts) == ["x"]
        assert scores["x"].dtype == torch.float32 and scores["x"].shape == (2, 2)
        assert set(parts["x"]) == {"fit", "occam"}
        assert parts["x"]["fit"].dtype == torch.float32
        p = h + 0.5
        if kind == "first_order":
            want = -(th.abs() * h) / 4.0
        else:  # a diagonal P: obs and diag coincide
            want = -0.5 * p * th**2 + 0.5 * torch.log(p / 0.5)
        want = torch.where(mask, want, torch.tensor(math.inf, dtype=torch.float64))
        assert torch.allclose(scores["x"].double(), want, rtol=1e-6)
    none, _ = block_weight_scores(blocks, "obs", alpha, ["z"], 4.0)
    assert none == {}


def test_first_order_default_num_data_is_one():
    theta = torch.tensor([1.0, -2.0], dtype=torch.float64)
    dh = torch.tensor([3.0, 0.5], dtype=torch.float64)
    score, _ = weight_scores("first_order", theta, 1.0, None, diag_h=dh)
    assert score.tolist() == [-3.0, -1.0]
