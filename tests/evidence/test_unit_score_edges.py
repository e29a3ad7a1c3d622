"""Unit scores at their edges, against the dense Kronecker precision P = G ⊗ A + αI built
explicitly (entry (o, i) of [W | b] at o·d_in + i): the ``first_order`` kind, emptied
layers, sets that remove every active unit, the engine's per-layer selection, and the exact
refusal messages."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.evidence.curvature.diag import DiagBlock
from jmds_pipeline.evidence.curvature.kfac import KronBlock, _eigh, kron_logdet
from jmds_pipeline.evidence.engine import kron_factors
from jmds_pipeline.evidence.units import (
    block_unit_scores,
    gpt2_head_units,
    leave_one_out_eigvals,
    unit_scores,
    unit_set_scores,
)


def _psd(n: int, g: torch.Generator) -> torch.Tensor:
    m = torch.randn(n, n + 2, generator=g, dtype=torch.float64)
    return m @ m.t() / n


def _block(d_out, d_in, rows, cols, seed, name="layer") -> KronBlock:
    g = torch.Generator().manual_seed(seed)
    mask = rows[:, None] & cols[None, :]
    theta = torch.randn(d_out, d_in, generator=g, dtype=torch.float64) * mask
    handler = SimpleNamespace(module_name=name, params={"weight": f"{name}.weight"})
    block = KronBlock(handler, A=_psd(d_in, g), G=_psd(d_out, g), theta=theta, mask=mask)
    block.lam_a, block.V = _eigh(block.A)
    block.lam_g, block.U = _eigh(block.G)
    return block


def _logdet(p: torch.Tensor, index: torch.Tensor) -> float:
    return 0.0 if index.numel() == 0 else float(torch.linalg.slogdet(p[index][:, index])[1])


def _index(rows, cols) -> torch.Tensor:
    return torch.nonzero((rows[:, None] & cols[None, :]).reshape(-1)).squeeze(1)


def _dense_diag_scores(block: KronBlock, alpha: float) -> torch.Tensor:
    """Δ_k = −½ θ_gᵀ P_gg θ_g − ½[log det P_{S∖k} − log det P_S] − ½ |C| log α, densely."""
    rows = block.mask.any(1) if block.mask is not None else torch.ones(block.G.shape[0]) > 0
    cols = block.mask.any(0) if block.mask is not None else torch.ones(block.A.shape[0]) > 0
    p = torch.kron(block.G, block.A) + alpha * torch.eye(block.theta.numel(), dtype=torch.float64)
    base = _logdet(p, _index(rows, cols))
    theta = block.theta.reshape(-1)
    out = torch.full((len(rows),), math.inf, dtype=torch.float64)
    for k in range(len(rows)):
        if not rows[k]:
            continue
        left = rows.clone()
        left[k] = False
        g = _index(torch.arange(len(rows)) == k, cols)
        fit = -0.5 * float(theta[g] @ p[g][:, g] @ theta[g])
        occam = -0.5 * (_logdet(p, _index(left, cols)) - base) - 0.5 * int(cols.sum()) * math.log(
            alpha
        )
        out[k] = fit + occam
    return out


def test_first_order_unit_scores_are_summed_saliencies():
    rows = torch.tensor([True, False, True, True])
    cols = torch.tensor([True, True, False, True, True])
    block = _block(4, 5, rows, cols, seed=2)
    a = torch.tensor([0.6], dtype=torch.float64)
    score, parts = unit_scores(block, a, "first_order", num_data=7.0)
    h = torch.kron(block.G, block.A).diagonal().reshape(4, 5)
    for k in range(4):
        if not rows[k]:
            assert math.isinf(float(score[k])) and float(score[k]) > 0
            continue
        want = -float((block.theta[k].abs() * h[k] * cols).sum()) / 7.0
        assert float(parts["fit"][k]) == pytest.approx(want, rel=1e-12)
        assert float(parts["occam"][k]) == 0.0
        assert float(score[k]) == pytest.approx(want, rel=1e-12)
    # num_data 0 is floored, not a division by zero
    s0, _ = unit_scores(block, a, "first_order", num_data=0.0)
    assert bool(torch.isfinite(s0[rows]).all())
    assert float(s0[0]) == pytest.approx(float(score[0]) * 7.0 / 1e-300, rel=1e-9)


def test_unit_scores_of_an_unmasked_layer_and_an_emptied_one():
    rows, cols = torch.ones(3, dtype=torch.bool), torch.ones(4, dtype=torch.bool)
    block = _block(3, 4, rows, cols, seed=5)
    block.mask = None
    a = torch.tensor([1.3], dtype=torch.float64)
    score, parts = unit_scores(block, a, "diag")
    assert score.dtype == torch.float64 and score.shape == (3,)
    torch.testing.assert_close(score, _dense_diag_scores(block, 1.3), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(parts["fit"] + parts["occam"], score)
    # every unit removed: nothing to score, all +inf, parts too
    empty = _block(3, 4, torch.zeros(3, dtype=torch.bool), cols, seed=5)
    assert bool(empty.mask.any()) is False
    score, parts = unit_scores(empty, a, "obs")
    for t in (score, parts["fit"], parts["occam"]):
        assert t.shape == (3,) and bool(torch.isposinf(t).all())
    # every column removed (rows kept): empty too
    nocols = _block(3, 4, rows, torch.zeros(4, dtype=torch.bool), seed=5)
    assert bool(torch.isposinf(unit_scores(nocols, a, "diag")[0]).all())


def test_unit_score_refusals_name_the_layer_and_kind():
    rows, cols = torch.ones(3, dtype=torch.bool), torch.ones(4, dtype=torch.bool)
    block = _block(3, 4, rows, cols, seed=1, name="enc.fc")
    a = torch.tensor([1.0], dtype=torch.float64)
    with pytest.raises(
        ValueError,
        match=r"^unknown weight score 'magnitude'; accepted: \['diag', 'obs', 'first_order'\]$",
    ):
        unit_scores(block, a, "magnitude")
    block.mask = torch.ones(3, 4, dtype=torch.bool)
    block.mask[0, 1] = False
    with pytest.raises(
        ValueError,
        match=r"^unit scores of 'enc\.fc' need a mask of whole rows and columns \(channel "
        r"granularity\); this layer has element-wise masks$",
    ):
        unit_scores(block, a, "diag")
    with pytest.raises(
        ValueError, match=r"^unit-set scores of 'enc\.fc' need a mask of whole rows and columns$"
    ):
        unit_set_scores(block, a, [[0]], "diag")
    with pytest.raises(
        ValueError,
        match=r"^unit-set scores support weight_score 'diag' or 'first_order', not 'obs'$",
    ):
        unit_set_scores(block, a, [[0]], "obs")


def test_unit_set_scores_of_an_unmasked_layer_and_of_every_unit():
    rows, cols = torch.ones(4, dtype=torch.bool), torch.ones(3, dtype=torch.bool)
    block = _block(4, 3, rows, cols, seed=8)
    block.mask = None
    alpha = 0.45
    a = torch.tensor([alpha], dtype=torch.float64)
    p = torch.kron(block.G, block.A) + alpha * torch.eye(12, dtype=torch.float64)
    base = _logdet(p, torch.arange(12))
    sets = [[1], [0, 3], [0, 1, 2, 3], []]
    score, parts = unit_set_scores(block, a, sets, "diag")
    theta = block.theta.reshape(-1)
    for s, units in enumerate(sets[:3]):
        left = rows.clone()
        left[units] = False
        g = _index(torch.isin(torch.arange(4), torch.tensor(units)), cols)
        fit = -0.5 * float(theta[g] @ p[g][:, g] @ theta[g])
        occam = -0.5 * (_logdet(p, _index(left, cols)) - base) - 0.5 * len(units) * 3 * math.log(
            alpha
        )
        assert float(parts["fit"][s]) == pytest.approx(fit, rel=1e-9)
        assert float(parts["occam"][s]) == pytest.approx(occam, rel=1e-9, abs=1e-9)
        assert float(score[s]) == pytest.approx(fit + occam, rel=1e-9)
    assert bool(torch.isposinf(score[3])) and bool(torch.isposinf(parts["fit"][3]))
    # single-unit sets agree with the per-unit scores
    per_unit, _ = unit_scores(block, a, "diag")
    assert float(score[0]) == pytest.approx(float(per_unit[1]), rel=1e-9)
    # first_order sets with num_data = 0: divided by the floor 1e-300, not by 0 or 1
    fo, fo_parts = unit_set_scores(block, a, [[2]], "first_order", num_data=0.0)
    h = torch.kron(block.G, block.A).diagonal().reshape(4, 3)
    sal = float((block.theta[2].abs() * h[2]).sum())
    assert float(fo[0]) == pytest.approx(-sal / 1e-300, rel=1e-9)
    assert float(fo_parts["occam"][0]) == 0.0
    # defaults: kind "diag", num_data 1
    default, _ = unit_set_scores(block, a, [[2], [0, 1]])
    torch.testing.assert_close(default, unit_set_scores(block, a, [[2], [0, 1]], "diag")[0])
    one, _ = unit_set_scores(block, a, [[2]], "first_order")
    assert float(one[0]) == pytest.approx(-sal, rel=1e-12)
    # an empty set does not end the loop: later sets are still scored
    after, _ = unit_set_scores(block, a, [[], [1]], "diag")
    assert bool(torch.isposinf(after[0])) and float(after[1]) == pytest.approx(float(score[0]))


def test_unit_scores_with_two_active_rows_and_default_num_data():
    """Two active rows: each unit's leave-one-out G has a single eigenvalue."""
    rows = torch.tensor([True, False, True])
    cols = torch.tensor([True, True, False, True])
    block = _block(3, 4, rows, cols, seed=9)
    a = torch.tensor([0.35], dtype=torch.float64)
    score, _ = unit_scores(block, a, "diag")
    torch.testing.assert_close(score, _dense_diag_scores(block, 0.35), rtol=1e-9, atol=1e-9)
    default, _ = unit_scores(block, a, "first_order")
    torch.testing.assert_close(default, unit_scores(block, a, "first_order", num_data=1.0)[0])
    mat = torch.tensor([[2.0, 0.5], [0.5, 3.0]], dtype=torch.float64)
    assert leave_one_out_eigvals(mat).tolist() == [[3.0], [2.0]]


