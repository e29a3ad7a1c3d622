"""Which training samples to keep: budgeted (targets) or penalised (λ2), from per-sample scores.

Direction. ``keep="high"`` keeps the highest scores, ``keep="low"`` the lowest. For the
JMDS contribution c_i = −ℓ_i(θ*) − ½ tr(P⁻¹H_i) (design.md §2, phase C), high c_i means
easy and typical, so ``keep="high"`` keeps easy samples (maximising log Z under the
budget). The data-pruning baselines (forgetting, EL2N, GraNd) score *difficulty* and keep
the hard samples, also with ``keep="high"``.

Budget. With N rows and data sparsity ρ, exactly N − ⌊ρ·N + ½⌋ rows are kept (see
:mod:`budget`). Selection is monotone: a dropped row is never revived, so if fewer rows
are kept than the budget allows, the kept vector is returned unchanged.

Ties are broken deterministically: among equal scores the lower row index is preferred.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch

from jmds_pipeline.sparsity.budget import check_fraction, count_to_keep, count_to_remove

logger = logging.getLogger(__name__)

Mode = Literal["class_balanced", "topk", "stratified"]
Keep = Literal["high", "low"]
MODES = ("class_balanced", "topk", "stratified")
KEEPS = ("high", "low")


def _as_kept(kept: torch.Tensor, n: int) -> torch.Tensor:
    if kept.dim() != 1 or kept.shape[0] != n:
        raise ValueError(f"kept has shape {tuple(kept.shape)}; expected ({n},)")
    return kept.detach().cpu() != 0 if kept.dtype != torch.bool else kept.detach().cpu().clone()


def _values(scores: torch.Tensor, kept: torch.Tensor, keep: str) -> torch.Tensor:
    """Scores as float64 on CPU, negated for ``keep="low"``: higher value = keep first."""
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D (N,), got shape {tuple(scores.shape)}")
    values = scores.detach().cpu().to(torch.float64)
    if bool(torch.isnan(values[kept]).any()):
        raise ValueError("scores of kept samples contain NaN")
    return values if keep == "high" else -values


def _best(rows: torch.Tensor, values: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` rows of ``rows`` (ascending indices) with the highest values."""
    order = torch.sort(values[rows], descending=True, stable=True).indices
    return rows[order[:count]]


def _apportion(budget: int, weights: list[int], caps: list[int]) -> list[int]:
    """Integers a_c ≤ cap_c with Σ a_c = budget, proportional to ``weights`` where caps allow.

    Water-filling: groups whose proportional share reaches their cap get the cap, and the
    rest of the budget is shared among the others in proportion to their weights; then
    largest remainders (Hamilton's method) round the shares, ties to the earlier group.
    Exact integer arithmetic, so the result is the same on every machine.
    """
    fixed: dict[int, int] = {}
    free = [c for c in range(len(weights)) if weights[c] > 0]
    remaining = budget
    while True:
        total = sum(weights[c] for c in free)
        over = [c for c in free if remaining * weights[c] >= caps[c] * total]
        if not over:
            break
        for c in over:
            fixed[c] = caps[c]
            remaining -= caps[c]
        free = [c for c in free if c not in fixed]
        if not free:
            break
    shares = [0] * len(weights)
    for c, cap in fixed.items():
        shares[c] = cap
    if free:
        total = sum(weights[c] for c in free)
        fractions = []
        for c in free:
            shares[c], remainder = divmod(remaining * weights[c], total)
            fractions.append((-remainder, c))
        leftover = remaining - sum(shares[c] for c in free)
        for _, c in sorted(fractions)[:leftover]:
            shares[c] += 1
    return shares


def _topk(values: torch.Tensor, kept: torch.Tensor, n_keep: int) -> torch.Tensor:
    chosen = _best(torch.nonzero(kept).squeeze(1), values, n_keep)
    out = torch.zeros_like(kept)
    out[chosen] = True
    return out


def _class_balanced(
    values: torch.Tensor, labels: torch.Tensor, kept: torch.Tensor, n_keep: int
) -> torch.Tensor:
    classes = torch.unique(labels)  # sorted
    sizes = [int((labels == c).sum()) for c in classes]
    available = [int(((labels == c) & kept).sum()) for c in classes]
    shares = _apportion(n_keep, sizes, available)
    out = torch.zeros_like(kept)
    for c, share in zip(classes, shares, strict=True):
        rows = torch.nonzero((labels == c) & kept).squeeze(1)
        out[_best(rows, values, share)] = True
    return out


