"""``KronBlock`` on its own against dense algebra: P = G ⊗ A + αI formed explicitly (entry
(o, i) of the d_out × d_in view at o·d_in + i), inverted and log-det'ed with torch.linalg.

Factors from explicit sums over samples, each leverage route against Σ_k w_k ψ_kᵀ M ψ_k
with ψ_k = Σ_r g_rk a_rᵀ formed per sample, the masked log det against its two Hadamard
bounds computed densely, and the cost model against counts worked out by hand."""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

import pytest
import torch

from jmds_pipeline.evidence.curvature import kfac
from jmds_pipeline.evidence.curvature.kfac import (
    DIAG_MAX_ACTIVE,
    SPARSE_MAX_GATHERED,
    KronBlock,
    _eigh,
    _width_groups,
    rectangle,
)
from jmds_pipeline.evidence.footprint import leverage_method

D_OUT, D_IN = 3, 4


def _psd(n: int, g: torch.Generator) -> torch.Tensor:
    m = torch.randn(n, n + 1, generator=g, dtype=torch.float64)
    return m @ m.t() / n


def _block(mask=None, seed=0) -> KronBlock:
    g = torch.Generator().manual_seed(seed)
    blk = KronBlock(
        SimpleNamespace(),
        A=_psd(D_IN, g),
        G=_psd(D_OUT, g),
        theta=torch.randn(D_OUT, D_IN, generator=g, dtype=torch.float64),
        mask=mask,
    )
    blk.lam_a, blk.V = _eigh(blk.A)
    blk.lam_g, blk.U = _eigh(blk.G)
    return blk


def _dense(blk: KronBlock, alpha: float) -> torch.Tensor:
    n = D_OUT * D_IN
    return torch.kron(blk.G, blk.A) + alpha * torch.eye(n, dtype=torch.float64)


def _mask(seed=3, keep=0.55) -> torch.Tensor:
    m = torch.rand(D_OUT, D_IN, generator=torch.Generator().manual_seed(seed)) < keep
    m[0] = False  # one fully pruned row
    m[1] = True  # one full row
    return m


ALPHA = 0.6
AL = torch.tensor([ALPHA], dtype=torch.float64)


# ------------------------------------------------------------------ factors


def test_accumulate_and_finalise_against_explicit_sums():
    g = torch.Generator().manual_seed(1)
    blk = KronBlock(
        SimpleNamespace(),
        A=torch.zeros(D_IN, D_IN, dtype=torch.float64),
        G=torch.zeros(D_OUT, D_OUT, dtype=torch.float64),
        theta=torch.zeros(D_OUT, D_IN, dtype=torch.float64),
    )
    b, r, k = 5, 3, 2
    a = torch.randn(b, r, D_IN, generator=g, dtype=torch.float64)
    gr = torch.randn(k, b, r, D_OUT, generator=g, dtype=torch.float64)
    w = torch.rand(b, generator=g, dtype=torch.float64) + 0.1
    wk = torch.rand(k, b, generator=g, dtype=torch.float64) + 0.1
    blk.accumulate_a(a, w)
    blk.accumulate_a(a[:2], w[:2])  # sums add up
    blk.accumulate_g(gr, wk)
    want_a = sum(w[i] * a[i, t, :, None] * a[i, t, None, :] / r for i in range(b) for t in range(r))
    want_a = want_a + sum(
        w[i] * a[i, t, :, None] * a[i, t, None, :] / r for i in range(2) for t in range(r)
    )
    want_g = sum(
        wk[c, i] * gr[c, i, t, :, None] * gr[c, i, t, None, :]
        for c in range(k)
        for i in range(b)
        for t in range(r)
    )
    torch.testing.assert_close(blk.A, want_a)
    torch.testing.assert_close(blk.G, want_g)
    blk.finalise(2.5)
    torch.testing.assert_close(blk.A, want_a / 2.5)
    torch.testing.assert_close(blk.G, want_g)  # G is not normalised
    torch.testing.assert_close(blk.V @ torch.diag(blk.lam_a) @ blk.V.t(), want_a / 2.5)
    torch.testing.assert_close(blk.U @ torch.diag(blk.lam_g) @ blk.U.t(), want_g)
    # no weight at all: A is divided by the floor, not by zero
    z = KronBlock(
        SimpleNamespace(),
        A=torch.eye(2).double(),
        G=torch.eye(2).double(),
        theta=torch.zeros(2, 2).double(),
    )
    z.finalise(0.0)
    assert torch.equal(z.A, torch.eye(2).double() / 1e-300)


