"""Exact error messages of the evidence engine's input checks, and what the checks hand on.

Every refused input must be named in the message (the value, the parameter, the shape), so
each message is compared whole. The accepted inputs are checked for what they turn into
(float64 CPU weights, bool masks keyed by canonical names, the default prunable set).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.evidence.checks import (
    canonical_names,
    check_data,
    check_masks,
    resolve_prunable,
)
from jmds_pipeline.evidence.context import Context, PriorGroups, to_logits


def _refused(exc: type[BaseException], message: str):
    """pytest.raises that compares the whole message, not a substring."""
    return pytest.raises(exc, match="^" + _escape(message) + "$")


def _escape(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"structure": "dense"}, "structure must be full, diag or kfac, got 'dense'"),
        ({"likelihood": "poisson"}, "unknown likelihood 'poisson'"),
        ({"subsample_size": 0}, "subsample_size must be >= 1 or None, got 0"),
        ({"prior_precision": 0.0}, "prior_precision must be > 0, got 0.0"),
        ({"prior_precision": math.nan}, "prior_precision must be > 0, got nan"),
        ({"prior_mode": "global"}, "prior_mode must be scalar or layerwise, got 'global'"),
        ({"weight_score": "magnitude"}, "unknown weight_score 'magnitude'"),
        ({"fisher": "empirical"}, "fisher must be exact or mc, got 'empirical'"),
        ({"batch_size": 0}, "batch_size, mc_samples and chunk_elements must be >= 1"),
        ({"mc_samples": 0}, "batch_size, mc_samples and chunk_elements must be >= 1"),
        ({"chunk_elements": 0}, "batch_size, mc_samples and chunk_elements must be >= 1"),
        ({"leverage": "fast"}, "leverage must be exact, kron or lowrank, got 'fast'"),
        ({"leverage_rank": 0}, "leverage_rank must be an integer >= 1, got 0"),
        ({"leverage_rank": 2.5}, "leverage_rank must be an integer >= 1, got 2.5"),
        ({"leverage_rank": True}, "leverage_rank must be an integer >= 1, got True"),
        (
            {"masked_leverage": "lowrank"},
            "masked_leverage must be sparse, dense or diag, got 'lowrank'",
        ),
        (
            {"mixed_precision": True, "structure": "full"},
            "mixed_precision = True with structure = 'full': the full GGN is built in "
            "float64 from exact Jacobians; accepted: structure 'kfac' or 'diag'",
        ),
        ({"sigma_noise": 0.0}, "sigma_noise must be > 0, got 0.0"),
        ({"sigma_noise": math.nan}, "sigma_noise must be > 0, got nan"),
    ],
)
def test_config_refusals_name_the_value(kwargs, message):
    with _refused(ValueError, message):
        EvidenceConfig(**kwargs)


def test_config_boundaries_are_accepted():
    """The smallest accepted values, and every literal of each choice."""
    EvidenceConfig(subsample_size=1, batch_size=1, mc_samples=1, chunk_elements=1)
    EvidenceConfig(subsample_size=None, prior_precision=1e-12, sigma_noise=1e-12)
    for structure in ("full", "diag", "kfac"):
        EvidenceConfig(structure=structure)
    for lik in ("classification", "language_modeling", "regression"):
        EvidenceConfig(likelihood=lik)
    for mode in ("scalar", "layerwise"):
        EvidenceConfig(prior_mode=mode)
    for kind in ("obs", "diag", "first_order"):
        EvidenceConfig(weight_score=kind)
    for fisher in ("exact", "mc"):
        EvidenceConfig(fisher=fisher)
    for lev in ("exact", "kron", "lowrank"):
        EvidenceConfig(leverage=lev)
    EvidenceConfig(leverage="lowrank", leverage_rank=1)
    for route in ("sparse", "dense", "diag"):
        EvidenceConfig(masked_leverage=route)
    EvidenceConfig(mixed_precision=True, structure="kfac")
    EvidenceConfig(mixed_precision=True, structure="diag")


# ------------------------------------------------------------------ check_data


def test_check_data_messages():
    cls = EvidenceConfig()
    x, y = torch.zeros(5, 3), torch.zeros(5, dtype=torch.long)
    with _refused(ValueError, "x has 5 samples but y has 4"):
        check_data(x, y[:4], None, cls)
    bad_x = x.clone()
    bad_x[2, 1] = math.inf
    with _refused(ValueError, "x contains NaN or inf values"):
        check_data(bad_x, y, None, cls)
    reg = EvidenceConfig(likelihood="regression")
    bad_y = torch.zeros(5, 1)
    bad_y[4, 0] = math.nan
    with _refused(ValueError, "y contains NaN or inf values"):
        check_data(x, bad_y, None, reg)
    lm = EvidenceConfig(likelihood="language_modeling")
    with _refused(ValueError, "language_modeling needs targets of shape (N, T), got (5,)"):
        check_data(torch.zeros(5, 4, dtype=torch.long), y, None, lm)
    with _refused(ValueError, "classification needs labels of shape (N,), got (5, 1)"):
        check_data(x, y[:, None], None, cls)
    with _refused(ValueError, "sample_weights has 3 entries but x has 5 samples"):
        check_data(x, y, torch.ones(3), cls)
    for bad in (math.nan, math.inf, -0.5):
        s = torch.ones(5)
        s[1] = bad
        with _refused(ValueError, "sample_weights must be finite and >= 0"):
            check_data(x, y, s, cls)
    with _refused(ValueError, "all sample weights are zero: no data to estimate the evidence on"):
        check_data(x, y, torch.zeros(5), cls)


def test_check_data_returns_float64_cpu_weights():
    cls = EvidenceConfig()
    x, y = torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)
    ones = check_data(x, y, None, cls)
    assert ones.dtype == torch.float64 and torch.equal(ones, torch.ones(4, dtype=torch.float64))
    # one zero weight is accepted (>= 0), shape (N, 1) is flattened, values kept exactly
    s = check_data(x, y, torch.tensor([[0.0], [0.25], [1.0], [3.0]]), cls)
    assert s.dtype == torch.float64 and s.shape == (4,)
    assert s.tolist() == [0.0, 0.25, 1.0, 3.0]
    # integer token inputs (language modelling) are not checked for finiteness
    lm = EvidenceConfig(likelihood="language_modeling")
    out = check_data(
        torch.zeros(4, 6, dtype=torch.long), torch.zeros(4, 6, dtype=torch.long), None, lm
    )
    assert out.shape == (4,)
    # regression targets of any shape
    reg = EvidenceConfig(likelihood="regression")
    assert check_data(x, torch.zeros(4, 2), None, reg).shape == (4,)


# ------------------------------------------------------------------ masks and names


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def test_check_masks_messages_and_conversion():
    model = _net()
    model[2].bias.requires_grad_(False)
    names = canonical_names(model)
    assert sorted(names.values()) == ["0.bias", "0.weight", "2.weight"]
    assert check_masks(model, names, None) == {}
    assert check_masks(model, names, {}) == {}
    with _refused(ValueError, "mask given for unknown parameter 'nope'"):
        check_masks(model, names, {"nope": torch.ones(3, dtype=torch.bool)})
    with _refused(ValueError, "mask given for parameter '2.bias', which does not require grad"):
        check_masks(model, names, {"2.bias": torch.ones(2, dtype=torch.bool)})
    with _refused(
        ValueError, "mask for '0.weight' has shape (3, 4) but the parameter has shape (4, 3)"
    ):
        check_masks(model, names, {"0.weight": torch.ones(3, 4, dtype=torch.bool)})
    half = torch.full((4, 3), 0.5)
    with _refused(ValueError, "mask for '0.weight' must be boolean (or 0/1)"):
        check_masks(model, names, {"0.weight": half})
    m01 = torch.tensor([[1.0, 0.0, 1.0]] * 4)
    mi = torch.tensor([1, 0, 0, 1])
    out = check_masks(model, names, {"0.weight": m01, "0.bias": mi})
    assert out["0.weight"].dtype == torch.bool and out["0.bias"].dtype == torch.bool
    assert out["0.weight"].tolist() == [[True, False, True]] * 4
    assert out["0.bias"].tolist() == [True, False, False, True]
    b = torch.tensor([True, False, True, True])
    assert check_masks(model, names, {"0.bias": b})["0.bias"].tolist() == b.tolist()


def test_float_01_masks_give_the_bool_mask_evidence():
    model = _net()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (12,), generator=g)
    m = torch.rand(4, 3, generator=g) > 0.4
    with torch.no_grad():
        model[0].weight.mul_(m)
    cfg = EvidenceConfig(prior_precision=1.0)
    a = estimate_evidence(model, x, y, masks={"0.weight": m}, config=cfg)
    b = estimate_evidence(model, x, y, masks={"0.weight": m.double()}, config=cfg)
    assert a.log_evidence == b.log_evidence and a.num_active == b.num_active == 26 - int((~m).sum())


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(5, 3)
        self.hidden = nn.Linear(3, 3)
        self.norm = nn.LayerNorm(3)
        self.head = nn.Linear(3, 5, bias=False)
        self.head.weight = self.emb.weight  # tied
        self.frozen = nn.Linear(3, 3)
        self.frozen.weight.requires_grad_(False)

    def forward(self, x):
        return self.head(self.norm(self.hidden(self.emb(x)) + self.frozen(self.emb(x))))


def test_resolve_prunable_and_canonical_names():
    model = _Tied()
    names = canonical_names(model)
    # tied weights appear once under their first name; frozen ones not at all
    assert sorted(names.values()) == [
        "emb.weight",
        "frozen.bias",
        "hidden.bias",
        "hidden.weight",
        "norm.bias",
        "norm.weight",
    ]
    # default: weights of Linear/Conv layers that are trainable and not shared
    assert resolve_prunable(model, names, {}, None) == ["hidden.weight"]
    masks = {"norm.weight": torch.ones(3, dtype=torch.bool), "emb.weight": torch.ones(5, 3)}
    assert resolve_prunable(model, names, masks, None) == ["norm.weight", "emb.weight"]
    assert resolve_prunable(model, names, masks, ["hidden.bias"]) == ["hidden.bias"]
    assert resolve_prunable(model, names, {}, []) == []
    with _refused(ValueError, "prunable names unknown parameters: ['head.weight', 'x']"):
        resolve_prunable(model, names, {}, ["hidden.weight", "head.weight", "x"])


def test_conv_weights_are_prunable_by_default():
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 3, 2), nn.LayerNorm(2))
    names = canonical_names(model)
    assert resolve_prunable(model, names, {}, None) == ["0.weight", "2.weight"]


def test_engine_refuses_models_without_trainable_parameters():
    model = _net().requires_grad_(False)
    x, y = torch.zeros(3, 3, dtype=torch.float64), torch.zeros(3, dtype=torch.long)
    with _refused(ValueError, "model has no parameters that require grad"):
        estimate_evidence(model, x, y)


def test_engine_refuses_non_finite_weights_naming_the_tensor():
    model = _net()
    with torch.no_grad():
        model[2].weight[0, 1] = math.nan
    x, y = torch.zeros(3, 3, dtype=torch.float64), torch.zeros(3, dtype=torch.long)
    with _refused(
        ValueError,
        "the model given to the evidence holds non-finite values: '2.weight' (1 NaN/inf)",
    ):
        estimate_evidence(model, x, y)


# ------------------------------------------------------------------ context


def test_to_logits_reads_every_output_kind():
    t = torch.arange(3.0)
    assert to_logits(t) is t
    assert to_logits(SimpleNamespace(logits=t)) is t
    assert to_logits((t, None)) is t
    assert to_logits([t, 1]) is t
    with _refused(TypeError, "cannot read logits from a model output of type dict"):
        to_logits({"logits": t})


def test_prior_groups():
    scalar = PriorGroups("scalar")
    assert len(scalar) == 1  # no parameter seen yet: still one group
    assert [scalar.index(n) for n in ("a.weight", "b.bias", "a.bias")] == [0, 0, 0]
    assert scalar.names == ["all"] and len(scalar) == 1
    layer = PriorGroups("layerwise")
    assert len(layer) == 1
    got = [layer.index(n) for n in ("enc.0.weight", "enc.0.bias", "head.weight", "enc.0.w")]
    assert got == [0, 0, 1, 0]
    assert layer.names == ["enc.0", "head"] and len(layer) == 2


def test_context_batches():
    model = _net()
    x = torch.arange(7 * 3, dtype=torch.float64).reshape(7, 3)
    y = torch.arange(7)
    cfg = EvidenceConfig(batch_size=3)
    ctx = Context(model, x, y, cfg, torch.device("cpu"), canonical_names(model), {})
    assert ctx.dtype == torch.float64 and list(ctx.params) == [
        "0.weight",
        "0.bias",
        "2.weight",
        "2.bias",
    ]
    idx = torch.tensor([6, 0, 2, 5, 1])
    got = list(ctx.batches(idx, None))
    assert [b[0].tolist() for b in got] == [[6, 0, 2], [5, 1]]
    for bi, xb, yb, wb in got:
        assert torch.equal(xb, x[bi]) and torch.equal(yb, y[bi])
        assert wb.dtype == torch.float64 and torch.equal(wb, torch.ones(len(bi)).double())
    w = torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0], dtype=torch.float32)
    got_w = [b[3].tolist() for b in ctx.batches(idx, w)]
    assert got_w == [[0.5, 1.0, 2.0], [3.0, 4.0]]
    assert all(b[3].dtype == torch.float64 for b in ctx.batches(idx, w))
    assert list(ctx.batches(idx[:0], None)) == []
    # bf16 autocast only when configured
    assert ctx.autocast()._enabled is False
    on = Context(
        model,
        x,
        y,
        EvidenceConfig(mixed_precision=True),
        torch.device("cpu"),
        canonical_names(model),
        {},
    )
    assert on.autocast()._enabled is True and on.autocast().fast_dtype == torch.bfloat16


def test_context_channels_last_batches():
    model = nn.Sequential(nn.Conv2d(2, 2, 1), nn.Flatten(), nn.Linear(2 * 9, 2)).double()
    x = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    y = torch.zeros(4, dtype=torch.long)
    names = canonical_names(model)
    for flag in (True, False):
        cfg = EvidenceConfig(channels_last=flag, batch_size=4)
        ctx = Context(model, x, y, cfg, torch.device("cpu"), names, {})
        ((_, xb, _, _),) = list(ctx.batches(torch.arange(4), None))
        assert torch.equal(xb, x)
        assert xb.is_contiguous(memory_format=torch.channels_last) == flag