def _strata(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bin index 0..k−1 of each score: k ranges of even width over [min, max]."""
    low, high = scores.min(), scores.max()
    if bool(high <= low):
        return torch.zeros_like(scores, dtype=torch.int64)
    position = (scores - low) / (high - low) * k
    return position.floor().clamp_(0, k - 1).to(torch.int64)


def _stratified(
    scores: torch.Tensor,
    values: torch.Tensor,
    kept: torch.Tensor,
    n_keep: int,
    strata: int,
    hard_cutoff: float,
    generator: torch.Generator,
) -> torch.Tensor:
    candidates = torch.nonzero(kept).squeeze(1)
    # 1. Hard cutoff β: trim the end of the range the direction values least.
    cut = min(int(hard_cutoff * candidates.numel()), candidates.numel() - n_keep)
    pool = _best(candidates, values, candidates.numel() - cut).sort().values
    # 2. k strata of even width over the pool's score range.
    bins = _strata(scores.detach().cpu().to(torch.float64)[pool], strata)
    groups = [pool[bins == b] for b in range(strata)]
    order = sorted((g.numel(), b) for b, g in enumerate(groups) if g.numel() > 0)
    # 3. Budget to strata from the smallest up: m_B = min(|B|, ⌊m / #strata left⌋), drawn
    #    uniformly at random inside the stratum.
    remaining = n_keep
    chosen: list[torch.Tensor] = []
    spare: list[torch.Tensor] = []
    for left, (size, b) in zip(range(len(order), 0, -1), order, strict=True):
        take = min(size, remaining // left)
        permuted = groups[b][torch.randperm(size, generator=generator)]
        chosen.append(permuted[:take])
        spare.append(permuted[take:])
        remaining -= take
    # Integer division can leave a few slots when a large stratum is exhausted late; fill
    # them from the leftovers, smallest strata first, so the budget is met exactly.
    for rows in spare:
        if remaining <= 0:
            break
        chosen.append(rows[:remaining])
        remaining -= min(remaining, rows.numel())
    out = torch.zeros_like(kept)
    out[torch.cat(chosen)] = True
    return out


def select_samples(
    scores: torch.Tensor,
    labels: torch.Tensor,
    kept: torch.Tensor,
    target_sparsity: float,
    mode: Mode = "class_balanced",
    keep: Keep = "high",
    generator: torch.Generator | None = None,
    *,
    strata: int = 50,
    hard_cutoff: float = 0.0,
) -> torch.Tensor:
    """New ``bool`` kept vector (N,) with exactly N − ⌊ρ·N + ½⌋ rows kept (ρ = target).

    Modes (only rows kept now are candidates; the rest stay dropped):

    - ``"topk"``: the best rows by score in the ``keep`` direction.
    - ``"class_balanced"`` (default): every class c keeps ≈ the same fraction of its N_c
      rows, i.e. n_c ≈ n_keep·N_c/N (largest remainders, ties to the smaller label; a class
      with fewer rows left than its share keeps them all and the surplus goes to the
      others in proportion), then the best rows within each class. Sequence targets
      ``labels`` of shape (N, T) (language modelling) have no class, so this mode falls
      back to ``"topk"``; a single label value (e.g. all −1) is the same as ``"topk"``.
    - ``"stratified"``: Coverage-Centric Coreset Selection (Zheng et al., ICLR 2023,
      Algorithm 1). First drop the ``hard_cutoff`` fraction β of the candidates at the end
      the ``keep`` direction values least (``keep="high"`` trims the lowest scores). With
      difficulty scores (high = hard, as forgetting/EL2N/AUM) the paper trims the hardest,
      i.e. pass ``keep="low"`` with β > 0; with β = 0 (default) the direction is unused.
      Then split the score range into ``strata`` bins of even width (paper: k = 50) and
      give the budget to the non-empty bins from the smallest up, each taking
      min(|B|, ⌊m / #bins left⌋) rows uniformly at random (``generator``; a generator seeded
      with 0 when ``None``). Rows the integer division leaves unassigned are filled from the
      smallest bins' leftovers, so the count is exact.
    """
    target = check_fraction("target_sparsity", target_sparsity)
    if mode not in MODES:
        raise ValueError(f"mode = {mode!r} is unknown; accepted: {list(MODES)}")
    if keep not in KEEPS:
        raise ValueError(f"keep = {keep!r} is unknown; accepted: {list(KEEPS)}")
    if isinstance(strata, bool) or not isinstance(strata, int) or strata < 1:
        raise ValueError(f"strata = {strata!r} must be an integer >= 1")
    cutoff = check_fraction("hard_cutoff", hard_cutoff)
    n = int(scores.shape[0]) if scores.dim() >= 1 else 0
    current = _as_kept(kept, n)
    if labels.shape[:1] != (n,):
        raise ValueError(f"labels has shape {tuple(labels.shape)}; expected ({n},) or ({n}, T)")
    values = _values(scores, current, keep)
    n_keep = count_to_keep(n, target)
    if int(current.sum()) <= n_keep:
        return current
    if mode == "topk" or (mode == "class_balanced" and labels.dim() != 1):
        return _topk(values, current, n_keep)
    if mode == "class_balanced":
        return _class_balanced(values, labels.detach().cpu(), current, n_keep)
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    return _stratified(scores, values, current, n_keep, strata, cutoff, generator)


def select_by_threshold(
    contributions: torch.Tensor,
    kept: torch.Tensor,
    lam: float,
    max_sparsity: float | None = None,
) -> torch.Tensor:
    """Penalty mode: drop every kept sample i with −c_i + λ2 > 0, at most to ``max_sparsity``.

    The objective is J = log Z − λ2·‖s‖₀. Dropping sample i changes log Z by ≈ −c_i
    (c_i = ∂log Z/∂s_i at s_i = 1) and ‖s‖₀ by −1, so J changes by −c_i + λ2; the sample
    goes iff that is positive, i.e. iff c_i < λ2.

    Read this honestly: for classification and language modelling every likelihood factor
    is ≤ 1, so c_i = −ℓ_i − ½ tr(P⁻¹H_i) ≤ 0 and −c_i ≥ 0 (design.md §2). With λ2 ≥ 0
    *every* sample qualifies, and the rule alone empties the data set. The function
    therefore

    - drops in order of gain (smallest c_i first: high loss, high leverage), and stops at
      ``max_sparsity`` (a fraction of all N rows) when one is given; it logs a warning when
      that cap, not λ2, decided how many went;
    - raises ``ValueError`` if, without a cap, nothing would be left to train on.

    A threshold that actually selects needs λ2 < 0, a *reward* of |λ2| nats per kept
    sample: then exactly the samples with ℓ_i + ½ tr(P⁻¹H_i) > |λ2| are dropped. Budgeted
    selection (:func:`select_samples`) is the mode to use for a given data sparsity.
    """
    lam = float(lam)
    if not torch.isfinite(torch.tensor(lam)):
        raise ValueError(f"lam = {lam!r} must be finite")
    cap = None if max_sparsity is None else check_fraction("max_sparsity", max_sparsity)
    if contributions.dim() != 1:
        raise ValueError(f"contributions must be 1-D (N,), got {tuple(contributions.shape)}")
    n = int(contributions.shape[0])
    current = _as_kept(kept, n)
    c = contributions.detach().cpu().to(torch.float64)
    if bool(torch.isnan(c[current]).any()):
        raise ValueError("contributions of kept samples contain NaN")
    gain = -c + lam
    wanted = int((current & (gain > 0)).sum())
    dropped = n - int(current.sum())
    to_drop = wanted
    if cap is not None:
        allowed = max(0, count_to_remove(n, cap) - dropped)
        if wanted > allowed:
            logger.warning(
                "penalty rule (lambda_data = %g) would drop %d of %d kept samples; capped by "
                "max_sparsity = %g at %d", lam, wanted, int(current.sum()), cap, allowed,
            )
        to_drop = min(wanted, allowed)
    if to_drop == int(current.sum()) and to_drop > 0:
        raise ValueError(
            f"the penalty rule drops all {to_drop} kept samples (−c_i + λ2 > 0 for every one; "
            f"for classification −c_i ≥ 0, so any λ2 ≥ 0 does this): pass max_sparsity, use "
            f"target mode, or a negative λ2 (lam = {lam})"
        )
    rows = torch.nonzero(current).squeeze(1)
    order = torch.sort(gain[rows], descending=True, stable=True).indices
    out = current.clone()
    out[rows[order[:to_drop]]] = False
    return out
