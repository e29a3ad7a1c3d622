"""Capture handlers on their own: per-sample gradients ψ_i against autograd one sample at a
time (ψ_i = ∂(g_i · m(x_i))/∂θ for an output gradient g_i), the [W | b] matrix view against
the layer's own forward, which layers K-FAC takes, and the refusal messages."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.evidence.checks import canonical_names
from jmds_pipeline.evidence.curvature import capture
from jmds_pipeline.evidence.curvature.capture import (
    Handler,
    _unfold,
    build_handlers,
    capturing,
    gpt2_conv1d_type,
    module_kind,
)


class FakeConv1D(nn.Module):
    """GPT-2's Conv1D: weight (in, out), y = x W + b."""

    def __init__(self, n_in: int, n_out: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(n_out, dtype=torch.float64)) if bias else None

    def forward(self, x):
        out = x @ self.weight
        return out if self.bias is None else out + self.bias


@pytest.fixture
def fake_transformers(monkeypatch):
    monkeypatch.setitem(
        sys.modules, "transformers.pytorch_utils", SimpleNamespace(Conv1D=FakeConv1D)
    )


def _handler(module: nn.Module, kind: str | None = None) -> Handler:
    params = {k: k for k, _ in module.named_parameters(recurse=False)}
    return Handler("m", module, kind or module_kind(module), params)


def _autograd_psi(module: nn.Module, x: torch.Tensor, g: torch.Tensor) -> dict:
    out = {}
    names = [n for n, _ in module.named_parameters(recurse=False)]
    for n in names:
        out[n] = []
    for i in range(x.shape[0]):
        y = module(x[i : i + 1])
        grads = torch.autograd.grad((y * g[i : i + 1]).sum(), list(module.parameters()))
        for n, gr in zip(names, grads, strict=True):
            out[n].append(gr)
    return {n: torch.stack(v) for n, v in out.items()}


def test_module_kinds(fake_transformers):
    assert gpt2_conv1d_type() is FakeConv1D
    assert module_kind(FakeConv1D(2, 3)) == "gpt2"
    assert module_kind(nn.Linear(2, 3)) == "linear"
    assert module_kind(nn.Conv1d(1, 2, 3)) == "conv"
    assert module_kind(nn.Conv2d(1, 2, 3)) == "conv"
    assert module_kind(nn.Embedding(4, 2)) == "embedding"
    assert module_kind(nn.LayerNorm(3)) == "layernorm"
    assert module_kind(nn.BatchNorm1d(3)) == "batchnorm"
    assert module_kind(nn.BatchNorm2d(3)) == "batchnorm"
    assert module_kind(nn.Conv3d(1, 2, 3)) is None
    assert module_kind(nn.GRU(2, 2)) is None


def test_without_transformers_there_is_no_gpt2_kind(monkeypatch):
    monkeypatch.delitem(sys.modules, "transformers.pytorch_utils", raising=False)
    assert gpt2_conv1d_type() is None
    assert module_kind(nn.Linear(2, 3)) == "linear"
    monkeypatch.setitem(sys.modules, "transformers.pytorch_utils", SimpleNamespace())
    assert gpt2_conv1d_type() is None


@pytest.mark.parametrize("bias", [True, False])
def test_matrix_view_reproduces_each_layer(bias, fake_transformers):
    torch.manual_seed(0)
    cases = [
        (nn.Linear(4, 3, bias=bias).double(), torch.randn(2, 5, 4, dtype=torch.float64)),
        (nn.Conv1d(2, 3, 3, bias=bias).double(), torch.randn(2, 2, 6, dtype=torch.float64)),
        (nn.Conv2d(2, 3, 2, bias=bias).double(), torch.randn(2, 2, 3, 3, dtype=torch.float64)),
        (FakeConv1D(4, 3, bias=bias), torch.randn(2, 5, 4, dtype=torch.float64)),
    ]
    for module, x in cases:
        h = _handler(module)
        assert h.has_bias is bias
        w = h.to_matrix(module.weight, module.bias)
        assert w.shape == (3, h.d_in) and h.d_out == 3
        assert h.d_in == h.d_in_weight + int(bias)
        a = h.kron_inputs(x)  # (B, R, d_in)
        out = module(x)
        got = a @ w.t()  # (B, R, d_out)
        assert torch.allclose(h.kron_grads(out), got, atol=1e-12)
        back = h.from_matrix(w)
        assert torch.equal(back["weight"], module.weight)
        if bias:
            assert torch.equal(back["bias"], module.bias)
        else:
            assert set(back) == {"weight"}
        lead = h.from_matrix(torch.stack([w, 2 * w]))
        assert lead["weight"].shape == (2, *module.weight.shape)
        assert torch.equal(lead["weight"][1], 2 * module.weight)
    # a bias parameter the caller has not got (masks): a zero column
    lin = nn.Linear(3, 2).double()
    m = _handler(lin).to_matrix(lin.weight, None)
    assert torch.equal(m[:, 3], torch.zeros(2, dtype=torch.float64))