def test_eigh_symmetrises_clamps_and_retries_with_jitter(monkeypatch):
    mat = torch.tensor(
        [[2.0, 1.0], [0.0, -3.0]], dtype=torch.float64
    )  # sym part [[2, .5], [.5, -3]]
    lam, vec = _eigh(mat)
    sym = torch.tensor([[2.0, 0.5], [0.5, -3.0]], dtype=torch.float64)
    true = torch.linalg.eigvalsh(sym)
    assert lam.tolist() == pytest.approx([0.0, float(true[1])])  # negative clamped to 0
    torch.testing.assert_close(vec @ torch.diag(true) @ vec.t(), sym)
    calls = []
    real = torch.linalg.eigh

    def flaky(m):
        calls.append(m.clone())
        if len(calls) == 1:
            raise RuntimeError("failed to converge")
        return real(m)

    monkeypatch.setattr(torch.linalg, "eigh", flaky)
    good = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    lam2, _ = _eigh(good)
    assert len(calls) == 2
    torch.testing.assert_close(calls[1], good + 4e-10 * torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(lam2, torch.linalg.eigvalsh(good) + 4e-10)
    calls.clear()
    _eigh(torch.zeros(2, 2, dtype=torch.float64))  # jitter floored at 1e-10 · 1e-30
    torch.testing.assert_close(calls[1], 1e-40 * torch.eye(2, dtype=torch.float64))


# ------------------------------------------------------------------ masks, diagonals, log det


def test_mask_normalisation_and_rectangle():
    assert _block(torch.ones(D_OUT, D_IN, dtype=torch.bool)).mask is None
    meta = torch.empty(D_OUT, D_IN, dtype=torch.bool, device="meta")
    assert _block_meta(meta).mask is meta  # a meta mask has no values: kept
    m = _mask()
    assert _block(m).mask is m
    assert rectangle(None) is None
    assert rectangle(m) is None
    rows = torch.tensor([True, False, True])
    cols = torch.tensor([False, True, True, True])
    got = rectangle(rows[:, None] & cols[None, :])
    assert got[0].tolist() == rows.tolist() and got[1].tolist() == cols.tolist()
    empty = rectangle(torch.zeros(2, 3, dtype=torch.bool))
    assert not bool(empty[0].any()) and not bool(empty[1].any())


def _block_meta(mask):
    meta = torch.device("meta")
    return KronBlock(
        None,
        A=torch.empty(D_IN, D_IN, device=meta),
        G=torch.empty(D_OUT, D_OUT, device=meta),
        theta=torch.empty(D_OUT, D_IN, device=meta),
        mask=mask,
    )


def test_diagonals_against_dense_inverse():
    blk = _block()
    p = _dense(blk, ALPHA)
    torch.testing.assert_close(blk.diag_h().reshape(-1), torch.kron(blk.G, blk.A).diagonal())
    torch.testing.assert_close(blk.diag_inv(AL).reshape(-1), torch.linalg.inv(p).diagonal())
    # group 1 of a two-group α
    blk.group = 1
    two = torch.tensor([5.0, ALPHA], dtype=torch.float64)
    torch.testing.assert_close(blk.diag_inv(two).reshape(-1), torch.linalg.inv(p).diagonal())
    assert float(blk.prior_of(two)) == ALPHA


def test_log_det_unmasked_rectangular_and_element_masks():
    blk = _block()
    p = _dense(blk, ALPHA)
    assert float(blk.logdet(AL)) == pytest.approx(float(torch.logdet(p)), rel=1e-12)
    # rectangular (rows 0, 2 × columns 1, 2, 3): exact
    rows = torch.tensor([True, False, True])
    cols = torch.tensor([False, True, True, True])
    rect = _block(rows[:, None] & cols[None, :])
    s = torch.nonzero((rows[:, None] & cols[None, :]).reshape(-1)).squeeze(1)
    want = float(torch.logdet(p[s][:, s]))
    assert float(rect.logdet(AL)) == pytest.approx(want, rel=1e-12)
    assert float(rect.logdet(AL)) == pytest.approx(want, rel=1e-12)  # cached second call
    # element mask: the smaller of Σ_S log P_jj and log det P + Σ_{j∉S} log (P⁻¹)_jj
    for seed in range(4):
        m = _mask(seed)
        blk = _block(m)
        flat = m.reshape(-1)
        direct = float(torch.log(p.diagonal()[flat]).sum())
        schur = float(torch.logdet(p) + torch.log(torch.linalg.inv(p).diagonal()[~flat]).sum())
        exact = float(torch.logdet(p[flat][:, flat]))
        got = float(blk.logdet(AL))
        assert got == pytest.approx(min(direct, schur), rel=1e-12)
        assert got >= exact - 1e-9  # an upper bound
    # one weight removed: the Schur form is exact
    one = torch.ones(D_OUT, D_IN, dtype=torch.bool)
    one[2, 1] = False
    keep = one.reshape(-1)
    assert float(_block(one).logdet(AL)) == pytest.approx(
        float(torch.logdet(p[keep][:, keep])), rel=1e-12
    )
    out = _block(m).logdet(AL)
    assert out.dtype == torch.float64 and out.device.type == "cpu" and out.shape == ()


def test_group_stats_count_active_weights():
    m = _mask()
    blk = _block(m)
    blk.theta = blk.theta * m
    blk.group = 1
    sq, num = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    blk.group_stats(sq, num)
    assert num.tolist() == [0.0, float(m.sum())]
    assert sq[1] == pytest.approx(float((blk.theta**2).sum()))
    full = _block()
    full.group_stats(sq, num)
    assert num.tolist() == [float(D_OUT * D_IN), float(m.sum())]


# ------------------------------------------------------------------ leverage routes


def _data(b=4, r=3, k=2, seed=5):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(b, r, D_IN, generator=g, dtype=torch.float64)
    gr = torch.randn(k, b, r, D_OUT, generator=g, dtype=torch.float64)
    wk = torch.rand(k, b, generator=g, dtype=torch.float64) + 0.2
    return a, gr, wk


def _exact(blk, a, gr, wk, mask=None) -> torch.Tensor:
    """Σ_k w_k ψ_S,kᵀ (P⁻¹)_SS ψ_S,k with ψ_k = Σ_r g_rk a_rᵀ, per sample."""
    inv = torch.linalg.inv(_dense(blk, ALPHA))
    if mask is not None:
        keep = mask.reshape(-1).double()
        inv = inv * keep[:, None] * keep[None, :]
    out = torch.zeros(a.shape[0], dtype=torch.float64)
    for i in range(a.shape[0]):
        for c in range(gr.shape[0]):
            psi = (gr[c, i].t() @ a[i]).reshape(-1)
            out[i] += wk[c, i] * psi @ inv @ psi
    return out


def test_unmasked_routes_against_dense():
    blk = _block()
    a, gr, wk = _data()
    want = _exact(blk, a, gr, wk)
    for method in ("rotate", "matrix"):
        torch.testing.assert_close(blk.leverage(a, gr, wk, AL, method), want)
    # kron: tr(P⁻¹ (A_i ⊗ G_i)) with A_i = Σ_r a aᵀ / R, G_i = Σ_k w_k Σ_r g gᵀ
    inv = torch.linalg.inv(_dense(blk, ALPHA))
    kron = torch.zeros(4, dtype=torch.float64)
    for i in range(4):
        a_i = a[i].t() @ a[i] / 3
        g_i = sum(wk[c, i] * gr[c, i].t() @ gr[c, i] for c in range(2))
        kron[i] = torch.trace(inv @ torch.kron(g_i, a_i))
    torch.testing.assert_close(blk.leverage(a, gr, wk, AL, "kron"), kron)
    # R = 1: kron is exact
    a1, g1, w1 = _data(r=1)
    torch.testing.assert_close(blk.leverage(a1, g1, w1, AL, "kron"), _exact(blk, a1, g1, w1))


@pytest.mark.parametrize("seed", [3, 4])
def test_masked_routes_against_dense(seed, monkeypatch):
    m = _mask(seed)
    blk = _block(m)
    a, gr, wk = _data()
    want = _exact(blk, a, gr, wk, m)
    for method in ("masked", "masked_dense"):
        torch.testing.assert_close(blk.leverage(a, gr, wk, AL, method), want)
    # the sparse route a row block at a time (gathered V not kept) gives the same numbers
    monkeypatch.setattr(kfac, "SPARSE_MAX_GATHERED", 1)
    fresh = _block(m)
    torch.testing.assert_close(fresh.leverage(a, gr, wk, AL, "masked"), want)
    assert not any(k[0] == "v" for k in fresh._gathered)
    monkeypatch.setattr(kfac, "SPARSE_MAX_GATHERED", SPARSE_MAX_GATHERED)
    kept = _block(m)
    kept.leverage(a, gr, wk, AL, "masked")
    assert any(k[0] == "v" for k in kept._gathered)
    torch.testing.assert_close(kept.leverage(a, gr, wk, AL, "masked"), want)  # from the cache


def test_masked_diag_route_is_its_stated_approximation():
    m = torch.zeros(D_OUT, D_IN, dtype=torch.bool)
    m[1, :2] = True
    m[2, 3] = True
    blk = _block(m)
    rho = 3 / 12
    a, gr, wk = _data()
    inv_diag = torch.linalg.inv(_dense(blk, ALPHA)).diagonal() * m.reshape(-1)
    want = torch.zeros(4, dtype=torch.float64)
    for i in range(4):
        for c in range(2):
            psi = (gr[c, i].t() @ a[i]).reshape(-1)
            want[i] += wk[c, i] * (1 - rho) * (inv_diag * psi**2).sum()
    torch.testing.assert_close(blk.leverage(a, gr, wk, AL, "masked_diag"), want)


def test_fully_pruned_layer_has_zero_leverage():
    blk = _block(torch.zeros(D_OUT, D_IN, dtype=torch.bool))
    a, gr, wk = _data()
    out = blk.leverage(a, gr, wk, AL, "masked")
    assert torch.equal(out, torch.zeros(4, dtype=torch.float64))


# ------------------------------------------------------------------ cost model


def test_leverage_cost_by_hand():
    blk = _block()
    # R = 1: kron, rotate cost r·d_in² + k·r·d_out² plus d_in·d_out
    assert blk.leverage_cost(1, 2, "exact") == ("kron", 16 + 2 * 9 + 12)
    # R = 5, K = 2, exact: rotate = 5·16 + 2·5·9 + 2·5·12 = 290, matrix = 2·(5·12 + 12·7) = 288
    assert blk.leverage_cost(5, 2, "exact") == ("matrix", 288)
    # R = 5, K = 1: rotate = 80 + 45 + 60 = 185, matrix = 60 + 84 = 144
    assert blk.leverage_cost(5, 1, "exact") == ("matrix", 144)
    # R = 2, K = 1: rotate = 32 + 18 + 24 = 74, matrix = 24 + 84 = 108
    assert blk.leverage_cost(2, 1, "exact") == ("rotate", 74)
    # kron allowed: rotate part 32 + 18 = 50, + 12 = 62 < 74
    assert blk.leverage_cost(2, 1, "kron") == ("kron", 62)
    # masked rows: psi = r·d_in·d_out; masked (sparse) adds (Σ_groups n_g·s_g)·d_in for the
    # row groups' padded widths and (rows with an active entry)·d_out·d_in. _mask: row 0
    # empty (skipped), row 1 full, row 2 w2 wide; three rows fit ≤ 4 groups unpadded
    m = _mask(3)
    mb = _block(m)
    w2 = int(m[2].sum())
    assert mb._sparse_work() == (D_IN + w2, 2)
    assert mb.leverage_cost(5, 2, "exact") == ("masked", 2 * (60 + (4 + w2) * 4 + 2 * 3 * 4))
    assert mb.leverage_cost(5, 2, "kron", "dense") == ("masked_dense", 2 * (60 + 12 * 7))
    narrow = torch.zeros(D_OUT, D_IN, dtype=torch.bool)
    narrow[0, 0] = narrow[1, 1] = narrow[2, 1] = True
    nb = _block(narrow)
    assert nb._sparse_work() == (3, 3) and nb._active_fraction() == pytest.approx(0.25)
    assert nb.leverage_cost(5, 2, "exact", "sparse") == ("masked", 2 * (60 + 3 * 1 * 4 + 36))
    assert nb.leverage_cost(5, 2, "exact", "diag") == ("masked_diag", 2 * (60 + 12))
    # above DIAG_MAX_ACTIVE the diag route falls back to the exact sparse one
    dense = torch.ones(D_OUT, D_IN, dtype=torch.bool)
    dense[0, 0] = dense[2, 3] = False
    assert dense.double().mean() > DIAG_MAX_ACTIVE
    # rows 3, 4, 3 wide: two groups {3, 3} and {4} are unpadded, area 10
    assert _block(dense).leverage_cost(5, 2, "exact", "diag") == (
        "masked",
        2 * (60 + 10 * 4 + 36),
    )
    at = torch.zeros(5, 10, dtype=torch.bool)
    at.view(-1)[: int(DIAG_MAX_ACTIVE * 50)] = True  # exactly at the cap: still diag
    cap = KronBlock(
        None, A=torch.zeros(10, 10), G=torch.zeros(5, 5), theta=torch.zeros(5, 10), mask=at
    )
    assert cap.leverage_cost(1, 1, "exact", "diag")[0] == "masked_diag"


def test_leverage_method_allocates_nothing():
    """On ``meta``: a layer far beyond memory (10⁶ × 10⁶) is costed without allocating."""
    d = 10**6
    assert leverage_method(d, d, positions=1, vectors=1, masked=False) == ("kron", 3 * d * d)
    method, cost = leverage_method(d, d, positions=1, vectors=2, masked=True)
    # meta mask: row width taken as d_in
    assert (method, cost) == ("masked", 2 * (d * d + d * d * d + d * d * d))
    # d_in 10, d_out 8, R 2, K 1: kron 200 + 128 + 80 = 408 < rotate 328 + 160 = 488
    kron = leverage_method(10, 8, positions=2, vectors=1, masked=False, mode="kron")
    assert kron == ("kron", 408)
    assert leverage_method(10, 8, positions=2, vectors=1, masked=False) == ("rotate", 488)


def test_meta_mask_is_costed_without_values():
    """A ``meta`` mask has no values: ρ counts as 0 (the diag route) and every row as whole."""
    meta = torch.empty(D_OUT, D_IN, dtype=torch.bool, device="meta")
    blk = _block_meta(meta)
    assert blk._active_fraction() == 0.0 and blk._sparse_work() == (D_OUT * D_IN, D_OUT)
    assert blk.leverage_cost(5, 2, "exact", "diag") == ("masked_diag", 2 * (60 + 12))
    assert blk.leverage_cost(5, 2, "exact") == ("masked", 2 * (60 + 3 * 4 * 4 + 9 * 4))


def test_float32_masked_leverage_matches_float64():
    """The sparse route gathers V in the samples' dtype: a float32 block gives the float64
    numbers to float32 precision."""
    m = _mask(4)
    blk = _block(m)
    a, gr, wk = _data()
    want = _exact(blk, a, gr, wk, m)
    for method in ("masked", "masked_dense", "rotate", "matrix", "kron"):
        got = blk.leverage(a.float(), gr.float(), wk.float(), AL, method)
        assert got.dtype == torch.float32
        if method in ("masked", "masked_dense"):
            torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ low-rank leverage


def _tail_replaced(blk: KronBlock, rank: int, tail: float | None = None,
                   side: str = "a") -> KronBlock:
    """A copy of ``blk`` whose A (``side="a"``) or G (``"g"``) has its eigenvalues outside
    the top ``rank`` set to ``tail`` (default their mean), built densely: V diag(λ̃) Vᵀ."""
    lam, vec = (blk.lam_a, blk.V) if side == "a" else (blk.lam_g, blk.U)
    lam = lam.clone()
    cut = lam.numel() - rank
    lam[:cut] = lam[:cut].mean() if tail is None else tail
    twin = _block(blk.mask)
    twin.A, twin.G = blk.A, blk.G
    if side == "a":
        twin.A = vec @ torch.diag(lam) @ vec.t()
    else:
        twin.G = vec @ torch.diag(lam) @ vec.t()
    return twin


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_lowrank_routes_are_exact_for_the_tail_replaced_factor(rank):
    """Every low-rank route equals Σ_k w_k ψ_kᵀ P̃⁻¹ ψ_k with P̃ = G ⊗ Ã + αI formed densely,
    Ã = A with its eigenvalues below the top ``rank`` replaced by their mean."""
    blk = _block()
    a, gr, wk = _data()
    want = _exact(_tail_replaced(blk, rank), a, gr, wk)
    for method in ("lowrank_gram", "lowrank_psi"):
        torch.testing.assert_close(blk.leverage(a, gr, wk, AL, method, rank), want)
    m = _mask(4)
    masked = _block(m)
    want_m = _exact(_tail_replaced(masked, rank), a, gr, wk, m)
    torch.testing.assert_close(masked.leverage(a, gr, wk, AL, "masked_lowrank", rank), want_m)


def test_lowrank_at_full_rank_is_the_exact_leverage():
    blk = _block()
    a, gr, wk = _data()
    for method in ("lowrank_gram", "lowrank_psi"):
        torch.testing.assert_close(
            blk.leverage(a, gr, wk, AL, method, D_IN), _exact(blk, a, gr, wk)
        )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lowrank_brackets_the_exact_leverage(seed):
    """λ̄ = the largest left-out eigenvalue gives a lower bound, λ̄ = 0 an upper one, and the
    mean lies between: the exact leverage is inside [lower, upper] for every sample."""
    blk = _block(seed=seed)
    a, gr, wk = _data(seed=seed + 7)
    exact = _exact(blk, a, gr, wk)
    for rank in (1, 2):
        largest_tail = float(blk.lam_a[D_IN - rank - 1])
        low = blk.lowrank_leverage(a, gr, wk, AL, rank, tail_eigenvalue=largest_tail)
        high = blk.lowrank_leverage(a, gr, wk, AL, rank, tail_eigenvalue=0.0)
        mean = blk.lowrank_leverage(a, gr, wk, AL, rank)
        assert bool((low <= exact * (1 + 1e-12)).all() and (exact <= high * (1 + 1e-12)).all())
        assert bool((low <= mean * (1 + 1e-12)).all() and (mean <= high * (1 + 1e-12)).all())
        assert float((high - low).min()) > 0  # a real bracket, not a point


def test_lowrank_cost_by_hand():
    """d_in 4, d_out 3, rank 2. R = 5, K = 1: gt = 45; gram = 45 + 5·4·2 + 25·4 + 5·3·2 +
    25·3 = 290; psi = 45 + 60 + 12·2 = 129 < matrix 144 (exact's best): lowrank_psi."""
    blk = _block()
    assert blk.leverage_cost(5, 1, "lowrank", rank=2) == ("lowrank_psi", 129)
    # rank ≥ d_in: no low-rank option, the exact routes' choice
    assert blk.leverage_cost(5, 1, "lowrank", rank=D_IN) == ("matrix", 144)
    assert blk.leverage_cost(5, 1, "exact", rank=2) == ("matrix", 144)
    # R = 1 stays kron (exact)
    assert blk.leverage_cost(1, 1, "lowrank", rank=1)[0] == "kron"
    # wide layer, few positions: d_in 40, d_out 4, R 3, K 1, rank 5
    wide = KronBlock(None, A=torch.zeros(40, 40), G=torch.zeros(4, 4), theta=torch.zeros(4, 40))
    # rotate 3·1600 + 48 + 480 = 5328; matrix 480 + 160·44 = 7520; gram 48 + 600 + 360 + 60
    # + 36 = 1104; psi 48 + 480 + 800 = 1328
    assert wide.leverage_cost(3, 1, "lowrank", rank=5) == ("lowrank_gram", 1104)
    # masked: lowrank K·(psi + d_out²·d_in + d_out·d_in·rank) = 60 + 36 + 24 = 120 against
    # sparse 60 + (4 + 4 + 3)·4 + 3·3·4 = 140 (rows 4, 4, 3 wide)
    nearly = torch.ones(D_OUT, D_IN, dtype=torch.bool)
    nearly[2, 3] = False
    mb = _block(nearly)
    assert mb.leverage_cost(5, 1, "lowrank", rank=2) == ("masked_lowrank", 120)
    assert mb.leverage_cost(5, 1, "lowrank", rank=3) == ("masked_lowrank", 132)
    # one active entry per row (s = 1): sparse 60 + 3·1·4 + 36 = 108 < lowrank 120
    narrow = torch.zeros(D_OUT, D_IN, dtype=torch.bool)
    narrow[0, 0] = narrow[1, 1] = narrow[2, 1] = True
    assert _block(narrow).leverage_cost(5, 1, "lowrank", rank=2) == ("masked", 108)
    assert _block(narrow).leverage_cost(5, 1, "lowrank", "diag", rank=2)[0] == "masked_diag"


def test_lowrank_routes_keep_the_samples_dtype():
    """float32 samples: every low-rank route returns float32, equal to the float64 value to
    float32 precision (the factors' float64 eigenpairs are cast, not the samples)."""
    blk = _block()
    a, gr, wk = _data()
    want = _exact(_tail_replaced(blk, 2), a, gr, wk)
    for method in ("lowrank_gram", "lowrank_psi"):
        got = blk.leverage(a.float(), gr.float(), wk.float(), AL, method, 2)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-6)
    m = _mask(4)
    masked = _block(m)
    got = masked.leverage(a.float(), gr.float(), wk.float(), AL, "masked_lowrank", 2)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _exact(_tail_replaced(masked, 2), a, gr, wk, m),
                               rtol=1e-4, atol=1e-6)


