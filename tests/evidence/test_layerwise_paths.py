"""The layerwise (K-FAC / diag) passes on paths the other tests do not take: a float32
model against its float64 copy, a layer applied twice against factors summed by hand over
both calls, and per-sample chunks of one sample against one chunk for the whole batch."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.evidence.engine import kron_factors


def _cnn() -> nn.Module:
    torch.manual_seed(8)
    return nn.Sequential(
        nn.Conv1d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 6, 3)
    ).double()


def _data(n=14):
    g = torch.Generator().manual_seed(8)
    x = torch.randn(n, 2, 6, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 3, (n,), generator=g)


def _masks(model):
    g = torch.Generator().manual_seed(9)
    return {
        "0.weight": torch.rand(model[0].weight.shape, generator=g) < 0.5,
        "3.weight": torch.rand(model[3].weight.shape, generator=g) < 0.7,
    }


def _masked(model, masks):
    model = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    return model


@pytest.mark.parametrize(
    "cfg",
    [
        EvidenceConfig(prior_precision=0.8),
        EvidenceConfig(prior_precision=0.8, masked_leverage="dense", leverage="kron"),
        EvidenceConfig(prior_precision=0.8, masked_leverage="diag"),
        EvidenceConfig(structure="diag", prior_precision=0.8),
        EvidenceConfig(fisher="mc", mc_samples=2, prior_precision=0.8, batch_size=5),
    ],
)
def test_float32_model_matches_its_float64_copy(cfg):
    m64 = _cnn()
    x, y = _data()
    masks = _masks(m64)
    m64 = _masked(m64, masks)
    m32 = copy.deepcopy(m64).float()
    r64 = estimate_evidence(m64, x, y, masks=masks, config=cfg)
    r32 = estimate_evidence(m32, x.float(), y, masks=masks, config=cfg)
    assert r32.log_evidence == pytest.approx(r64.log_evidence, rel=1e-5)
    assert r32.log_det_ratio == pytest.approx(r64.log_det_ratio, rel=1e-5)
    assert r32.sample_contribution.dtype == torch.float64
    torch.testing.assert_close(r32.sample_leverage, r64.sample_leverage, rtol=1e-4, atol=1e-6)
    for n in r64.weight_scores:
        finite = torch.isfinite(r64.weight_scores[n])
        torch.testing.assert_close(
            r32.weight_scores[n][finite].double(),
            r64.weight_scores[n][finite].double(),
            rtol=1e-3,
            atol=1e-3,
        )
        assert torch.equal(torch.isinf(r32.weight_scores[n]), ~finite)


@pytest.mark.parametrize("structure", ["kfac", "diag"])
@pytest.mark.parametrize("leverage", ["exact", "kron"])
def test_one_sample_chunks_give_the_same_numbers(structure, leverage):
    model = _cnn()
    x, y = _data()
    masks = _masks(model)
    model = _masked(model, masks)
    base = dict(structure=structure, leverage=leverage, prior_precision=0.5)
    big = estimate_evidence(model, x, y, masks=masks, config=EvidenceConfig(**base))
    small = estimate_evidence(
        model, x, y, masks=masks, config=EvidenceConfig(**base, chunk_elements=1)
    )
    assert small.log_evidence == pytest.approx(big.log_evidence, rel=1e-12)
    torch.testing.assert_close(small.sample_leverage, big.sample_leverage, rtol=1e-10, atol=0)
    for n in big.weight_scores:
        torch.testing.assert_close(small.weight_scores[n], big.weight_scores[n])


class _Twice(nn.Module):
    """One Linear layer applied to both halves of the input, then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(3, 2)
        self.head = nn.Linear(2, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.shared(x[:, :3])) + torch.tanh(self.shared(x[:, 3:])))


def test_factors_of_a_layer_applied_twice_by_hand():
    """A = Σ_i Σ_calls a aᵀ / (R Σ w) with R = 2 calls, G = Σ_i Σ_c Σ_calls g gᵀ (exact
    Fisher vectors v_c = √p_c (e_c − p)), gradients by autograd through each call."""
    torch.manual_seed(10)
    model = _Twice().double()
    g = torch.Generator().manual_seed(10)
    x = torch.randn(7, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (7,), generator=g)
    w = torch.rand(7, generator=g, dtype=torch.float64) + 0.5
    cfg = EvidenceConfig(subsample_size=None)
    factors = kron_factors(model, x, y, sample_weights=w, config=cfg)
    a_want = torch.zeros(4, 4, dtype=torch.float64)
    g_want = torch.zeros(2, 2, dtype=torch.float64)
    for i in range(7):
        halves = [x[i, :3], x[i, 3:]]
        for h in halves:
            a = torch.cat([h, torch.ones(1, dtype=torch.float64)])
            a_want += w[i] * torch.outer(a, a) / 2
        outs = [model.shared(h) for h in halves]
        logits = model.head(torch.tanh(outs[0]) + torch.tanh(outs[1]))
        p = logits.softmax(-1).detach()
        for c in range(3):
            v = -p * p[c].sqrt()
            v[c] += p[c].sqrt()
            grads = torch.autograd.grad(logits, outs, v, retain_graph=True)
            for gr in grads:
                g_want += w[i] * torch.outer(gr, gr)
    a_want /= w.sum()
    a_got, g_got = factors["shared"]
    torch.testing.assert_close(a_got, a_want)
    torch.testing.assert_close(g_got, g_want)
    # the head is applied once: its A is the plain weighted mean
    with torch.no_grad():
        hid = torch.tanh(model.shared(x[:, :3])) + torch.tanh(model.shared(x[:, 3:]))
    ah = torch.cat([hid, torch.ones(7, 1, dtype=torch.float64)], 1)
    torch.testing.assert_close(
        factors["head"][0], (w[:, None, None] * ah[:, :, None] * ah[:, None, :]).sum(0) / w.sum()
    )


