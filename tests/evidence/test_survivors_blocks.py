"""Edge cases of the curvature blocks, the likelihood helpers and the capture handlers,
each against a closed form or dense algebra."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.evidence.checks import canonical_names
from jmds_pipeline.evidence.context import Context
from jmds_pipeline.evidence.curvature.capture import Handler
from jmds_pipeline.evidence.curvature.diag import DiagBlock
from jmds_pipeline.evidence.curvature.full import FullBlock, FullCurvature
from jmds_pipeline.evidence.curvature.kfac import _eigh, kron_logdet
from jmds_pipeline.evidence.likelihood import backward_vectors, output_hessian, per_sample_nll
from tests.evidence.helpers import brute_force_ggn

F64 = torch.float64


# ------------------------------------------------------------------ full


def _spd(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(d, d, generator=g, dtype=F64)
    return m @ m.t() + 0.1 * torch.eye(d, dtype=F64)


def test_full_block_with_one_active_coordinate():
    h = _spd(3, 0)
    active = torch.tensor([False, True, False])
    block = FullBlock(
        h,
        torch.tensor([1.0, 2.0, 3.0], dtype=F64),
        active,
        torch.tensor([0, 1, 0]),
        {"w": torch.Size([3])},
    )
    alpha = torch.tensor([0.5, 2.0], dtype=F64)
    # P_S is the 1×1 matrix h_11 + α_1
    assert float(block.logdet(alpha)) == pytest.approx(math.log(float(h[1, 1]) + 2.0), rel=1e-12)
    empty = FullBlock(
        h,
        torch.ones(3, dtype=F64),
        torch.zeros(3, dtype=torch.bool),
        torch.zeros(3, dtype=torch.long),
        {"w": torch.Size([3])},
    )
    assert float(empty.logdet(alpha)) == 0.0


def test_full_block_zeroes_masked_weights():
    theta = torch.tensor([1.0, -2.0, 3.0], dtype=F64)
    active = torch.tensor([True, False, True])
    block = FullBlock(
        _spd(3, 1), theta, active, torch.zeros(3, dtype=torch.long), {"w": torch.Size([3])}
    )
    assert torch.equal(block.theta, torch.tensor([1.0, 0.0, 3.0], dtype=F64))


def test_full_curvature_has_no_blocks_before_fit():
    model = nn.Linear(2, 2).double()
    x, y = torch.randn(4, 2, dtype=F64), torch.tensor([0, 1, 0, 1])
    ctx = Context(
        model,
        x,
        y,
        EvidenceConfig(structure="full"),
        torch.device("cpu"),
        canonical_names(model),
        {},
    )
    curv = FullCurvature(ctx)
    assert curv.blocks == [] and list(curv.blocks) == []


def test_full_curvature_sums_every_batch():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x = torch.randn(10, 3, dtype=F64)
    y = torch.randint(0, 3, (10,))
    alpha = 0.8
    cfg = EvidenceConfig(structure="full", prior_precision=alpha, batch_size=4)
    res = estimate_evidence(model, x, y, config=cfg, score_weights=False, score_samples=False)
    h = brute_force_ggn(model, x, y)
    d = h.shape[0]
    want = float(torch.linalg.slogdet(h + alpha * torch.eye(d, dtype=F64))[1]) - d * math.log(alpha)
    assert res.log_det_ratio == pytest.approx(want, rel=1e-10)


# ------------------------------------------------------------------ kfac helpers


def test_eigh_retry_adds_exactly_the_relative_jitter(monkeypatch):
    real = torch.linalg.eigh
    calls = []

    def flaky(m):
        calls.append(m)
        if len(calls) == 1:
            raise RuntimeError("failed to converge")
        return real(m)

    monkeypatch.setattr(torch.linalg, "eigh", flaky)
    mat = torch.diag(torch.tensor([0.0, 1e-3], dtype=F64))
    lam, _ = _eigh(mat)
    jitter = 1e-10 * 1e-3  # relative to the largest |diagonal| entry, added (not subtracted)
    assert len(calls) == 2
    assert calls[1].dtype == F64
    torch.testing.assert_close(
        lam, torch.tensor([jitter, 1e-3 + jitter], dtype=F64), rtol=1e-12, atol=0
    )


def test_kron_logdet_of_an_empty_factor_is_zero_even_at_alpha_zero():
    empty = torch.zeros(0, dtype=F64)
    some = torch.tensor([1.0, 2.0], dtype=F64)
    for la, lg in ((empty, some), (some, empty)):
        out = kron_logdet(la, lg, torch.tensor(0.0, dtype=F64))
        assert float(out) == 0.0  # det of a 0×0 matrix is 1 for any α


# ------------------------------------------------------------------ diag


def test_diag_leverage_in_the_gradients_dtype():
    g = torch.Generator().manual_seed(4)
    h = torch.rand(2, 3, generator=g, dtype=F64)
    block = DiagBlock("w", h, torch.zeros(2, 3, dtype=F64), None, 1)
    psi = torch.randn(5, 2, 3, generator=g)  # float32 per-sample gradients
    alpha = torch.tensor([9.0, 0.5], dtype=F64)
    out = block.leverage(psi, alpha)
    want = (psi.double() ** 2 / (h + 0.5)).reshape(5, -1).sum(1)
    assert out.dtype == torch.float32 and out.shape == (5,)
    torch.testing.assert_close(out.double(), want, rtol=1e-6, atol=0)


# ------------------------------------------------------------------ likelihood


def test_exact_fisher_counts_classes_not_classes_squared():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 6, generator=g, dtype=F64)  # 6 passes ≤ 32 < 6² = 36
    y = torch.randint(0, 6, (4,), generator=g)
    pairs = list(backward_vectors(logits, y, EvidenceConfig(fisher="exact"), None))
    assert len(pairs) == 6 and all(om == 1.0 for _, om in pairs)
    lam = sum(v.unsqueeze(-1) * v.unsqueeze(-2) for v, _ in pairs)
    p = logits.softmax(-1)
    torch.testing.assert_close(
        lam, torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2), rtol=1e-12, atol=1e-15
    )


def test_regression_output_hessian_shape_and_single_sample():
    cfg = EvidenceConfig(likelihood="regression", sigma_noise=0.5)
    one = output_hessian(torch.zeros(1, 3, dtype=F64), torch.zeros(1, 3), cfg)
    assert one.shape == (1, 3, 3)
    torch.testing.assert_close(one[0], torch.eye(3, dtype=F64) / 0.25, rtol=0, atol=0)
    many = output_hessian(torch.zeros(4, 2, 3, dtype=F64), torch.zeros(4, 2, 3), cfg)
    assert many.shape == (4, 6, 6)
    torch.testing.assert_close(many, torch.eye(6, dtype=F64).expand(4, 6, 6) / 0.25)


def test_regression_nll_in_the_logits_dtype():
    cfg = EvidenceConfig(likelihood="regression", sigma_noise=2.0)
    logits = torch.tensor([[0.1, 0.2], [1.0, -1.0], [0.0, 0.3]])
    y = torch.tensor([[0.3, 0.1], [0.7, -1.2], [0.1, 0.0]], dtype=F64)
    out = per_sample_nll(logits, y, cfg)
    r = logits.double() - y
    want = (r**2).sum(1) / 8.0 + math.log(2 * math.pi * 4.0)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), want, rtol=1e-6, atol=0)


# ------------------------------------------------------------------ capture


def test_unknown_handler_kind_names_itself():
    h = Handler("m", nn.Identity(), "bogus", {})
    with pytest.raises(AssertionError, match="bogus"):
        h.psi(torch.zeros(2, 3), torch.zeros(2, 3))


def test_layernorm_diagonal_uses_the_modules_eps():
    torch.manual_seed(8)
    model = nn.Sequential(
        nn.Linear(3, 4), nn.LayerNorm(4, eps=0.5), nn.Tanh(), nn.Linear(4, 3)
    ).double()
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.5, 0.5)
    x = torch.randn(9, 3, dtype=F64) * 0.3
    y = torch.randint(0, 3, (9,))
    alpha = 1.3
    cfg = EvidenceConfig(structure="diag", prior_precision=alpha)
    res = estimate_evidence(model, x, y, config=cfg, score_weights=False, score_samples=False)
    h = torch.diagonal(brute_force_ggn(model, x, y))
    want = float(torch.log(h + alpha).sum()) - h.numel() * math.log(alpha)
    assert res.log_det_ratio == pytest.approx(want, rel=1e-10)