def test_lowrank_with_a_given_tail_eigenvalue_is_exact_for_it():
    """λ̄ = 1/3 (not representable in float32): the value equals the dense algebra of Ã with
    that tail to float64 precision, so λ̄ is used in the factors' precision."""
    blk = _block(seed=1)
    a, gr, wk = _data(seed=8)
    want = _exact(_tail_replaced(blk, 2, tail=1.0 / 3.0), a, gr, wk)
    got = blk.lowrank_leverage(a, gr, wk, AL, 2, tail_eigenvalue=1.0 / 3.0)
    torch.testing.assert_close(got, want, rtol=1e-11, atol=0.0)


def test_lowrank_cost_edges_by_hand():
    blk = _block()
    # no rank given: no low-rank option (rank 0), the exact routes' choice
    assert blk.leverage_cost(5, 1, "lowrank") == ("matrix", 144)
    assert blk.leverage_cost(5, 1, "lowrank", rank=0) == ("matrix", 144)
    # rank 1 is a valid rank: wide layer d_in 40, d_out 4, R 3, K 1: gram = 48 + 120 + 360
    # + 12 + 36 = 576 < psi 48 + 480 + 160 = 688 < rotate 5328
    wide = KronBlock(None, A=torch.zeros(40, 40), G=torch.zeros(4, 4), theta=torch.zeros(4, 40))
    assert wide.leverage_cost(3, 1, "lowrank", rank=1) == ("lowrank_gram", 576)
    # rank = d_in is no low-rank route, even where its price would win: d_in 8, d_out 3,
    # R 4: psi at rank 8 = 36 + 96 + 192 = 324 < matrix 96 + 24·11 = 360 < rotate 388
    mid = KronBlock(None, A=torch.zeros(8, 8), G=torch.zeros(3, 3), theta=torch.zeros(3, 8))
    assert mid.leverage_cost(4, 1, "lowrank", rank=8) == ("matrix", 360)
    # masked tie (s = 1 = rank): 60 + 36 + 12 = 108 both ways; the exact route is kept
    narrow = torch.zeros(D_OUT, D_IN, dtype=torch.bool)
    narrow[0, 0] = narrow[1, 1] = narrow[2, 1] = True
    assert _block(narrow).leverage_cost(5, 1, "lowrank", rank=1) == ("masked", 108)