def test_kron_layer_psi_against_autograd(fake_transformers):
    torch.manual_seed(1)
    cases = [
        (nn.Linear(4, 3).double(), (5, 4)),
        (nn.Linear(4, 3).double(), (5, 2, 4)),
        (nn.Conv1d(2, 3, 3, padding=1).double(), (5, 2, 6)),
        (nn.Conv2d(2, 3, 2, bias=False).double(), (5, 2, 3, 3)),
        (FakeConv1D(4, 3), (5, 2, 4)),
    ]
    for module, shape in cases:
        x = torch.randn(*shape, dtype=torch.float64)
        g = torch.randn_like(module(x))
        got = _handler(module).psi(x, g)
        want = _autograd_psi(module, x, g)
        assert set(got) == set(want)
        for n in want:
            assert torch.allclose(got[n], want[n], atol=1e-12), (module, n)


def test_embedding_layernorm_batchnorm_psi_against_autograd():
    torch.manual_seed(2)
    emb = nn.Embedding(6, 3, padding_idx=1).double()
    idx = torch.tensor([[0, 1, 4, 4], [5, 2, 1, 0]])
    g = torch.randn(2, 4, 3, dtype=torch.float64)
    got = _handler(emb).psi(idx, g)["weight"]
    want = _autograd_psi(emb, idx, g)["weight"]
    assert torch.allclose(got, want, atol=1e-12)
    assert bool((got[:, 1] == 0).all())  # the padding row gets no gradient
    plain = nn.Embedding(6, 3).double()
    gp = _handler(plain).psi(idx, g)["weight"]
    assert torch.allclose(gp, _autograd_psi(plain, idx, g)["weight"], atol=1e-12)
    assert not bool((gp[:, 1] == 0).all())

    for shape in ((4, 3), (4, 5, 3)):
        ln = nn.LayerNorm(3).double()
        with torch.no_grad():
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.uniform_(-1, 1)
        x = torch.randn(*shape, dtype=torch.float64)
        g = torch.randn(*shape, dtype=torch.float64)
        got = _handler(ln).psi(x, g)
        want = _autograd_psi(ln, x, g)
        for n in ("weight", "bias"):
            assert torch.allclose(got[n], want[n], atol=1e-12), (shape, n)
    ln_w = nn.LayerNorm(3, bias=False).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    assert set(_handler(ln_w).psi(x, torch.ones_like(x))) == {"weight"}

    for bn, shape in ((nn.BatchNorm1d(3), (4, 3)), (nn.BatchNorm2d(3), (4, 3, 2, 2))):
        bn = bn.double()
        x = torch.randn(*shape, dtype=torch.float64)
        bn.train()
        bn(x * 2 + 1)  # running statistics away from (0, 1)
        bn.eval()
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
        g = torch.randn(*shape, dtype=torch.float64)
        got = _handler(bn).psi(x, g)
        want = _autograd_psi(bn, x, g)
        for n in ("weight", "bias"):
            assert torch.allclose(got[n], want[n], atol=1e-12), (shape, n)
        bias_only = Handler("bn", bn, "batchnorm", {"bias": "bn.bias"})
        assert set(bias_only.psi(x, g)) == {"bn.bias"}
    bn = nn.BatchNorm1d(3).double().train()
    with pytest.raises(
        ValueError,
        match=r"^enc\.bn: BatchNorm without running statistics couples samples; per-sample "
        r"curvature needs eval-mode batch norm with running stats$",
    ):
        Handler("enc.bn", bn, "batchnorm", {"weight": "w"}).psi(x[:, :3], x[:, :3])
    nostats = nn.BatchNorm1d(3, track_running_stats=False).double().eval()
    with pytest.raises(ValueError, match="without running statistics"):
        _handler(nostats).psi(torch.randn(4, 3).double(), torch.randn(4, 3).double())
    with pytest.raises(AssertionError):
        Handler("x", nn.GRU(2, 2), "gru", {}).psi(x, x)