def test_mask_matrix_fills_the_unmasked_part_with_ones():
    from jmds_pipeline.evidence.curvature.capture import Handler
    from jmds_pipeline.evidence.curvature.layerwise import _mask_matrix

    lin = nn.Linear(3, 2)
    h = Handler("l", lin, "linear", {"weight": "l.weight", "bias": "l.bias"})
    cpu = torch.device("cpu")
    assert _mask_matrix(h, {}, cpu) is None
    mw = torch.tensor([[True, False, True], [False, True, True]])
    mb = torch.tensor([False, True])
    only_w = _mask_matrix(h, {"l.weight": mw}, cpu)
    assert only_w.tolist() == [[True, False, True, True], [False, True, True, True]]
    only_b = _mask_matrix(h, {"l.bias": mb}, cpu)
    assert only_b.tolist() == [[True, True, True, False], [True, True, True, True]]
    both = _mask_matrix(h, {"l.weight": mw, "l.bias": mb}, cpu)
    assert both.dtype == torch.bool and both.tolist() == [
        [True, False, True, False],
        [False, True, True, True],
    ]
    nobias = Handler("n", nn.Linear(3, 2, bias=False), "linear", {"weight": "n.weight"})
    assert _mask_matrix(nobias, {"n.weight": mw}, cpu).tolist() == mw.tolist()
    conv = nn.Conv1d(2, 2, 2)
    hc = Handler("c", conv, "conv", {"weight": "c.weight", "bias": "c.bias"})
    mc = torch.zeros(2, 2, 2, dtype=torch.bool)
    mc[1, 0, 1] = True
    got = _mask_matrix(hc, {"c.weight": mc}, cpu)
    assert got.tolist() == [[False] * 4 + [True], [False, True, False, False, True]]


def test_bias_only_mask_counts_and_scores():
    model = _cnn()
    x, y = _data()
    mb = torch.tensor([True, False, True])
    with torch.no_grad():
        model[3].bias.mul_(mb)
    for structure in ("kfac", "diag", "full"):
        res = estimate_evidence(
            model,
            x,
            y,
            masks={"3.bias": mb},
            prunable=["3.bias", "3.weight"],
            config=EvidenceConfig(structure=structure, prior_precision=1.0),
        )
        total = sum(p.numel() for p in model.parameters())
        assert res.num_active == total - 1, structure
        assert torch.isinf(res.weight_scores["3.bias"]).tolist() == [False, True, False]
        assert bool(torch.isfinite(res.weight_scores["3.weight"]).all())


class _DeadBranch(nn.Module):
    """A layer whose output never reaches the logits: its output gradient is None."""

    def __init__(self, live: nn.Module) -> None:
        super().__init__()
        self.live = live
        self.dead = nn.Linear(2 * 6, 4).double()

    def forward(self, x):
        self.dead(x.flatten(1))  # computed, unused
        return self.live(x)


@pytest.mark.parametrize("structure", ["kfac", "diag"])
def test_a_layer_without_gradient_adds_only_its_prior(structure):
    """H = 0 on the dead layer: its log det term is d log α, cancelled by the ratio, so log Z
    changes by exactly −½ α ‖θ_dead‖² and nothing else does."""
    live = _cnn()
    x, y = _data()
    net = _DeadBranch(copy.deepcopy(live))
    cfg = EvidenceConfig(structure=structure, prior_precision=0.7)
    with_dead = estimate_evidence(net, x, y, config=cfg)
    without = estimate_evidence(live, x, y, config=cfg)
    sq = sum(float((p.detach() ** 2).sum()) for p in net.dead.parameters())
    assert with_dead.log_evidence == pytest.approx(without.log_evidence - 0.35 * sq, rel=1e-10)
    assert with_dead.log_det_ratio == pytest.approx(without.log_det_ratio, rel=1e-10, abs=1e-10)
    torch.testing.assert_close(with_dead.sample_leverage, without.sample_leverage)