def _brute_area(widths: list[int], most: int) -> int:
    """The least Σ_g len(g)·max(g) over every split of ascending ``widths`` into ≤ most runs."""
    n = len(widths)
    best = n * widths[-1]
    for groups in range(2, min(most, n) + 1):
        for cuts in itertools.combinations(range(1, n), groups - 1):
            bounds = [0, *cuts, n]
            area = sum((bounds[i + 1] - bounds[i]) * widths[bounds[i + 1] - 1]
                       for i in range(groups))
            best = min(best, area)
    return best


def test_width_groups_minimise_the_padded_area():
    """The row groups of the sparse route: consecutive, covering, at most ``most``, and with
    the least padded area (brute force over every split of up to 9 rows)."""
    gen = random.Random(0)
    for _ in range(200):
        widths = sorted(gen.randint(1, 12) for _ in range(gen.randint(1, 9)))
        most = gen.randint(1, 4)
        parts = _width_groups(torch.tensor(widths), most)
        assert 1 <= len(parts) <= most
        assert parts[0].start == 0 and parts[-1].stop == len(widths)
        assert all(p.stop == q.start and p.start < p.stop for p, q in itertools.pairwise(parts))
        area = sum((p.stop - p.start) * widths[p.stop - 1] for p in parts)
        assert area == _brute_area(widths, most)
    assert _width_groups(torch.tensor([], dtype=torch.long), 4) == []


