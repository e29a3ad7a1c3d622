"""K-FAC factors by hand (GPT-2 Conv1D, Conv2d "expand"), and the per-sample hooks
(embeddings, tied weights, LayerNorm, BatchNorm) against a brute-force GGN diagonal."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.evidence.engine import kron_factors
from tests.evidence.helpers import brute_force_ggn

transformers = pytest.importorskip("transformers")


def _softmax_lambda(logits):
    p = logits.softmax(-1)
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)


def test_gpt2_conv1d_factors_by_hand():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    layer = Conv1D(3, 4).double()  # weight (in=4, out=3): y = x W + b
    x = torch.randn(6, 5, 4, dtype=torch.float64)  # (B, T, d_in)
    y = torch.randint(0, 3, (6, 5))
    y[0, 2] = y[3, 4] = -100  # ignored positions carry no curvature
    cfg = EvidenceConfig(likelihood="language_modeling")
    a, g = kron_factors(layer, x, y, config=cfg)[""]
    xa = torch.cat([x, torch.ones(6, 5, 1, dtype=torch.float64)], -1).reshape(-1, 5)
    a_ref = xa.t() @ xa / (6 * 5)  # mean over samples and positions
    lam = _softmax_lambda(layer(x).detach()) * (y != -100)[..., None, None]
    g_ref = lam.sum((0, 1))  # logits = layer output, so g g^T summed = Σ Λ
    assert torch.allclose(a, a_ref, atol=1e-12)
    assert torch.allclose(g, g_ref, atol=1e-12)
    # and it is the transposed Linear
    lin = nn.Linear(4, 3).double()
    with torch.no_grad():
        lin.weight.copy_(layer.weight.t())
        lin.bias.copy_(layer.bias)
    a2, g2 = kron_factors(lin, x, y, config=cfg)[""]
    assert torch.allclose(a, a2) and torch.allclose(g, g2)


@pytest.mark.parametrize("conv_dim", [1, 2])
def test_conv_factors_by_hand(conv_dim):
    torch.manual_seed(0)
    if conv_dim == 2:
        conv = nn.Conv2d(2, 3, kernel_size=2, stride=1, padding=1)
        x = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    else:
        conv = nn.Conv1d(2, 3, kernel_size=3, stride=2, padding=1)
        x = torch.randn(4, 2, 7, dtype=torch.float64)
    model = nn.Sequential(conv, nn.Flatten(), nn.LazyLinear(3)).double()
    model(x)
    y = torch.randint(0, 3, (4,))
    a, g = kron_factors(model, x, y)["0"]
    # A: explicit patches in (channel, kernel…) order with a bias column, mean over positions
    xp = nn.functional.pad(x, (1, 1, 1, 1) if conv_dim == 2 else (1, 1))
    out = conv(x)
    patches = []
    for i in range(4):
        for pos in torch.cartesian_prod(*[torch.arange(n) for n in out.shape[2:]]).reshape(
            -1, conv_dim
        ):
            sl = [slice(None)] + [
                slice(int(p) * s, int(p) * s + k)
                for p, s, k in zip(pos, conv.stride, conv.kernel_size, strict=False)
            ]
            patches.append(torch.cat([xp[i][tuple(sl)].reshape(-1), torch.ones(1).double()]))
    pm = torch.stack(patches)
    n_pos = out[0, 0].numel()
    assert torch.allclose(a, pm.t() @ pm / (4 * n_pos), atol=1e-12)
    # G: Σ_i Σ_c Σ_r g g^T with g = ∂(v_c·f)/∂(conv output) at every position
    logits = model(x)
    lam_sqrt = []
    p = logits.softmax(-1).detach()
    for c in range(3):
        v = -p * p[:, c : c + 1].sqrt()
        v[:, c] += p[:, c].sqrt()
        lam_sqrt.append(v)
    g_ref = torch.zeros(3, 3, dtype=torch.float64)
    conv_out = []
    h = conv.register_forward_hook(lambda m, i, o: conv_out.append(o))
    logits = model(x)
    h.remove()
    for v in lam_sqrt:
        (go,) = torch.autograd.grad(logits, conv_out[0], v, retain_graph=True)
        go = go.reshape(4, 3, -1)
        g_ref += torch.einsum("bor,bpr->op", go, go)
    assert torch.allclose(g, g_ref, atol=1e-12)


def _diag_log_det(h, alpha):
    return float(torch.log(torch.diagonal(h) + alpha).sum() - h.shape[0] * math.log(alpha))


class _Logits(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).logits


def test_gpt2_hooks_match_brute_force_diagonal():
    """Tiny GPT-2: tied embedding/lm_head, position embedding broadcast, LayerNorm, Conv1D."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=1,
        n_head=2,
        n_embd=8,
        vocab_size=11,
        n_positions=6,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="eager",
    )
    model = _Logits(GPT2LMHeadModel(cfg)).double().eval()
    x = torch.randint(0, 11, (5, 6))
    y = torch.roll(x, -1, 1)
    y[:, -1] = -100
    h = brute_force_ggn(model, x, y, likelihood="language_modeling")
    res = estimate_evidence(
        model,
        x,
        y,
        config=EvidenceConfig(
            structure="diag",
            likelihood="language_modeling",
            prior_precision=1.0,
            exact_fisher_max_classes=66,
        ),
    )
    assert res.log_det_ratio == pytest.approx(_diag_log_det(h, 1.0), rel=1e-9)
    kfac = estimate_evidence(
        model,
        x,
        y,
        config=EvidenceConfig(
            likelihood="language_modeling",
            prior_precision=1.0,
            fisher="mc",
            mc_samples=4,
        ),
    )
    assert math.isfinite(kfac.log_evidence)
    assert bool(torch.isfinite(kfac.sample_contribution).all())
    assert "model.transformer.wte.weight" not in kfac.weight_scores  # embeddings not pruned
    assert "model.transformer.h.0.mlp.c_fc.weight" in kfac.weight_scores


def test_batchnorm_cnn_hooks_match_brute_force_diagonal():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.BatchNorm2d(2),
        nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(2 * 16, 3),
    ).double()
    x = torch.randn(8, 1, 4, 4, dtype=torch.float64)
    model.train()
    model(x)  # non-trivial running statistics
    y = torch.randint(0, 3, (8,))
    model.eval()
    h = brute_force_ggn(model, x, y)
    model.train()
    res = estimate_evidence(
        model, x, y, config=EvidenceConfig(structure="diag", prior_precision=1.0)
    )
    assert model.training
    assert res.log_det_ratio == pytest.approx(_diag_log_det(h, 1.0), rel=1e-9)
