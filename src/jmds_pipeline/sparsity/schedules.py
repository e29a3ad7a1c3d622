"""Per-round sparsity targets: how R rounds reach a final sparsity ρ.

With r = 1..R and the sparsity s_r reached at the end of round r (s_0 = 0, s_R = ρ):

- ``geometric`` (equal-ratio, as iterative magnitude pruning; Frankle & Carbin 2019):
  every round keeps the same fraction of what is left,

      density_r = (1 − ρ)^(r/R),   s_r = 1 − (1 − ρ)^(r/R);

- ``cubic`` (gradual pruning, Zhu & Gupta 2017, "To prune, or not to prune"): fast at
  first, slow at the end,

      s_r = ρ · (1 − (1 − r/R)³).

Both are non-decreasing in r, and the last target is set to ρ exactly (not through a
floating-point power), so the final round always lands on the requested sparsity.
"""

from __future__ import annotations

from collections.abc import Callable

from jmds_pipeline.sparsity.budget import check_fraction


def _geometric(final: float, r: int, rounds: int) -> float:
    return 1.0 - (1.0 - final) ** (r / rounds)


def _cubic(final: float, r: int, rounds: int) -> float:
    return final * (1.0 - (1.0 - r / rounds) ** 3)


SCHEDULES: dict[str, Callable[[float, int, int], float]] = {
    "geometric": _geometric,
    "cubic": _cubic,
}


def round_targets(final_sparsity: float, rounds: int, schedule: str = "geometric") -> list[float]:
    """[s_1, …, s_R]: the sparsity to reach at the end of each round (s_R = ρ exactly).

    Raises ``ValueError`` naming the key for ρ ∉ [0, 1), R < 1 (or not an int) and an
    unknown ``schedule`` (listing the accepted names).
    """
    final = check_fraction("final_sparsity", final_sparsity)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds = {rounds!r} must be an integer >= 1")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule = {schedule!r} is unknown; accepted: {sorted(SCHEDULES)}")
    rule = SCHEDULES[schedule]
    targets = [min(max(rule(final, r, rounds), 0.0), final) for r in range(1, rounds)]
    targets.append(final)
    for r in range(1, len(targets)):  # guard monotonicity against rounding
        targets[r] = max(targets[r], targets[r - 1])
    return targets