def test_uneven_rows_are_grouped_and_give_the_same_leverage():
    """Evidence-chosen masks leave some rows whole and others nearly empty: the row groups
    cut the padded work below one-width-for-all and the leverage is the dense algebra's."""
    m = torch.zeros(D_OUT, D_IN, dtype=torch.bool)
    m[0, :1] = True  # width 1
    m[1] = True  # whole row
    m[2, 1:3] = True  # width 2
    blk = _block(m)
    area, rows = blk._sparse_work()
    assert (area, rows) == (1 + 2 + D_IN, 3) and area < D_OUT * D_IN
    a, gr, wk = _data()
    torch.testing.assert_close(blk.leverage(a, gr, wk, AL, "masked"), _exact(blk, a, gr, wk, m))


# ------------------------------------------------------------------ low-rank on G's side


@pytest.mark.parametrize("rank", [1, 2])
def test_g_side_lowrank_routes_are_exact_for_the_tail_replaced_factor(rank):
    """Both G-side routes equal Σ_k w_k ψ_kᵀ P̃⁻¹ ψ_k with P̃ = G̃ ⊗ A + αI formed densely."""
    blk = _block()
    a, gr, wk = _data()
    want = _exact(_tail_replaced(blk, rank, side="g"), a, gr, wk)
    for method in ("lowrank_g_gram", "lowrank_g_psi"):
        torch.testing.assert_close(blk.leverage(a, gr, wk, AL, method, rank), want)
    # full rank: the exact leverage
    for method in ("lowrank_g_gram", "lowrank_g_psi"):
        torch.testing.assert_close(blk.leverage(a, gr, wk, AL, method, D_OUT),
                                   _exact(blk, a, gr, wk))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_g_side_lowrank_brackets_the_exact_leverage(seed):
    blk = _block(seed=seed)
    a, gr, wk = _data(seed=seed + 7)
    exact = _exact(blk, a, gr, wk)
    rank = 1
    largest_tail = float(blk.lam_g[D_OUT - rank - 1])
    low = blk.lowrank_g_leverage(a, gr, wk, AL, rank, tail_eigenvalue=largest_tail)
    high = blk.lowrank_g_leverage(a, gr, wk, AL, rank, tail_eigenvalue=0.0)
    mean = blk.lowrank_g_leverage(a, gr, wk, AL, rank)
    assert bool((low <= exact * (1 + 1e-12)).all() and (exact <= high * (1 + 1e-12)).all())
    assert bool((low <= mean * (1 + 1e-12)).all() and (mean <= high * (1 + 1e-12)).all())
    assert float((high - low).min()) > 0