def test_block_unit_scores_selects_wanted_kfac_layers():
    rows, cols = torch.ones(3, dtype=torch.bool), torch.ones(4, dtype=torch.bool)
    one = _block(3, 4, rows, cols, seed=3, name="a")
    two = _block(3, 4, rows, cols, seed=4, name="b")
    for b in (one, two):
        b.mask = None
    diag = DiagBlock("c.weight", torch.ones(2), torch.ones(2))
    a = torch.tensor([0.8], dtype=torch.float64)
    out = block_unit_scores([one, diag, two], "diag", a, ["b.weight", "c.weight"], 1.0)
    assert list(out) == ["b.weight"]
    assert out["b.weight"].dtype == torch.float32
    torch.testing.assert_close(
        out["b.weight"], _dense_diag_scores(two, 0.8).float(), rtol=1e-5, atol=1e-5
    )
    fo = block_unit_scores([one], "first_order", a, ["a.weight"], 4.0)["a.weight"]
    h = torch.kron(one.G, one.A).diagonal().reshape(3, 4)
    torch.testing.assert_close(
        fo, (-(one.theta.abs() * h).sum(1) / 4.0).float(), rtol=1e-6, atol=1e-7
    )


def test_engine_unit_scores_against_dense_factors():
    """``score_units=True``: Δ_k of each prunable K-FAC layer from the engine's own factors
    (checked by hand in test_factors.py), densely; no unit scores unless asked."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    g = torch.Generator().manual_seed(6)
    x = torch.randn(15, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (15,), generator=g)
    cfg = EvidenceConfig(weight_score="diag", prior_precision=0.9)
    res = estimate_evidence(model, x, y, config=cfg, score_samples=False, score_units=True)
    assert set(res.unit_scores) == {"0.weight", "2.weight"}
    factors = kron_factors(model, x, y, config=cfg)
    for name, layer in (("0", model[0]), ("2", model[2])):
        a_f, g_f = factors[name]
        theta = torch.cat([layer.weight.detach(), layer.bias.detach()[:, None]], 1).double()
        block = KronBlock(SimpleNamespace(), A=a_f, G=g_f, theta=theta)
        want = _dense_diag_scores(block, 0.9)
        torch.testing.assert_close(
            res.unit_scores[f"{name}.weight"].double(), want, rtol=1e-5, atol=1e-5
        )
    plain = estimate_evidence(model, x, y, config=cfg, score_samples=False)
    assert plain.unit_scores is None
    only = estimate_evidence(
        model, x, y, config=cfg, score_samples=False, score_units=True, prunable=["2.weight"]
    )
    assert list(only.unit_scores) == ["2.weight"]


def test_gpt2_head_units_by_hand():
    assert gpt2_head_units(2, 4) == [[0, 1, 4, 5, 8, 9], [2, 3, 6, 7, 10, 11]]
    assert gpt2_head_units(1, 2) == [[0, 1, 2, 3, 4, 5]]
    with pytest.raises(ValueError, match=r"^embed_dim = 10 is not divisible by num_heads = 3$"):
        gpt2_head_units(3, 10)


def test_leave_one_out_small_and_chunked(monkeypatch):
    from jmds_pipeline.evidence import units

    assert leave_one_out_eigvals(torch.ones(1, 1, dtype=torch.float64)).shape == (1, 0)
    assert leave_one_out_eigvals(torch.ones(0, 0, dtype=torch.float64)).shape == (0, 0)
    g = torch.Generator().manual_seed(2)
    mat = _psd(6, g)
    mat[0, 1] += 0.3  # not symmetric: the symmetric part is used
    whole = leave_one_out_eigvals(mat)
    sym = 0.5 * (mat + mat.t())
    for k in range(6):
        keep = torch.arange(6) != k
        torch.testing.assert_close(whole[k], torch.linalg.eigvalsh(sym[keep][:, keep]).clamp_min(0))
    monkeypatch.setattr(units, "_EIG_CHUNK", 2 * 36)  # two leave-one-outs per batch
    torch.testing.assert_close(leave_one_out_eigvals(mat), whole)
    # eigenvalues below 0 are clamped (a PSD matrix rounded): the zero matrix gives zeros
    neg = -torch.eye(3, dtype=torch.float64)
    assert torch.equal(leave_one_out_eigvals(neg), torch.zeros(3, 2, dtype=torch.float64))


def test_kron_logdet_of_empty_factors_is_zero():
    alpha = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    empty = torch.zeros(0, dtype=torch.float64)
    some = torch.tensor([1.0, 2.0], dtype=torch.float64)
    for la, lg in ((empty, some), (some, empty), (empty, empty)):
        out = kron_logdet(la, lg, alpha)
        assert out.shape == () and float(out.detach()) == 0.0
    full = kron_logdet(some, torch.tensor([3.0], dtype=torch.float64), alpha)
    assert float(full.detach()) == pytest.approx(math.log(3.7) + math.log(6.7), rel=1e-12)
