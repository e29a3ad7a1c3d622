"""Engine plumbing with observable effects: the memory layout handed back, the K-FAC factors
of ``kron_factors`` against explicit sums, result fields per option, the model's mode after
a failure, the batched backward's per-vector fallback, and the footprint's reasons."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.evidence.curvature.sweep import _batched_grad, _upcast
from jmds_pipeline.evidence.engine import _is_channels_last, kron_factors
from jmds_pipeline.evidence.footprint import layer_footprints
from jmds_pipeline.evidence.subsample import select_subsample
from tests.evidence.helpers import refuse_batched_grads

NHWC = torch.channels_last


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 16, 3)
    ).double()


def test_is_channels_last():
    assert _is_channels_last(nn.Linear(3, 2)) is False  # no 4-D weight
    assert _is_channels_last(nn.Conv2d(3, 2, 1)) is False  # 1×1: says nothing
    net = _cnn()
    assert _is_channels_last(net) is False
    net.to(memory_format=NHWC)
    assert _is_channels_last(net) is True
    mixed = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Conv2d(3, 3, 3))
    mixed[0].to(memory_format=NHWC)
    assert _is_channels_last(mixed) is False
    # a 1×1 conv beside an NHWC 3×3 one does not veto it
    both = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Conv2d(3, 3, 1)).to(memory_format=NHWC)
    assert _is_channels_last(both) is True
    assert _is_channels_last(nn.Conv3d(2, 2, 3)) is False


def test_channels_last_evidence_and_layout_handed_back():
    net = _cnn()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 2, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (10,), generator=g)
    plain = estimate_evidence(net, x, y, config=EvidenceConfig(prior_precision=1.0))
    nhwc = estimate_evidence(
        net, x, y, config=EvidenceConfig(prior_precision=1.0, channels_last=True)
    )
    assert nhwc.log_evidence == pytest.approx(plain.log_evidence, rel=1e-10)
    assert torch.allclose(nhwc.sample_contribution, plain.sample_contribution, atol=1e-10)
    w = net[0].weight
    assert w.is_contiguous() and not w.is_contiguous(memory_format=NHWC)  # restored
    net.to(memory_format=NHWC)
    estimate_evidence(net, x, y, config=EvidenceConfig(prior_precision=1.0, channels_last=True))
    assert net[0].weight.is_contiguous(memory_format=NHWC)  # left as it came
    assert not net[0].weight.is_contiguous()


def test_kron_factors_of_a_linear_classifier_by_hand():
    """One Linear layer: A = Σ w a aᵀ / Σ w over the subsample, G = Σ w (diag p − ppᵀ)."""
    torch.manual_seed(2)
    layer = nn.Linear(3, 3).double()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(30, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0] * 20 + [1] * 7 + [2] * 3)
    s = torch.rand(30, generator=g, dtype=torch.float64) + 0.5
    s[4] = 0.0

    def by_hand(idx, w):
        a = torch.cat([x[idx], torch.ones(len(idx), 1, dtype=torch.float64)], 1)
        with torch.no_grad():
            p = layer(x[idx]).softmax(-1)
        fa = (w[:, None, None] * a[:, :, None] * a[:, None, :]).sum(0) / w.sum()
        lam = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        return fa, (w[:, None, None] * lam).sum(0)

    for cfg in (
        EvidenceConfig(subsample_size=9),
        EvidenceConfig(subsample_size=9, class_balanced=False, seed=3),
        EvidenceConfig(subsample_size=None),
    ):
        ((name, (fa, fg)),) = kron_factors(layer, x, y, sample_weights=s, config=cfg).items()
        assert name == ""
        idx, w = select_subsample(s, y, cfg.subsample_size, cfg.class_balanced, cfg.seed)
        want_a, want_g = by_hand(idx, w)
        torch.testing.assert_close(fa, want_a)
        torch.testing.assert_close(fg, want_g)
    # class-balanced: the three classes are drawn 3 + 3 + 3 (the rarest has exactly 3)
    bal, _ = select_subsample(s, y, 9, True, 0)
    assert sorted(int((y[bal] == c).sum()) for c in range(3)) == [3, 3, 3]
    ((_, (fa_bal, _)),) = kron_factors(
        layer, x, y, sample_weights=s, config=EvidenceConfig(subsample_size=9)
    ).items()
    unif, wu = select_subsample(s, y, 9, False, 0)
    assert not torch.allclose(fa_bal, by_hand(unif, wu)[0])
    # regression: no labels, so the subsample is uniform
    reg = EvidenceConfig(likelihood="regression", subsample_size=9)
    ((_, (fa_r, _)),) = kron_factors(
        layer, x, torch.randn(30, 3, generator=g).double(), sample_weights=s, config=reg
    ).items()
    idx, w = select_subsample(s, None, 9, True, 0)
    torch.testing.assert_close(fa_r, by_hand(idx, w)[0])
    layer.train()
    kron_factors(layer, x, y)
    assert layer.training


def test_result_fields_follow_the_options():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(12, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (12,), generator=g)
    s = torch.ones(12, dtype=torch.float64)
    s[[0, 5]] = 0.0
    res = estimate_evidence(
        net,
        x,
        y,
        sample_weights=s,
        config=EvidenceConfig(prior_precision=2.0),
        score_samples=False,
        score_weights=False,
    )
    assert res.weight_scores == {} and res.weight_score_parts is None
    assert res.prior_precision == 2.0
    with torch.no_grad():
        nll = nn.functional.cross_entropy(net(x), y, reduction="none").double()
    kept = s > 0
    assert torch.allclose(res.sample_loss[kept], nll[kept], rtol=1e-12)
    assert bool(res.sample_loss[~kept].isnan().all())
    assert bool(res.sample_leverage.isnan().all())
    assert res.log_likelihood == pytest.approx(-float(nll[kept].sum()), rel=1e-12)
    lw = estimate_evidence(
        net, x, y, config=EvidenceConfig(prior_mode="layerwise", prior_precision=0.5)
    )
    assert lw.prior_precision == {"0": 0.5, "2": 0.5}
    assert set(lw.weight_score_parts) == {"0.weight", "2.weight"}
    assert set(lw.weight_score_parts["0.weight"]) == {"fit", "occam"}
    # the log evidence's parts add up
    assert lw.log_evidence == pytest.approx(
        lw.log_likelihood + lw.prior_term - 0.5 * lw.log_det_ratio, rel=1e-12
    )
    assert torch.allclose(lw.sample_contribution, -lw.sample_loss - lw.sample_leverage)


def test_model_mode_is_restored_after_a_failure():
    net = nn.Sequential(
        nn.Linear(3, 3), nn.BatchNorm1d(3, track_running_stats=False), nn.Linear(3, 2)
    ).double()
    net.train()
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.zeros(6, dtype=torch.long)
    with pytest.raises(ValueError, match="without running statistics"):
        estimate_evidence(net, x, y, config=EvidenceConfig(structure="diag"))
    assert net.training


def test_batched_grad_falls_back_to_one_vector_at_a_time(monkeypatch):
    torch.manual_seed(6)
    lin = nn.Linear(3, 2).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    hidden = lin(x)
    unused = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    logits = hidden.tanh() * 3
    vs = torch.randn(3, 4, 2, dtype=torch.float64)
    batched = _batched_grad(logits, [hidden, unused], vs)
    assert batched[1] is None
    want = torch.stack([torch.autograd.grad(logits, hidden, v, retain_graph=True)[0] for v in vs])
    torch.testing.assert_close(batched[0], want)
    refuse_batched_grads(monkeypatch)
    loop = _batched_grad(logits, [hidden, unused], vs)
    assert loop[1] is None and len(loop) == 2
    torch.testing.assert_close(loop[0], want)


def test_upcast():
    assert _upcast(None, torch.float64) is None
    idx = torch.arange(3)
    assert _upcast(idx, torch.float64) is idx
    same = torch.ones(2, dtype=torch.float64)
    assert _upcast(same, torch.float64) is same
    half = torch.ones(2, dtype=torch.bfloat16)
    out = _upcast(half, torch.float32)
    assert out.dtype == torch.float32 and torch.equal(out, torch.ones(2))


def test_footprint_reasons_and_defaults():
    meta = torch.device("meta")

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fits = nn.Linear(8191, 3, device=meta)  # d_in 8192 = the default limit
            self.big = nn.Linear(8192, 3, device=meta)
            self.grouped = nn.Conv1d(4, 4, 3, groups=2, device=meta)
            self.frozen = nn.Linear(3, 3, device=meta)
            self.frozen.weight.requires_grad_(False)
            self.norm = nn.LayerNorm(3, device=meta)

    fp = {f.module: f for f in layer_footprints(Net())}
    assert fp["fits"].kron and fp["fits"].reason == "" and fp["fits"].kind == "linear"
    assert (fp["fits"].d_in, fp["fits"].d_out) == (8192, 3)
    assert fp["big"].reason == "factor dimension 8193 > kfac_max_dim = 8192"
    assert fp["grouped"].reason == "grouped convolution" and fp["grouped"].kind == "conv"
    assert fp["frozen"].reason == "no trainable weight" and fp["frozen"].params == 3
    assert fp["norm"].reason == (
        "layernorm: not a Kronecker-factored kind (Linear, Conv, GPT-2 Conv1D)"
    )
    assert (fp["norm"].d_in, fp["norm"].d_out, fp["norm"].max_dim) == (0, 0, 0)
    assert fp["norm"].eigh_flops == 0.0 and fp["big"].eigh_flops == 0.0
    assert fp["big"].factor_bytes == 8 * (8192 * 3 + 3) and fp["big"].state_bytes == 2 * 8 * (
        8192 * 3 + 3
    )
    diag = {f.module: f for f in layer_footprints(Net(), structure="diag")}
    assert all(f.reason == "structure is diag" for f in diag.values())
    assert not any(f.kron for f in diag.values())
    assert diag["fits"].eigh_flops == 0.0
    assert math.isclose(fp["fits"].eigh_flops, 9.0 * (8192**3 + 3**3))


def _two_output_blr(structure: str) -> tuple[float, float]:
    """Bayesian linear regression with two outputs sharing the inputs: the exact evidence is
    the sum of each output's (independent weights, same α and σ); Laplace is exact here."""
    g = torch.Generator().manual_seed(12)
    n, d, sigma, alpha = 40, 3, 0.6, 1.5
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = x @ torch.randn(d, 2, generator=g, dtype=torch.float64)
    y = y + sigma * torch.randn(n, 2, generator=g, dtype=torch.float64)
    f = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1)
    prec = f.t() @ f / sigma**2 + alpha * torch.eye(d + 1, dtype=torch.float64)
    mean = torch.linalg.solve(prec, f.t() @ y / sigma**2)  # (d + 1, 2)
    cov = sigma**2 * torch.eye(n, dtype=torch.float64) + f @ f.t() / alpha
    mvn = torch.distributions.MultivariateNormal(torch.zeros(n, dtype=torch.float64), cov)
    exact = sum(float(mvn.log_prob(y[:, k])) for k in range(2))
    layer = nn.Linear(d, 2).double()
    with torch.no_grad():
        layer.weight.copy_(mean[:d].t())
        layer.bias.copy_(mean[d])
    cfg = EvidenceConfig(
        structure=structure, likelihood="regression", sigma_noise=sigma, prior_precision=alpha
    )
    return estimate_evidence(layer, x, y, config=cfg).log_evidence, exact


def test_two_output_regression_full_is_exact():
    got, exact = _two_output_blr("full")
    assert got == pytest.approx(exact, rel=1e-9)


def test_two_output_regression_kfac_is_exact():
    got, exact = _two_output_blr("kfac")
    assert got == pytest.approx(exact, rel=1e-9)