def test_g_side_lowrank_cost_by_hand_and_dtype():
    """A tall layer (d_out 40 > d_in 4), R 3, K 1, rank 5: aV = 3·16 = 48; g_gram = 48 +
    3·40·5 + 3·5·4 + 9·40 + 9·4 = 1104; g_psi = 48 + 480 + 800 = 1328; rotate = 48 + 4800 +
    480 = 5328; matrix = 480 + 160·44 = 7520; A's side has no option (rank 5 ≥ d_in 4)."""
    tall = KronBlock(None, A=torch.zeros(4, 4), G=torch.zeros(40, 40), theta=torch.zeros(40, 4))
    assert tall.leverage_cost(3, 1, "lowrank", rank=5) == ("lowrank_g_gram", 1104)
    assert tall.leverage_cost(3, 1, "exact", rank=5) == ("rotate", 5328)
    # K = 2 backward vectors: the a rotation is shared, the rest doubles: g_gram 48 + 2·1056
    assert tall.leverage_cost(3, 2, "lowrank", rank=5) == ("lowrank_g_gram", 48 + 2 * 1056)
    blk = _block()
    a, gr, wk = _data()
    for method in ("lowrank_g_gram", "lowrank_g_psi"):
        got = blk.leverage(a.float(), gr.float(), wk.float(), AL, method, 2)
        assert got.dtype == torch.float32
        want = _exact(_tail_replaced(blk, 2, side="g"), a, gr, wk)
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("groups", "limit"), [(1, SPARSE_MAX_GATHERED), (2, SPARSE_MAX_GATHERED),
                                               (1, 1), (2, 1)])