def test_unfold_refuses_other_padding_modes():
    conv = nn.Conv1d(1, 1, 3, padding=1, padding_mode="reflect")
    with pytest.raises(
        NotImplementedError, match=r"^K-FAC for padding_mode='reflect' is not supported$"
    ):
        _unfold(conv, torch.randn(1, 1, 5))


def test_build_handlers_decides_kfac_per_layer(fake_transformers):
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(5, 4)
            self.conv = nn.Conv1d(4, 4, 1)
            self.grouped = nn.Conv1d(4, 4, 1, groups=2)
            self.gpt = FakeConv1D(4, 6)
            self.wide = nn.Linear(6, 7)  # d_in 7 (bias), d_out 7
            self.frozen_w = nn.Linear(7, 5)
            self.frozen_w.weight.requires_grad_(False)
            self.head = nn.Linear(4, 5, bias=False)
            self.head.weight = self.emb.weight
            self.act = nn.ReLU()  # no parameters: no handler

    net = Net()
    names = canonical_names(net)
    hs = {h.module_name: h for h in build_handlers(net, names, True, 7)}
    assert list(hs) == ["emb", "conv", "grouped", "gpt", "wide", "frozen_w", "head"]
    kron = {n: h.kron for n, h in hs.items()}
    assert kron == {
        "emb": False,  # not a Kronecker kind (and shared)
        "conv": True,
        "grouped": False,
        "gpt": True,
        "wide": True,  # max(d_in, d_out) = 7 = kfac_max_dim
        "frozen_w": False,  # no trainable weight
        "head": False,  # shares its weight with the embedding
    }
    assert hs["head"].params == {"weight": "emb.weight"}
    assert hs["frozen_w"].params == {"bias": "frozen_w.bias"}
    assert hs["emb"].kind == "embedding" and hs["gpt"].kind == "gpt2"
    smaller = {h.module_name: h.kron for h in build_handlers(net, names, True, 6)}
    assert smaller["wide"] is False and smaller["gpt"] is True  # gpt: d_in 5, d_out 6
    assert not any(h.kron for h in build_handlers(net, names, False, 100))


def test_build_handlers_refuses_unsupported_modules():
    net = nn.Sequential(nn.Linear(2, 3), nn.GRU(3, 3))
    with pytest.raises(
        NotImplementedError,
        match=r"^evidence: module '1' \(GRU\) owns parameters but is not supported by the "
        r"kfac/diag backends \(Linear, Conv1d/2d, GPT-2 Conv1D, Embedding, LayerNorm, "
        r"BatchNorm\); use structure='full' for tiny nets$",
    ):
        build_handlers(net, canonical_names(net), True, 100)


def test_capturing_records_broadcast_outputs_and_cleans_up():
    class Pos(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pos = nn.Embedding(3, 2)
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(x + self.pos(torch.arange(3)[None]))  # (1, 3, 2) broadcast

    net = Pos().double()
    handlers = build_handlers(net, canonical_names(net), True, 100)
    x = torch.randn(4, 3, 2, dtype=torch.float64)
    size = [4]
    with capturing(handlers, size):
        out = net(x)
        pos, lin = handlers
        ((inp, rec),) = pos.calls
        assert rec.shape == (4, 3, 2) and inp.shape == (4, 3)  # expanded to the batch
        assert lin.calls[0][1].shape == (4, 3, 2)
        assert torch.equal(lin.calls[0][0], x + net.pos.weight[None])
        assert not lin.calls[0][0].requires_grad  # inputs are detached
    assert all(h.calls == [] for h in handlers)
    assert out.shape == (4, 3, 2)
    net(x)  # hooks removed: nothing recorded
    assert all(h.calls == [] for h in handlers)
    # a batch of one: nothing is expanded
    with capturing(handlers, [1]):
        net(x[:1])
        assert handlers[0].calls[0][1].shape == (1, 3, 2)


def test_capture_hands_a_clone_downstream():
    """In-place ops after a layer must not change what was recorded (ReLU(inplace))."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 2)).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (6,))
    cfg = EvidenceConfig(structure="diag", prior_precision=1.0)
    a = estimate_evidence(net, x, y, config=cfg)
    ref = nn.Sequential(net[0], nn.ReLU(), net[2])
    b = estimate_evidence(ref, x, y, config=cfg)
    assert a.log_evidence == pytest.approx(b.log_evidence, rel=1e-12)
    assert capture.KRON_KINDS == ("linear", "conv", "gpt2")