def test_padded_row_groups_and_row_blocks_give_the_dense_algebra(groups, limit, monkeypatch):
    """Seven rows of widths 0–5 in one or two groups (so rows are padded inside a group),
    whole or a row at a time (``SPARSE_MAX_GATHERED`` = 1): padding slots contribute
    nothing and every row lands in its place of Uᵀ (ψ⊙M) V."""
    monkeypatch.setattr(kfac, "SPARSE_ROW_GROUPS", groups)
    monkeypatch.setattr(kfac, "SPARSE_MAX_GATHERED", limit)
    d_out, d_in, r, k, b = 7, 5, 3, 2, 4
    g = torch.Generator().manual_seed(11)
    mask = torch.zeros(d_out, d_in, dtype=torch.bool)
    for row, width in enumerate([3, 0, 5, 1, 4, 2, 3]):
        mask[row, torch.randperm(d_in, generator=g)[:width]] = True
    blk = KronBlock(None, A=_psd(d_in, g), G=_psd(d_out, g),
                    theta=torch.zeros(d_out, d_in, dtype=torch.float64), mask=mask)
    blk.lam_a, blk.V = _eigh(blk.A)
    blk.lam_g, blk.U = _eigh(blk.G)
    assert len(blk._row_groups(torch.device("cpu"))) == groups
    a = torch.randn(b, r, d_in, generator=g, dtype=torch.float64)
    gr = torch.randn(k, b, r, d_out, generator=g, dtype=torch.float64)
    wk = torch.rand(k, b, generator=g, dtype=torch.float64) + 0.2
    inv = torch.linalg.inv(torch.kron(blk.G, blk.A) + ALPHA * torch.eye(d_out * d_in,
                                                                          dtype=torch.float64))
    keep = mask.reshape(-1).double()
    inv = inv * keep[:, None] * keep[None, :]
    want = torch.zeros(b, dtype=torch.float64)
    for i in range(b):
        for c in range(k):
            psi = (gr[c, i].t() @ a[i]).reshape(-1)
            want[i] += wk[c, i] * psi @ inv @ psi
    torch.testing.assert_close(blk.leverage(a, gr, wk, AL, "masked"), want)
    # the cache rule: a whole group's gathered V is kept only within the limit
    assert any(key[0] == "v" for key in blk._gathered) == (limit == SPARSE_MAX_GATHERED)


def test_a_group_exactly_at_the_gather_limit_is_kept(monkeypatch):
    m = torch.zeros(D_OUT, D_IN, dtype=torch.bool)
    m[1] = True  # one row, D_IN wide: its gathered V holds D_IN · D_IN elements
    monkeypatch.setattr(kfac, "SPARSE_MAX_GATHERED", D_IN * D_IN)
    blk = _block(m)
    a, gr, wk = _data()
    blk.leverage(a, gr, wk, AL, "masked")
    assert any(key[0] == "v" for key in blk._gathered)


def test_g_side_lowrank_rank_edges():
    """Rank 1 is a valid G-side rank; rank = d_out is none (full rank is the exact leverage
    under another name), even where its price would win."""
    tall = KronBlock(None, A=torch.zeros(4, 4), G=torch.zeros(40, 40), theta=torch.zeros(40, 4))
    # rank 1, R 3, K 1: g_gram = 48 + 120 + 12 + 360 + 36 = 576 < g_psi 48 + 480 + 160 = 688
    assert tall.leverage_cost(3, 1, "lowrank", rank=1) == ("lowrank_g_gram", 576)
    # d_out 8, d_in 3, R 4, K 1, rank 8: g_psi would be 36 + 96 + 192 = 324 < matrix
    # 96 + 24·11 = 360 < rotate 36 + 256 + 96 = 388, but rank = d_out is no low-rank route
    mid = KronBlock(None, A=torch.zeros(3, 3), G=torch.zeros(8, 8), theta=torch.zeros(8, 3))
    assert mid.leverage_cost(4, 1, "lowrank", rank=8) == ("matrix", 360)
